"""The history store: every QA run, its datasets, products, check verdicts and changes.

SQLAlchemy Core, so SQLite (the default, ``<cache-dir>/history.sqlite``) and PostgreSQL
(``postgresql://...``) run the same statements. The schema is versioned: the
``schema_version`` table holds the version, and ``MIGRATIONS`` are applied in order
under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an advisory lock), so two runs
opening an old store at once upgrade it once.

Concurrency: each run inserts its ``runs`` row at start (status ``running``, host, pid,
heartbeat) and writes everything else in one transaction at the end; a run whose
process is gone (same host) or whose heartbeat is older than ``STALE_AFTER`` is marked
``incomplete`` by the next run that opens the store. Timestamps are ISO-8601 UTC text,
which sorts as time in both databases.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine

from qa.history.record import CheckRecord, ProductRecord

SCHEMA_VERSION = 2
HEARTBEAT_EVERY = 30.0
STALE_AFTER = timedelta(minutes=10)
COMPLETE = "complete"
_PG_LOCK = 0x68617370  # "hasp": the advisory lock id serialising migrations


def now() -> str:
    """The current UTC time as stored."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the current schema (what queries use; MIGRATIONS build it) ----------------------
metadata = MetaData()
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started", String(40), nullable=False), Column("finished", String(40)),
    Column("status", String(20), nullable=False), Column("exit_status", Integer),
    Column("window_since", String(40)), Column("window_until", String(40)),
    Column("options", Text), Column("versions", Text),
    # v2
    Column("host", String(255)), Column("pid", Integer), Column("heartbeat", String(40)),
    Column("programs", Text), Column("report", Text),
)
datasets = Table(
    "datasets", metadata,
    Column("run_id", Integer, nullable=False, index=True), Column("name", String(255)),
    Column("program", String(20)), Column("release_date", String(40)),
    Column("archive_date", String(40)), Column("sha256", String(64)),
    Column("reason", String(20)),
)
products = Table(
    "products", metadata,
    Column("run_id", Integer, nullable=False, index=True), Column("pid", String(255)),
    Column("source", String(255)), Column("program", String(20)), Column("level", String(20)),
    Column("mode", String(40)), Column("inputs", Text), Column("kept", Text),
    Column("rejected", Text), Column("remediation", Text), Column("error", Text),
    # v2
    Column("snr_gain", Float),
)
checks = Table(
    "checks", metadata,
    Column("run_id", Integer, nullable=False, index=True), Column("pid", String(255)),
    Column("check_name", String(255)), Column("case_id", String(512)),
    Column("subject", String(255)), Column("status", String(20)), Column("message", Text),
    Column("threshold", Float), Column("observed", Text),
)
changes = Table(  # v2
    "changes", metadata,
    Column("run_id", Integer, nullable=False, index=True), Column("pid", String(255)),
    Column("program", String(20)), Column("check_name", String(255)),
    Column("case_id", String(512)), Column("kind", String(40)), Column("before", String(20)),
    Column("after", String(20)), Column("previous_run", Integer), Column("detail", Text),
    Column("alert", Integer),
)


# -- migrations ------------------------------------------------------------------------
_V2_COLUMNS = {"runs": ("host", "pid", "heartbeat", "programs", "report"),
               "products": ("snr_gain",)}


def _v1(conn: Connection) -> None:
    """Runs, datasets, products and checks (the first released schema)."""
    v1 = MetaData()
    for table in (runs, datasets, products, checks):
        Table(table.name, v1, *[
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                   index=c.index)
            for c in table.columns if c.name not in _V2_COLUMNS.get(table.name, ())])
    v1.create_all(conn)


def _v2(conn: Connection) -> None:
    """Concurrency bookkeeping (host, pid, heartbeat), discovery reasons, report path,
    the SNR gain as a column (trend figures), and the per-run changes."""
    for name, kind in (("host", "VARCHAR(255)"), ("pid", "INTEGER"),
                       ("heartbeat", "VARCHAR(40)"), ("programs", "TEXT"), ("report", "TEXT")):
        conn.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {kind}"))
    conn.execute(text("ALTER TABLE products ADD COLUMN snr_gain FLOAT"))
    changes.create(conn)


MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_v1, _v2)
assert len(MIGRATIONS) == SCHEMA_VERSION


def display_name(target: str) -> str:
    """The store's address without a password (it goes into reports)."""
    if "://" in target and "@" in target:
        scheme, rest = target.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}@{host}"
    return target


# Seconds a SQLite connection waits for another process's lock.
SQLITE_WAIT = 120.0


def engine_for(target: str | Path) -> Engine:
    """An engine for a SQLite path / URL or a PostgreSQL URL."""
    target = str(target)
    if target.startswith(("postgresql://", "postgres://")):
        return create_engine("postgresql+psycopg://" + target.split("://", 1)[1],
                             pool_pre_ping=True)
    if target.startswith("postgresql+"):
        return create_engine(target, pool_pre_ping=True)
    if target.startswith("sqlite:///"):
        path = Path(target[len("sqlite:///"):])
    else:
        path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": SQLITE_WAIT})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN
        _wal(dbapi_conn)  # readers never block the writer

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock at the start: two runs' transactions serialise instead of
        # failing with "database is locked" on upgrade from a read lock.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _wal(dbapi_conn: sqlite3.Connection) -> None:
    """Switch to WAL journaling, waiting for other processes that open the store at once.

    The switch needs the database to itself, and SQLite can answer "locked" at once
    instead of using the busy timeout; so it is retried here until ``SQLITE_WAIT``.
    """
    deadline = time.monotonic() + SQLITE_WAIT
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def migrate(engine: Engine, upto: int = SCHEMA_VERSION) -> int:
    """Bring the store to version ``upto`` (default: current); returns the version found."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        schema_version.create(conn, checkfirst=True)
        found = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"history store has schema version {found}; this hasp-qa "
                               f"knows up to {SCHEMA_VERSION}: upgrade hasp-qa")
        for version in range(found + 1, upto + 1):
            MIGRATIONS[version - 1](conn)
        if upto > found:
            conn.execute(schema_version.delete())
            conn.execute(schema_version.insert().values(version=upto))
    return found


@dataclass
class RunRow:
    """One run as listed by ``HistoryStore.runs``."""

    id: int
    started: str
    finished: str | None
    status: str
    exit_status: int | None
    window_since: str | None
    window_until: str | None
    options: dict[str, Any]
    versions: dict[str, str]
    programs: list[dict[str, Any]]
    report: str | None


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _change_row(change: dict[str, Any], run_id: int) -> dict[str, Any]:
    """A ``Change.to_dict()`` as a ``changes`` row."""
    row = {k: v for k, v in change.items() if k != "check"}
    return dict(row, run_id=run_id, check_name=change["check"], alert=int(change["alert"]))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class HistoryStore:
    """One history store; safe to use from several processes at once.

    Parameters
    ----------
    target : str or Path
        A SQLite file path (or ``sqlite:///`` URL) or a ``postgresql://`` URL.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self.engine = engine_for(target)
        migrate(self.engine)
        self._beat: threading.Event | None = None

    def close(self) -> None:
        self.stop_heartbeat()
        self.engine.dispose()

    # -- a run's life -----------------------------------------------------------------
    def mark_stale(self) -> list[int]:
        """Mark runs whose process died as ``incomplete``; returns their ids."""
        host, cutoff = socket.gethostname(), datetime.now(timezone.utc) - STALE_AFTER
        with self.engine.begin() as conn:
            running = conn.execute(select(runs.c.id, runs.c.host, runs.c.pid, runs.c.heartbeat)
                                   .where(runs.c.status == "running")).all()
            stale = [r.id for r in running
                     if (r.host == host and r.pid is not None and not _pid_alive(r.pid))
                     or datetime.fromisoformat(r.heartbeat or "1970-01-01T00:00:00+00:00") < cutoff]
            if stale:
                conn.execute(update(runs).where(runs.c.id.in_(stale))
                             .values(status="incomplete"))
        return stale

    def begin_run(self, *, window: dict[str, str] | None, options: dict[str, Any],
                  versions: dict[str, str], programs: list[dict[str, Any]] | None = None,
                  report: str | None = None) -> int:
        """Insert the run as ``running`` (after marking dead runs); returns its id."""
        self.mark_stale()
        stamp = now()
        with self.engine.begin() as conn:
            return conn.execute(runs.insert().values(
                started=stamp, heartbeat=stamp, status="running", host=socket.gethostname(),
                pid=os.getpid(), window_since=(window or {}).get("since"),
                window_until=(window or {}).get("until"), options=_json(options),
                versions=_json(versions), programs=_json(programs or []), report=report,
            )).inserted_primary_key[0]

    def heartbeat(self, run_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(heartbeat=now()))

    def start_heartbeat(self, run_id: int, every: float = HEARTBEAT_EVERY) -> None:
        """Refresh the run's heartbeat from a daemon thread until ``stop_heartbeat``."""
        stop = threading.Event()
        self._beat = stop

        def beat() -> None:
            while not stop.wait(every):
                try:
                    self.heartbeat(run_id)
                except Exception:  # a busy or unreachable store: the next beat retries
                    continue
        threading.Thread(target=beat, name="hasp-qa-heartbeat", daemon=True).start()

    def stop_heartbeat(self) -> None:
        if self._beat is not None:
            self._beat.set()
            self._beat = None

    def finish_run(self, run_id: int, *, status: str, exit_status: int,
                   product_records: dict[str, ProductRecord],
                   dataset_rows: Iterable[dict[str, Any]] = (),
                   change_rows: Iterable[dict[str, Any]] = (),
                   versions: dict[str, str] | None = None) -> None:
        """Write the run's datasets, products, checks and changes and close it, atomically."""
        self.stop_heartbeat()
        product_rows, check_rows = [], []
        for p in product_records.values():
            rem = p.remediation or {}
            product_rows.append({
                "run_id": run_id, "pid": p.pid, "source": p.source, "program": p.program,
                "level": p.level, "mode": p.mode, "inputs": _json(p.inputs),
                "kept": _json(p.kept), "rejected": _json(p.rejected),
                "remediation": _json(p.remediation) if p.remediation else None,
                "error": p.error, "snr_gain": rem.get("snr_gain")})
            for c in p.checks:
                check_rows.append({
                    "run_id": run_id, "pid": p.pid, "check_name": c.check, "case_id": c.case_id,
                    "subject": c.subject, "status": c.status, "message": c.message,
                    "threshold": c.threshold, "observed": _json(c.observed)})
        values: dict[str, Any] = {"status": status, "exit_status": exit_status,
                                  "finished": now()}
        if versions is not None:
            values["versions"] = _json(versions)
        with self.engine.begin() as conn:
            for table, rows in ((datasets, [dict(r, run_id=run_id) for r in dataset_rows]),
                                (products, product_rows), (checks, check_rows),
                                (changes, [_change_row(r, run_id) for r in change_rows])):
                if rows:
                    conn.execute(table.insert(), rows)
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    # -- reading -----------------------------------------------------------------------
    def runs(self, limit: int | None = None) -> list[RunRow]:
        """Runs, newest first."""
        query = select(runs).order_by(runs.c.id.desc())
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [RunRow(id=r.id, started=r.started, finished=r.finished, status=r.status,
                           exit_status=r.exit_status, window_since=r.window_since,
                           window_until=r.window_until, options=json.loads(r.options or "{}"),
                           versions=json.loads(r.versions or "{}"),
                           programs=json.loads(r.programs or "[]"), report=r.report)
                    for r in conn.execute(query)]

    def last_window_end(self) -> datetime | None:
        """The end of the window of the newest complete run that had one."""
        with self.engine.connect() as conn:
            until = conn.execute(
                select(runs.c.window_until)
                .where(and_(runs.c.status == COMPLETE, runs.c.window_until.is_not(None)))
                .order_by(runs.c.id.desc()).limit(1)).scalar()
        return datetime.fromisoformat(until) if until else None

    def products_of(self, run_id: int) -> dict[str, ProductRecord]:
        """A stored run's products with their checks."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(products).where(products.c.run_id == run_id)).all()
            check_rows = conn.execute(select(checks).where(checks.c.run_id == run_id)
                                      .order_by(checks.c.case_id)).all()
        out = {r.pid: ProductRecord(
            pid=r.pid, source=r.source, program=r.program, level=r.level, mode=r.mode,
            inputs=json.loads(r.inputs or "{}"), kept=json.loads(r.kept or "[]"),
            rejected=json.loads(r.rejected or "[]"),
            remediation=json.loads(r.remediation) if r.remediation else None, error=r.error)
            for r in rows}
        for c in check_rows:
            if c.pid in out:
                out[c.pid].checks.append(CheckRecord(
                    check=c.check_name, case_id=c.case_id, subject=c.subject, status=c.status,
                    message=c.message or "", threshold=c.threshold,
                    observed=json.loads(c.observed or "{}")))
        return out

    def previous_products(self, pids: Iterable[str], before: int
                          ) -> dict[str, tuple[int, ProductRecord]]:
        """For each pid, the newest complete run before ``before`` that had it, and its record."""
        wanted = set(pids)
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            hits = conn.execute(
                select(products.c.pid, func.max(products.c.run_id))
                .join(runs, runs.c.id == products.c.run_id)
                .where(and_(runs.c.status == COMPLETE, runs.c.id < before,
                            products.c.pid.in_(wanted)))
                .group_by(products.c.pid)).all()
        by_run: dict[int, list[str]] = {}
        for pid, run_id in hits:
            by_run.setdefault(run_id, []).append(pid)
        out = {}
        for run_id, pids_in_run in by_run.items():
            stored = self.products_of(run_id)
            out.update({pid: (run_id, stored[pid]) for pid in pids_in_run})
        return out

    def changes_of(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Stored changes (of one run, or all), oldest run first."""
        query = select(changes).order_by(changes.c.run_id, changes.c.case_id)
        if run_id is not None:
            query = query.where(changes.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def verdicts(self) -> list[dict[str, Any]]:
        """Every stored check verdict with its run's start (for trends), oldest first."""
        query = (select(checks.c.run_id, checks.c.pid, checks.c.check_name, checks.c.case_id,
                        checks.c.status, products.c.program, products.c.snr_gain,
                        products.c.rejected, runs.c.started, runs.c.status.label("run_status"))
                 .join(runs, runs.c.id == checks.c.run_id)
                 .join(products, and_(products.c.run_id == checks.c.run_id,
                                      products.c.pid == checks.c.pid), isouter=True)
                 .order_by(checks.c.run_id, checks.c.case_id))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def product_rows(self) -> list[dict[str, Any]]:
        """Every stored product row (without checks), oldest run first."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in
                    conn.execute(select(products).order_by(products.c.run_id, products.c.pid))]

"""The history store (SQLite and a real PostgreSQL), its migrations, concurrency, and the
classification of what changed."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from qa.archive.mast_server import INVOKE_PATH, MastServer
from qa.history.changes import classify, tally
from qa.history.record import CheckRecord, ProductRecord
from qa.history.store import (
    SCHEMA_VERSION,
    HistoryStore,
    engine_for,
    migrate,
    runs,
    schema_version,
)

from .conftest import derive_visit
from .postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres_url")


def product(pid: str, inputs: dict[str, str], *checks: tuple[str, str],
            threshold: float = -50.0) -> ProductRecord:
    return ProductRecord(pid=pid, source="8016", program="8016", inputs=inputs,
                         checks=[CheckRecord(check, pid, pid, status, threshold=threshold)
                                 for check, status in checks])


# -- schema and migrations ---------------------------------------------------------------
def test_upgrade_from_v1_keeps_runs(target: str) -> None:
    engine = engine_for(target)
    assert migrate(engine, upto=1) == 0
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (started, status, exit_status, window_until) "
                          "VALUES ('2026-01-01T00:00:00+00:00', 'complete', 0, "
                          "'2026-01-02T00:00:00+00:00')"))
        assert "heartbeat" not in [c for c in conn.execute(text("SELECT * FROM runs")).keys()]
    engine.dispose()

    store = HistoryStore(target)  # upgrades to the current version
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(schema_version.c.version)).scalars().all() == \
                [SCHEMA_VERSION]
        old = store.runs()[0]
        assert (old.status, old.window_until) == ("complete", "2026-01-02T00:00:00+00:00")
        new = store.begin_run(window=None, options={}, versions={"hasp": "1.2.5"})
        store.finish_run(new, status="complete", exit_status=0,
                         product_records={"P": product("P", {"a.fits": "1"}, ("rejection", "passed"))})
        assert [r.id for r in store.runs()] == [new, old.id]
        assert store.products_of(new)["P"].checks[0].status == "passed"
        assert migrate(store.engine) == SCHEMA_VERSION  # nothing left to do
    finally:
        store.close()


def test_store_from_a_newer_hasp_qa_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    HistoryStore(path).close()
    engine = engine_for(path)
    with engine.begin() as conn:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(RuntimeError, match="upgrade hasp-qa"):
        HistoryStore(path)


# -- concurrency ----------------------------------------------------------------------------
def _writer(target: str, n: int) -> None:
    store = HistoryStore(target)
    for i in range(n):
        run_id = store.begin_run(window=None, options={"writer": os.getpid()}, versions={})
        records = {f"P{j}": product(f"P{j}", {f"f{j}.fits": str(i)}, ("rejection", "passed"),
                                    ("flux_variance", "failed")) for j in range(5)}
        store.finish_run(run_id, status="complete", exit_status=1, product_records=records)
    store.close()


def _run_writers(target: str, processes: int, runs: int) -> list[int | None]:
    """Exit codes of ``processes`` spawned processes that each write ``runs`` runs at once."""
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(target, runs)) for _ in range(processes)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    return [w.exitcode for w in writers]


def test_concurrent_writers_lose_nothing(target: str) -> None:
    HistoryStore(target).close()  # the schema exists; the writers race on data only
    assert _run_writers(target, 4, 5) == [0, 0, 0, 0]
    store = HistoryStore(target)
    try:
        done = store.runs()
        assert len(done) == 20 and {r.status for r in done} == {"complete"}
        for r in done:
            stored = store.products_of(r.id)
            assert len(stored) == 5 and all(len(p.checks) == 2 for p in stored.values())
    finally:
        store.close()


def test_concurrent_first_open_migrates_once(target: str) -> None:
    assert _run_writers(target, 3, 1) == [0, 0, 0]
    store = HistoryStore(target)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(schema_version.c.version)).scalars().all() == \
                [SCHEMA_VERSION]
        assert len(store.runs()) == 3
    finally:
        store.close()


def test_dead_and_silent_runs_become_incomplete(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        gone = store.begin_run(window=None, options={}, versions={})
        silent = store.begin_run(window=None, options={}, versions={})
        alive = store.begin_run(window=None, options={}, versions={})
        with store.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.id == gone).values(pid=dead.pid))
            conn.execute(runs.update().where(runs.c.id == silent).values(
                host="elsewhere", heartbeat="2026-01-01T00:00:00+00:00"))
        assert store.mark_stale() == [gone, silent]
        assert {r.id: r.status for r in store.runs()} == \
            {gone: "incomplete", silent: "incomplete", alive: "running"}
    finally:
        store.close()


def _qa(tmp_path: Path, *args: str, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
           f"--cache-dir={tmp_path / 'cache'}", "-q", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, **popen)


@pytest.fixture
def data_dir(real_dir: Path, tmp_path: Path) -> Path:
    return derive_visit(real_dir, tmp_path / "data" / "8016", e230m=False)


def test_sigkilled_run_is_incomplete_and_the_next_run_completes(
        data_dir: Path, tmp_path: Path, mast_server, target: str) -> None:
    root = tmp_path / "archive"
    shutil.copytree(data_dir, root / "8016")
    server: MastServer = mast_server(root, download_delay=30)
    for rootname in ("o5jy03010", "o5jy03020", "o5jy03030"):
        server.release(rootname, datetime(2026, 1, 1, 12))
    night = ("--released-since=2026-01-01", "--released-until=2026-01-02")
    killed = _qa(tmp_path, f"--mast-url={server.url}", f"--history={target}", *night,
                 start_new_session=True)
    store = HistoryStore(target)
    try:
        deadline = time.monotonic() + 120
        # Discovery comes before the run starts; the observation query after it.
        while not any(r.path == INVOKE_PATH for r in server.log) and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        assert [r.status for r in store.runs()] == ["running"]
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(30)
        assert store.last_window_end() is None  # the watermark did not move
        server.download_delay = 0
        second = _qa(tmp_path, f"--mast-url={server.url}", f"--history={target}", *night)
        out, _ = second.communicate(timeout=600)
        assert second.returncode == 1, out  # the data has a failing product
        first, last = store.runs()[::-1]
        assert (first.status, first.finished, first.exit_status) == ("incomplete", None, None)
        assert (last.status, last.exit_status) == ("complete", 1)
        assert len(store.products_of(last.id)) == 2
        assert store.products_of(first.id) == {}
        assert store.last_window_end() == datetime(2026, 1, 2, tzinfo=timezone.utc)
    finally:
        store.close()


# -- --fail-on=new on an ordinary (not nightly) run ---------------------------------------
def test_fail_on_new_ignores_known_failures(data_dir: Path, tmp_path: Path) -> None:
    history = str(tmp_path / "history.sqlite")
    codes, outs = [], []
    for fail_on in ("new", "new", "any"):
        proc = _qa(tmp_path, f"--data-dir={data_dir}", f"--history={history}",
                   f"--fail-on={fail_on}")
        out, _ = proc.communicate(timeout=600)
        codes.append(proc.returncode)
        outs.append(out)
    assert codes == [1, 0, 1], outs  # first sight of the failures, then still failing
    assert "changes: 4 still failing, 8 still passing" in outs[1]
    assert "--fail-on=new: 0 new failure(s) or changed verdict(s)" in outs[1]
    assert "--fail-on=new: 4 new failure(s) or changed verdict(s)" in outs[0]
    store = HistoryStore(history)
    try:
        assert [r.exit_status for r in store.runs()] == [1, 0, 1][::-1]
    finally:
        store.close()


# -- classification ----------------------------------------------------------------------------
def test_classify_every_kind() -> None:
    versions = {"hasp": "1.2.5", "hasp-qa": "0.1.0"}
    before = {
        "same": product("same", {"a": "1"}, ("rejection", "passed"), ("fv", "failed")),
        "rearchived": product("rearchived", {"a": "1", "b": "2"}, ("rejection", "passed")),
        "verdict": product("verdict", {"a": "1"}, ("rejection", "passed")),
        "param": product("param", {"a": "1"}, ("rejection", "passed"), threshold=-50),
        "fixed": product("fixed", {"a": "1"}, ("rejection", "failed")),
    }
    now = {
        "same": product("same", {"a": "1"}, ("rejection", "passed"), ("fv", "failed")),
        "rearchived": product("rearchived", {"a": "1", "b": "3", "c": "4"},
                              ("rejection", "failed")),
        "verdict": product("verdict", {"a": "1"}, ("rejection", "failed")),
        "param": product("param", {"a": "1"}, ("rejection", "failed"), threshold=-5),
        "fixed": product("fixed", {"a": "1"}, ("rejection", "passed")),
        "brand": product("brand", {"z": "9"}, ("rejection", "error")),
    }
    previous = {pid: (7 if pid == "verdict" else 3, rec) for pid, rec in before.items()}
    older = {3: versions, 7: {**versions, "hasp": "1.2.4"}}
    found = {(c.pid, c.check): c for c in classify(now, versions, previous, older)}
    kinds = {key: (c.kind, c.alert) for key, c in found.items()}
    assert kinds == {
        ("same", "rejection"): ("still passing", False), ("same", "fv"): ("still failing", False),
        ("rearchived", "rejection"): ("input set changed", True),
        ("verdict", "rejection"): ("verdict changed", True),
        ("param", "rejection"): ("new failure", True),
        ("fixed", "rejection"): ("fixed", False),
        ("brand", "rejection"): ("new product", True),
    }
    assert found[("rearchived", "rejection")].detail == \
        "added c; re-archived b (sha256 changed); passed -> failed"
    assert "hasp 1.2.4 -> 1.2.5" in found[("verdict", "rejection")].detail
    assert "threshold -50 -> -5" in found[("param", "rejection")].detail
    assert found[("verdict", "rejection")].previous_run == 7
    assert list(tally(list(found.values()))) == [
        "new failure", "verdict changed", "input set changed", "new product", "fixed",
        "still failing", "still passing"]


def test_unreachable_store_does_not_stop_the_qa(data_dir: Path, tmp_path: Path) -> None:
    proc = _qa(tmp_path, f"--data-dir={data_dir}", "--history=postgresql://qa:secret@127.0.0.1:9/x")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out  # the checks' verdict, as without history
    assert "history store unusable, run not recorded: postgresql://qa@127.0.0.1:9/x" in out
    assert "secret" not in out


def test_trend_site_escapes_names_from_files(tmp_path: Path) -> None:
    from qa.render.site import build_site

    store = HistoryStore(tmp_path / "h.sqlite")
    try:
        hostile = '8016-<img src=x onerror=alert(1)>-STIS/E140M-visit03'
        run_id = store.begin_run(window=None, options={}, versions={})
        store.finish_run(run_id, status="complete", exit_status=1, product_records={
            hostile: product(hostile, {"a<b>.fits": "1"}, ("rejection", "failed"))},
            change_rows=[{"pid": hostile, "program": "8016", "check": "rejection",
                          "case_id": hostile, "kind": "new product", "before": None,
                          "after": "failed", "previous_run": None, "detail": "<b>x</b>",
                          "alert": True}])
        index = build_site(store, tmp_path / "site")
        page = (tmp_path / "site" / "program-8016.html").read_text()
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
        assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
        assert 'href="program-8016.html"' in index.read_text()
    finally:
        store.close()


def test_terminal_and_report_list_only_changes_to_act_on() -> None:
    from qa.render.report import changes_html
    from qa.render.terminal import render_changes

    def change(case_id: str, kind: str, before: str | None, after: str, alert: bool) -> dict:
        return {"pid": case_id, "program": "8016", "check": "rejection", "case_id": case_id,
                "kind": kind, "before": before, "after": after, "previous_run": None,
                "detail": after, "alert": alert}
    history = {"run": 1, "store": "h.sqlite", "previous_runs": [], "window": None,
               "fail_on": "any", "alerts": 1, "tally": {"new product": 2, "still passing": 1},
               "changes": [change("P-pass", "new product", None, "passed", False),
                           change("P-fail", "new product", None, "failed", True),
                           change("P-steady", "still passing", "passed", "passed", False)]}
    text, page = render_changes(history), changes_html(history)
    for out in (text, page):
        assert "P-fail" in out and "P-pass" not in out and "P-steady" not in out
        assert "2 new product" in out.replace("<b>", "").replace("</b>", "")
    assert "None" not in page


def test_terminal_shows_alerts_first_and_at_most_a_screenful() -> None:
    from qa.render.terminal import CHANGE_LINES, render_changes

    def change(i: int, alert: bool) -> dict:
        return {"pid": f"P{i}", "program": "8016", "check": "rejection", "case_id": f"P{i}",
                "kind": "new failure" if alert else "fixed", "before": "passed",
                "after": "failed" if alert else "passed", "previous_run": 1, "detail": "",
                "alert": alert}
    changes = [change(i, alert=i >= 25) for i in range(30)]
    text = render_changes({"run": 2, "store": "h.sqlite", "previous_runs": [1], "window": None,
                           "fail_on": "any", "alerts": 5, "tally": {}, "changes": changes})
    rows = [line for line in text.splitlines() if line.startswith("  ") and "(rejection)" in line]
    assert len(rows) == CHANGE_LINES and all("[new]" in r for r in rows[:5])
    assert f"... and {30 - CHANGE_LINES} more" in text

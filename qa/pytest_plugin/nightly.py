"""Nightly archive QA and run history, as pytest hooks (registered from ``plugin``).

* ``--released-since=DATE|last`` / ``--released-until=DATE`` find the programs with
  STIS/COS spectra released or re-archived in the window (``qa.archive.discovery``)
  and add them to the run's ``--program`` list; ``last`` continues from the end of the
  last complete windowed run in the history store (minus ``OVERLAP``).
* Every QA run is recorded in the history store (``--history``, default
  ``<cache-dir>/history.sqlite``), compared with the last complete run that saw the
  same products (``qa.history.changes``), and the terminal summary and HTML report
  open with what changed. ``--fail-on=new`` bases the exit status on new failures
  and changed verdicts only.

Only the controller discovers and writes: xdist workers get the night's programs
through ``workerinput`` so that every process collects the same items.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported where used: a pytest run without QA options stays light
    from qa.archive.discovery import ProgramChange, Window

OVERLAP = timedelta(hours=1)
WORKER_KEY = "hasp_qa_night"
PLUGIN_NAME = "hasp-qa-nightly"
QA_PLUGIN_NAME = "hasp-qa-run"
VERSIONED_DISTS = ("hasp-qa", "hasp", "numpy", "astropy", "astroquery")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hasp-qa", "QA of HASP co-adds of HST spectra")
    group.addoption("--released-since", default=None, metavar="DATE|last",
                    help="check programs with STIS/COS spectra released or re-archived since "
                         "DATE (ISO date/time or MJD); 'last': since the last complete run")
    group.addoption("--released-until", default=None, metavar="DATE",
                    help="end of the release window (default: now)")
    group.addoption("--history", default=None, metavar="PATH|URL",
                    help="history store: SQLite file or postgresql:// URL "
                         "(default <cache-dir>/history.sqlite)")
    group.addoption("--fail-on", choices=("any", "new"), default="any",
                    help="exit status from any failure (pytest's default) or only from new "
                         "failures and changed verdicts (for nightly alerts)")


@dataclass
class Night:
    """The night's window and what discovery found (empty when not a nightly run)."""

    window: Window | None = None
    programs: list[ProgramChange] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"window": self.window.to_dict() if self.window else None,
                           "programs": [p.to_dict() for p in self.programs]})

    @classmethod
    def from_json(cls, text: str) -> Night:
        from qa.archive.discovery import Dataset, ProgramChange, Window
        data = json.loads(text)
        window = data["window"]
        return cls(window=Window(datetime.fromisoformat(window["since"]),
                                 datetime.fromisoformat(window["until"])) if window else None,
                   programs=[ProgramChange(p["program"], p["reason"],
                                           [Dataset(**d) for d in p["datasets"]])
                             for p in data["programs"]])


def active(config: pytest.Config) -> bool:
    """Whether this is a nightly run (it is a QA run even when the night is empty)."""
    return config.getoption("released_since", None) is not None


def history_target(config: pytest.Config) -> str:
    given = config.getoption("history")
    if given:
        return given
    return str(Path(config.getoption("cache_dir")).resolve() / "history.sqlite")


def _window(config: pytest.Config) -> Window:
    from qa.archive.discovery import Window, parse_when
    since_text = config.getoption("released_since")
    until_text = config.getoption("released_until")
    try:
        until = parse_when(until_text) if until_text else datetime.now(timezone.utc)
        if since_text.strip().lower() == "last":
            last = _last_window_end(config)
            if last is None:
                raise pytest.UsageError(
                    f"--released-since=last: the history store {history_target(config)} has "
                    "no complete run with a release window; give --released-since=DATE for "
                    "the first night")
            since = last - OVERLAP
        else:
            since = parse_when(since_text)
        return Window(since, until)
    except ValueError as err:
        raise pytest.UsageError(f"--released-since/--released-until: {err}") from None


def _last_window_end(config: pytest.Config) -> datetime | None:
    from sqlalchemy.exc import SQLAlchemyError

    from qa.history.store import HistoryStore, display_name
    target = history_target(config)
    try:
        store = HistoryStore(target)
        try:
            return store.last_window_end()
        finally:
            store.close()
    except (SQLAlchemyError, RuntimeError) as err:
        raise pytest.UsageError(f"--released-since=last: cannot read the history store "
                                f"{display_name(target)}: {err}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Discover the night's programs (controller) and hand them to ``--program``."""
    if not active(config):
        return
    worker = getattr(config, "workerinput", None)
    if worker is not None and WORKER_KEY in worker:
        night = Night.from_json(worker[WORKER_KEY])
    else:
        from qa.archive.discovery import DiscoveryError, discover
        window = _window(config)
        try:
            found = discover(window, config.getoption("mast_url"))
        except DiscoveryError as err:
            raise pytest.UsageError(f"--released-since: {err}") from None
        night = Night(window, found)
        _forget_rearchived(config, found)
    config.option.program = list(config.getoption("program")) + [p.program for p in night.programs]
    config.pluginmanager.register(NightlyPlugin(config, night), PLUGIN_NAME)


def _forget_rearchived(config: pytest.Config, found: list[ProgramChange]) -> None:
    """Make the fetch download re-archived datasets again (same size, new content)."""
    from qa.archive.refresh import forget_rearchived
    cache = Path(config.getoption("cache_dir")).resolve() / "mast"
    for change in found:
        dates = {d.name: d.archive_date for d in change.datasets
                 if d.reason == "re-archived" and d.archive_date}
        if dates:
            forget_rearchived(cache, change.program, dates)


def register_recorder(config: pytest.Config) -> None:
    """Record every QA run in the history, nightly or not (called by ``plugin``)."""
    if config.pluginmanager.get_plugin(PLUGIN_NAME) is None:
        config.pluginmanager.register(NightlyPlugin(config, Night()), PLUGIN_NAME)


def versions(engine: str) -> dict[str, str]:
    """The versions a verdict can depend on."""
    out = {"engine": engine}
    for dist in VERSIONED_DISTS:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


class NightlyPlugin:
    """Records the run in the history store and reports what changed."""

    def __init__(self, config: pytest.Config, night: Night) -> None:
        self.config = config
        self.night = night
        self.store: Any = None
        self.run_id: int | None = None
        self.changes: list[Any] = []
        self.previous_runs: list[int] = []
        self.store_error: str | None = None

    @property
    def controller(self) -> bool:
        return not hasattr(self.config, "workerinput")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_KEY] = self.night.to_json()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not self.controller:
            return
        from sqlalchemy.exc import SQLAlchemyError

        from qa.history.store import HistoryStore, display_name
        try:
            self.store = HistoryStore(history_target(self.config))
        except (SQLAlchemyError, RuntimeError) as err:
            # The QA itself goes on; the summary says the run is not in the history.
            self.store_error = f"{display_name(history_target(self.config))}: {err}"
            return
        options = {name: self.config.getoption(name) for name in (
            "program", "data_dir", "demo", "engine", "threshold", "snrmax", "remediate",
            "released_since", "released_until", "fail_on", "offline", "mast_url")}
        options["cache_dir"] = str(Path(self.config.getoption("cache_dir")).resolve())
        self.run_id = self.store.begin_run(
            window=self.night.window.to_dict() if self.night.window else None,
            options=options, versions=versions(self.config.getoption("engine")),
            programs=[p.to_dict() for p in self.night.programs],
            report=_absolute(self.config.getoption("htmlpath", None)))
        self.store.start_heartbeat(self.run_id)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.controller or self.store is None:
            return
        from qa.history import changes as ch
        from qa.history.record import products_of
        qa = self.config.pluginmanager.get_plugin(QA_PLUGIN_NAME)
        summary = getattr(qa, "summary", None)
        code = int(session.exitstatus)
        empty_night = self.night.window is not None and not self.night.programs
        if empty_night and code == pytest.ExitCode.NO_TESTS_COLLECTED:
            code = pytest.ExitCode.OK  # nothing was released: a clean night, not a mistake
        finished = code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and \
            summary is not None and summary.get("status", "complete") == "complete" and \
            not session.shouldstop and not session.shouldfail
        records = products_of(summary) if summary else {}
        env = versions(self.config.getoption("engine"))
        previous = self.store.previous_products(records, before=self.run_id)
        self.previous_runs = sorted({run for run, _ in previous.values()})
        known = {r.id: r.versions for r in self.store.runs() if r.id in self.previous_runs}
        self.changes = ch.classify(records, env, previous, known)
        if finished and self.config.getoption("fail_on") == "new":
            code = pytest.ExitCode.TESTS_FAILED if any(c.alert for c in self.changes) \
                else pytest.ExitCode.OK
        session.exitstatus = code
        self.store.finish_run(
            self.run_id, status="complete" if finished else "interrupted", exit_status=code,
            product_records=records, dataset_rows=self._datasets(records),
            change_rows=[c.to_dict() for c in self.changes])
        if summary is not None:
            summary["history"] = self.history_dict()
            from qa.render.report import write_results_json
            write_results_json(qa.results_path(), summary)

    def _datasets(self, records: dict[str, Any]) -> list[dict[str, Any]]:
        """Each input file once: program, sha256, and dates when discovery saw it."""
        seen = {d.name: d for p in self.night.programs for d in p.datasets}
        rows: dict[str, dict[str, Any]] = {}
        for product in records.values():
            for name, sha in product.inputs.items():
                root = name.split("_")[0].lower()
                found = seen.get(root)
                rows.setdefault(name, {
                    "name": name, "program": product.program, "sha256": sha,
                    "release_date": found.release_date if found else None,
                    "archive_date": found.archive_date if found else None,
                    "reason": found.reason if found else None})
        return list(rows.values())

    def history_dict(self) -> dict[str, Any]:
        """What the summaries show: the run, the night, and the changes."""
        from qa.history.changes import tally
        from qa.history.store import display_name
        return {
            "run": self.run_id, "store": display_name(history_target(self.config)),
            "previous_runs": self.previous_runs,
            "window": self.night.window.to_dict() if self.night.window else None,
            "programs": [{"program": p.program, "reason": p.reason, "text": p.describe()}
                         for p in self.night.programs],
            "tally": tally(self.changes),
            "changes": [c.to_dict() for c in self.changes
                        if c.kind not in ("still passing", "still failing")],
            "alerts": sum(c.alert for c in self.changes),
            "fail_on": self.config.getoption("fail_on"),
        }

    @pytest.hookimpl(tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.store_error:
            terminalreporter.write_sep("=", "hasp-qa: what changed")
            terminalreporter.write_line(f"history store unusable, run not recorded: "
                                        f"{self.store_error}", red=True)
        if not self.controller or self.run_id is None:
            return
        from qa.render.terminal import render_changes
        terminalreporter.write_sep("=", "hasp-qa: what changed")
        terminalreporter.write_line(render_changes(self.history_dict()))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list,
                                    session: Any) -> None:
        if self.run_id is None:
            return
        from qa.render.report import changes_html
        prefix.insert(0, changes_html(self.history_dict()))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def _absolute(path: str | None) -> str | None:
    """The report's path as the trend site links it, whatever directory it is built from."""
    return str(Path(path).resolve()) if path else None

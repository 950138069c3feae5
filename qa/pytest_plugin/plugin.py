"""The hasp-qa pytest plugin (registered through the ``pytest11`` entry point).

With ``--demo``, ``--program`` or ``--data-dir`` pytest collects the check files
(``checks/*.toml`` or ``--checks``) and runs every (check, subject) pair as one
test item; without them the plugin stays out of the way. This module is the
pytest layer only: :mod:`qa.pipeline` plans the run from headers and computes
each program's :class:`~qa.pipeline.Job` when its first case runs; items
evaluate checks on the job's outcome, which is released once its cases ran.

Under pytest-xdist the controller resolves the sources (archive queries, demo
data) once and hands them to the workers; each program's cases go to one worker
(``--dist loadgroup``); the controller writes the results JSON from what the
workers reported.

pytest imports this module in every run of an environment where hasp-qa is
installed, so it imports only the standard library and pytest at the top; the
pipeline, astropy, matplotlib and pytest-html are imported where a QA run uses
them (``make importtime``; figures in the README's developer notes).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from qa.engine import ENGINES

if TYPE_CHECKING:
    from qa.checks import Verdict
    from qa.pipeline import Case, Collection
    from qa.results import CheckResult
    from qa.sources import Options, Source

# Nightly discovery and the run history live in their own module (own options and hooks).
# pytest imports it from here (not imported above, so that pytest can rewrite its asserts
# without warning that it was imported first).
pytest_plugins = ("qa.pytest_plugin.nightly",)
RESULT_PROPERTY = "hasp_qa_result"
PRODUCT_PROPERTY = "hasp_qa_product"
INPUTS_PROPERTY = "hasp_qa_input_errors"
SOURCES_WORKERINPUT = "hasp_qa_sources"
LOADGROUP_WORKERINPUT = "hasp_qa_loadgroup"
DEFAULT_RESULTS = "reports/hasp-qa-results.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hasp-qa", "QA of HASP co-adds of HST spectra")
    group.addoption("--program", action="append", default=[], metavar="ID",
                    help="HST program ID(s) to check (repeatable, comma lists allowed)")
    group.addoption("--data-dir", action="append", default=[], metavar="PATH",
                    help="directory of already-downloaded x1d/sx1 files (repeatable)")
    group.addoption("--demo", action="store_true", help="check the built-in demo programs")
    group.addoption("--engine", choices=ENGINES, default="native",
                    help="native (vectorized, default) or hasp (the archive's code)")
    group.addoption("--checks", action="append", default=[], metavar="PATH",
                    help="check file or directory of *.toml (default: checks/)")
    group.addoption("--threshold", type=float, default=None,
                    help="override every check's flux-filter threshold (HASP -t)")
    group.addoption("--snrmax", type=float, default=None,
                    help="override every check's SNR cap (HASP -s)")
    group.addoption("--remediate", choices=("auto", "off"), default="auto",
                    help="scale inputs and re-co-add when a check fails (default auto)")
    group.addoption("--cache-dir", default=os.environ.get("HASP_QA_CACHE", ".hasp-qa-cache"),
                    metavar="PATH", help="downloads, demo data, job outcomes, scaled copies")
    group.addoption("--mast-url", default=os.environ.get("HASP_QA_MAST_URL"), metavar="URL",
                    help="MAST base URL (env HASP_QA_MAST_URL; default the real MAST)")
    group.addoption("--archive-timeout", type=float, default=60.0, metavar="SECONDS",
                    help="seconds each archive request may wait for the server (default 60)")
    group.addoption("--archive-deadline", type=float, default=1800.0, metavar="SECONDS",
                    help="seconds one program's download may take in all, retries included "
                         "(default 1800); past it the program is an error and the run goes on")
    group.addoption("--offline", action="store_true",
                    help="use only cached downloads; never contact the archive")
    group.addoption("--qa-results", default=None, metavar="PATH",
                    help=f"results JSON (default: next to --html, else {DEFAULT_RESULTS})")
    from qa.render.policy import HELP, POLICIES
    group.addoption("--figures", choices=POLICIES, default=None, help=HELP)
    group.addoption("--review", default=None, metavar="DIR",
                    help="write the review site (index of lost exposures, a page per product, "
                         "remediated co-adds) into DIR; default <report>-review next to --html")
    group.addoption("--dask", default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
                    metavar="ADDRESS|local[:N]",
                    help="compute the jobs on a Dask cluster: a running scheduler (tcp://host:8786, "
                         "env DASK_SCHEDULER_ADDRESS) or local:N worker processes")


# The check files shipped in the package (the repository's checks/, copied; the tests
# keep the two identical): used when the working directory has no checks/.
PROJECT_CHECKS = Path(__file__).resolve().parents[1] / "default_checks"


def _default_checks(config: pytest.Config) -> list[Path]:
    here = Path(config.invocation_params.dir) / "checks"
    return [here if here.is_dir() else PROJECT_CHECKS]


def _options(config: pytest.Config) -> Options:
    from qa.sources import Options

    checks = [Path(p) for p in config.getoption("checks")] or _default_checks(config)
    return Options(
        programs=[p.strip() for arg in config.getoption("program") for p in arg.split(",") if p.strip()],
        data_dirs=[Path(p) for p in config.getoption("data_dir")],
        demo=config.getoption("demo"), engine=config.getoption("engine"),
        checks=[p.resolve() for p in checks], threshold=config.getoption("threshold"),
        snrmax=config.getoption("snrmax"), remediate=config.getoption("remediate"),
        cache_dir=Path(config.getoption("cache_dir")).resolve(),
        mast_url=config.getoption("mast_url"), offline=config.getoption("offline"),
        figures=_figures_option(config), report=_writes_report(config),
        archive_timeout=config.getoption("archive_timeout"),
        archive_deadline=config.getoption("archive_deadline"))


def _writes_report(config: pytest.Config) -> bool:
    return bool(config.getoption("htmlpath", None) or config.getoption("review"))


def _figures_option(config: pytest.Config) -> str:
    """The figures policy; "auto" (all or failing by the number of products) is resolved at collection."""
    if not _writes_report(config):
        return "none"
    return config.getoption("figures") or "auto"


def review_dir(config: pytest.Config) -> Path | None:
    """The review site's folder: ``--review``, else ``<report>-review`` next to ``--html``."""
    from qa.render.review_site import default_site_dir
    given, html = config.getoption("review"), config.getoption("htmlpath", None)
    if given:
        return Path(given)
    return default_site_dir(html) if html else None


def pytest_configure(config: pytest.Config) -> None:
    from qa.pytest_plugin import nightly

    # Decided on the raw options, so that a run without them imports nothing more.
    if not (config.getoption("demo") or config.getoption("program") or config.getoption("data_dir")
            or nightly.active(config)):  # an empty night is a QA run too
        return
    options = _options(config)
    if not hasattr(config, "workerinput"):
        _prepare_outputs(config, options)
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        # A QA run without paths collects the check files, not the unit tests.
        config.args = [str(p) for p in options.checks]
    if config.args and {str(Path(a).resolve()) for a in config.args} <= {str(p) for p in options.checks}:
        # Only check files are collected, so no hypothesis test runs; hypothesis' pytest
        # plugin would still import hypothesis (0.3 s) for the terminal summary of every
        # process (the controller and each xdist worker).
        config.pluginmanager.set_blocked("hypothesispytest")
    if getattr(config.option, "dist", "no") == "load" and \
            not any(a.startswith("--dist") for a in config.invocation_params.args):
        # One program's cases on one worker: its job is computed there once, and the
        # programs are spread over the workers.
        config.option.dist = "loadgroup"
    plugin = QAPlugin(config, options)
    config.pluginmanager.register(plugin, "hasp-qa-run")
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ReviewSiteWriter(plugin), "hasp-qa-review-site")
    nightly.register_recorder(config)
    address = config.getoption("dask")
    if address:
        if getattr(config.option, "numprocesses", None):
            raise pytest.UsageError("--dask and -n are alternatives: the Dask workers compute the jobs")
        from qa.pytest_plugin.cluster import DaskRun
        config.pluginmanager.register(DaskRun(config, plugin, address), "hasp-qa-dask")


def results_path(config: pytest.Config) -> Path:
    """Where the results JSON goes: --qa-results, else beside --html, else the default."""
    given = config.getoption("qa_results")
    if given:
        return Path(given)
    html = config.getoption("htmlpath", None)
    if html:
        return Path(html).with_suffix(".json")
    return Path(config.invocation_params.dir) / DEFAULT_RESULTS


def _prepare_outputs(config: pytest.Config, options: Options) -> None:
    """Refuse, in one line each, what would only fail later; remove the last run's results.

    A results JSON left from an earlier run would look current to automation if this
    run ended early, so it goes before anything is computed.

    Raises
    ------
    pytest.UsageError
        A --checks path that is missing or holds no check file, a --cache-dir or
        results JSON location that cannot be written, or a nonsense --threshold/--snrmax.
    """
    from qa.checks import param_problem

    # --collect-only lists the cases and writes nothing: outputs are left as they are.
    writes = not config.getoption("collectonly")
    results = results_path(config)
    if writes:
        _writable_dir(results.parent, "--qa-results")
        try:
            results.unlink(missing_ok=True)
        except OSError as exc:
            raise pytest.UsageError(f"--qa-results {results}: the previous results cannot be "
                                    f"removed ({exc.strerror or exc})") from None
    for name in ("threshold", "snrmax"):
        value = getattr(options, name)
        problem = None if value is None else param_problem(name, value)
        if problem:
            raise pytest.UsageError(f"--{name}={value}: {problem}")
    for name in ("archive_timeout", "archive_deadline"):
        value = getattr(options, name)
        if not (math.isfinite(value) and value > 0):
            raise pytest.UsageError(f"--{name.replace('_', '-')}={value}: expected a finite "
                                    "number of seconds > 0")
    for p in options.checks:
        if not p.exists():
            raise pytest.UsageError(f"--checks {p}: does not exist")
        if p.is_dir() and not any(p.glob("*.toml")):
            raise pytest.UsageError(f"--checks {p}: the directory holds no *.toml check file")
    if writes:
        _writable_dir(options.cache_dir, "--cache-dir")


def _writable_dir(directory: Path, option: str) -> None:
    """Refuse a directory that cannot be created or written; create nothing (--collect-only)."""
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise pytest.UsageError(f"{option} {directory}: {existing} is a file, not a directory")
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"{option} {directory}: not writable ({existing} does not let "
                                "this user create files)")


class CheckFailed(Exception):
    """A check's verdict was "failed"; shown as its message, without a traceback."""


class CheckError(Exception):
    """The case's input could not be used."""


class CheckItem(pytest.Item):
    """One (check, subject) pair."""

    def __init__(self, *, case: Case, plugin: "QAPlugin", **kwargs) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.plugin = plugin
        self.verdict: Verdict | None = None
        self.result: CheckResult | None = None

    def setup(self) -> None:
        self.verdict = self.plugin.verdict(self.case)
        if self.verdict.status == "error":
            self.result = self.plugin.record(self, self.verdict)
            raise CheckError(self.verdict.message)

    def runtest(self) -> None:
        self.result = self.plugin.record(self, self.verdict)
        if self.verdict.status == "skipped":
            pytest.skip(self.verdict.message)
        if self.verdict.status == "failed":
            raise CheckFailed(self.verdict.message)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (CheckFailed, CheckError)):
            from qa.render.terminal import remediation_line
            from qa.results import printable
            text = str(excinfo.value)
            rem = self.plugin.remediation(self.case)
            if rem is not None:
                text += "\n" + remediation_line(rem)
            # File names and header text reach the terminal: no control sequences.
            return printable(text, keep="\n")
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.name


class CheckFile(pytest.File):
    """A ``checks/*.toml`` file: one item per check and subject, grouped by program."""

    def __init__(self, *, plugin: "QAPlugin", **kwargs) -> None:
        super().__init__(**kwargs)
        self.plugin = plugin

    def collect(self):
        from qa.checks import CheckFileError
        from qa.results import printable

        try:
            coll = self.plugin.collection()
        except CheckFileError as exc:
            raise self.CollectError(str(exc)) from exc
        order = {job: i for i, job in enumerate(coll.jobs)}
        grouped = getattr(self.config, "workerinput", {}).get(LOADGROUP_WORKERINPUT, False)
        mine = [c for c in coll.cases if c.spec.file == str(self.path)]
        # A program's cases run one after the other, so its outcome is released after them.
        for case in sorted(mine, key=lambda c: -1 if c.job is None else order[c.job]):
            # Ids come from file names and TARGNAME: newlines, escapes and backslashes
            # (pytest-html decodes ids with unicode_escape) are percent-encoded.
            name = f"test_{case.spec.name}[{printable(case.case_id)}]"
            # A string node id is parsed into name and params exactly as pytest parses
            # the ids it stores for --lf; a bare name would keep the brackets in the name.
            nodeid = f"{self.nodeid}::{name}"
            if grouped and case.job is not None:
                # xdist's loadgroup sends the items whose ids end in the same "@group" to
                # one worker. (Its own xdist_group mark cannot rename items under pytest 9.)
                nodeid += f"@hasp-qa-job{order[case.job]}"
            yield CheckItem.from_parent(self, name=name, nodeid=nodeid, case=case,
                                        plugin=self.plugin)


class QAPlugin:
    """State of one QA run: the planned collection, the outcome store and what was reported."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        from qa.pipeline import OutcomeStore

        self.config = config
        self.options = options
        self.store = OutcomeStore()
        self._sources: list[Source] | None = None
        self._collection: Collection | None = None
        self._sent: set[str] = set()          # pids / jobs whose facts this process reported
        self.results: list[dict] = []
        self.products: dict[str, dict] = {}
        self.input_errors: dict[str, dict[str, str]] = {}
        self.interrupted = False
        self.summary: dict | None = None
        self.site_index: Path | None = None
        from qa.summary import now
        self.created = now()

    # ------------------------------------------------------------ planning

    def sources(self) -> list[Source]:
        """Resolved once per run: from the controller under xdist, here otherwise."""
        if self._sources is None:
            from qa.sources import Source, resolve_sources

            given = getattr(self.config, "workerinput", {}).get(SOURCES_WORKERINPUT)
            self._sources = [Source.from_dict(s) for s in json.loads(given)] if given \
                else resolve_sources(self.options)
        return self._sources

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput[SOURCES_WORKERINPUT] = json.dumps([s.to_dict() for s in self.sources()])
        node.workerinput[LOADGROUP_WORKERINPUT] = self.config.option.dist == "loadgroup"

    def collection(self) -> Collection:
        if self._collection is None:
            from qa.pipeline import collect

            self._collection = collect(self.options, self.sources())
        return self._collection

    def pytest_collect_file(self, file_path: Path, parent):
        if file_path.suffix == ".toml" and any(
                file_path == p or p in file_path.parents for p in self.options.checks):
            return CheckFile.from_parent(parent, path=file_path, plugin=self)
        return None

    # ------------------------------------------------------------ running

    def verdict(self, case: Case) -> Verdict:
        from qa.pipeline import evaluate

        if case.error or case.job is None:
            return evaluate(case, None)
        return evaluate(case, self.store.get(self.collection().jobs[case.job]))

    def _product_outcome(self, case: Case):
        if case.job is None or case.error:
            return None
        outcome = self.store.get(self.collection().jobs[case.job])
        return outcome.product(case.product_key, case.filters)

    def remediation(self, case: Case) -> dict | None:
        po = self._product_outcome(case)
        return asdict(po.remediation) if po is not None and po.remediation else None

    def record(self, item: CheckItem, verdict: Verdict) -> CheckResult:
        """The case's result, and (once per process) its product's and job's facts, as
        user properties: the controller, or this process, builds the results JSON from them."""
        from qa.pipeline import check_result

        case = item.case
        result = check_result(case, verdict)
        props = item.user_properties
        props.append((RESULT_PROPERTY, json.dumps(result.to_dict())))
        coll = self.collection()
        if "collection" not in self._sent:
            self._sent.add("collection")
            props.append((INPUTS_PROPERTY, json.dumps(coll.input_errors)))
        if case.product and case.product not in self._sent:
            self._sent.add(case.product)
            from qa.summary import product_record
            job = coll.jobs[case.job]
            outcome = self.store.get(job)
            rec = product_record(coll.products[case.product], job, coll, self._product_outcome(case),
                                 outcome.error, outcome.sha256)
            # A product's figures are its own, whichever of its cases reports it first.
            rec["figures"] = self._figure_paths(case)
            self._publish_cspec(case, rec)
            props.append((PRODUCT_PROPERTY, json.dumps({case.product: rec})))
            if outcome.input_errors and case.job not in self._sent:
                self._sent.add(case.job)
                props.append((INPUTS_PROPERTY, json.dumps({case.source: outcome.input_errors})))
        return result

    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Release a program's outcome (arrays are gone already; figures, facts) after its last case."""
        case = getattr(item, "case", None)
        if case is None or case.job is None:
            return
        following = getattr(nextitem, "case", None)
        if following is None or following.job != case.job:
            self.store.release(case.job)

    # ------------------------------------------------------------ collecting results

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            return
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY and (report.when == "call" or report.outcome == "failed"):
                self.results.append(json.loads(value))
            elif name == PRODUCT_PROPERTY:
                self.products.update(json.loads(value))
            elif name == INPUTS_PROPERTY:
                for label, errors in json.loads(value).items():
                    self.input_errors.setdefault(label, {}).update(errors)

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        self.interrupted = True

    def results_path(self) -> Path:
        return results_path(self.config)

    # ------------------------------------------------------------ HTML report

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        rep = (yield).get_result()
        if rep.when == "setup" and rep.failed and call.excinfo is not None and \
                isinstance(call.excinfo.value, CheckError):
            # The message, not pytest's traceback of the setup machinery.
            rep.longrepr = item.repr_failure(call.excinfo)
        result = getattr(item, "result", None)
        if result is None or not self._html_report() or \
                not (rep.when == "call" or (rep.when == "setup" and rep.failed)):
            return
        from qa.render import report
        po = self._product_outcome(item.case)
        figures = po.figures if po is not None and item.case.owns_figures else None
        rem = po.remediation if po is not None else None
        rep.extras = getattr(rep, "extras", []) + report.case_extras(
            result, figures, self._assets_dir(), remediation=rem,
            notes=po.notes if po is not None and item.case.owns_figures else ())
        site, html = review_dir(self.config), self.config.getoption("htmlpath", None)
        if site is not None and html and item.case.product and rep.outcome == "failed":
            from pytest_html import extras

            from qa.render.review_site import product_page
            page = os.path.relpath(product_page(site, item.case.product).resolve(),
                                   Path(html).resolve().parent)
            rep.extras.append(extras.url(Path(page).as_posix(), name="product page"))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report, data) -> None:
        from qa.render.html_table import skip_log
        skip_log(report, data)

    def _html_report(self) -> bool:
        """pytest-html writes a report in this run (it is installed whether or not one is asked for)."""
        return self.config.pluginmanager.hasplugin("html") and bool(self.config.getoption("htmlpath", None))

    def _assets_dir(self) -> Path | None:
        html = self.config.getoption("htmlpath", None)
        if not html or self.config.getoption("self_contained_html", False):
            return None
        return Path(html).parent / "assets"

    def _figure_dir(self) -> Path | None:
        """Where figure files go: the report's assets, else (embedded report, or only a review
        site) the site's ``figures`` folder; None when no report is written."""
        assets = self._assets_dir()
        if assets is not None:
            return assets
        site = review_dir(self.config)
        return site / "figures" if site is not None else None

    def _figure_paths(self, case: Case) -> dict[str, str]:
        """Write the case's figures as files (for the review site); their paths relative to the
        results JSON's folder. The report's asset writer finds them already there."""
        folder = self._figure_dir()
        po = self._product_outcome(case)
        if folder is None or po is None or not po.figures:
            return {}
        from qa.render.report import asset_filename
        stem = "-".join(filter(None, (case.source, case.product)))
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for name, png in po.figures.items():
            path = folder / asset_filename(stem, name)
            path.write_bytes(png)
            out[name] = self._relative_to_results(path)
        return out

    def _relative_to_results(self, path: Path) -> str:
        """``path`` as the results JSON names files: relative to the JSON's folder."""
        return Path(os.path.relpath(path.resolve(), self.results_path().resolve().parent)).as_posix()

    def _publish_cspec(self, case: Case, rec: dict) -> None:
        """Copy the remediated co-add (cspec) from the cache to ``<review>/products/``; the record
        then names it relative to the results JSON (no path into the cache)."""
        rem, site = rec.get("remediation"), review_dir(self.config)
        if not rem or not rem.get("cspec"):
            return
        source = Path(self.options.cache_dir) / rem["cspec"]
        if site is None or not source.is_file():
            rem["cspec"] = ""
            return
        from qa.results import file_safe
        target = site / "products" / file_safe(case.product) / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        rem["cspec"] = self._relative_to_results(target)

    @pytest.hookimpl(optionalhook=True, trylast=True)
    def pytest_html_results_table_row(self, report, cells) -> None:
        """Show the test id as text: pytest-html inserts the cell as HTML, ids hold header text."""
        test_id = report.nodeid + ("" if report.when == "call" else f"::{report.when}")
        for i, cell in enumerate(cells):
            if isinstance(cell, str) and cell.startswith('<td class="col-testId">'):
                cells[i] = f'<td class="col-testId">{escape(test_id)}</td>'

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix, summary, postfix, session) -> None:
        if self.summary is not None:
            from qa.render import report
            site, html = review_dir(self.config), self.config.getoption("htmlpath", None)
            if site is not None and html:
                index = os.path.relpath((site / "index.html").resolve(), Path(html).resolve().parent)
                prefix.append(f'<p class="hqa-review"><a href="{escape(Path(index).as_posix())}">'
                              "Review site: lost exposures by program, a page per product</a></p>")
            prefix.append(report.summary_html(self.summary))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        if hasattr(self.config, "workerinput") or self.config.option.collectonly:
            return  # workers report to the controller; --collect-only writes nothing
        from qa.checks import CheckFileError, load_checks

        try:
            specs = load_checks(self.options.checks)
        except CheckFileError:
            return  # already reported as a collection error; there are no results
        from qa.render import report
        from qa.summary import document
        interrupted = self.interrupted or exitstatus == pytest.ExitCode.INTERRUPTED
        self.summary = document(options=self.options, specs=specs, sources=self.sources(),
                                input_errors=self.input_errors, products=self.products,
                                results=self.results, created=self.created,
                                interrupted=interrupted)
        report.write_results_json(self.results_path(), self.summary)
        if self.config.pluginmanager.hasplugin("html") and self.config.getoption("htmlpath", None):
            from qa.render.html_table import sort_rows
            sort_rows(self.config)      # before pytest-html writes: programs do not interleave

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.summary is None:
            return
        from qa.render.terminal import render_summary
        from qa.results import printable
        terminalreporter.write_sep("=", "hasp-qa summary")
        terminalreporter.write_line(printable(render_summary(self.summary), keep="\n"))
        terminalreporter.write_line(f"results JSON: {self.results_path()}")
        if self.site_index is not None:
            terminalreporter.write_line(f"review site: {self.site_index}")


class ReviewSiteWriter:
    """Writes the review site after every plugin's ``pytest_sessionfinish`` (QAPlugin's own runs
    first, to write the results JSON; other plugins may add to it)."""

    def __init__(self, plugin: "QAPlugin") -> None:
        self.plugin = plugin

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """The review site, from the results JSON as written last (with the history's changes
        when the nightly plugin added them), once every other plugin has finished."""
        site = review_dir(self.plugin.config)
        if site is None or self.plugin.summary is None or not self.plugin.results_path().is_file():
            return
        from qa.render.report import load_results_json
        from qa.render.review_site import write_site
        path = self.plugin.results_path()
        self.plugin.site_index = write_site(load_results_json(path), path, site)

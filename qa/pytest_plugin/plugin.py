"""The hasp-qa pytest plugin (registered through the ``pytest11`` entry point).

With ``--demo``, ``--program`` or ``--data-dir`` pytest collects the check files
(``checks/*.toml`` or ``--checks``) and runs every (check, subject) pair as one
test item; without them the plugin stays out of the way. One plugin object
holds the run's state, pytest-mpl style; the results JSON is the single source
the terminal and HTML summaries are rendered from.
"""
from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from qa import __version__
from qa.checks import CheckFileError, CheckSpec
from qa.pytest_plugin import nightly
from qa.pytest_plugin.session import ENGINES, Case, Options, QASession
from qa.render import plots, report
from qa.results import CheckResult, rootname_of

# Nightly discovery and the run history live in their own module (own options and hooks).
pytest_plugins = ("qa.pytest_plugin.nightly",)
RESULT_PROPERTY = "hasp_qa_result"
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
                    metavar="PATH", help="downloads, demo data, engine results, scaled copies")
    group.addoption("--mast-url", default=os.environ.get("HASP_QA_MAST_URL"), metavar="URL",
                    help="MAST base URL (env HASP_QA_MAST_URL; default the real MAST)")
    group.addoption("--offline", action="store_true",
                    help="use only cached downloads; never contact the archive")
    group.addoption("--qa-results", default=None, metavar="PATH",
                    help=f"results JSON (default: next to --html, else {DEFAULT_RESULTS})")


# The project's own check files: used when the working directory has no checks/.
PROJECT_CHECKS = Path(__file__).resolve().parents[2] / "checks"


def _default_checks(config: pytest.Config) -> list[Path]:
    here = Path(config.invocation_params.dir) / "checks"
    return [here if here.is_dir() else PROJECT_CHECKS]


def _options(config: pytest.Config) -> Options:
    checks = [Path(p) for p in config.getoption("checks")] or _default_checks(config)
    return Options(
        programs=[p.strip() for arg in config.getoption("program") for p in arg.split(",") if p.strip()],
        data_dirs=[Path(p) for p in config.getoption("data_dir")],
        demo=config.getoption("demo"), engine=config.getoption("engine"),
        checks=[p.resolve() for p in checks], threshold=config.getoption("threshold"),
        snrmax=config.getoption("snrmax"), remediate=config.getoption("remediate"),
        cache_dir=Path(config.getoption("cache_dir")).resolve(),
        mast_url=config.getoption("mast_url"), offline=config.getoption("offline"))


def pytest_configure(config: pytest.Config) -> None:
    options = _options(config)
    if not options.active and not nightly.active(config):  # an empty night is a QA run too
        return
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        # A QA run without paths collects the check files, not the unit tests.
        config.args = [str(p) for p in options.checks]
    config.pluginmanager.register(QAPlugin(config, options), "hasp-qa-run")
    nightly.register_recorder(config)


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
        self.result: CheckResult | None = None

    def setup(self) -> None:
        if self.case.error:
            self.result = self.plugin.record(self, "error", self.case.error, {})
            raise CheckError(self.case.error)

    def runtest(self) -> None:
        verdict = self.case.spec.evaluate(self.case.subject)
        self.result = self.plugin.record(self, verdict.status, verdict.message, verdict.observed)
        if verdict.status == "skipped":
            pytest.skip(verdict.message)
        if verdict.status == "failed":
            raise CheckFailed(verdict.message)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (CheckFailed, CheckError)):
            text = str(excinfo.value)
            rem = self.result.remediation if self.result else None
            if rem is not None:
                text += "\n" + _remediation_line(rem)
            return text
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.name


def _remediation_line(rem) -> str:
    if not rem.possible:
        return f"remediation not possible: {rem.reason}"
    factors = ", ".join(f"{rootname_of(k)} x{v:.4f}" for k, v in rem.factors.items())
    after = ", ".join(rem.rejected_after) or "none"
    gain = f"; median SNR gain {rem.snr_gain.median:.3f}" if rem.snr_gain else ""
    return f"remediation: scaled to {rem.reference_file} ({factors}); rejected after scaling: {after}{gain}"


class CheckFile(pytest.File):
    """A ``checks/*.toml`` file: one item per check and subject."""

    def __init__(self, *, plugin: "QAPlugin", **kwargs) -> None:
        super().__init__(**kwargs)
        self.plugin = plugin

    def collect(self):
        try:
            session = self.plugin.session()
        except CheckFileError as exc:
            raise self.CollectError(str(exc)) from exc
        for spec in (s for s in session.specs if s.source == str(self.path)):
            for case in self.plugin.cases(spec):
                name = f"test_{spec.name}[{case.case_id}]"
                # A string node id is parsed into name and params exactly as pytest parses
                # the ids it stores for --lf; a bare name would keep the brackets in the name.
                yield CheckItem.from_parent(self, name=name, nodeid=f"{self.nodeid}::{name}",
                                            case=case, plugin=self.plugin)


class QAPlugin:
    """State of one QA run: the session model, collected results, and output writers."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.options = options
        self._session: QASession | None = None
        self._seen_products: set[tuple[str, str]] = set()
        self.results: list[CheckResult] = []

    def session(self) -> QASession:
        if self._session is None:
            self._session = QASession(self.options)
        return self._session

    def cases(self, spec: CheckSpec) -> list[Case]:
        """The spec's cases; each product's plots go to its first mode-level case.

        A mode case is one per product and, when files were rejected, the failing
        (expanded) row of the report; exposure cases carry the plots only when no
        mode check is configured.
        """
        session = self.session()
        cases = session.cases(spec)
        if spec.subject == "mode" or not any(s.subject == "mode" for s in session.specs):
            for case in cases:
                key = (case.source, case.product_key)
                if case.product_key and key not in self._seen_products:
                    self._seen_products.add(key)
                    case.owns_figures = True
        return cases

    def pytest_collect_file(self, file_path: Path, parent):
        if file_path.suffix == ".toml" and any(
                file_path == p or p in file_path.parents for p in self.options.checks):
            return CheckFile.from_parent(parent, path=file_path, plugin=self)
        return None

    def record(self, item: CheckItem, status: str, message: str, observed: dict) -> CheckResult:
        case = item.case
        result = CheckResult(check=case.spec.name, kind=case.spec.kind, case_id=case.case_id,
                             product=case.product_key,
                             subject=(case.subject.file or case.product_key) if case.subject else case.case_id,
                             status=status, message=message, params=dict(case.spec.params),
                             observed=observed,
                             remediation=case.subject.remediation if case.subject else None,
                             source=case.source)
        item.user_properties.append((RESULT_PROPERTY, json.dumps(result.to_dict())))
        return result

    # ------------------------------------------------------------ collecting results

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            return
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY and (report.when == "call" or report.outcome == "failed"):
                self.results.append(CheckResult.from_dict(json.loads(value)))

    def session_dict(self) -> dict:
        """The results JSON: everything the summaries render."""
        session = self.session()
        programs = {}
        default = session.specs[0].engine_params()
        for (label, threshold, snrmax), result in session.results.items():
            source = session.source(label)
            # A check with its own threshold/snrmax had its own engine run: list it apart.
            name = label if (threshold, snrmax) == default else \
                f"{label} (threshold {threshold:g}, snrmax {snrmax:g})"
            programs.setdefault(name, {
                "origin": source.origin, "source": str(source.directory),
                "manifest": source.manifest, "threshold": threshold, "snrmax": snrmax,
                "engine_result": result.to_dict(arrays=False)})
        for source in session.sources:
            if source.error:
                programs[source.label] = {"origin": source.origin, "source": None,
                                          "error": source.error, "manifest": None}
        return {
            "hasp_qa": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": _environment(self.options.engine),
            "options": {"engine": self.options.engine, "remediate": self.options.remediate,
                        "threshold": self.options.threshold, "snrmax": self.options.snrmax,
                        "checks": [str(p) for p in self.options.checks],
                        "cache_dir": str(self.options.cache_dir)},
            "checks": [{"name": s.name, "kind": s.kind, "description": s.description,
                        "on_fail": s.on_fail, "params": s.params, "source": s.source}
                       for s in session.specs],
            "programs": programs,
            "results": [r.to_dict() for r in self.results],
        }

    def results_path(self) -> Path:
        given = self.config.getoption("qa_results")
        if given:
            return Path(given)
        html = self.config.getoption("htmlpath", None)
        if html:
            return Path(html).with_suffix(".json")
        return Path(self.config.invocation_params.dir) / DEFAULT_RESULTS

    # ------------------------------------------------------------ HTML report

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        rep = (yield).get_result()
        result = getattr(item, "result", None)
        if result is None or not self.config.pluginmanager.hasplugin("html") or \
                not (rep.when == "call" or (rep.when == "setup" and rep.failed)):
            return
        rep.extras = getattr(rep, "extras", []) + report.case_extras(
            result, self._figures(item.case), self._assets_dir())

    def _figures(self, case: Case) -> dict[str, bytes] | None:
        if not case.owns_figures or case.subject is None:
            return None
        session, product = self.session(), case.subject.product
        return plots.product_figures(product, session.source(case.source).directory,
                                     case.subject.remediation,
                                     session.remediated_product(case.source, product))

    def _assets_dir(self) -> Path | None:
        html = self.config.getoption("htmlpath", None)
        if not html or self.config.getoption("self_contained_html", False):
            return None
        return Path(html).parent / "assets"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix, summary, postfix, session) -> None:
        if getattr(self, "summary", None) is not None:
            prefix.append(report.summary_html(self.summary))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return  # xdist workers send their results to the controller
        try:
            self.summary = self.session_dict()
        except CheckFileError:
            return  # already reported as a collection error; there are no results
        report.write_results_json(self.results_path(), self.summary)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        summary = getattr(self, "summary", None)
        if summary is None:
            return
        from qa.render.terminal import render_summary
        terminalreporter.write_sep("=", "hasp-qa summary")
        terminalreporter.write_line(render_summary(summary))
        terminalreporter.write_line(f"results JSON: {self.results_path()}")


def _environment(engine: str) -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(terse=True),
           "engine": engine}
    for dist in ("hasp-qa", "hasp", "ullyses", "numpy", "astropy", "astroquery", "matplotlib",
                 "pytest", "pytest-html"):
        try:
            env[dist] = version(dist)
        except PackageNotFoundError:
            env[dist] = "not installed"
    return env

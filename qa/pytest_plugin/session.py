"""What one QA run works on: sources of data, engine results, remediations and check cases.

Everything expensive (engine runs, remediation) is computed once and cached on
disk under a file lock, so pytest-xdist workers and later runs reuse it instead
of recomputing per case.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from qa import __version__
from qa.checks import CheckSpec, Subject, load_checks
from qa.engine import native
from qa.io.reader import directory_label, find_spectra, not_a_directory, read_dataset
from qa.remediate import remediate
from qa.results import EngineResult, Product, Remediation, file_safe, rootname_of

ENGINES = ("native", "hasp")


@dataclass
class Options:
    """The plugin's command-line options, resolved."""

    programs: list[str] = field(default_factory=list)
    data_dirs: list[Path] = field(default_factory=list)
    demo: bool = False
    engine: str = "native"
    checks: list[Path] = field(default_factory=list)
    threshold: float | None = None
    snrmax: float | None = None
    remediate: str = "auto"
    cache_dir: Path = Path(".hasp-qa-cache")
    mast_url: str | None = None
    offline: bool = False
    archive_timeout: float = 60.0          # seconds per request
    archive_deadline: float | None = None  # seconds per program, all requests and retries

    @property
    def active(self) -> bool:
        return bool(self.programs or self.data_dirs or self.demo)


@dataclass
class Source:
    """One directory of inputs: a demo program, a downloaded program or a user directory."""

    label: str
    origin: str                    # "demo", "archive" or "data-dir"
    directory: Path | None = None
    manifest: dict | None = None
    error: str | None = None       # the whole source is unusable
    missing: dict[str, str] = field(default_factory=dict)  # archive products that did not arrive


@dataclass
class Case:
    """One (check, subject) pair: becomes one pytest item."""

    spec: CheckSpec
    case_id: str
    source: str
    product_key: str = ""
    subject: Subject | None = None
    error: str | None = None       # unreadable input: the case errors with this message
    owns_figures: bool = False     # the first case of a product carries its plots


def engine_runner(name: str):
    if name == "hasp":
        from qa.engine import reference
        return reference.run
    return native.run


def engine_version(name: str) -> str:
    if name == "hasp":
        from qa.engine.reference import hasp_version
        return hasp_version()
    return f"hasp-qa {__version__}"


def _fingerprint(paths: list[Path]) -> list[tuple[str, int, int]]:
    # A dangling link or a link loop has no size: the engine reports it; it must not crash here.
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((p.name, st.st_size, st.st_mtime_ns))
        except OSError as exc:
            out.append((p.name, -1, exc.errno or 0))
    return out


def _cached(cache_dir: Path, kind: str, key: object, compute):
    """Compute once per key across processes: a file lock, then a pickle."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    folder = cache_dir / kind
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{digest}.pkl"
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return pickle.loads(target.read_bytes())
        value = compute(digest)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(value))
        tmp.replace(target)
        return value


class QASession:
    """Resolve sources, run the engine, remediate and enumerate the cases of a run."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.specs: list[CheckSpec] = self._load_specs()
        self.sources: list[Source] = self._resolve_sources()
        self.results: dict[tuple[str, float, float], EngineResult] = {}
        self.remediations: dict[tuple[str, str, float, float], tuple[Remediation, Product | None]] = {}
        self._subject_cache: dict[tuple[str, str, float, float], tuple[Subject, list[Subject]]] = {}
        for source in self.sources:
            if source.directory is None:
                continue
            for params in dict.fromkeys(s.engine_params() for s in self.specs):
                self.results[(source.label, *params)] = self._engine_result(source, *params)

    # -------------------------------------------------------------- set-up

    def _load_specs(self) -> list[CheckSpec]:
        specs = load_checks(self.options.checks)
        for spec in specs:
            if self.options.threshold is not None:
                spec.params["threshold"] = self.options.threshold
            if self.options.snrmax is not None:
                spec.params["snrmax"] = self.options.snrmax
        return specs

    def _resolve_sources(self) -> list[Source]:
        sources = []
        if self.options.demo:
            sources += self._demo_sources()
        for program in self.options.programs:
            sources.append(self._archive_source(program))
        for d in self.options.data_dirs:
            src = Source(label=directory_label(d), origin="data-dir", directory=d)
            problem = not_a_directory(d)
            if problem:
                src.directory, src.error = None, f"--data-dir {d}: {problem}"
            elif not find_spectra(d):
                src.directory, src.error = None, f"--data-dir {d}: holds no *_x1d.fits or *_sx1.fits file"
            sources.append(src)
        # Labels key results, case ids and output folders: make repeated ones unique.
        seen: dict[str, int] = {}
        for src in sources:
            seen[src.label] = seen.get(src.label, 0) + 1
            if seen[src.label] > 1:
                src.label = f"{src.label}-{src.origin}{seen[src.label]}"
        return sources

    def _demo_sources(self) -> list[Source]:
        from qa.synth import DEMO_PROGRAMS, write_demo_program
        out = []
        for program in DEMO_PROGRAMS:
            directory = self.options.cache_dir / "demo" / str(program)
            marker = directory / ".complete"
            directory.mkdir(parents=True, exist_ok=True)
            with FileLock(str(directory) + ".lock"):
                if not marker.exists() or marker.read_text() != __version__:
                    write_demo_program(str(program), directory)
                    marker.write_text(__version__)
            out.append(Source(label=str(program), origin="demo", directory=directory))
        return out

    def _archive_source(self, program: str) -> Source:
        from qa.archive.fetch import ArchiveError, fetch_program
        try:
            fetched = fetch_program(program, self.options.cache_dir / "mast",
                                    mast_url=self.options.mast_url, offline=self.options.offline,
                                    timeout=self.options.archive_timeout,
                                    deadline=self.options.archive_deadline)
        except ArchiveError as exc:
            return Source(label=program, origin="archive", error=str(exc))
        manifest = json.loads(Path(fetched.manifest).read_text())
        return Source(label=program, origin="archive", directory=Path(fetched.directory),
                      manifest=manifest, missing={m.filename: m.reason for m in fetched.missing})

    def _engine_result(self, source: Source, threshold: float, snrmax: float) -> EngineResult:
        files = find_spectra(source.directory)
        key = ["engine", self.options.engine, engine_version(self.options.engine), threshold, snrmax,
               str(source.directory.resolve()), _fingerprint(files)]
        run = engine_runner(self.options.engine)
        return _cached(self.options.cache_dir, "results", key,
                       lambda _d: run(files, threshold=threshold, snrmax=snrmax))

    # -------------------------------------------------------------- remediation

    def remediation(self, source: Source, product: Product, rule: str
                    ) -> tuple[Remediation, Product | None]:
        """Remediate ``product`` once (cached), scaling copies into the cache directory."""
        key = (source.label, product.key, product.threshold, product.snrmax)
        if key not in self.remediations:
            paths = [source.directory / name for name in product.inputs]
            cache_key = ["remediation", self.options.engine, engine_version(self.options.engine),
                         rule, *key, _fingerprint(paths)]

            def compute(digest: str):
                outdir = (self.options.cache_dir / "remediated" / file_safe(source.label)
                          / f"{file_safe(product.key)}-{digest[:8]}")
                datasets = [read_dataset(p) for p in paths]
                return remediate(product, datasets, outdir, engine_runner(self.options.engine), rule)
            self.remediations[key] = _cached(self.options.cache_dir, "remediations", cache_key, compute)
        return self.remediations[key]

    def _needs_remediation(self, product: Product, subjects: list[Subject]) -> str | None:
        """The reference rule of the first failing remediate-check, or None."""
        if self.options.remediate == "off":
            return None
        for spec in self.specs:
            if spec.on_fail != "remediate" or spec.engine_params() != (product.threshold, product.snrmax):
                continue
            todo = [s for s in subjects if (s.file is None) == (spec.subject == "mode")]
            if any(spec.evaluate(s).status == "failed" for s in todo):
                # Kinds registered without a reference rule scale to the brightest exposure.
                return spec.params.get("reference", "brightest")
        return None

    # -------------------------------------------------------------- cases

    def cases(self, spec: CheckSpec) -> list[Case]:
        """The cases of one check over every source, with readable unique ids."""
        out: list[Case] = []
        for source in self.sources:
            if source.error:
                out.append(Case(spec, f"{source.label}", source.label, error=source.error))
                continue
            result = self.results[(source.label, *spec.engine_params())]
            unusable = {**{n: f"not downloaded: {why}" for n, why in source.missing.items()},
                        **result.input_errors}
            for name, problem in unusable.items():
                if spec.subject == "exposure":
                    out.append(Case(spec, f"{source.label}-{rootname_of(name)}", source.label,
                                    error=f"{name}: {problem}"))
            for product in result.products:
                out += self._product_cases(spec, source, result, product)
        # The same product from two sources (say --demo and --program 8435): name the source.
        counts = Counter(c.case_id for c in out)
        for case in out:
            if counts[case.case_id] > 1:
                case.case_id = f"{case.source}:{case.case_id}"
        return out

    def _subjects(self, source: Source, result: EngineResult,
                  product: Product) -> tuple[Subject, list[Subject]]:
        """A product's mode subject and exposure subjects, remediated if needed; built once."""
        key = (source.label, product.key, product.threshold, product.snrmax)
        if key not in self._subject_cache:
            keyword = [k for k in result.keyword_filtered if product.key in k.product_keys]
            mode_subject = Subject(product=product, keyword_filtered=keyword)
            file_subjects = [Subject(product=product, file=f) for f in product.inputs]
            rule = self._needs_remediation(product, [mode_subject, *file_subjects])
            if rule is not None:
                rem, _fixed = self.remediation(source, product, rule)
                for s in (mode_subject, *file_subjects):
                    s.remediation = rem
            self._subject_cache[key] = (mode_subject, file_subjects)
        return self._subject_cache[key]

    def _product_cases(self, spec: CheckSpec, source: Source, result: EngineResult,
                       product: Product) -> list[Case]:
        mode_subject, file_subjects = self._subjects(source, result, product)
        if spec.subject == "mode":
            return [Case(spec, product.key, source.label, product.key, mode_subject)]
        return [Case(spec, f"{product.key}-{rootname_of(s.file)}", source.label, product.key, s)
                for s in file_subjects]

    def remediated_product(self, source_label: str, product: Product) -> Product | None:
        key = (source_label, product.key, product.threshold, product.snrmax)
        return self.remediations.get(key, (None, None))[1]

    def source(self, label: str) -> Source:
        return next(s for s in self.sources if s.label == label)

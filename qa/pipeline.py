"""The unit of work of a QA run: collection from headers, Jobs, and ``compute(job)``.

Data flow::

    sources -> header-only files -> keyword pre-filter -> product plans -> cases   (collect)
    Job (one source's program) -> compute(job) -> JobOutcome                          (run)

Collection reads headers only: no engine runs, no file is hashed, nothing is
written (each xdist worker collects the whole run). A :class:`Job` holds
everything one program needs (file names, the run parameters) and is small and
picklable; :func:`compute` hashes and reads the files, runs
the engine for every product of the program, remediates where a
``on_fail = "remediate"`` check fails, renders figures when asked, and returns a
:class:`JobOutcome` of plain data (no arrays). Outcomes are cached on disk keyed
on content (:mod:`qa.cache`). Any exception for one product becomes that
product's ``error``; the other products go on.
"""
from __future__ import annotations

import base64
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from qa.cache import OutcomeCache, cache_key, sha256_file
from qa.checks import REGISTRY, CheckSpec, Subject, Verdict, load_checks, product_medians
from qa.engine.grouping import ProductPlan, plan_products, product_filename
from qa.engine.native import RowsPool, plan_key
from qa.engine.prefilter import PREFILTERS, prefilter
from qa.errors import InputError
from qa.io.headers import read_file_headers
from qa.io.model import FileHeaders, FileKeys
from qa.io.reader import find_spectra
from qa.results import (
    CheckResult,
    EngineResult,
    KeywordFilter,
    Product,
    Rejection,
    Remediation,
    RowStat,
    SnrGain,
    file_safe,
    rootname_of,
)
from qa.sources import Options, Source

# Header values of each input that the results JSON carries (primary, then first SCI).
INPUT_HEADER_KEYS = ("APERTURE", "PROPAPER", "CENWAVE", "TARGNAME", "POSTARG1", "POSTARG2",
                     "EXPTIME", "EXPSTART", "EXPFLAG", "FGSLOCK")
ARRAY_FIELDS = ("wavelength", "flux", "error", "snr", "eff_exptime")


# ---------------------------------------------------------------- run parameters

@dataclass(frozen=True)
class FilterParams:
    """HASP's flux-filter parameters (``swrapper -t`` and ``-s``): one co-add per distinct pair."""

    threshold: float
    snrmax: float

    @classmethod
    def of(cls, params: dict[str, Any]) -> "FilterParams":
        return cls(float(params["threshold"]), float(params["snrmax"]))

    def label(self) -> str:
        return f"threshold {self.threshold:g}, snrmax {self.snrmax:g}"


@dataclass(frozen=True)
class Trigger:
    """A check with ``on_fail = "remediate"``: when it fails on a product, remediate it."""

    check: str
    kind: str
    params: dict[str, Any]    # the check's parameters for this run

    @property
    def rule(self) -> str:
        # Kinds registered without a reference rule scale to the brightest exposure.
        return self.params.get("reference_rule", "brightest")


@dataclass(frozen=True)
class RunParams:
    """Everything besides the input bytes that decides a Job's outcome: one value per run."""

    engine: str = "native"
    filters: tuple[FilterParams, ...] = (FilterParams(-50.0, 20.0),)
    triggers: tuple[Trigger, ...] = ()      # empty with --remediate=off
    figures: str = "none"       # qa.render.policy: all, failing or none
    report: bool = False        # write each remediated co-add as a HASP cspec file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunParams":
        return cls(engine=data["engine"], filters=tuple(FilterParams(**f) for f in data["filters"]),
                   triggers=tuple(Trigger(**t) for t in data["triggers"]), figures=data["figures"],
                   report=data.get("report", False))


def check_params(spec: CheckSpec, options: Options) -> dict[str, Any]:
    """The parameters ``spec`` runs with: its file's values, ``--threshold``/``--snrmax`` applied.

    The spec itself is never changed: it stays what its file declares.
    """
    params = dict(spec.params)
    if options.threshold is not None:
        params["threshold"] = options.threshold
    if options.snrmax is not None:
        params["snrmax"] = options.snrmax
    return params


def run_params(specs: list[CheckSpec], options: Options) -> RunParams:
    """The run's :class:`RunParams` from its checks and options."""
    params = [check_params(s, options) for s in specs]
    triggers = () if options.remediate == "off" else tuple(
        Trigger(s.name, s.kind, p) for s, p in zip(specs, params) if s.on_fail == "remediate")
    return RunParams(engine=options.engine,
                     filters=tuple(dict.fromkeys(FilterParams.of(p) for p in params)),
                     triggers=triggers, figures=options.figures, report=options.report)


# ---------------------------------------------------------------- jobs and outcomes

@dataclass
class Job:
    """One source's program: the unit that is computed (and cached) at once.

    Its visit and program products share exposures, so they are computed together.
    """

    id: str                   # "<source label>:<program>"
    source: str
    directory: str
    files: list[str]          # names inside ``directory``
    sha256: list[str]         # of each file: empty when collected; see with_digests
    params: RunParams
    cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "params": self.params.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        return cls(**{**data, "params": RunParams.from_dict(data["params"])})


@dataclass
class ProductOutcome:
    """What a job found for one product at one :class:`FilterParams`: plain data, no arrays."""

    key: str
    filters: FilterParams
    product: Product | None = None            # without its co-add arrays
    keyword_filtered: list[KeywordFilter] = field(default_factory=list)
    remediation: Remediation | None = None
    figures: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)      # e.g. figures that could not be drawn
    findings: list[str] = field(default_factory=list)
    error: str | None = None

    def subject(self, file: str | None = None) -> Subject:
        return Subject(product=self.product, file=file, keyword_filtered=self.keyword_filtered,
                       remediation=self.remediation)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["figures"] = {k: base64.b64encode(v).decode("ascii") for k, v in self.figures.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProductOutcome":
        data = dict(data)
        data["filters"] = FilterParams(**data["filters"])
        data["product"] = _product_from_dict(data["product"]) if data["product"] else None
        data["keyword_filtered"] = [KeywordFilter(**k) for k in data["keyword_filtered"]]
        data["remediation"] = remediation_from_dict(data["remediation"])
        data["figures"] = {k: base64.b64decode(v) for k, v in data["figures"].items()}
        return cls(**data)


@dataclass
class JobOutcome:
    """Everything :func:`compute` found for one :class:`Job`; JSON-serializable."""

    job: str
    products: list[ProductOutcome] = field(default_factory=list)
    input_errors: dict[str, str] = field(default_factory=dict)  # file -> problem (full read)
    error: str | None = None          # the job as a whole failed (named, with its exception)
    engine_runs: int = 0              # co-adds computed (identical products share one)
    remediations: int = 0             # remediations computed
    figure_sets: int = 0              # products whose figures were drawn
    from_cache: bool = False
    sha256: dict[str, str] = field(default_factory=dict)  # file -> the bytes computed from

    def product(self, key: str, filters: FilterParams) -> ProductOutcome | None:
        return next((p for p in self.products if p.key == key and p.filters == filters), None)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "products"}
        out["products"] = [p.to_dict() for p in self.products]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobOutcome":
        data = dict(data)
        data["products"] = [ProductOutcome.from_dict(p) for p in data["products"]]
        return cls(**data)


def _product_from_dict(data: dict[str, Any]) -> Product:
    data = dict(data)
    data["rejected"] = [Rejection(**r) for r in data["rejected"]]
    data["row_stats"] = [RowStat(**r) for r in data["row_stats"]]
    return Product(**data)


def remediation_from_dict(data: dict[str, Any] | None) -> Remediation | None:
    if data is None:
        return None
    data = dict(data)
    if data.get("snr_gain") is not None:
        data["snr_gain"] = SnrGain(**data["snr_gain"])
    return Remediation(**data)


# ---------------------------------------------------------------- collection

@dataclass
class PlannedProduct:
    """A product as collection sees it (from headers): its id, inputs and job."""

    pid: str                  # unique in the run
    key: str
    source: str
    job: str
    filters: FilterParams
    level: str
    program: int
    visit: str
    instrument: str
    grating: str
    detector: str
    target: str
    files: list[str]


@dataclass
class Case:
    """One (check, subject) pair: becomes one pytest item."""

    spec: CheckSpec
    params: dict[str, Any]        # the check's parameters in this run
    case_id: str
    source: str
    job: str | None = None
    product: str | None = None    # pid
    product_key: str = ""
    filters: FilterParams | None = None
    file: str | None = None       # exposure checks: the file looked at
    error: str | None = None      # unusable input: the case errors with this message
    owns_figures: bool = False    # the first case of a product carries its figures

    @property
    def subject_name(self) -> str:
        return self.file or self.product_key or self.case_id


@dataclass
class Collection:
    """What a run will check: sources, jobs, planned products and cases (from headers only)."""

    specs: list[CheckSpec]
    params: RunParams
    sources: list[Source]
    jobs: dict[str, Job] = field(default_factory=dict)
    products: dict[str, PlannedProduct] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    input_errors: dict[str, dict[str, str]] = field(default_factory=dict)  # source -> file -> problem
    headers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (source, file)

    def source(self, label: str) -> Source:
        return next(s for s in self.sources if s.label == label)

    def cases_of(self, spec: CheckSpec) -> list[Case]:
        return [c for c in self.cases if c.spec is spec]


def _input_headers(h: FileKeys) -> dict[str, Any]:
    first = h.sci_headers[0] if h.sci_headers else {}
    return {k: (h.primary[k] if k in h.primary else first[k]) for k in INPUT_HEADER_KEYS
            if k in h.primary or k in first}


def _read_headers(directory: Path) -> tuple[list[FileHeaders], dict[str, str]]:
    """Header-only files of a directory that group and pre-filter cleanly, and the others."""
    good, errors = [], {}
    for path in find_spectra(directory):
        try:
            h = read_file_headers(path)
            # Grouping and the pre-filters use these values; a wrong type fails here, for this file.
            prefilter([h], PREFILTERS)
            _ = (h.program, h.instrument, h.grating, h.detector, h.target)
        except InputError as exc:
            errors[path.name] = exc.problem
            continue
        except Exception as exc:  # a header value of an unexpected type
            errors[path.name] = f"unusable header ({type(exc).__name__}: {exc})"
            continue
        good.append(h)
    return good, errors


def collect(options: Options, sources: list[Source], specs: list[CheckSpec] | None = None
            ) -> Collection:
    """Plan a run from headers: jobs, products and the cases of every check.

    Parameters
    ----------
    options : Options
        The run's options.
    sources : list of Source
        From :func:`qa.sources.resolve_sources` (already downloaded / generated).
    specs : list of CheckSpec, optional
        The checks (default: loaded from ``options.checks``).

    Raises
    ------
    qa.checks.CheckFileError
        A check file is malformed.
    """
    specs = load_checks(options.checks) if specs is None else specs
    params = run_params(specs, options)
    coll = Collection(specs=specs, params=params, sources=sources)
    default = FilterParams.of(check_params(specs[0], options)) if specs else None
    for source in sources:
        if source.error:
            continue
        directory = Path(source.directory)
        headers, errors = _read_headers(directory)
        coll.input_errors[source.label] = {
            **{n: f"not downloaded: {why}" for n, why in source.missing.items()}, **errors}
        kept, _dropped = prefilter(headers, PREFILTERS)
        programs: dict[int, list[FileHeaders]] = {}
        for h in headers:
            programs.setdefault(h.program, []).append(h)
            coll.headers[(source.label, h.name)] = _input_headers(h)
        for program, files in programs.items():
            job = Job(id=f"{source.label}:{program}", source=source.label,
                      directory=str(directory), files=[h.name for h in files],
                      sha256=[], params=params,
                      cache_dir=str(options.cache_dir) if options.cache_dir else None)
            coll.jobs[job.id] = job
        for plan in plan_products(kept):
            key = plan_key(plan)
            for fp in params.filters:
                pid = key if fp == default else f"{key} [{fp.label()}]"
                coll.products[f"{source.label}\0{pid}"] = PlannedProduct(
                    pid=pid, key=key, source=source.label, job=f"{source.label}:{plan.program}",
                    filters=fp, level=plan.level, program=plan.program, visit=plan.visit,
                    instrument=plan.instrument, grating=plan.grating, detector=plan.detector,
                    target=plan.target, files=[d.name for d in plan.datasets])
    _unique_pids(coll)
    if params.figures == "auto":
        from qa.render.policy import resolve_policy
        coll.params = replace(params, figures=resolve_policy(None, len(coll.products), True))
        for job in coll.jobs.values():
            job.params = coll.params
    for spec in specs:
        coll.cases += _cases(coll, spec, check_params(spec, options))
    _unique_case_ids(coll.cases)
    _assign_figures(coll)
    return coll


def _unique_pids(coll: Collection) -> None:
    """Product ids are the product names, prefixed "<source>:" where two sources clash."""
    counts = Counter(p.pid for p in coll.products.values())
    products = {}
    for p in coll.products.values():
        if counts[p.pid] > 1:
            p.pid = f"{p.source}:{p.pid}"
        products[p.pid] = p
    coll.products = products


def _cases(coll: Collection, spec: CheckSpec, params: dict[str, Any]) -> list[Case]:
    out: list[Case] = []
    fp = FilterParams.of(params)
    for source in coll.sources:
        if source.error:
            out.append(Case(spec, params, source.label, source.label, error=source.error))
            continue
        if spec.subject == "exposure":
            for name, problem in coll.input_errors[source.label].items():
                out.append(Case(spec, params, f"{source.label}-{rootname_of(name)}", source.label,
                                error=f"{name}: {problem}"))
        for p in coll.products.values():
            if p.source != source.label or p.filters != fp:
                continue
            common = dict(job=p.job, product=p.pid, product_key=p.key, filters=fp)
            if spec.subject == "mode":
                out.append(Case(spec, params, p.key, source.label, **common))
            else:
                out += [Case(spec, params, f"{p.key}-{rootname_of(f)}", source.label, file=f,
                             **common) for f in p.files]
    return out


def _unique_case_ids(cases: list[Case]) -> None:
    # The same product from two sources (say --demo and --program 8435): name the source.
    counts = Counter((id(c.spec), c.case_id) for c in cases)
    for case in cases:
        if counts[(id(case.spec), case.case_id)] > 1:
            case.case_id = f"{case.source}:{case.case_id}"


def _assign_figures(coll: Collection) -> None:
    """Each product's figures go to its first mode case (exposure case if no mode check)."""
    has_mode = any(s.subject == "mode" for s in coll.specs)
    seen: set[str] = set()
    for case in coll.cases:
        if case.product and case.product not in seen and \
                (case.spec.subject == "mode" or not has_mode):
            seen.add(case.product)
            case.owns_figures = True


# ---------------------------------------------------------------- compute

def with_digests(job: Job) -> Job:
    """``job`` with the sha256 of each of its files as they are now ("" for one that cannot
    be read: the engine reports it per file).

    :func:`compute` hashes the files it computes from; the controller of a Dask run hashes
    them before submitting, so that a worker can check its copies are the same bytes.
    """
    def digest(path: Path) -> str:
        try:
            return sha256_file(path)
        except OSError:
            return ""
    return replace(job, sha256=[digest(Path(job.directory) / name) for name in job.files])


def compute(job: Job) -> JobOutcome:
    """Compute (or load from the cache) the outcome of ``job``.

    The files are hashed here, once (collection reads only headers): the cache key is
    taken from their bytes as they are now, so a file replaced since collection is never
    served another file's result, and the outcome names the bytes it was computed from.
    Without ``job.cache_dir`` nothing is cached and scaled copies go to a temporary
    directory.
    """
    job = with_digests(job)
    outcome = _computed_or_cached(job)
    outcome.sha256 = dict(zip(job.files, job.sha256))
    return outcome


def _computed_or_cached(job: Job) -> JobOutcome:
    key = cache_key({"files": sorted(zip(job.files, job.sha256)), "params": job.params.to_dict()})
    if job.cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="hasp-qa-") as scratch:
            return _compute_guarded(job, Path(scratch), key)
    cache = OutcomeCache(job.cache_dir)
    with cache.lock(key):
        stored = cache.load(key)
        if stored is not None:
            try:
                outcome = JobOutcome.from_dict(stored)
            except (KeyError, TypeError, ValueError):
                outcome = None  # written by other code: compute again
            if outcome is not None:
                outcome.from_cache = True
                _restore_scaled_copies(job, outcome, Path(job.cache_dir))
                return outcome
        outcome = _compute_guarded(job, Path(job.cache_dir), key)
        cache.store(key, outcome.to_dict())
        return outcome


def _restore_scaled_copies(job: Job, outcome: JobOutcome, root: Path) -> None:
    """Write the scaled copies of a cached outcome again if their folder was deleted.

    They are for people to inspect; the outcome itself does not need them.
    """
    from qa.io.reader import read_dataset
    from qa.remediate import write_scaled_copy
    for po in outcome.products:
        rem = po.remediation
        if rem is None or not rem.possible or not rem.scaled_dir or (root / rem.scaled_dir).is_dir():
            continue
        try:
            for name in po.product.inputs:
                write_scaled_copy(read_dataset(Path(job.directory) / name), rem.factors,
                                  root / rem.scaled_dir, f"{rem.scaled_to} (rule {rem.reference_rule})")
        except Exception as exc:  # noqa: BLE001 - the verdicts stand without the copies
            po.notes.append(f"scaled copies of {po.key} could not be written again: "
                            f"{type(exc).__name__}: {exc}")


def _compute_guarded(job: Job, root: Path, key: str) -> JobOutcome:
    try:
        return _compute(job, root, key)
    except Exception as exc:  # noqa: BLE001 - any failure is this job's outcome, named
        return JobOutcome(job=job.id, error=f"{job.id}: {type(exc).__name__}: {exc}")


def _compute(job: Job, root: Path, key: str) -> JobOutcome:
    from qa.engine.native import load_datasets

    paths = [Path(job.directory) / name for name in job.files]
    datasets, errors = load_datasets(paths)
    outcome = JobOutcome(job=job.id, input_errors=errors)
    kept, dropped = prefilter(datasets, PREFILTERS)
    plans = plan_products(kept)
    pool = RowsPool(plans)   # each exposure's arrays computed once, for every product and filter
    for fp in job.params.filters:
        computed = _coadds(job.params.engine, plans, paths, fp, outcome, pool)
        # Identical inputs (a program's only visit) share one remediation and one figure set.
        shared: dict[tuple, ProductOutcome] = {}
        for plan in plans:
            pkey = plan_key(plan)
            po = ProductOutcome(key=pkey, filters=fp,
                                keyword_filtered=[k for k in dropped if pkey in k.product_keys])
            outcome.products.append(po)
            got = computed.get(pkey)
            if isinstance(got, str):
                po.error = got
                continue
            twin = shared.get(_signature(plan))
            try:
                _finish_product(job, plan, po, got, twin, fp, root, key, outcome)
            except Exception as exc:  # noqa: BLE001 - this product's error; others go on
                po.error = f"{pkey}: {type(exc).__name__}: {exc}"
            shared.setdefault(_signature(plan), po)
    return outcome


def _signature(plan: ProductPlan) -> tuple:
    """What makes two plans the same computation: mode, target and the files, not the level."""
    return (plan.instrument, plan.grating, plan.detector, plan.target,
            tuple(str(d.path) for d in plan.datasets))


def _coadds(engine: str, plans: list[ProductPlan], paths: list[Path], fp: FilterParams,
            outcome: JobOutcome, pool: RowsPool) -> dict[str, Product | str]:
    """Every plan's product (with arrays), or the error text of the plan that failed."""
    out: dict[str, Product | str] = {}
    if engine == "hasp":
        from qa.engine import reference
        try:
            result = reference.run(paths, threshold=fp.threshold, snrmax=fp.snrmax)
        except Exception as exc:  # noqa: BLE001
            return {plan_key(p): f"{plan_key(p)}: {type(exc).__name__}: {exc}" for p in plans}
        outcome.engine_runs += len(result.products)
        for plan in plans:
            key = plan_key(plan)
            out[key] = next((p for p in result.products if p.key == key),
                            f"{key}: the hasp engine made no such product")
        return out
    from qa.engine.native import run_product
    done: dict[tuple, Product] = {}
    for plan in plans:
        key = plan_key(plan)
        first = done.get(_signature(plan))
        if first is not None:
            out[key] = replace(first, level=plan.level, visit=plan.visit,
                               filename=product_filename(plan, _kept_datasets(plan, first)))
            continue
        try:
            product = run_product(plan, fp.threshold, fp.snrmax, [], pool.rows(plan))
        except Exception as exc:  # noqa: BLE001 - one product's failure, named
            out[key] = f"{key}: {type(exc).__name__}: {exc}"
            continue
        outcome.engine_runs += 1
        done[_signature(plan)] = product
        out[key] = product
    return out


def _kept_datasets(plan: ProductPlan, product: Product) -> list:
    kept = set(product.kept)
    return [d for d in plan.datasets if d.name in kept]


def _finish_product(job: Job, plan: ProductPlan, po: ProductOutcome, product: Product,
                    twin: ProductOutcome | None, fp: FilterParams, root: Path, key: str,
                    outcome: JobOutcome) -> None:
    """Remediate and draw ``product`` (or reuse its identical twin's), then drop its arrays."""
    po.product = product
    po.findings = list(product.findings)   # e.g. a dead SCI extension
    if twin is not None and twin.error is None:
        # The twin's cspec file is named and labelled for the twin's level: not this product's.
        po.remediation = replace(twin.remediation, product=po.key, cspec="") if twin.remediation else None
        po.figures, po.notes = twin.figures, list(twin.notes)
    else:
        fixed = None
        rule = _remediation_rule(job.params, fp, po)
        if rule is not None:
            from qa.engine.native import load_datasets
            from qa.remediate import remediate
            relative = Path("remediated") / key[:16] / file_safe(f"{po.key}-{fp.label()}")
            datasets, errors = load_datasets([d.path for d in plan.datasets])
            if errors:
                raise InputError(next(iter(errors)), next(iter(errors.values())))
            po.remediation, fixed = remediate(product, datasets, root / relative,
                                              _coadd_one(job.params.engine, po.key), rule)
            # Entries hold no absolute path: the copies' folder is relative to the cache.
            if po.remediation.scaled_dir:
                po.remediation.scaled_dir = relative.as_posix()
            outcome.remediations += 1
        if fixed is not None and job.params.report and fixed.wavelength is not None:
            po.remediation.cspec, note = _write_cspec(job, fixed, po.remediation, root)
            po.notes += [note] if note else []
        from qa.render.policy import wants_figures
        if wants_figures(job.params.figures, lost=bool(product.rejected or po.keyword_filtered),
                         remediated=po.remediation is not None):
            po.figures, po.notes = _figures(product, plan, po.remediation, fixed, root)
            outcome.figure_sets += 1
    product.coadd_median, product.input_medians = product_medians(product, plan.datasets)
    po.product = replace(product, **{name: None for name in ARRAY_FIELDS})


def _remediation_rule(params: RunParams, fp: FilterParams, po: ProductOutcome) -> str | None:
    """The reference rule of the first remediation trigger that fails on the product, or None."""
    subjects = [po.subject(), *(po.subject(f) for f in po.product.inputs)]
    for trigger in params.triggers:
        if FilterParams.of(trigger.params) != fp:
            continue
        kind = REGISTRY[trigger.kind]
        todo = [s for s in subjects if (s.file is None) == (kind.subject == "mode")]
        if any(kind.fn(s, trigger.params).status == "failed" for s in todo):
            return trigger.rule
    return None


def _coadd_one(engine: str, key: str) -> Callable[..., EngineResult]:
    """The engine, run on scaled copies to make only the product ``key`` (not every level)."""
    if engine == "hasp":
        from qa.engine.reference import run
    else:
        from qa.engine.native import run
    return partial(run, products={key})


def _write_cspec(job: Job, fixed: Product, remediation: Remediation, root: Path
                 ) -> tuple[str, str | None]:
    """The remediated co-add as a HASP cspec beside its scaled copies: its path relative to
    the cache, or "" and a note when it cannot be written (never an error of the product)."""
    try:
        from qa.cspec import write_cspec
        scaled = root / remediation.scaled_dir
        relative = Path(remediation.scaled_dir) / "cspec" / fixed.filename
        write_cspec(fixed, sorted(scaled.glob("*.fits*")), root / relative, remediation,
                    dict(zip(job.files, job.sha256)))
        return relative.as_posix(), None
    except Exception as exc:  # noqa: BLE001 - e.g. a header value FITS cannot hold
        return "", f"remediated co-add of {fixed.key} not written: {type(exc).__name__}: {exc}"


def _figures(product: Product, plan: ProductPlan, remediation: Remediation | None,
             fixed: Product | None, root: Path) -> tuple[dict[str, bytes], list[str]]:
    """The product's figures; a failure to draw them is a note, never an error of the product."""
    try:
        from qa.render import plots
        rem = remediation
        if rem is not None and rem.scaled_dir:
            rem = replace(rem, scaled_dir=str(root / rem.scaled_dir))
        directory = Path(plan.datasets[0].path).parent
        # The job read these files already: the figures draw from them, not from disk again.
        return plots.product_figures(product, directory, rem, fixed, datasets=plan.datasets), []
    except Exception as exc:  # noqa: BLE001 - e.g. mathtext in a header value
        return {}, [f"figures of {product.key} could not be drawn: {type(exc).__name__}: {exc}"]


# ---------------------------------------------------------------- the store the plugin reads

class OutcomeStore:
    """Job outcomes while their cases run: computed on first use, released when done.

    ``put`` lets another executor (e.g. Dask) deliver outcomes computed elsewhere;
    a released outcome asked for again is recomputed, which the cache makes a read.
    """

    def __init__(self, compute_fn: Callable[[Job], JobOutcome] = compute) -> None:
        self._compute = compute_fn
        self._outcomes: dict[str, JobOutcome] = {}

    def get(self, job: Job) -> JobOutcome:
        if job.id not in self._outcomes:
            self._outcomes[job.id] = self._compute(job)
        return self._outcomes[job.id]

    def put(self, outcome: JobOutcome) -> None:
        self._outcomes[outcome.job] = outcome

    def release(self, job_id: str) -> None:
        self._outcomes.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._outcomes)


# ---------------------------------------------------------------- verdicts

def evaluate(case: Case, outcome: JobOutcome | None) -> Verdict:
    """The verdict of one case on its job's outcome (``status`` "error" when it cannot run)."""
    if case.error:
        return Verdict("error", case.error, {})
    if outcome is None:
        return Verdict("error", f"{case.product_key}: the job {case.job} was not computed", {})
    if outcome.error:
        return Verdict("error", outcome.error, {})
    if case.file and case.file in outcome.input_errors:
        return Verdict("error", f"{case.file}: {outcome.input_errors[case.file]}", {})
    po = outcome.product(case.product_key, case.filters)
    if po is None:
        return Verdict("error", f"{case.product_key}: no such product once the files were read "
                                f"(input errors: {', '.join(outcome.input_errors) or 'none'})", {})
    if po.error:
        return Verdict("error", po.error, {})
    if case.file and case.file not in po.product.inputs:
        return Verdict("error", f"{case.file}: not an input of {case.product_key} once the files "
                                "were read", {})
    return case.spec.evaluate(po.subject(case.file), case.params)


def check_result(case: Case, verdict: Verdict) -> CheckResult:
    """The result record of one case."""
    return CheckResult(check=case.spec.name, kind=case.spec.kind, case_id=case.case_id,
                       product=case.product, subject=case.subject_name, status=verdict.status,
                       message=verdict.message, params=dict(case.params),
                       observed=verdict.observed, source=case.source)

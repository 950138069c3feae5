"""Declarative checks: TOML files name a check kind and its parameters; kinds are Python.

A check file holds tables ``[check.<name>]`` with ``kind``, ``description``,
``on_fail`` ("remediate" or "report") and ``[check.<name>.params]``. A kind is a
function registered with :func:`register`, declaring the subject it runs on
("exposure" or "mode") and its parameters with their types and defaults.
"""
from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.io.reader import good_pixel_mask
from qa.remediate import REFERENCE_RULES, exposure_medians
from qa.results import KeywordFilter, Product, Remediation

SUBJECTS = ("exposure", "mode")
ON_FAIL = ("remediate", "report")
SPEC_KEYS = {"kind", "description", "on_fail", "params"}
# Parameters of HASP's engine run; every kind has them.
ENGINE_PARAMS = {"threshold": (float, -50.0), "snrmax": (float, 20.0)}
# Parameters whose values come from a fixed set.
CHOICES = {"reference_rule": REFERENCE_RULES}


def _finite(v: float) -> bool:
    return bool(np.isfinite(v))


# Values that make a check meaningless, per parameter name: (test, what is expected).
# snrmax: HASP divides by it, error floor = flux / snrmax. 0 gives an infinite floor, so
# every deviation is 0 and the flux filter is off; a negative value removes the floor for
# positive fluxes only and turns it into |flux / snrmax| for negative ones. HASP gives
# neither a meaning (its -s is "maximum SNR per pixel"), so both are refused.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "threshold": (_finite, "a finite number (HASP -t; NaN or infinity makes every row pass or fail)"),
    "snrmax": (lambda v: _finite(v) and v > 0,
               "a finite number > 0 (HASP -s divides by it: 0 switches the flux filter off, "
               "a negative value has no meaning in HASP; use a large value for no SNR cap)"),
    "worst_rows": (lambda v: v >= 1, "an integer >= 1"),
    "min_median_gain": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "tolerance": (lambda v: _finite(v) and 0 <= v < 1, "a finite number in [0, 1)"),
}


def param_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name``, or None when it is."""
    rule = RANGES.get(name)
    if rule is None or rule[0](value):
        return None
    return f"expected {rule[1]}, got {value!r}"


class CheckFileError(Exception):
    """A check file is malformed; the message names the file, the key and what was expected."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")


@dataclass
class Subject:
    """What a check looks at: one product, and the file within it for exposure checks."""

    product: Product
    file: str | None = None
    keyword_filtered: list[KeywordFilter] = field(default_factory=list)
    remediation: Remediation | None = None


@dataclass
class Verdict:
    status: str             # "passed", "failed", "skipped" or "error" (the case cannot run)
    message: str
    observed: dict[str, Any]


@dataclass
class CheckKind:
    name: str
    subject: str
    params: dict[str, tuple[type, Any]]
    fn: Callable[[Subject, dict[str, Any]], Verdict]


@dataclass
class CheckSpec:
    """One check as declared in a file."""

    name: str
    kind: str
    description: str
    on_fail: str
    params: dict[str, Any]   # as the file declares them (a run may override threshold/snrmax)
    file: str                # the check file it was read from

    @property
    def subject(self) -> str:
        return REGISTRY[self.kind].subject

    def evaluate(self, subject: Subject, params: dict[str, Any] | None = None) -> Verdict:
        """The verdict on ``subject`` with ``params`` (default: the declared ones)."""
        return REGISTRY[self.kind].fn(subject, self.params if params is None else params)


REGISTRY: dict[str, CheckKind] = {}


def register(name: str, subject: str, **params: tuple[type, Any]):
    """Register a check kind: ``@register("my_check", "mode", limit=(float, 1.0))``."""
    if subject not in SUBJECTS:
        raise ValueError(f"subject must be one of {SUBJECTS}")

    def wrap(fn: Callable[[Subject, dict[str, Any]], Verdict]):
        REGISTRY[name] = CheckKind(name, subject, {**ENGINE_PARAMS, **params}, fn)
        return fn
    return wrap


def load_check_file(path: str | Path) -> list[CheckSpec]:
    """Read and validate one check file.

    Raises
    ------
    CheckFileError
        Not TOML, an unknown kind or key, or a value of the wrong type.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CheckFileError(path, "(file)", f"cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise CheckFileError(path, "(file)", f"is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                                             f"at offset {exc.start}); TOML files are UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CheckFileError(path, "(file)", f"cannot be read as TOML: {exc}") from exc
    unknown = set(data) - {"check"}
    if unknown:
        raise CheckFileError(path, sorted(unknown)[0], "unknown top-level table (expected [check.<name>])")
    checks = data.get("check", {})
    if not isinstance(checks, dict):
        raise CheckFileError(path, "check", f"expected tables [check.<name>], got "
                                            f"{type(checks).__name__} {checks!r}")
    if not checks:
        raise CheckFileError(path, "check", "no [check.<name>] table")
    return [_spec(path, name, table) for name, table in checks.items()]


def _spec(path: Path, name: str, table: dict) -> CheckSpec:
    where = f"check.{name}"
    if not isinstance(table, dict):
        raise CheckFileError(path, where, "expected a table")
    unknown = set(table) - SPEC_KEYS
    if unknown:
        raise CheckFileError(path, f"{where}.{sorted(unknown)[0]}",
                             f"unknown key (expected one of {', '.join(sorted(SPEC_KEYS))})")
    kind = table.get("kind")
    if kind not in REGISTRY:
        raise CheckFileError(path, f"{where}.kind",
                             f"expected one of {', '.join(sorted(REGISTRY))}, got {kind!r}")
    on_fail = table.get("on_fail", "report")
    if on_fail not in ON_FAIL:
        raise CheckFileError(path, f"{where}.on_fail", f"expected one of {ON_FAIL}, got {on_fail!r}")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise CheckFileError(path, f"{where}.description", "expected a string")
    return CheckSpec(name=name, kind=kind, description=description, on_fail=on_fail,
                     params=_params(path, where, REGISTRY[kind], table.get("params", {})),
                     file=str(path))


def _params(path: Path, where: str, kind: CheckKind, given: dict) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise CheckFileError(path, f"{where}.params", "expected a table")
    out = {}
    for key, value in given.items():
        if key not in kind.params:
            raise CheckFileError(path, f"{where}.params.{key}",
                                 f"unknown parameter of {kind.name} (expected one of "
                                 f"{', '.join(sorted(kind.params))})")
        typ = kind.params[key][0]
        ok = isinstance(value, typ) and not (typ is not bool and isinstance(value, bool))
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise CheckFileError(path, f"{where}.params.{key}",
                                 f"expected {typ.__name__}, got {type(value).__name__} {value!r}")
        choices = CHOICES.get(key)
        if choices and value not in choices:
            raise CheckFileError(path, f"{where}.params.{key}",
                                 f"expected one of {', '.join(choices)}, got {value!r}")
        problem = param_problem(key, value)
        if problem:
            raise CheckFileError(path, f"{where}.params.{key}", problem)
        out[key] = value
    return {k: out.get(k, default) for k, (_typ, default) in kind.params.items()}


def load_checks(paths: list[str | Path]) -> list[CheckSpec]:
    """All checks of the given files and directories (``*.toml``), names unique across them."""
    specs: list[CheckSpec] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise CheckFileError(p, "(path)", "does not exist")
        files = sorted(p.glob("*.toml")) if p.is_dir() else [p]
        if not files:
            raise CheckFileError(p, "(directory)", "holds no *.toml check file")
        for f in files:
            for spec in load_check_file(f):
                clash = next((s for s in specs if s.name == spec.name), None)
                if clash:
                    raise CheckFileError(f, f"check.{spec.name}",
                                         f"name already defined in {clash.file}")
                specs.append(spec)
    return specs


# ---------------------------------------------------------------- built-in kinds

def _fmt(v: float) -> str:
    return f"{v:.1f}" if np.isfinite(v) else str(v)


@register("flux_variance", "exposure", worst_rows=(int, 3), reference_rule=(str, "brightest"))
def flux_variance(subject: Subject, params: dict[str, Any]) -> Verdict:
    """Fail when any row of the file scored below ``threshold`` against a co-add it was in."""
    product, file = subject.product, subject.file
    rows = [r for r in product.row_stats if r.file == file]
    threshold = params["threshold"]
    # A row appears once per iteration it took part in; report each row at its lowest.
    order = sorted(rows, key=lambda r: (np.nan_to_num(r.scaled_median, nan=np.inf), r.iteration))
    lowest: dict[tuple[int, str], object] = {}
    for r in order:
        lowest.setdefault((r.extver, r.row), r)
    worst = list(lowest.values())
    below = [r for r in rows if r.scaled_median < threshold]
    nan_rows = [r for r in rows if np.isnan(r.scaled_median)]
    shown = worst[:params["worst_rows"]]
    observed = {
        "threshold": threshold, "snrmax": params["snrmax"],
        "rows": len({(r.extver, r.row) for r in rows}),
        "rows_below": len({(r.extver, r.row) for r in below}),
        "min_scaled_median": min((r.scaled_median for r in rows if not np.isnan(r.scaled_median)),
                                 default=float("nan")),
        "worst": [{"row": r.row, "extver": r.extver, "iteration": r.iteration,
                   "scaled_median": r.scaled_median, "n": r.n} for r in shown],
        "rejected_in_iteration": next((x.iteration for x in product.rejected if x.file == file), None),
        "nan_rows": sorted({r.row for r in nan_rows}),
    }
    worst_text = ", ".join(f"{r.row} {_fmt(r.scaled_median)}" for r in shown)
    if below:
        it = observed["rejected_in_iteration"]
        fate = f"; HASP removed it in iteration {it}" if it else ""
        return Verdict("failed", f"{file}: {observed['rows_below']} of {observed['rows']} rows have "
                                 f"a scaled median below {threshold:g} (worst: {worst_text}){fate}",
                       observed)
    if nan_rows:
        return Verdict("failed", f"{file}: scaled median is NaN for {', '.join(observed['nan_rows'][:5])}"
                                 " (NaN never compares below the threshold, so HASP keeps the file "
                                 "without testing it)", observed)
    return Verdict("passed", f"{file}: all {observed['rows']} rows above {threshold:g} "
                             f"(lowest: {worst_text or 'none tested'})", observed)


@register("rejection", "mode", keyword_filtered_fails=(bool, False),
          reference_rule=(str, "brightest"))
def rejection(subject: Subject, params: dict[str, Any]) -> Verdict:
    """Fail when the product lost an exposure to the flux filter (or, optionally, to keywords)."""
    product = subject.product
    rejected = [{"file": r.file, "iteration": r.iteration, "rows": r.rows,
                 "scaled_medians": r.scaled_medians} for r in product.rejected]
    keyword = [{"file": k.file, "filter": k.filter, "reason": k.reason}
               for k in subject.keyword_filtered]
    observed = {"inputs": len(product.inputs), "kept": len(product.kept), "rejected": rejected,
                "keyword_filtered": keyword}
    parts = [f"{r['file']} (iteration {r['iteration']}, {len(r['rows'])} rows below "
             f"{params['threshold']:g})" for r in rejected]
    kw_text = "; keyword-filtered: " + ", ".join(f"{k['file']} ({k['reason']})" for k in keyword) \
        if keyword else ""
    if rejected or (keyword and params["keyword_filtered_fails"]):
        lost = ", ".join(parts) if parts else "no flux-filter rejection"
        return Verdict("failed", f"{product.key}: co-add kept {len(product.kept)} of "
                                 f"{len(product.inputs)} exposures; rejected: {lost}{kw_text}", observed)
    return Verdict("passed", f"{product.key}: co-add kept all {len(product.inputs)} exposures{kw_text}",
                   observed)


@register("snr_gain", "mode", min_median_gain=(float, 1.0))
def snr_gain(subject: Subject, params: dict[str, Any]) -> Verdict:
    """After remediation, the median SNR gain must reach ``min_median_gain``."""
    rem = subject.remediation
    key = subject.product.key
    if rem is None:
        return Verdict("skipped", f"{key}: no remediation ran for this mode (its checks passed)", {})
    observed = {"factors": rem.factors, "kept_after": rem.kept_after,
                "rejected_after": rem.rejected_after, "min_median_gain": params["min_median_gain"]}
    if not rem.possible:
        return Verdict("failed", f"{key}: remediation not possible: {rem.reason}", observed)
    gain = rem.snr_gain
    if gain is None:
        # Without an original co-add (every exposure rejected) any kept exposure is a gain.
        status = "passed" if rem.kept_after else "failed"
        return Verdict(status, f"{key}: {rem.reason}", observed)
    observed.update(median_gain=gain.median, p5=gain.p5, p95=gain.p95, nbins=gain.nbins)
    text = (f"median SNR gain {gain.median:.3f} (5th-95th percentile {gain.p5:.3f}-{gain.p95:.3f}, "
            f"{gain.nbins} bins)")
    if gain.median >= params["min_median_gain"]:
        return Verdict("passed", f"{key}: {text} >= {params['min_median_gain']:g}", observed)
    return Verdict("failed", f"{key}: {text} < {params['min_median_gain']:g}", observed)


def product_medians(product: Product, datasets: list) -> tuple[float | None, dict[str, float]]:
    """The co-add's median flux and each input exposure's good-pixel median flux.

    The co-add is sampled where the kept exposures have good pixels (interpolated at
    their wavelengths), so both medians are over the same wavelengths: medians over
    the co-add's own bins weight the spectrum differently (echelle overlaps, edges)
    and differ by several per cent from every input. Computed while the arrays exist;
    :func:`coadd_consistency` reads the numbers later.
    """
    medians = {k: v for k, v in exposure_medians(datasets).items()
               if k.split("[", 1)[0] in product.inputs}
    if product.flux is None or product.wavelength is None:
        return None, medians
    used = np.isfinite(product.flux)
    if product.eff_exptime is not None:
        used &= product.eff_exptime > 0
    if not used.any():
        return None, medians
    samples = []
    for ds in datasets:
        if ds.name not in product.kept:
            continue
        for exp in ds.exposures:
            good = good_pixel_mask(exp, ds.instrument, ds.detector) & np.isfinite(exp.flux)
            samples.append(np.interp(exp.wavelength[good], product.wavelength[used],
                                     product.flux[used], left=np.nan, right=np.nan))
    values = np.concatenate(samples) if samples else np.array([])
    values = values[np.isfinite(values)]
    return (float(np.median(values)) if values.size else None), medians


@register("coadd_consistency", "mode", tolerance=(float, 0.05))
def coadd_consistency(subject: Subject, params: dict[str, Any]) -> Verdict:
    """Fail when the co-add disagrees with the exposures it was made of.

    HASP weights pixels by EXPTIME * NET / FLUX, so an exposure with a non-positive
    median flux gets negative or infinite weights and can drag the co-add far from
    every input, hiding a faint exposure from the flux filter. Fails when a kept
    exposure's median is not positive, or when the co-add's median lies outside the
    kept exposures' medians widened by ``tolerance`` (relative; co-add bins and
    exposure pixels are not the same samples).
    """
    product = subject.product
    kept = {k: v for k, v in product.input_medians.items() if k.split("[", 1)[0] in product.kept}
    co = product.coadd_median
    observed = {"coadd_median": co, "kept_medians": kept, "tolerance": params["tolerance"]}
    if co is None or not kept:
        return Verdict("skipped", f"{product.key}: no co-add to compare (no exposure kept)", observed)
    bad = {k: v for k, v in kept.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        listing = ", ".join(f"{k} ({v:.3g})" for k, v in bad.items())
        others = [v for k, v in kept.items() if k not in bad]
        range_text = (f" (the other kept exposures' medians: {min(others):.3g}..{max(others):.3g})"
                      if others else "")
        return Verdict("failed", f"{product.key}: kept exposure(s) with a median flux that is not "
                                 f"positive: {listing}; the co-add median is {co:.3g}{range_text}",
                       observed)
    low, high = min(kept.values()), max(kept.values())
    observed.update(low=low, high=high)
    tol = params["tolerance"]
    span = f"{low:.3g}..{high:.3g} of {len(kept)} kept exposure(s)"
    if not (low * (1 - tol) <= co <= high * (1 + tol)):
        return Verdict("failed", f"{product.key}: co-add median {co:.3g} lies outside the medians "
                                 f"{span} (tolerance {tol:g})", observed)
    return Verdict("passed", f"{product.key}: co-add median {co:.3g} within the medians {span}",
                   observed)

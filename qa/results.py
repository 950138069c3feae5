"""Result dataclasses shared by both engines; plain data that round-trips through JSON.

Rendering (terminal, HTML, plots) reads these; nothing downstream recomputes
the co-add.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# The diagnostic figures of a product (qa.render.plots), in the order they are shown.
FIGURE_NAMES = ("inputs_vs_coadd", "row_statistics", "scaled_inputs", "snr_gain")


@dataclass
class RowStat:
    """HASP's flux-filter statistic for one row (STIS order / COS segment) in one iteration."""

    file: str
    extver: int
    row: str            # "order 120" or "FUVA"
    iteration: int      # 1 = first co-add of the product
    n: int              # pixels that qualified (good DQ, ERROR != 0, bin shared with others)
    median_deviation: float
    scaled_median: float  # median_deviation * sqrt(n); NaN never passes through silently
    wave_min: float
    wave_max: float


@dataclass
class Rejection:
    """A file the flux filter removed, with the rows that condemned it."""

    file: str
    iteration: int
    rows: list[str]
    scaled_medians: list[float]


def rootname_of(filename: str) -> str:
    """``o5jy03030`` for ``o5jy03030_x1d.fits``: how files are named in ids and plots."""
    return filename.split("_")[0]


def file_safe(text: str) -> str:
    """``text`` usable as one file or directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def printable(text: str, keep: str = "") -> str:
    """``text`` with control and other invisible characters percent-encoded (``%0A``).

    Test ids, terminal lines and report text come from file names and header values;
    a newline, an ANSI escape or a backslash (pytest-html decodes ids with
    ``unicode_escape``) must show as text, not act. ``%`` itself is encoded too, so
    two different texts never give the same result. Characters in ``keep`` (say
    ``"\n"`` for multi-line messages) pass unchanged.
    """
    def enc(ch: str) -> str:
        if ch in keep or not (ch in "%\\" or unicodedata.category(ch)[0] == "C"):
            return ch
        return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(enc(ch) for ch in text)


def product_key(program: int, target: str, mode: str, level: str, visit: str) -> str:
    """Readable identifier of a product, e.g. ``8435-G191B2B-STIS/E140M-visit03``."""
    where = f"visit{visit}" if level == "visit" else level
    return f"{program}-{target}-{mode}-{where}"


@dataclass
class KeywordFilter:
    """A file dropped by HASP's keyword pre-filters, with HASP's reason."""

    file: str
    filter: str   # PREFILTERS name, e.g. "EXPFLAG"
    reason: str   # e.g. "EXPFLAG = INTERRUPTED"
    product_keys: list[str] = field(default_factory=list)  # the products it would have joined


@dataclass
class Product:
    """One HASP single-grating product (visit or program level) and its filtering history."""

    level: str            # "visit" or "program"
    program: int
    visit: str            # "03" for visit products, "" for program products
    instrument: str
    grating: str
    detector: str
    target: str
    filename: str         # the cspec name HASP writes
    threshold: float
    snrmax: float
    inputs: list[str]     # file names that entered the flux filter
    kept: list[str]
    rejected: list[Rejection] = field(default_factory=list)
    iterations: int = 1
    row_stats: list[RowStat] = field(default_factory=list)
    # Problems worth a user's attention that do not stop HASP, e.g. a dead SCI extension.
    findings: list[str] = field(default_factory=list)
    wavelength: np.ndarray | None = None
    flux: np.ndarray | None = None
    error: np.ndarray | None = None
    snr: np.ndarray | None = None
    eff_exptime: np.ndarray | None = None
    # For the co-add consistency check, kept when the arrays are dropped: the co-add's
    # median flux over bins with exposure, and each input exposure's good-pixel median.
    coadd_median: float | None = None
    input_medians: dict[str, float] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return f"{self.instrument}/{self.grating}"

    @property
    def key(self) -> str:
        """Readable identifier, e.g. ``8435-G191B2B-STIS/E140M-visit03``."""
        return product_key(self.program, self.target, self.mode, self.level, self.visit)


@dataclass
class EngineResult:
    """Everything one engine run found for one input directory or file set."""

    engine: str           # "native" or "hasp"
    engine_version: str
    threshold: float
    snrmax: float
    inputs: list[str]
    keyword_filtered: list[KeywordFilter] = field(default_factory=list)
    input_errors: dict[str, str] = field(default_factory=dict)  # file -> problem
    products: list[Product] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def product(self, key: str) -> Product:
        for p in self.products:
            if p.key == key:
                return p
        raise KeyError(f"no product {key!r}; have {[p.key for p in self.products]}")


def nan_to_none(obj: Any) -> Any:
    """JSON has no NaN: store it as null (for the results JSON, read by other tools)."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_to_none(v) for v in obj]
    return obj


@dataclass
class SnrGain:
    """Remediated co-add SNR over the original, over bins with original SNR > 0, matched by wavelength."""

    median: float
    p5: float
    p95: float
    nbins: int


@dataclass
class Remediation:
    """Outcome of scaling one product's inputs to a common median flux and co-adding again."""

    product: str                 # Product.key of the original product
    possible: bool
    reason: str                  # why not possible, or "" when it ran
    reference_rule: str = "brightest"
    scaled_to: str = ""          # exposure the others were scaled to ("median of medians" for that rule)
    medians: dict[str, float] = field(default_factory=dict)   # file -> good-pixel median flux
    factors: dict[str, float] = field(default_factory=dict)   # file -> scale factor
    scaled_dir: str = ""         # where the scaled copies were written (in results: relative
                                 # to the cache directory)
    kept_after: list[str] = field(default_factory=list)
    rejected_after: list[str] = field(default_factory=list)
    snr_gain: SnrGain | None = None
    cspec: str = ""              # the remediated co-add as a HASP cspec file (in results:
                                 # relative to the results JSON; in job outcomes: to the cache)


@dataclass
class CheckResult:
    """One (check, subject) verdict with the values it observed (Great Expectations style)."""

    check: str                   # the check's name in its TOML file
    kind: str                    # the registered check function, e.g. "flux_variance"
    case_id: str                 # e.g. "8435-G191B2B-STIS/E140M-visit03-o5jy03030"
    product: str | None          # product id (pid) in the results JSON; None for a file or
                                 # source that never became a product
    subject: str                 # file name (exposure checks) or Product.key (mode checks)
    status: str                  # "passed", "failed", "skipped" or "error"
    message: str
    params: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    source: str = ""             # the source (program or directory) label of the case

    def to_dict(self) -> dict[str, Any]:
        return nan_to_none(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckResult":
        return cls(**data)

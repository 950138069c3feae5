"""In-memory model of calibrated 1-D HST spectra (``*_x1d.fits``, ``*_sx1.fits``).

One :class:`Dataset` per file; one :class:`Exposure` per ``SCI`` extension (HASP
co-adds extensions as exposures but rejects at file level); the rows of an
exposure (STIS echelle orders, COS segments or stripes) are held as 2-D arrays
``(nrows, npix)`` so that the engines can work on whole products at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Primary-header keys HASP reads (hasp-primer section 6) and the ones its keyword
# pre-filters look at; a key absent from the file is absent from the dict, because
# HASP treats "missing" differently from any value.
PRIMARY_KEYS = (
    "TELESCOP", "INSTRUME", "DETECTOR", "OPT_ELEM", "CENWAVE", "TARGNAME",
    "RA_TARG", "DEC_TARG", "PROPOSID", "ROOTNAME", "PROPAPER", "APERTURE",
    "MTFLAG", "LIFE_ADJ", "OBSMODE", "MINWAVE", "MAXWAVE", "PR_INV_L", "CAL_VER",
    "SPECRES", "POSTARG1", "POSTARG2", "P1_PURPS", "PATTERN1", "P1_FRAME",
)
REQUIRED_PRIMARY_KEYS = ("INSTRUME", "DETECTOR", "OPT_ELEM", "TARGNAME", "PROPOSID", "PROPAPER")
SCI_KEYS = ("EXTVER", "EXPTIME", "SDQFLAGS", "EXPSTART", "EXPEND", "EXPNAME", "EXPFLAG",
            "PLANTIME", "FGSLOCK")
REQUIRED_SCI_KEYS = ("EXPTIME", "SDQFLAGS")

# Columns every instrument has; COS adds the VARIANCE_* columns when present.
ARRAY_COLUMNS = ("WAVELENGTH", "FLUX", "ERROR", "GROSS", "NET", "DQ")
COS_VARIANCE_COLUMNS = ("VARIANCE_COUNTS", "VARIANCE_BKG", "VARIANCE_FLAT")


@dataclass
class Exposure:
    """One ``SCI`` extension: rows of spectra plus the header values HASP uses.

    Array attributes have shape ``(nrows, npix)`` and keep the file's dtypes
    (float64 wavelength, float32 fluxes, int16 DQ for STIS) because HASP's
    arithmetic, which the native engine reproduces, depends on them.
    """

    path: Path
    extver: int
    header: dict
    row_labels: list[str]
    wavelength: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    gross: np.ndarray
    net: np.ndarray
    dq: np.ndarray
    variance: np.ndarray | None = None  # COS: VARIANCE_COUNTS + _BKG + _FLAT

    @property
    def exptime(self) -> float:
        return float(self.header["EXPTIME"])

    @property
    def sdqflags(self) -> int:
        return int(self.header["SDQFLAGS"])

    @property
    def nrows(self) -> int:
        return self.wavelength.shape[0]


class FileKeys:
    """What grouping and the keyword pre-filters read: the file's header values.

    Shared by :class:`Dataset` (a file read whole) and :class:`FileHeaders` (a file
    read up to its headers, for collection), so that grouping and pre-filters run
    on either.
    """

    path: Path
    primary: dict

    @property
    def sci_headers(self) -> list[dict]:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def instrument(self) -> str:
        return str(self.primary["INSTRUME"]).upper()

    @property
    def grating(self) -> str:
        return str(self.primary["OPT_ELEM"]).upper()

    @property
    def detector(self) -> str:
        return str(self.primary["DETECTOR"])

    @property
    def target(self) -> str:
        return str(self.primary["TARGNAME"])

    @property
    def program(self) -> int:
        return int(self.primary["PROPOSID"])

    @property
    def visit(self) -> str:
        # HASP takes the visit from the file name: characters [-14:-12] of the plain
        # ``*_x1d.fits`` name, which for ``*_x1d.fits.gz`` is the name without ``.gz``.
        return str(self.path).removesuffix(".gz")[-14:-12]


@dataclass
class Dataset(FileKeys):
    """One input file: its primary header values and its exposures."""

    path: Path
    primary: dict
    exposures: list[Exposure] = field(default_factory=list)

    @property
    def sci_headers(self) -> list[dict]:
        return [e.header for e in self.exposures]


@dataclass
class FileHeaders(FileKeys):
    """One input file read up to its headers: enough to group it and pre-filter it."""

    path: Path
    primary: dict
    sci: list[dict] = field(default_factory=list)   # one per SCI extension, in file order

    @property
    def sci_headers(self) -> list[dict]:
        return self.sci

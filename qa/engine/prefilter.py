"""HASP's keyword pre-filters (``hasp.wrapper.prefilter``) on in-memory headers.

Each filter returns the HASP log reason for dropping a file, or ``None`` to
keep it. The order and the handling of missing keywords follow the archive code:
a missing EXPFLAG drops the file, most other missing keywords keep it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from qa.engine.grouping import product_keys_of
from qa.io.model import FileKeys
from qa.results import KeywordFilter

F = TypeVar("F", bound=FileKeys)  # a Dataset, or FileHeaders at collection

# hasp.wrapper.PREFILTERS, in the order HASP applies them.
PREFILTERS = ("EXPFLAG", "ZEROEXPTIME", "PLANNEDVSACTUAL", "MOVINGTARGET", "NOTFINELOCK",
              "POSTARG1", "POSTARG2", "DITHERPERPENDICULARTOSLIT", "MOSAICPURPOSE", "PRISM",
              "COSBOA", "EXCLUDEWAVE")
# hasp.wrapper.BAD_SEGMENTS: rows HASP leaves out of a setting's co-add.
BAD_SEGMENTS = {"COS/G230L": ("NUVC",)}


def _ext1(ds: FileKeys) -> dict:
    # HASP reads these with fits.getval(..., ext=1): the first SCI extension.
    return ds.sci_headers[0]


def _expflag(ds: FileKeys) -> str | None:
    value = _ext1(ds).get("EXPFLAG", "Not found")
    return None if value == "NORMAL" else f"EXPFLAG = {value}"


def _zero_exptime(ds: FileKeys) -> str | None:
    value = _ext1(ds)["EXPTIME"]
    return None if value > 0.0 else f"EXPTIME = {value}"


def _planned_vs_actual(ds: FileKeys) -> str | None:
    hdr = _ext1(ds)
    if "PLANTIME" not in hdr:
        return None
    actual, planned = hdr["EXPTIME"], hdr["PLANTIME"]
    return None if actual >= 0.8 * planned else f"EXPTIME ({actual}) < 0.8*PLANTIME ({planned})"


def _not_fine_lock(ds: FileKeys) -> str | None:
    hdr = _ext1(ds)
    if "FGSLOCK" not in hdr or hdr["FGSLOCK"] == "FINE":
        return None
    return f"FGSLOCK = {hdr['FGSLOCK']}"


def _postarg1(ds: FileKeys) -> str | None:
    value = ds.primary.get("POSTARG1", 0.0)
    return None if value == 0.0 else f"POSTARG1 = {value}"


def _postarg2(ds: FileKeys) -> str | None:
    value = ds.primary.get("POSTARG2", 0.0)
    if value == 0.0:
        return None
    if ds.instrument == "STIS":
        if "P1_PURPS" not in ds.primary or ds.primary["P1_PURPS"] == "DITHER":
            return None  # HASP keeps the file when P1_PURPS is missing (KeyError path)
        return f"POSTARG2 = {value} and P1_PURPS != DITHER"
    # HASP drops non-STIS files with POSTARG2 != 0 without printing a reason.
    return f"POSTARG2 = {value}"


def _dither_perpendicular(ds: FileKeys) -> str | None:
    p = ds.primary
    if p.get("PATTERN1") == "STIS-PERP-TO-SLIT" and p.get("P1_FRAME") == "POS-TARG":
        return "PATTERN1 = STIS-PERP-TO-SLIT and P1_FRAME = POS-TARG"
    return None


def _mosaic(ds: FileKeys) -> str | None:
    return "P1_PURPS = MOSAIC" if ds.primary.get("P1_PURPS") == "MOSAIC" else None


def _prism(ds: FileKeys) -> str | None:
    value = ds.primary["OPT_ELEM"]
    return f"OPT_ELEM = {value}" if "PRISM" in value else None


def _cos_boa(ds: FileKeys) -> str | None:
    if ds.instrument == "COS" and ds.primary.get("APERTURE") == "BOA":
        return "COS APERTURE = BOA"
    return None


def _exclude_wave(ds: FileKeys) -> str | None:
    return "TARGNAME = WAVE" if ds.primary["TARGNAME"] == "WAVE" else None


_FILTERS: dict[str, Callable[[FileKeys], str | None]] = {
    "EXPFLAG": _expflag, "ZEROEXPTIME": _zero_exptime, "PLANNEDVSACTUAL": _planned_vs_actual,
    "NOTFINELOCK": _not_fine_lock, "POSTARG1": _postarg1, "POSTARG2": _postarg2,
    "DITHERPERPENDICULARTOSLIT": _dither_perpendicular, "MOSAICPURPOSE": _mosaic,
    "PRISM": _prism, "COSBOA": _cos_boa, "EXCLUDEWAVE": _exclude_wave,
}


def active_filters(keyword_filtering: bool) -> tuple[str, ...]:
    """HASP's filter list: all of them, or only PRISM with ``-k``."""
    return PREFILTERS if keyword_filtering else ("PRISM",)


def prefilter(datasets: list[F], filters: tuple[str, ...]) -> tuple[list[F], list[KeywordFilter]]:
    """Apply the keyword pre-filters in HASP's order; the first failing filter names the reason.

    ``MOVINGTARGET`` is not applied here: HASP applies it to program products only
    (see :func:`qa.engine.grouping.is_moving_target`).
    """
    kept, dropped = [], []
    for ds in datasets:
        for name in PREFILTERS:
            if name not in filters or name not in _FILTERS:
                continue
            reason = _FILTERS[name](ds)
            if reason is not None:
                dropped.append(KeywordFilter(file=ds.name, filter=name, reason=reason,
                                             product_keys=product_keys_of(ds)))
                break
        else:
            kept.append(ds)
    return kept, dropped


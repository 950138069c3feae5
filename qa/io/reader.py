"""Read STIS and COS ``x1d``/``sx1`` files into :mod:`qa.io.model` objects.

Files are opened read-only and never changed. Every problem is raised as
:class:`qa.errors.InputError` naming the file, so a caller can report it and go
on with the other files.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits

from qa.errors import InputError
from qa.io import fitsio
from qa.io.model import (
    ARRAY_COLUMNS,
    COS_VARIANCE_COLUMNS,
    PRIMARY_KEYS,
    REQUIRED_PRIMARY_KEYS,
    REQUIRED_SCI_KEYS,
    SCI_KEYS,
    Dataset,
    Exposure,
)

INSTRUMENTS = ("STIS", "COS")
SPECTRUM_PATTERNS = ("*_x1d.fits", "*_sx1.fits", "*_x1d.fits.gz", "*_sx1.fits.gz")


def find_spectra(directory: str | Path) -> list[Path]:
    """Return the ``*_x1d.fits`` and ``*_sx1.fits`` files of a directory, sorted as HASP sorts them.

    Gzip-compressed ``*.fits.gz`` files count too (HASP itself globs only plain
    files); where both ``X.fits`` and ``X.fits.gz`` exist, only ``X.fits`` is taken,
    so one exposure is never co-added twice.
    """
    directory = Path(directory)
    found = {p for pattern in SPECTRUM_PATTERNS for p in directory.glob(pattern)}
    return sorted((p for p in found if not (p.suffix == ".gz" and p.with_suffix("") in found)), key=str)


def read_dataset(path: str | Path) -> Dataset:
    """Read one calibrated 1-D spectrum file.

    Parameters
    ----------
    path : path-like
        An ``x1d`` or ``sx1`` file of STIS or COS, plain or gzip-compressed.

    Returns
    -------
    Dataset

    Raises
    ------
    InputError
        The file is missing, not FITS, truncated, has no ``SCI`` extension, lacks
        a required column or keyword, or is of an unknown instrument.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file does not exist")
    try:
        buf, hdus = fitsio.read_hdus(path)
        return _build(path, [h.header for h in hdus], lambda i: fitsio.table(buf, hdus[i]))
    except fitsio.FitsFormatError as exc:
        raise InputError(path, str(exc)) from exc
    except fitsio.Unsupported:
        return read_dataset_astropy(path)


def read_dataset_astropy(path: str | Path) -> Dataset:
    """:func:`read_dataset` through astropy.io.fits: slower, for any valid FITS layout."""
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, mode="readonly", memmap=False) as hdul:
                dataset = _build(path, [h.header for h in hdul], lambda i: hdul[i].data)
        except InputError:
            raise
        except Exception as exc:  # astropy signals corrupt files with many exception types
            raise InputError(path, _describe_fits_failure(exc, caught)) from exc
    truncated = [w for w in caught if "truncated" in str(w.message)]
    if truncated:
        raise InputError(path, f"truncated FITS file ({truncated[0].message})")
    return dataset


def _describe_fits_failure(exc: Exception, caught: list) -> str:
    for w in caught:
        if "truncated" in str(w.message):
            return f"truncated FITS file ({w.message})"
    text = str(exc)
    if "SIMPLE" in text or "Empty or corrupt" in text:
        return f"not a FITS file ({text})"
    return f"corrupt or truncated FITS file ({type(exc).__name__}: {text})"


def _build(path: Path, headers: list[Mapping], table: Callable[[int], np.ndarray]) -> Dataset:
    """A Dataset from HDU headers (dict-like) and a function returning HDU ``i``'s table."""
    header0 = headers[0]
    missing = [k for k in REQUIRED_PRIMARY_KEYS if k not in header0]
    if missing:
        raise InputError(path, f"primary header lacks keyword(s) {', '.join(missing)}")
    primary = {k: header0[k] for k in PRIMARY_KEYS if k in header0}
    instrument = str(primary["INSTRUME"]).upper()
    if instrument not in INSTRUMENTS:
        raise InputError(path, f"unknown instrument INSTRUME = {primary['INSTRUME']!r} "
                               f"(expected one of {', '.join(INSTRUMENTS)})")
    dataset = Dataset(path=path, primary=primary)
    for index, header in enumerate(headers):
        if index and header.get("EXTNAME") == "SCI":
            dataset.exposures.append(_read_sci(path, instrument, header, lambda: table(index)))
    if not dataset.exposures:
        raise InputError(path, "no SCI extension")
    return dataset


def _native(column: np.ndarray) -> np.ndarray:
    # Same values in the machine's byte order: arithmetic on big-endian arrays is slower.
    return np.atleast_2d(np.ascontiguousarray(column, dtype=column.dtype.newbyteorder("=")))


def _read_sci(path: Path, instrument: str, header: Mapping,
              table: Callable[[], np.ndarray]) -> Exposure:
    extver = int(header.get("EXTVER", 1))
    where = f"SCI extension {extver}"
    missing = [k for k in REQUIRED_SCI_KEYS if k not in header]
    if missing:
        raise InputError(path, f"{where} lacks keyword(s) {', '.join(missing)}")
    data = table()
    if data is None or len(data) == 0:
        raise InputError(path, f"{where} has no rows")
    names = set(data.dtype.names)
    label_column = "SPORDER" if instrument == "STIS" else "SEGMENT"
    missing = [c for c in (*ARRAY_COLUMNS, label_column) if c not in names]
    if missing:
        raise InputError(path, f"{where} lacks column(s) {', '.join(missing)}")
    values = {k: header[k] for k in SCI_KEYS if k in header}
    values["EXTVER"] = extver
    arrays = {c.lower(): _native(data[c]) for c in ARRAY_COLUMNS}
    if instrument == "STIS":
        labels = [f"order {o}" for o in np.asarray(data["SPORDER"]).astype(int)]
    else:
        labels = [(s.decode() if isinstance(s, bytes) else str(s)).strip() for s in data["SEGMENT"]]
    variance = None
    if instrument == "COS" and all(c in names for c in COS_VARIANCE_COLUMNS):
        variance = sum(_native(data[c]) for c in COS_VARIANCE_COLUMNS)
    return Exposure(path=path, extver=extver, header=values, row_labels=labels,
                    variance=variance, **arrays)


def good_pixel_mask(exposure: Exposure, instrument: str, detector: str) -> np.ndarray:
    """HASP's good-pixel mask: ``(DQ & SDQFLAGS) == 0``, with bit 16 cleared for STIS.

    ullyses removes bit 16 from SDQFLAGS for STIS MAMA only; HASP's own import
    removes it for every STIS detector, and HASP's import is the one that runs.
    """
    sdqflags = exposure.sdqflags
    if instrument == "STIS" and sdqflags & 16:
        sdqflags -= 16
    return (exposure.dq & sdqflags) == 0


def validate_dataset(dataset: Dataset) -> None:
    """Refuse values that make HASP's arithmetic meaningless.

    Raises
    ------
    InputError
        A SCI extension has no good pixel at all, or NaN/infinite FLUX, ERROR,
        NET or WAVELENGTH values in good pixels.
    """
    for exp in dataset.exposures:
        good = good_pixel_mask(exp, dataset.instrument, dataset.detector)
        where = f"SCI extension {exp.extver}"
        if not good.any():
            raise InputError(dataset.path, f"{where}: every pixel of every row is flagged by DQ")
        for name in ("wavelength", "flux", "error", "net"):
            values = getattr(exp, name)[good]
            bad = ~np.isfinite(values)
            if bad.any():
                rows = np.unique(np.nonzero(~np.isfinite(getattr(exp, name)) & good)[0])
                labels = ", ".join(exp.row_labels[r] for r in rows[:5])
                raise InputError(dataset.path, f"{where}: {int(bad.sum())} NaN/infinite {name.upper()} "
                                               f"value(s) in good pixels ({labels})")

"""Read STIS and COS ``x1d``/``sx1`` files into :mod:`qa.io.model` objects.

Files are opened read-only and never changed. Every problem is raised as
:class:`qa.errors.InputError` naming the file, so a caller can report it and go
on with the other files.
"""
from __future__ import annotations

import errno
import glob
import os
import stat
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

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
# Header keywords whose values HASP compares or computes with: a value of another
# type (say EXPTIME = 'abc') would crash the pre-filters or the co-add far from here.
NUMERIC_KEYS = ("CENWAVE", "RA_TARG", "DEC_TARG", "PROPOSID", "MINWAVE", "MAXWAVE", "POSTARG1",
                "POSTARG2", "EXTVER", "EXPTIME", "SDQFLAGS", "EXPSTART", "EXPEND", "PLANTIME")
INTEGER_KEYS = ("PROPOSID", "EXTVER", "SDQFLAGS")
TEXT_KEYS = ("TELESCOP", "INSTRUME", "DETECTOR", "OPT_ELEM", "TARGNAME", "ROOTNAME", "PROPAPER",
             "APERTURE", "OBSMODE", "P1_PURPS", "PATTERN1", "P1_FRAME", "EXPNAME", "EXPFLAG",
             "FGSLOCK")


def find_spectra(directory: str | Path) -> list[Path]:
    """Return the ``*_x1d.fits`` and ``*_sx1.fits`` files of a directory, as HASP finds them.

    HASP uses ``glob.glob``, which skips dot-files (a macOS ``._o4vt08010_x1d.fits``
    is not an input); ``Path.glob`` does not. ``root_dir`` keeps glob characters in
    the directory's own name literal. Sorted by path, as HASP sorts them.

    Gzip-compressed ``*.fits.gz`` files count too (HASP itself globs only plain
    files); where both ``X.fits`` and ``X.fits.gz`` exist, only ``X.fits`` is taken,
    so one exposure is never co-added twice.
    """
    directory = Path(directory)
    found = {directory / name for pattern in SPECTRUM_PATTERNS
             for name in glob.glob(pattern, root_dir=directory)}
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
    problem = not_a_regular_file(path)
    if problem:
        raise InputError(path, problem)
    try:
        buf, hdus = fitsio.read_hdus(path)
        return _build(path, [h.header for h in hdus], lambda i: fitsio.table(buf, hdus[i]))
    except fitsio.FitsFormatError as exc:
        raise InputError(path, str(exc)) from exc
    except fitsio.Unsupported:
        return read_dataset_astropy(path)
    except OSError as exc:
        raise InputError(path, f"cannot be read ({type(exc).__name__}: {exc.strerror or exc})") from exc


def not_a_regular_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a spectrum file, or None when it is a regular file.

    Checked before opening: a FIFO named ``*_x1d.fits`` would block the reader
    forever, and "does not exist" is the wrong word for a directory or a dangling link.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _stat_problem(path, exc)
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a FITS file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a FITS file; it was not opened"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a FITS file"
    return "is a device or other special file, not a FITS file; it was not opened"


def not_a_directory(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as a directory of spectra, or None when it can."""
    path = Path(path)
    try:
        if path.is_dir():
            return None
        os.stat(path)
    except OSError as exc:
        return _stat_problem(path, exc).replace("file does not exist", "does not exist")
    return "is not a directory"


def directory_label(path: str | Path) -> str:
    """A directory's name for labels: its resolved name, its own name if it cannot resolve."""
    path = Path(path)
    try:
        return path.resolve(strict=True).name or str(path)
    except (OSError, RuntimeError):   # RuntimeError: a symbolic link loop (Python < 3.13)
        return path.name or str(path)


def _stat_problem(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (the link resolves to itself)"
    if os.path.islink(path):
        return f"is a dangling symbolic link (to {os.readlink(path)!r}, which does not exist)"
    if exc.errno == errno.ENOENT:
        return "file does not exist"
    return f"cannot be accessed ({type(exc).__name__}: {exc.strerror or exc})"


def read_dataset_astropy(path: str | Path) -> Dataset:
    """:func:`read_dataset` through astropy.io.fits: slower, for any valid FITS layout."""
    path = Path(path)
    problem = not_a_regular_file(path)
    if problem:
        raise InputError(path, problem)
    from astropy.io import fits  # only for layouts the native reader does not take (0.3 s import)

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


def primary_values(path: Path, header0: Mapping) -> dict:
    """The primary-header values HASP reads, checked: required keys, types, instrument.

    Raises
    ------
    InputError
        A required keyword is missing or of the wrong type, or the instrument is unknown.
    """
    missing = [k for k in REQUIRED_PRIMARY_KEYS if k not in header0]
    if missing:
        raise InputError(path, f"primary header lacks keyword(s) {', '.join(missing)}")
    primary = {k: header0[k] for k in PRIMARY_KEYS if k in header0}
    check_header_types(path, "primary header", primary)
    if str(primary["INSTRUME"]).upper() not in INSTRUMENTS:
        raise InputError(path, f"unknown instrument INSTRUME = {primary['INSTRUME']!r} "
                               f"(expected one of {', '.join(INSTRUMENTS)})")
    return primary


def _build(path: Path, headers: list[Mapping], table: Callable[[int], np.ndarray]) -> Dataset:
    """A Dataset from HDU headers (dict-like) and a function returning HDU ``i``'s table."""
    primary = primary_values(path, headers[0])
    instrument = str(primary["INSTRUME"]).upper()
    dataset = Dataset(path=path, primary=primary)
    for index, header in enumerate(headers):
        if index and header.get("EXTNAME") == "SCI":
            dataset.exposures.append(_read_sci(path, instrument, header, lambda: table(index)))
    if not dataset.exposures:
        raise InputError(path, "no SCI extension")
    return dataset


def check_header_types(path: Path, where: str, values: Mapping) -> None:
    """Refuse header values of the wrong type (``EXPTIME = 'abc'``) with an InputError naming them."""
    for key, value in values.items():
        if key in NUMERIC_KEYS:
            wanted = "an integer" if key in INTEGER_KEYS else "a number"
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
                (key not in INTEGER_KEYS or isinstance(value, int)) and np.isfinite(value)
        elif key in TEXT_KEYS:
            wanted, ok = "a string", isinstance(value, str)
        else:
            continue
        if not ok:
            raise InputError(path, f"{where}: keyword {key} = {value!r} ({type(value).__name__}); "
                                   f"expected {wanted}")


def _native(column: np.ndarray) -> np.ndarray:
    # Same values in the machine's byte order: arithmetic on big-endian arrays is slower.
    return np.atleast_2d(np.ascontiguousarray(column, dtype=column.dtype.newbyteorder("=")))


def _read_sci(path: Path, instrument: str, header: Mapping,
              table: Callable[[], np.ndarray]) -> Exposure:
    check_header_types(path, "SCI extension header", {"EXTVER": header.get("EXTVER", 1)})
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
    check_header_types(path, where, values)
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

    A fully flagged SCI extension is not refused: HASP co-adds the file's other
    extensions (``qa.engine.native.dead_extensions`` reports it as a finding).

    Raises
    ------
    InputError
        NaN/infinite FLUX, ERROR, NET or WAVELENGTH values in good pixels.
    """
    for exp in dataset.exposures:
        good = good_pixel_mask(exp, dataset.instrument, dataset.detector)
        where = f"SCI extension {exp.extver}"
        if good.any() and not (good & (exp.flux != 0)).any():
            # HASP weights by EXPTIME * NET / FLUX: zero flux makes every weight of the
            # exposure infinite or NaN, and the archive code then fails on the whole product.
            raise InputError(dataset.path, f"{where}: FLUX is zero in every good pixel (HASP's "
                                           "weight EXPTIME * NET / FLUX is undefined)")
        for name in ("wavelength", "flux", "error", "net"):
            values = getattr(exp, name)
            if np.isfinite(values).all():  # the usual case, without masking
                continue
            bad = ~np.isfinite(values) & good
            if bad.any():
                rows = np.unique(np.nonzero(bad)[0])
                labels = ", ".join(exp.row_labels[r] for r in rows[:5])
                raise InputError(dataset.path, f"{where}: {int(bad.sum())} NaN/infinite {name.upper()} "
                                               f"value(s) in good pixels ({labels})")

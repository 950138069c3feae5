"""Read a spectrum file up to its headers: what collection needs to group and pre-filter it.

The header units are read block by block and the data units are skipped with a
seek, so listing a program costs a few kB per file whatever the size of its
spectra. A data unit that the file is too short to hold is reported here already
(a truncated download), without reading it.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import BinaryIO

from qa.errors import InputError
from qa.io import fitsio
from qa.io.model import REQUIRED_SCI_KEYS, SCI_KEYS, FileHeaders
from qa.io.reader import check_header_types, not_a_regular_file, primary_values

_END = b"END" + b" " * 77


def _header_units(f: BinaryIO, size: int | None) -> list[dict[str, object]]:
    """Keyword values of every HDU; ``size`` (bytes) None for a compressed stream."""
    headers = []
    pos = 0
    while True:
        raw = b""
        while True:
            block = f.read(fitsio.BLOCK)
            if not block:
                if not headers and not raw:
                    raise fitsio.FitsFormatError("not a FITS file (it is empty)")
                if raw:
                    raise fitsio.FitsFormatError("truncated FITS file: a header has no END card")
                return headers
            raw += block
            if not headers and not raw.startswith(b"SIMPLE  ="):
                raise fitsio.FitsFormatError("not a FITS file (it does not start with a SIMPLE card)")
            if any(block[i:i + fitsio.CARD] == _END for i in range(0, len(block), fitsio.CARD)):
                break
        header, length = fitsio._parse_header(raw, 0)  # noqa: SLF001 - same package
        nbytes = fitsio._data_bytes(header)  # noqa: SLF001
        pos += length
        padded = -(-nbytes // fitsio.BLOCK) * fitsio.BLOCK
        if size is not None and pos + nbytes > size:
            raise fitsio.FitsFormatError(f"truncated FITS file: HDU {len(headers)} needs "
                                         f"{pos + nbytes} bytes, the file has {size}")
        headers.append(header)
        pos += padded
        f.seek(pos)


def _astropy_headers(path: Path) -> list[dict[str, object]]:
    from astropy.io import fits  # only for layouts the fast parser leaves out
    try:
        with fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
            return [dict(h.header) for h in hdul]
    except Exception as exc:  # astropy signals corrupt files with many exception types
        raise InputError(path, f"corrupt FITS file ({type(exc).__name__}: {exc})") from exc


def read_file_headers(path: str | Path) -> FileHeaders:
    """The primary and SCI header values of one ``x1d``/``sx1`` file, without its data.

    Raises
    ------
    InputError
        Not a file, not FITS, truncated, no ``SCI`` extension, a required keyword
        missing, or an unknown instrument: the same problems :func:`qa.io.reader.read_dataset`
        reports from headers.
    """
    path = Path(path)
    problem = not_a_regular_file(path)
    if problem:
        raise InputError(path, problem)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                headers = _header_units(f, None)
        else:
            with open(path, "rb") as f:
                headers = _header_units(f, path.stat().st_size)
    except fitsio.FitsFormatError as exc:
        raise InputError(path, str(exc)) from exc
    except fitsio.Unsupported:
        headers = _astropy_headers(path)
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    primary = primary_values(path, headers[0])
    sci = []
    for h in headers[1:]:
        if h.get("EXTNAME") != "SCI":
            continue
        check_header_types(path, "SCI extension header", {"EXTVER": h.get("EXTVER", 1)})
        extver = int(h.get("EXTVER", 1))
        lacking = [k for k in REQUIRED_SCI_KEYS if k not in h]
        if lacking:
            raise InputError(path, f"SCI extension {extver} lacks keyword(s) {', '.join(lacking)}")
        values = {k: h[k] for k in SCI_KEYS if k in h}
        check_header_types(path, f"SCI extension {extver}", values)
        values["EXTVER"] = extver
        sci.append(values)
    if not sci:
        raise InputError(path, "no SCI extension")
    return FileHeaders(path=path, primary=primary, sci=sci)

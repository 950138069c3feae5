"""A small, fast reader for plain FITS files: header values and fixed-width binary tables.

astropy.io.fits builds a Card object per header line and a Column object per
table field; for the ~100 keywords and ~20 columns of an x1d file that costs
~5 ms, more than co-adding it. This module parses the 80-character cards and
maps a binary table onto one numpy dtype. It covers what HST x1d files use;
anything else raises :class:`Unsupported` and the caller reads the file with
astropy instead. Gzip-compressed files (``*_x1d.fits.gz``, recognised by their
magic bytes, as astropy does) are decompressed in memory.
"""
from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 2880
CARD = 80
GZIP_MAGIC = b"\x1f\x8b"
# HST x1d/sx1 files are a few MB; anything that decompresses beyond this is refused.
MAX_DECOMPRESSED = 128 << 20
_TFORM = re.compile(r"^\s*(\d*)\s*([LXBIJKAEDCM])\s*$")
_TFORM_DTYPE = {"L": "S1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8",
                "C": ">c8", "M": ">c16"}


class FitsFormatError(Exception):
    """The bytes are not a (complete) FITS file."""


class Unsupported(Exception):
    """Valid FITS this reader does not handle (scaled or variable-length columns, ...)."""


@dataclass
class Hdu:
    """One header-data unit: its keyword values and where its data lie in the file."""

    header: dict[str, object]
    data_offset: int
    data_bytes: int


def _value(text: str) -> object:
    """A card's value field (after ``= ``): string, logical, integer, float or None."""
    text = text.lstrip()
    if text.startswith("'"):
        i = 1
        while True:
            j = text.find("'", i)
            if j < 0:
                raise FitsFormatError(f"unterminated string in header card: {text[:40]!r}")
            if text[j + 1:j + 2] == "'":
                i = j + 2
                continue
            return text[1:j].replace("''", "'").rstrip()
    field = text.split("/", 1)[0].strip()
    if field in ("T", "F"):
        return field == "T"
    if not field:
        return None
    try:
        return int(field)
    except ValueError:
        pass
    try:
        return float(field.replace("D", "E"))
    except ValueError:
        raise Unsupported(f"header value {field!r}") from None


def _parse_header(buf: bytes, start: int) -> tuple[dict[str, object], int]:
    """Keyword values of the header at ``start`` and the offset just past it."""
    header: dict[str, object] = {}
    pos = start
    last = None
    while True:
        if pos + CARD > len(buf):
            raise FitsFormatError("truncated FITS file: a header has no END card")
        card = buf[pos:pos + CARD].decode("ascii", errors="replace")
        pos += CARD
        key = card[:8].rstrip()
        if key == "END":
            break
        if key == "CONTINUE" and isinstance(header.get(last), str) and header[last].endswith("&"):
            header[last] = header[last][:-1] + str(_value(card[8:]))
        elif card[8:10] == "= " and key not in header:
            header[key] = _value(card[10:])
            last = key
    return header, start + -(-(pos - start) // BLOCK) * BLOCK


def _data_bytes(header: dict[str, object]) -> int:
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    size = abs(int(header["BITPIX"])) // 8
    for i in range(1, naxis + 1):
        size *= int(header[f"NAXIS{i}"])
    return int(header.get("GCOUNT", 1)) * (size + int(header.get("PCOUNT", 0)))


def read_bytes(path: str | Path) -> bytes:
    """The file's FITS bytes: its content, decompressed when it is gzip-compressed.

    Raises
    ------
    FitsFormatError
        A gzip stream that is cut short or corrupt.
    """
    buf = Path(path).read_bytes()
    if not buf.startswith(GZIP_MAGIC):
        return buf
    try:
        return _gunzip(buf, MAX_DECOMPRESSED)
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise FitsFormatError(f"corrupt or truncated gzip file ({exc})") from exc


def _gunzip(buf: bytes, limit: int) -> bytes:
    """``gzip.decompress`` that stops at ``limit`` bytes: a small gzip bomb must not fill memory."""
    parts, total, data = [], 0, buf
    while data:
        stream = zlib.decompressobj(wbits=31)
        while True:
            chunk = stream.decompress(data, limit - total + 1)
            total += len(chunk)
            if total > limit:
                raise FitsFormatError(f"gzip data expand to more than {limit >> 20} MiB; no x1d/sx1 "
                                      "file is that large (a gzip bomb?), so it was not read")
            parts.append(chunk)
            data = stream.unconsumed_tail
            if stream.eof or not data:
                break
        if not stream.eof:
            raise FitsFormatError("corrupt or truncated gzip file (the stream ends early)")
        data = stream.unused_data.lstrip(b"\0")   # gzip allows zero padding between members
    return b"".join(parts)


def read_hdus(path: str | Path) -> tuple[bytes, list[Hdu]]:
    """The file's (decompressed) bytes and its HDUs.

    Raises
    ------
    FitsFormatError
        Not FITS, a corrupt gzip stream, or a header or data unit is cut short.
    """
    buf = read_bytes(path)
    if not buf.startswith(b"SIMPLE  ="):
        raise FitsFormatError("not a FITS file (it does not start with a SIMPLE card)")
    hdus = []
    pos = 0
    while pos < len(buf):
        header, data_offset = _parse_header(buf, pos)
        nbytes = _data_bytes(header)
        if data_offset + nbytes > len(buf):
            raise FitsFormatError(f"truncated FITS file: HDU {len(hdus)} needs "
                                  f"{data_offset + nbytes} bytes, the file has {len(buf)}")
        hdus.append(Hdu(header, data_offset, nbytes))
        pos = data_offset + -(-nbytes // BLOCK) * BLOCK
    return buf, hdus


def table(buf: bytes, hdu: Hdu) -> np.ndarray:
    """The rows of a binary-table HDU as a (big-endian) numpy record array.

    Raises
    ------
    Unsupported
        Not a plain BINTABLE: scaled (TSCALn/TZEROn) or variable-length columns.
    """
    h = hdu.header
    if h.get("XTENSION") != "BINTABLE" or h.get("PCOUNT", 0) or \
            any(k.startswith(("TSCAL", "TZERO")) for k in h):
        raise Unsupported("not a plain binary table")
    fields = []
    for i in range(1, int(h.get("TFIELDS", 0)) + 1):
        m = _TFORM.match(str(h.get(f"TFORM{i}", "")))
        if m is None:
            raise Unsupported(f"column format {h.get(f'TFORM{i}')!r}")
        repeat, code = int(m.group(1) or 1), m.group(2)
        name = str(h.get(f"TTYPE{i}", f"col{i}"))
        if code == "A":
            fields.append((name, f"S{repeat}"))
        elif code == "X":
            fields.append((name, "u1", ((repeat + 7) // 8,)))
        else:
            fields.append((name, _TFORM_DTYPE[code], (repeat,) if repeat > 1 else ()))
    dtype = np.dtype(fields)
    if dtype.itemsize != h["NAXIS1"]:
        raise Unsupported("row length does not match the column formats")
    return np.frombuffer(buf, dtype=dtype, count=int(h["NAXIS2"]), offset=hdu.data_offset)

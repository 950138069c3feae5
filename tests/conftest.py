"""Shared fixtures: the real STIS files in tests/data/real and copies derived from them."""
from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

REAL_DATA = Path(__file__).resolve().parent / "data" / "real"


def read_sums(path: Path) -> dict[str, str]:
    """``{file name: sha256 hex}`` from a ``sha256sum`` output file."""
    sums = {}
    for line in path.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.lstrip("*")] = digest
    return sums


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory) -> Path:
    """A read-only directory of the real STIS x1d files, decompressed and verified.

    The repository keeps them gzip-compressed (``tests/data/real/*.fits.gz``); tests,
    the ``hasp`` engine and astropy get the archive's plain ``*_x1d.fits`` bytes,
    checked against ``SHA256SUMS`` so a test never runs on altered data.
    """
    out = tmp_path_factory.mktemp("real")
    for name, digest in read_sums(REAL_DATA / "SHA256SUMS").items():
        data = gzip.decompress((REAL_DATA / f"{name}.gz").read_bytes())
        actual = hashlib.sha256(data).hexdigest()
        assert actual == digest, f"{name}.gz decompresses to sha256 {actual}, SHA256SUMS says {digest}"
        dest = out / name
        dest.write_bytes(data)
        dest.chmod(0o444)
    out.chmod(0o555)
    return out


def derive_copy(src: Path, dest_dir: Path, rootname: str, *, flux_scale: float = 1.0,
                flag_rows: tuple[int, ...] = (), flag_fraction: float = 0.0, seed: int = 0,
                primary: dict | None = None, sci: dict | None = None) -> Path:
    """Write a modified copy of a real file under a new HST name (the source is only read).

    FLUX and ERROR are multiplied by ``flux_scale`` (as the tutorial scales them);
    ``flag_rows`` get DQ 4 on every pixel, and ``flag_fraction`` of the other pixels
    get DQ 4 at random.
    """
    dest = Path(dest_dir) / f"{rootname}_x1d.fits"
    rng = np.random.default_rng(seed)
    with fits.open(src, memmap=False) as hdul:
        out = fits.HDUList([h.copy() for h in hdul])
    out[0].header["ROOTNAME"] = rootname
    out[0].header["FILENAME"] = dest.name
    for key, value in (primary or {}).items():
        out[0].header[key] = value
    for hdu in out[1:]:
        if hdu.header.get("EXTNAME") != "SCI":
            continue
        d = hdu.data
        d["FLUX"] = d["FLUX"] * np.float32(flux_scale)
        d["ERROR"] = d["ERROR"] * np.float32(flux_scale)
        dq = d["DQ"]
        if flag_fraction:
            dq[rng.random(dq.shape) < flag_fraction] |= 4
        for r in flag_rows:
            dq[r] |= 4
        d["DQ"] = dq
        for key, value in (sci or {}).items():
            hdu.header[key] = value
    out.writeto(dest)
    return dest


def derive_visit(real_dir: Path, dest: Path, scales=(1.0, 0.9, 0.75), *, e230m: bool = True) -> Path:
    """A program directory as the tests use it: one E140M visit of copies of o4vt02040
    (o5jy03010, 020, 030 at ``scales``, the faintest rejected by default) and, with
    ``e230m``, the real E230M file o3zx02070."""
    dest.mkdir(parents=True, exist_ok=True)
    for root, scale in zip(("o5jy03010", "o5jy03020", "o5jy03030"), scales):
        derive_copy(real_dir / "o4vt02040_x1d.fits", dest, root, flux_scale=scale)
    if e230m:
        shutil.copy(real_dir / "o3zx02070_x1d.fits", dest)
    return dest


@pytest.fixture(scope="module")
def data_dir(real_dir: Path, tmp_path_factory) -> Path:
    """Program 8016 of :func:`derive_visit`, shared by a test module."""
    return derive_visit(real_dir, tmp_path_factory.mktemp("data") / "8016")

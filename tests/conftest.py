"""Shared fixtures: the real STIS files in ../shared and copies derived from them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

REAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The read-only directory of real STIS x1d files."""
    assert REAL_DIR.is_dir(), f"{REAL_DIR} missing: CI clones the repo beside ../shared"
    return REAL_DIR


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

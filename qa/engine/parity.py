"""Compare two engine results: the definition of "the engines agree"."""
from __future__ import annotations

import numpy as np

from qa.results import EngineResult, Product

ARRAYS = ("wavelength", "flux", "error", "snr", "eff_exptime")


def differences(a: EngineResult, b: EngineResult, rtol: float = 1e-6) -> list[str]:
    """Every way ``a`` and ``b`` disagree; an empty list means they agree.

    Compared: input errors, keyword-filtered files and filters, the set of
    products, and per product the inputs, findings, kept and rejected files (with
    iteration and rows), the grid (exactly), co-add FLUX/ERROR/SNR/EFF_EXPTIME and every row's
    scaled median (relative ``rtol``; NaN equals NaN) and N (exactly).
    """
    out = []
    if a.input_errors.keys() != b.input_errors.keys():
        out.append(f"input errors differ: {sorted(a.input_errors)} vs {sorted(b.input_errors)}")
    kwa = sorted((k.file, k.filter) for k in a.keyword_filtered)
    kwb = sorted((k.file, k.filter) for k in b.keyword_filtered)
    if kwa != kwb:
        out.append(f"keyword filtering differs: {kwa} vs {kwb}")
    pa = {p.key: p for p in a.products}
    pb = {p.key: p for p in b.products}
    if pa.keys() != pb.keys():
        out.append(f"products differ: {sorted(pa)} vs {sorted(pb)}")
    for key in sorted(pa.keys() & pb.keys()):
        out += [f"{key}: {d}" for d in _product_differences(pa[key], pb[key], rtol)]
    return out


def _product_differences(a: Product, b: Product, rtol: float) -> list[str]:
    out = []
    for attr in ("inputs", "kept", "filename", "iterations", "findings"):
        if getattr(a, attr) != getattr(b, attr):
            out.append(f"{attr}: {getattr(a, attr)!r} vs {getattr(b, attr)!r}")
    ra = [(r.file, r.iteration, r.rows) for r in a.rejected]
    rb = [(r.file, r.iteration, r.rows) for r in b.rejected]
    if ra != rb:
        out.append(f"rejections: {ra} vs {rb}")
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None):
            out.append(f"{name}: present in only one result")
        elif x is not None:
            if x.shape != y.shape:
                out.append(f"{name}: shape {x.shape} vs {y.shape}")
            elif name == "wavelength" and not np.array_equal(x, y):
                out.append("wavelength grids differ")
            elif not np.allclose(x, y, rtol=rtol, atol=0.0, equal_nan=True):
                worst = _worst_relative(x, y)
                out.append(f"{name}: max relative difference {worst:.3g} > {rtol}")
    sa = {(r.file, r.extver, r.row, r.iteration): r for r in a.row_stats}
    sb = {(r.file, r.extver, r.row, r.iteration): r for r in b.row_stats}
    if sa.keys() != sb.keys():
        out.append(f"row statistics cover different rows ({len(sa)} vs {len(sb)})")
    for k in sa.keys() & sb.keys():
        if sa[k].n != sb[k].n:
            out.append(f"N of {k}: {sa[k].n} vs {sb[k].n}")
        if not np.isclose(sa[k].scaled_median, sb[k].scaled_median, rtol=rtol, atol=0.0,
                          equal_nan=True):
            out.append(f"scaled median of {k}: {sa[k].scaled_median} vs {sb[k].scaled_median}")
    return out


def _worst_relative(x: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        rel = np.abs(x - y) / np.abs(y)
    both_nan = np.isnan(x) & np.isnan(y)
    return float(np.nanmax(np.where(both_nan, 0.0, np.where(np.isnan(rel), np.inf, rel))))

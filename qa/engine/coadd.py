"""HASP's co-add and flux-filter arithmetic (ullyses ``SegmentList``), vectorized.

The archive code loops over every pixel in Python; here each step is one numpy
call over all rows of a product, held as ``(rows, pixels)`` matrices
(``np.add.at`` for the accumulations, one row-wise sort of all deviations for
the per-row medians). A run computes each exposure's matrices once, for all
products of its setting (:func:`flatten_rows`). Flagged pixels stay in the
matrices but add ``-0.0``, the exact identity of floating-point addition, so
sums keep HASP's values and order. Dtypes follow the archive code on purpose:
its products are computed in float32 (FITS columns times Python floats) and
summed into float64 bins in input order, and ``np.add.at`` sums in the same
order, so the two engines agree to the last bit or close to it.

Where the archive code has a quirk, this module reproduces it so that its
verdicts match the archive's; each is listed in ``QUIRKS`` (and the README).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qa.io.model import Dataset, Exposure
from qa.io.reader import good_pixel_mask

QUIRKS = {
    "error-interpolation": (
        "Where the counts-to-flux conversion of a co-add bin is NaN, ullyses interpolates it "
        "at output_wavelength[bad] with `bad` indexing the subset of non-zero-weight bins, not "
        "the grid; the wavelengths used are therefore shifted. Reproduced: it only changes ERROR "
        "and SNR of bins whose flux and net counts are both zero."),
    "infinite-weights": (
        "A good pixel with FLUX = 0 and NET != 0 has an infinite weight EXPTIME*NET/FLUX, which "
        "makes its co-add bin NaN. Reproduced; the reader refuses NaN/infinite values in good "
        "pixels, and a NaN scaled median never passes silently: flux_variance reports it as a failure."),
    "row-bookkeeping": (
        "hasp 1.2.5 appends every row to list_of_segments (the row/statistics misalignment the "
        "primer describes for older versions does not occur), so rows are blamed correctly; "
        "statistics here are indexed by row throughout."),
    "single-row": (
        "A product of a single row is never tested (its statistic is defined as 0): it always "
        "passes the flux filter. hasp then reports N as the row record's column count, not a "
        "pixel count; both engines here report N = 0."),
    "cross-program-all-rejected": (
        "With -x, when the flux filter removes every file of a product, hasp's processmode "
        "returns the last co-add (of the files it has just removed) and writes it. Reproduced: "
        "the product keeps those files and arrays, lists them as rejected too, and carries a "
        "finding. Visit and program products write nothing in that case."),
    "nan-median": (
        "A row whose deviations include NaN has a NaN median; `NaN < threshold` is False, so "
        "HASP keeps the file. Reproduced in the verdict; the row statistic stays NaN."),
}


@dataclass
class Rows:
    """All rows of a product's files in HASP's member order, as ``(nrows, npix)`` matrices.

    Built once per run and setting (:func:`flatten_rows`), each exposure's
    quantities computed once; a product's rows are a :meth:`subset` of these and
    flux-filter iterations select rows with a mask. Flagged pixels
    (``(DQ & SDQFLAGS) != 0``) hold ``-0.0`` in the accumulated quantities, so
    that they change no sum, and are never tested.
    Per-pixel values keep the archive's dtypes.
    """

    row_file: np.ndarray        # (nrows,) index into the product's files
    row_exp: list[Exposure]     # (nrows,) exposure of each row
    row_index: np.ndarray       # (nrows,) row number within the exposure
    row_exptime: np.ndarray     # (nrows,) EXPTIME
    row_min: np.ndarray         # (nrows,) min/max wavelength over all pixels (HASP's grid)
    row_max: np.ndarray
    row_maxdiff: np.ndarray     # (nrows,) largest pixel spacing
    row_ngood: np.ndarray       # (nrows,) good pixels
    row_good_min: np.ndarray    # (nrows,) good-pixel wavelength range, for reports
    row_good_max: np.ndarray
    wavelength: np.ndarray      # (nrows, npix) float64
    flux: np.ndarray            # float32
    error: np.ndarray           # float32
    testable: np.ndarray        # bool: good and ERROR != 0 (HASP's statistic looks at these)
    exptime: np.ndarray         # EXPTIME at good pixels, -0.0 elsewhere
    weight: np.ndarray          # float64 holding the archive's float32 (or float64) weights
    flux_weight: np.ndarray     # flux * weight, computed in the archive's dtype
    gcounts: np.ndarray | None  # |GROSS * EXPTIME|, STIS MAMA only (the error of its co-add)
    net_counts: np.ndarray      # NET * EXPTIME
    variance: np.ndarray | None  # COS only
    sq_error_weight: np.ndarray | None  # STIS CCD only: (ERROR * weight) ** 2
    # Output bin of every pixel for the last grid (lo, delta, size) used: removing a file
    # rarely changes the grid, so later iterations reuse it.
    bins: dict = field(default_factory=dict, repr=False)
    # Where a subset's rows sit in the stack it was taken from: per-pixel values that do
    # not depend on the co-add (the deviation's denominator) are computed there once.
    source: tuple[Rows, slice | np.ndarray] | None = field(default=None, repr=False)
    _denominators: dict = field(default_factory=dict, repr=False)

    @property
    def nrows(self) -> int:
        return len(self.row_exp)

    def subset(self, files: list[int]) -> Rows:
        """The rows of the files at positions ``files`` (numbered 0.. in the result).

        Views when the files are consecutive, which a visit's are within its
        program's files (both sorted by path); a copy otherwise.
        """
        files = np.asarray(files, dtype=np.intp)
        if files.size and np.array_equal(files, np.arange(files[0], files[0] + files.size)):
            lo, hi = np.searchsorted(self.row_file, [files[0], files[-1] + 1])
            sel: slice | np.ndarray = slice(int(lo), int(hi))
            row_exp = self.row_exp[sel]
        else:
            sel = np.flatnonzero(np.isin(self.row_file, files))
            row_exp = [self.row_exp[r] for r in sel]
        # Files may have no rows (every segment dropped): size by the files asked for too.
        renumber = np.zeros(int(max(self.row_file.max(initial=-1), files.max(initial=-1))) + 1,
                            dtype=np.intp)
        renumber[files] = np.arange(files.size)
        arrays = {k: (None if getattr(self, k) is None else getattr(self, k)[sel])
                  for k in (*_MATRICES, *_ROW_FIELDS, "row_index", "row_exptime")}
        return Rows(row_file=renumber[self.row_file[sel]], row_exp=row_exp, **arrays,
                    source=(self, sel))

    def denominator(self, snrmax: float) -> np.ndarray:
        """``max(ERROR, FLUX / snrmax)`` of every pixel, in FLUX's dtype as the archive code has it.

        It depends on the files only, not on the co-add: computed once per stack and
        ``snrmax``, whichever product and iteration asks.
        """
        if self.source is not None:
            stack, sel = self.source
            return stack.denominator(snrmax)[sel]
        if snrmax not in self._denominators:
            # flux / snrmax and Python's max() with ERROR happen in float32 in the archive
            # code. Python's max(error, min_error) keeps error unless min_error is larger;
            # fmax does the same for every value a tested pixel can hold (ERROR is finite,
            # FLUX may not be).
            denom = self.flux / float(snrmax)   # in FLUX's dtype, as flux / snrmax in Python
            np.fmax(self.error, denom, out=denom)
            self._denominators = {snrmax: denom}
        return self._denominators[snrmax]

    def rows_of(self, files: np.ndarray) -> np.ndarray:
        """Boolean row mask of the files whose indices are in ``files``."""
        return np.isin(self.row_file, files)


@dataclass
class Coadd:
    """A co-added spectrum on HASP's grid (full grid, not trimmed).

    :func:`coadd` sums what the flux filter compares with (flux, exposure time);
    ERROR and SNR, which only the final co-add of a product needs, are added by
    :func:`add_errors`.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    eff_exptime: np.ndarray
    idx: np.ndarray             # (active rows, npix) output bin of every pixel
    rows: slice | np.ndarray    # the co-added rows (Rows matrices' first index)
    sumweight: np.ndarray | None = None
    error: np.ndarray | None = None
    snr: np.ndarray | None = None

    def trimmed(self) -> tuple[np.ndarray, ...]:
        """Arrays between the first and last bin with exposure time, as HASP writes them."""
        good = np.nonzero(self.eff_exptime != 0.0)[0]
        sl = slice(good[0], good[-1] + 1) if good.size else slice(0, 0)
        return tuple(a[sl] for a in (self.wavelength, self.flux, self.error, self.snr, self.eff_exptime))


@dataclass
class RowStatistics:
    """Per-row flux-filter statistic of one iteration (rows outside the co-add are 0)."""

    n: np.ndarray               # qualifying pixels per row
    median_deviation: np.ndarray
    scaled_median: np.ndarray


def _stis_weights(exp: Exposure) -> np.ndarray:
    # ullyses weight_function['throughput']: exptime (Python float) * NET/FLUX, kept in float32.
    return np.abs(exp.exptime * (exp.net / exp.flux))


# Accumulated quantities: -0.0 at flagged pixels.
_SUMMED = ("exptime", "weight", "flux_weight", "gcounts", "net_counts", "variance", "sq_error_weight")
_MATRICES = ("wavelength", "flux", "error", "testable", *_SUMMED)
_ROW_FIELDS = ("row_min", "row_max", "row_maxdiff", "row_ngood", "row_good_min", "row_good_max")
# Pixels beyond an exposure's width (a rare layout) are flagged and never tested.
_PAD = {"testable": False, "flux": 0.0, "error": 0.0}


# Distance (in float32 units in the last place) from a rounding midpoint within which
# libm's powf, which a float32 scalar ``x ** 2`` calls, may round differently from
# the exact square. Measured: the largest such distance over 3 million random
# values was 0.0016 ulp; 0.01 leaves a wide margin and sends ~2 % of pixels to the
# scalar path.
_POWF_MARGIN_ULP = 0.01


def scalar_square_float32(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` as ullyses' CCD co-add computes it: one float32 numpy scalar at a time.

    A float32 scalar power calls libm's ``powf``, which is not correctly rounded;
    the vectorized square (exact ``x * x`` rounded once) differs from it in about
    one pixel in 1,400, by one unit in the last place. The exact square is used
    wherever it lies clearly away from a float32 rounding midpoint (where both
    must agree); the remaining pixels are squared as scalars, exactly like HASP.
    """
    x = np.asarray(x, dtype=np.float32)
    exact = x.astype(np.float64) ** 2
    out = exact.astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        # Position of the exact square between float32 neighbours, in ulps (0 = on one).
        frac = np.abs(exact - out.astype(np.float64)) / np.spacing(out).astype(np.float64)
        near = ~(np.abs(0.5 - frac) >= _POWF_MARGIN_ULP)  # NaN/inf cases go scalar too
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for i in np.flatnonzero(near.reshape(-1)):
        flat_out[i] = flat_x[i] ** 2
    return out


def exposure_pixels(exp: Exposure, instrument: str, detector: str) -> dict[str, np.ndarray | None]:
    """Per-row and per-pixel quantities of one exposure, in the archive's arithmetic."""
    good = good_pixel_mask(exp, instrument, detector)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if instrument == "COS":
            thru = exp.net / exp.flux
            weight = np.abs(thru * exp.exptime)  # float32, as for a row without NaNs
            flux_weight = (exp.flux * weight).astype(np.float64)
            weight = weight.astype(np.float64)
            for r in np.nonzero(np.isnan(thru).any(axis=1))[0]:
                x = np.arange(thru.shape[1])
                ok = ~np.isnan(thru[r])
                weight[r] = np.abs(np.interp(x, x[ok], thru[r][ok]) * exp.exptime)
                flux_weight[r] = exp.flux[r] * weight[r]
        else:
            w32 = _stis_weights(exp)
            weight, flux_weight = w32.astype(np.float64), (exp.flux * w32).astype(np.float64)
        gcounts = np.abs(exp.gross * exp.exptime)
        summed = {
            "exptime": np.full(exp.wavelength.shape, exp.exptime), "weight": weight,
            "flux_weight": flux_weight, "net_counts": exp.net * exp.exptime,
            "gcounts": gcounts if instrument == "STIS" and detector != "CCD" else None,
            # Without VARIANCE_* columns ullyses falls back to gross counts.
            "variance": (exp.variance if exp.variance is not None else gcounts)
            if instrument == "COS" else None,
            "sq_error_weight": scalar_square_float32(exp.error * w32)
            if instrument == "STIS" and detector == "CCD" else None,
        }
        # Float64 (float32 values convert exactly), -0.0 at flagged pixels: added without effect.
        out = {k: (np.where(good, v, -0.0).astype(np.float64, copy=False) if v is not None else None)
               for k, v in summed.items()}
        wl = exp.wavelength
        good_wl = np.where(good, wl, np.nan)
        ngood = good.sum(axis=1)
        out.update({
            "wavelength": wl, "flux": exp.flux, "error": exp.error,
            "testable": good & (exp.error != 0.0),
            "row_min": wl.min(axis=1), "row_max": wl.max(axis=1),
            "row_maxdiff": (np.diff(wl, axis=1).max(axis=1) if wl.shape[1] > 1
                            else np.full(wl.shape[0], -np.inf)),
            "row_ngood": ngood,
            "row_good_min": np.where(ngood > 0, np.fmin.reduce(good_wl, axis=1), np.nan),
            "row_good_max": np.where(ngood > 0, np.fmax.reduce(good_wl, axis=1), np.nan),
        })
    return out


def flatten_rows(datasets: list[Dataset], instrument: str, detector: str,
                 drop_segments: tuple[str, ...] = ()) -> Rows:
    """Stack every row of every exposure of ``datasets`` in HASP's member order.

    Each exposure's quantities are computed once and written straight into
    matrices allocated for all rows. A run stacks the files of all products of
    one setting together; each product takes its rows with :meth:`Rows.subset`
    (views when its files are consecutive, as a visit's are within its program).

    Parameters
    ----------
    datasets : list of Dataset
        Files in the order HASP imports them.
    instrument, detector : str
        Select the weighting and error rules.
    drop_segments : tuple of str
        COS segments HASP leaves out for this setting (``BAD_SEGMENTS``).
    """
    layout = []  # (file index, exposure, rows kept)
    for ifile, ds in enumerate(datasets):
        for exp in ds.exposures:
            kept = np.array([i for i, lab in enumerate(exp.row_labels) if lab not in drop_segments],
                            dtype=np.intp)
            if kept.size:
                layout.append((ifile, exp, kept))
    nrows = sum(kept.size for _, _, kept in layout)
    width = max((exp.wavelength.shape[1] for _, exp, _ in layout), default=0)
    flat: dict[str, np.ndarray | None] = {k: None for k in (*_MATRICES, *_ROW_FIELDS)}
    start = 0
    for ifile, exp, kept in layout:
        px = exposure_pixels(exp, instrument, detector)
        sel = slice(None) if kept.size == exp.nrows else kept
        stop = start + kept.size
        for k, v in px.items():
            if v is None:
                continue
            if flat[k] is None:
                flat[k] = np.empty((nrows, width) if k in _MATRICES else nrows, dtype=v.dtype)
            elif np.result_type(flat[k], v) != flat[k].dtype:
                # A file with wider columns (FLUX stored as float64, say): promote the rows
                # written so far, as concatenating the matrices would.
                wider = np.empty(flat[k].shape, dtype=np.result_type(flat[k], v))
                wider[:start] = flat[k][:start]
                flat[k] = wider
            if k not in _MATRICES:
                flat[k][start:stop] = v[sel]
                continue
            w = v.shape[1]
            flat[k][start:stop, :w] = v[sel]
            if w < width:  # a rare layout: pad with pixels that are flagged and in the grid
                flat[k][start:stop, w:] = v[sel][:, :1] if k == "wavelength" else _PAD.get(k, -0.0)
        start = stop
    for k in _ROW_FIELDS:
        if flat[k] is None:
            flat[k] = np.zeros(0)
    return Rows(row_file=np.repeat([f for f, _, _ in layout],
                                   [kept.size for _, _, kept in layout]).astype(np.intp),
                row_exp=[exp for _, exp, kept in layout for _ in kept],
                row_index=np.concatenate([kept for _, _, kept in layout]) if layout
                else np.zeros(0, dtype=np.intp),
                row_exptime=np.array([exp.exptime for _, exp, kept in layout for _ in kept],
                                     dtype=np.float64),
                **flat)


def output_grid(rows: Rows, active: np.ndarray) -> tuple[np.ndarray, int, float]:
    """HASP's output grid: from int(min) to int(max)+1 in steps of the largest pixel spacing."""
    lo = int(rows.row_min[active].min())
    hi = int(rows.row_max[active].max()) + 1
    delta = float(rows.row_maxdiff[active].max())
    return np.arange(lo, hi + delta, delta), lo, delta


def bin_index(wavelength: np.ndarray, lo: float, delta: float, n: int) -> np.ndarray:
    """Nearest of ``n`` output bins, rounding half to even like Python's ``round``.

    Pixels beyond the grid (only of rows outside the co-add, or flagged) are
    clipped into it: a flagged pixel adds -0.0 wherever it lands.
    """
    t = wavelength - lo
    t /= delta
    np.rint(t, out=t)
    np.clip(t, 0, n - 1, out=t)
    return t.astype(np.intp)


def _selector(active: np.ndarray) -> slice | np.ndarray:
    """Rows of ``active`` as a slice (a view of every matrix) when they are consecutive."""
    at = np.flatnonzero(active)
    if at.size and at[-1] - at[0] + 1 == at.size:
        return slice(int(at[0]), int(at[-1]) + 1)
    return at


def coadd(rows: Rows, active: np.ndarray, instrument: str, detector: str) -> Coadd | None:
    """Co-add the ``active`` rows' flux as ullyses does; ``None`` when no pixel is good ("No good data").

    ERROR and SNR are left to :func:`add_errors`: a co-add the flux filter
    culls files from is never written.
    """
    if instrument == "STIS" and detector == "CCD" and active.sum() == 1:
        return _coadd_single_ccd(rows, active)
    grid, lo, delta = output_grid(rows, active)
    n = grid.size
    if (lo, delta, n) not in rows.bins:
        rows.bins = {(lo, delta, n): bin_index(rows.wavelength, lo, delta, n)}
    sel = _selector(active)
    idx = rows.bins[(lo, delta, n)][sel]
    exptime = _sum(rows.exptime, sel, idx, n)
    if not (exptime > 0).any():
        return None
    sumweight = _sum(rows.weight, sel, idx, n)
    flux = np.zeros(n)
    nz = sumweight != 0
    flux[nz] = _sum(rows.flux_weight, sel, idx, n)[nz] / sumweight[nz]
    return Coadd(wavelength=grid, flux=flux, eff_exptime=exptime, idx=idx, rows=sel,
                 sumweight=sumweight)


def _sum(values: np.ndarray, sel: slice | np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Per-bin sums of ``values`` at the selected rows, added in pixel order as ullyses'
    loop adds them (``np.add.at`` sums exactly as ``bincount`` does, faster on float64)."""
    out = np.zeros(n)
    np.add.at(out, idx.reshape(-1), values[sel].reshape(-1))
    return out


def add_errors(rows: Rows, co: Coadd, instrument: str, detector: str) -> Coadd:
    """ERROR and SNR of a co-add from :func:`coadd`, as ullyses computes them."""
    if co.error is not None:
        return co
    grid, sel, idx, n = co.wavelength, co.rows, co.idx, co.wavelength.size
    error = np.zeros(n)
    snr = np.zeros(n)
    nz = co.sumweight != 0
    flux = co.flux
    with np.errstate(divide="ignore", invalid="ignore"):
        if instrument == "STIS" and detector == "CCD":
            error[nz] = np.sqrt(_sum(rows.sq_error_weight, sel, idx, n)[nz]) / co.sumweight[nz]
        else:
            if instrument == "COS":
                varsum = _sum(rows.variance, sel, idx, n)[nz]
                counts_error = np.sqrt(np.where(varsum < 0.5, 0.5, varsum))
            else:
                counts_error = np.sqrt(_sum(rows.gcounts, sel, idx, n)[nz])
            conversion = flux[nz] / _sum(rows.net_counts, sel, idx, n)[nz]
            bad = np.isnan(conversion)
            if bad.any():
                # The quirk "error-interpolation": grid indexed with subset positions.
                conversion[bad] = np.interp(grid[np.nonzero(bad)[0]], grid[np.nonzero(~bad)[0]],
                                            conversion[~bad])
            error[nz] = counts_error * conversion
        snr[nz] = flux[nz] / error[nz]
    co.error, co.snr = error, snr
    return co


def _coadd_single_ccd(rows: Rows, active: np.ndarray) -> Coadd | None:
    # ullyses CCDSegmentList with one member keeps the exposure's own wavelengths.
    r = int(np.flatnonzero(active)[0])
    exp, i = rows.row_exp[r], rows.row_index[r]
    g = good_pixel_mask(exp, "STIS", "CCD")[i]
    exptime = np.where(g, rows.row_exptime[r], 0.0)
    if not (exptime > 0).any():
        return None
    # ullyses fills float64 arrays with the float32 values: SNR is divided in float64.
    flux = np.where(g, exp.flux[i].astype(np.float64), 0.0)
    error = np.where(g, exp.error[i].astype(np.float64), 0.0)
    snr = np.zeros_like(flux)
    nz = error != 0
    snr[nz] = flux[nz] / error[nz]
    return Coadd(wavelength=exp.wavelength[i].copy(), flux=flux, eff_exptime=exptime,
                 idx=np.zeros((0, 0), dtype=np.intp), rows=slice(r, r + 1), error=error, snr=snr)


def row_statistics(rows: Rows, active: np.ndarray, co: Coadd, snrmax: float) -> RowStatistics:
    """HASP's per-row deviation statistic against the co-add (``calculate_statistics``).

    For each good pixel with ``ERROR != 0`` whose bin is not covered by this
    exposure alone, ``dev = (flux - coadd) / max(error, flux / snrmax)``; the
    row's statistic is the median of the non-zero deviations times sqrt(N).
    """
    nrows = rows.nrows
    n = np.zeros(nrows, dtype=np.intp)
    median = np.zeros(nrows)
    if active.sum() == 1:
        # "single-row" quirk: never tested, statistic 0.
        return RowStatistics(n=n, median_deviation=median, scaled_median=median.copy())
    sel, idx = co.rows, co.idx   # the rows and bins the co-add was made of
    flux = rows.flux[sel]
    # A row's pixel in a bin only its own exposure covers is skipped.
    qualifies = np.take(co.eff_exptime, idx) != rows.row_exptime[sel][:, None]
    qualifies &= rows.testable[sel]
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.take(co.flux, idx)
        np.subtract(flux, dev, out=dev)
        dev /= rows.denominator(snrmax)[sel]
    # Like HASP's zero-initialised deviation array: a pixel that does not qualify
    # has deviation 0, and zeros are left out of the median.
    n[active] = np.count_nonzero(qualifies, axis=1)
    qualifies &= dev != 0.0
    median[active] = row_medians(dev, qualifies)
    return RowStatistics(n=n, median_deviation=median, scaled_median=median * np.sqrt(n))


def row_medians(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``np.median`` of each row's ``valid`` values, for all rows in one sort (0 if none).

    Invalid entries are replaced by ``+inf`` and every row sorted in one call;
    each median is then picked as ``np.median`` computes it (the middle element,
    or the mean of the two middle ones), so the result is bit-identical to
    ``np.median`` per row. A row with a valid NaN has a NaN median, as with
    ``np.median`` (sorting puts NaN last, after the infinities). ``values`` is
    overwritten.
    """
    nrows, width = values.shape
    if width == 0:
        return np.zeros(nrows)
    count = np.count_nonzero(valid, axis=1)
    np.copyto(values, np.inf, where=~valid)
    values.sort(axis=1)
    lines = np.arange(nrows)
    lower = values[lines, np.maximum(count - 1, 0) // 2]
    upper = values[lines, np.minimum(count // 2, width - 1)]
    with np.errstate(invalid="ignore"):   # -inf and +inf in the middle: NaN, as np.median
        median = np.where(count % 2 == 1, lower, (lower + upper) / 2.0)
    median[count == 0] = 0.0
    median[np.isnan(values[:, -1])] = np.nan
    return median

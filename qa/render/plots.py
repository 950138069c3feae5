"""Diagnostic figures of one product (one mode), the four a scientist draws by hand today.

The figures render engine results (:class:`qa.results.Product`, ``Remediation``,
``SnrGain``); they never recompute a co-add. Input files are read only to draw
their pixels.

Every ``make_*_figure`` returns a :class:`matplotlib.figure.Figure` (for structural
tests); the function of the same name without ``make_`` returns PNG bytes. Figures
are built without pyplot, so nothing is kept in a global figure registry and the
functions are safe in pytest-xdist workers. Rendering is deterministic: fixed
rcParams, no dates in the PNG metadata, no randomness.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from qa.io.model import Dataset
from qa.io.reader import good_pixel_mask, read_dataset
from qa.remediate import relative_snr
from qa.results import Product, Remediation, SnrGain, rootname_of

matplotlib.use("Agg")  # the plugin may run where no display exists

WAVE_LABEL = "Wavelength [Angstrom]"
FLUX_LABEL = r"Flux [erg s$^{-1}$ cm$^{-2}$ Å$^{-1}$]"
DPI = 100
WIDE = (9.0, 4.0)        # one panel: 900 x 400 px, the report's width
TALL = (9.0, 6.6)        # two stacked panels
PNG_COLORS = 128
ZOOM_WIDTH = 50.0        # Angstrom, as the tutorial's 1450-1500 window
# The tutorial's window, used whenever the product covers it.
KNOWN_ZOOMS = {"E140M": (1450.0, 1500.0)}
COADD_COLOR = "black"
# Colour-blind-safe Okabe-Ito colours, one per input file, in product.inputs order.
FILE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
               "#999999")
# Fixed settings so the same inputs give the same bytes whatever the user's matplotlibrc.
STYLE = {
    "font.family": "DejaVu Sans", "font.size": 9.0, "axes.titlesize": 10.0,
    "axes.labelsize": 9.0, "legend.fontsize": 8.0, "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0, "figure.dpi": DPI, "savefig.dpi": DPI, "axes.grid": True,
    "grid.alpha": 0.3, "axes.formatter.useoffset": False, "path.simplify": True,
    "agg.path.chunksize": 20000, "savefig.facecolor": "white", "figure.facecolor": "white",
    # Titles and legends show TARGNAME and file names: "$...$" there is text, not mathtext.
    "text.parse_math": False,
}
FIGURE_NAMES = ("inputs_vs_coadd", "row_statistics", "scaled_inputs", "snr_gain")


@contextmanager
def _style() -> Iterator[None]:
    # rcParams are read when artists are created and when they are drawn: wrap both.
    with matplotlib.rc_context(STYLE):
        yield


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` to a palette PNG without date or software stamp (byte-reproducible).

    Dense noisy spectra make full-colour PNGs large; 128 colours without dithering
    look the same and keep four figures of a mode near 150 kB, so a report with
    several modes stays small. Pillow writes no text chunks unless asked to.
    """
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format="png", dpi=DPI)
    buf.seek(0)
    image = Image.open(buf).convert("RGB").quantize(PNG_COLORS, method=Image.Quantize.MEDIANCUT,
                                                     dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()


def product_title(product: Product, what: str) -> str:
    """Figure title: what is shown, then program, target, instrument/grating and level."""
    level = f"visit {product.visit}" if product.level == "visit" else "program level"
    return (f"{what}\nprogram {product.program}, {product.target}, "
            f"{product.instrument}/{product.grating}, {level}")


def file_colors(product: Product) -> dict[str, str]:
    """The colour of each input file, shared by every figure of the product."""
    return {f: FILE_COLORS[i % len(FILE_COLORS)] for i, f in enumerate(product.inputs)}


# ---------------------------------------------------------------- inputs vs co-add

@dataclass
class InputPixels:
    """The good pixels of one input file, flattened over its exposures and rows."""

    file: str
    wavelength: np.ndarray
    flux: np.ndarray
    snr: np.ndarray


def input_pixels(product: Product, datasets: list[Dataset]) -> list[InputPixels]:
    """Good pixels (HASP's DQ mask, finite values) of the product's input files, in input order."""
    by_name = {ds.name: ds for ds in datasets}
    out = []
    for name in product.inputs:
        ds = by_name.get(name)
        if ds is None:
            continue
        waves, fluxes, snrs = [], [], []
        for exp in ds.exposures:
            good = good_pixel_mask(exp, ds.instrument, ds.detector)
            good &= np.isfinite(exp.flux) & np.isfinite(exp.wavelength) & np.isfinite(exp.error)
            waves.append(exp.wavelength[good])
            fluxes.append(exp.flux[good].astype(float))
            with np.errstate(divide="ignore", invalid="ignore"):
                snrs.append(np.where(exp.error[good] > 0, exp.flux[good] / exp.error[good], 0.0))
        out.append(InputPixels(name, np.concatenate(waves), np.concatenate(fluxes),
                               np.concatenate(snrs)))
    return out


def best_window(wavelength: np.ndarray, snr: np.ndarray, width: float = ZOOM_WIDTH
                ) -> tuple[float, float]:
    """The ``width``-Angstrom window of highest median SNR (steps of width/5)."""
    use = np.isfinite(wavelength) & np.isfinite(snr)
    order = np.argsort(wavelength[use], kind="stable")
    wave, s = wavelength[use][order], snr[use][order]
    if wave.size == 0:
        return (0.0, width)
    lo, hi = float(wave[0]), float(wave[-1])
    if hi - lo <= width:
        return (lo, hi)
    starts = np.arange(lo, hi - width, width / 5)
    first = np.searchsorted(wave, starts)
    last = np.searchsorted(wave, starts + width)
    medians = [np.median(s[a:b]) if b - a > 10 else -np.inf for a, b in zip(first, last)]
    start = float(starts[int(np.argmax(medians))])
    return (start, start + width)


def default_zoom(product: Product, pixels: list[InputPixels]) -> tuple[float, float]:
    """The tutorial's window for E140M, else the 50 A window of highest median co-add SNR.

    Without a co-add (every file rejected) the inputs' own SNR chooses the window.
    """
    known = KNOWN_ZOOMS.get(product.grating)
    if product.wavelength is not None and product.wavelength.size:
        wmin, wmax = float(np.nanmin(product.wavelength)), float(np.nanmax(product.wavelength))
        if known and wmin <= known[0] and known[1] <= wmax:
            return known
        return best_window(product.wavelength, product.snr)
    if not pixels:
        return known or (0.0, ZOOM_WIDTH)
    return best_window(np.concatenate([p.wavelength for p in pixels]),
                       np.concatenate([p.snr for p in pixels]))


def _ylim(values: list[np.ndarray]) -> tuple[float, float]:
    """Robust limits: the 0.5-99.5 percentiles, so single hot pixels do not flatten the spectrum."""
    data = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if data.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(data, [0.5, 99.5])
    pad = 0.1 * (hi - lo or abs(hi) or 1.0)
    return (float(min(lo - pad, 0.0)), float(hi + pad))


def _rejection_note(product: Product) -> dict[str, str]:
    return {r.file: f"rejected, iteration {r.iteration}" for r in product.rejected}


def coadd_curve(product: Product, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Wavelength and one co-add column, NaN in bins no pixel reached (drawn as gaps, not zeros)."""
    values = getattr(product, name).astype(float)
    if product.eff_exptime is not None:
        values = np.where(product.eff_exptime > 0, values, np.nan)
    return product.wavelength, values


def _draw_spectra(ax: Axes, product: Product, pixels: list[InputPixels], labels: dict[str, str],
                  window: tuple[float, float] | None) -> None:
    """Inputs as rasterized points (rejected files as crosses), the co-add as a black step line."""
    colors, rejected = file_colors(product), _rejection_note(product)
    for p in pixels:
        inside = slice(None) if window is None else \
            (p.wavelength >= window[0]) & (p.wavelength <= window[1])
        is_rejected = p.file in rejected
        ax.scatter(p.wavelength[inside], p.flux[inside], s=1.5 if window else 0.3,
                   marker="x" if is_rejected else "o", linewidths=0.5 if is_rejected else 0,
                   color=colors[p.file], alpha=0.8, rasterized=True, label=labels[p.file])
    if product.wavelength is not None:
        wave, flux = coadd_curve(product, "flux")
        if window is not None:
            a, b = np.searchsorted(wave, window)
            wave, flux = wave[max(a - 1, 0):b + 1], flux[max(a - 1, 0):b + 1]
        ax.plot(wave, flux, drawstyle="steps-mid", color=COADD_COLOR, linewidth=0.7,
                label=f"co-add ({len(product.kept)} of {len(product.inputs)} files)", zorder=3)
    else:
        ax.text(0.5, 0.95, "no co-add: every input file was rejected", transform=ax.transAxes,
                ha="center", va="top", color="darkred")


def make_spectra_figure(product: Product, datasets: list[Dataset], title: str,
                        labels: dict[str, str], zoom: tuple[float, float] | None = None) -> Figure:
    """Two panels, full range and a zoom window: input pixels and the product's co-add.

    Parameters
    ----------
    product : Product
        The co-add to draw; its ``inputs`` choose the files and their colours.
    datasets : list of Dataset
        The input files, read (others are ignored).
    title : str
        The figure's first title line.
    labels : dict
        File name -> legend label.
    zoom : (float, float), optional
        The zoom window in Angstrom; default :func:`default_zoom`.
    """
    pixels = input_pixels(product, datasets)
    window = zoom or default_zoom(product, pixels)
    with _style():
        fig = Figure(figsize=TALL, layout="constrained")
        full, near = fig.subplots(2, 1)
        _draw_spectra(full, product, pixels, labels, None)
        _draw_spectra(near, product, pixels, labels, window)
        full.set_title("full range", fontsize=9)
        near.set_title(f"zoom {window[0]:.0f}-{window[1]:.0f} Angstrom", fontsize=9)
        near.set_xlim(*window)
        for ax, win in ((full, None), (near, window)):
            inside = [p.flux if win is None else p.flux[(p.wavelength >= win[0]) & (p.wavelength <= win[1])]
                      for p in pixels]
            ax.set_ylim(*_ylim(inside))
            ax.set_xlabel(WAVE_LABEL)
            ax.set_ylabel(FLUX_LABEL, parse_math=True)
        full.axvspan(*window, color="grey", alpha=0.15, linewidth=0)
        fig.suptitle(product_title(product, title))
        _legend_outside(fig, full)
    return fig


def _legend_outside(fig: Figure, ax: Axes) -> None:
    """One legend for the figure, below the panels, where it covers neither data nor title."""
    handles, labels = ax.get_legend_handles_labels()
    _enlarge_markers(fig.legend(handles, labels, loc="outside lower center",
                                ncols=min(len(labels), 4), frameon=False))


def _enlarge_markers(legend) -> None:
    # The data points are a pixel or two; the legend's must show colour and marker shape.
    for handle in legend.legend_handles:
        if isinstance(handle, PathCollection):
            handle.set_sizes([30.0])


def make_inputs_vs_coadd_figure(product: Product, datasets: list[Dataset],
                                zoom: tuple[float, float] | None = None) -> Figure:
    """Each input file's good pixels and the co-add, rejected files marked (tutorial figure 1)."""
    rejected = _rejection_note(product)
    labels = {f: f"{rootname_of(f)} ({rejected[f]})" if f in rejected else rootname_of(f)
              for f in product.inputs}
    return make_spectra_figure(product, datasets, "Input exposures vs co-add", labels, zoom)


def inputs_vs_coadd(product: Product, datasets: list[Dataset],
                    zoom: tuple[float, float] | None = None) -> bytes:
    """PNG of :func:`make_inputs_vs_coadd_figure`."""
    return to_png(make_inputs_vs_coadd_figure(product, datasets, zoom))


# ---------------------------------------------------------------- row statistics

def make_row_statistics_figure(product: Product) -> Figure:
    """HASP's per-row scaled median deviation against row central wavelength, with the threshold.

    Iteration 1 (every input in the co-add) is drawn as filled circles, later
    iterations as open squares; rows below the threshold are ringed in red.
    """
    colors = file_colors(product)
    with _style():
        fig = Figure(figsize=WIDE, layout="constrained")
        ax = fig.subplots()
        ax.axhspan(min(product.threshold * 10, -1e6), product.threshold, color="red", alpha=0.06,
                   linewidth=0)
        # A row without qualifying pixels (e.g. fully flagged) has no statistic to place.
        stats = [r for r in product.row_stats
                 if np.isfinite([r.scaled_median, r.wave_min, r.wave_max]).all()]
        for file in product.inputs:
            for first in (True, False):
                rows = [r for r in stats if r.file == file and (r.iteration == 1) == first]
                if not rows:
                    continue
                x = [(r.wave_min + r.wave_max) / 2 for r in rows]
                y = [r.scaled_median for r in rows]
                ax.scatter(x, y, s=14, marker="o" if first else "s", color=colors[file],
                           facecolors=colors[file] if first else "none", linewidths=1.0,
                           rasterized=True, zorder=3)
        below = [r for r in stats if r.scaled_median < product.threshold]
        if below:
            ax.scatter([(r.wave_min + r.wave_max) / 2 for r in below],
                       [r.scaled_median for r in below], s=60, facecolors="none",
                       edgecolors="red", linewidths=0.8, zorder=4, label="row below threshold")
        ax.axhline(product.threshold, color="red", linestyle="--", linewidth=1.2,
                   label=f"threshold {product.threshold:g}")
        values = [r.scaled_median for r in stats] + [product.threshold, 0.0]
        span = max(values) - min(values)
        ax.set_ylim(min(values) - 0.08 * span, max(values) + 0.08 * span)
        ax.set_xlabel(f"Row central {WAVE_LABEL[0].lower()}{WAVE_LABEL[1:]}")
        ax.set_ylabel("Scaled median deviation [sigma * sqrt(N)]")
        # An axes title, not a suptitle: the legend on the right then cannot overlap it.
        ax.set_title(product_title(product, "Flux-filter statistic per row "
                                            "(median deviation from the co-add x sqrt(N))"))
        _row_legend(fig, ax, product, colors, len(product.row_stats) - len(stats))
    return fig


def _row_legend(fig: Figure, ax: Axes, product: Product, colors: dict[str, str],
                missing: int) -> None:
    rejected = _rejection_note(product)
    handles = [Line2D([], [], linestyle="none", marker="o", color=colors[f],
                      label=f"{rootname_of(f)} ({rejected[f]})" if f in rejected else rootname_of(f))
               for f in product.inputs]
    handles += [Line2D([], [], linestyle="none", marker="o", color="grey", label="iteration 1"),
                Line2D([], [], linestyle="none", marker="s", markerfacecolor="none", color="grey",
                       label="later iterations")]
    own, _ = ax.get_legend_handles_labels()
    handles += own
    if missing:
        handles.append(Line2D([], [], linestyle="none", label=f"{missing} rows without statistic"))
    fig.legend(handles=handles, loc="outside right upper", frameon=False)


def row_statistics(product: Product) -> bytes:
    """PNG of :func:`make_row_statistics_figure`."""
    return to_png(make_row_statistics_figure(product))


# ---------------------------------------------------------------- scaled inputs

def factor_text(remediation: Remediation, file: str) -> str:
    """The scale factor(s) of one file, e.g. ``x1.1936`` (one per SCI extension when several)."""
    values = [v for k, v in remediation.factors.items() if k == file or k.startswith(file + "[")]
    return "x" + "/".join(f"{v:.4f}" for v in values) if values else "not scaled"


def make_scaled_inputs_figure(remediation: Remediation, scaled_datasets: list[Dataset],
                              remediated_product: Product,
                              zoom: tuple[float, float] | None = None) -> Figure:
    """The scaled input files against the co-add made from them (tutorial figure 3)."""
    rejected = _rejection_note(remediated_product)
    labels = {}
    for f in remediated_product.inputs:
        labels[f] = f"{rootname_of(f)} {factor_text(remediation, f)}"
        if f in rejected:
            labels[f] += f" ({rejected[f]})"
    title = f"Scaled inputs (reference {rootname_of(remediation.scaled_to)}) vs remediated co-add"
    return make_spectra_figure(remediated_product, scaled_datasets, title, labels, zoom)


def scaled_inputs(remediation: Remediation, scaled_datasets: list[Dataset],
                  remediated_product: Product, zoom: tuple[float, float] | None = None) -> bytes:
    """PNG of :func:`make_scaled_inputs_figure`."""
    return to_png(make_scaled_inputs_figure(remediation, scaled_datasets, remediated_product, zoom))


# ---------------------------------------------------------------- SNR gain

def make_snr_gain_figure(original: Product, remediated: Product, gain: SnrGain | None) -> Figure:
    """SNR of both co-adds, and their ratio with its median (tutorial figures 2 and 4)."""
    with _style():
        fig = Figure(figsize=TALL, layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        for product, color, label in ((original, "grey", "original co-add"),
                                      (remediated, "#0072B2", "remediated co-add")):
            if product.snr is not None:
                top.plot(*coadd_curve(product, "snr"), color=color, linewidth=0.5,
                         drawstyle="steps-mid", label=label, rasterized=True)
        top.set_ylabel("SNR per bin")
        top.set_ylim(*_ylim([p.snr for p in (original, remediated) if p.snr is not None]))
        if original.snr is None or remediated.snr is None:
            bottom.text(0.5, 0.5, "no ratio: the original co-add is empty (every file rejected)",
                        transform=bottom.transAxes, ha="center", va="center", color="darkred")
        else:
            _draw_ratio(bottom, *relative_snr(original, remediated), gain)
        bottom.set_xlabel(WAVE_LABEL)
        bottom.set_ylabel("SNR remediated / original")
        top.tick_params(labelbottom=True)
        top.set_xlabel(WAVE_LABEL)
        fig.suptitle(product_title(original, "Signal-to-noise: original vs remediated co-add"))
        handles = top.get_legend_handles_labels()[0] + bottom.get_legend_handles_labels()[0]
        _enlarge_markers(fig.legend(handles=handles, loc="outside lower center", ncols=3,
                                    frameon=False))
    return fig


def _draw_ratio(ax: Axes, wave: np.ndarray, ratio: np.ndarray, gain: SnrGain | None) -> None:
    ax.scatter(wave, ratio, s=0.5, linewidths=0, color="#0072B2", rasterized=True,
               label="SNR ratio per bin")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1.0, label="no gain (1.0)")
    marks = [1.0]
    if gain is not None:
        ax.axhline(gain.median, color="#D55E00", linewidth=1.5,
                   label=f"median {gain.median:.3f} (p5 {gain.p5:.3f}, p95 {gain.p95:.3f}, "
                         f"{gain.nbins} bins)")
        marks.append(gain.median)
    # Percentiles, not extremes: a few bins at order edges have ratios far from the bulk.
    lo, hi = np.percentile(ratio, [0.5, 99.5]) if ratio.size else (min(marks), max(marks))
    lo, hi = min(lo, *marks), max(hi, *marks)
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)


def snr_gain(original: Product, remediated: Product, gain: SnrGain | None) -> bytes:
    """PNG of :func:`make_snr_gain_figure`."""
    return to_png(make_snr_gain_figure(original, remediated, gain))


# ---------------------------------------------------------------- all figures of a product

def product_figures(product: Product, input_dir: str | Path, remediation: Remediation | None = None,
                    remediated: Product | None = None,
                    reader: Callable[[Path], Dataset] = read_dataset) -> dict[str, bytes]:
    """Every figure of one product, keyed by :data:`FIGURE_NAMES`.

    Parameters
    ----------
    product : Product
        The original product.
    input_dir : path-like
        The directory holding ``product.inputs``.
    remediation, remediated : Remediation and Product, optional
        The remediation outcome and the product co-added from the scaled copies
        (in ``remediation.scaled_dir``); when given and possible, the scaled-input
        and SNR-gain figures are added.
    reader : callable
        Reads one file (``qa.io.reader.read_dataset``).

    Returns
    -------
    dict
        Figure name -> PNG bytes, in display order.
    """
    datasets = [reader(Path(input_dir) / name) for name in product.inputs]
    figures = {"inputs_vs_coadd": inputs_vs_coadd(product, datasets),
               "row_statistics": row_statistics(product)}
    if remediation is not None and remediation.possible and remediated is not None:
        scaled = [reader(Path(remediation.scaled_dir) / name) for name in remediated.inputs]
        figures["scaled_inputs"] = scaled_inputs(remediation, scaled, remediated)
        figures["snr_gain"] = snr_gain(product, remediated, remediation.snr_gain)
    return figures

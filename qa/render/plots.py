"""Diagnostic figures of one product (one mode), the four a scientist draws by hand today.

The figures render engine results (:class:`qa.results.Product`, ``Remediation``,
``SnrGain``); they never recompute a co-add. Input files are read only to draw
their pixels.

Every ``make_*_figure`` returns a :class:`matplotlib.figure.Figure` (for structural
tests); the function of the same name without ``make_`` returns PNG bytes. Figures
are built without pyplot, so nothing is kept in a global figure registry and the
functions are safe in pytest-xdist and Dask workers. Rendering is deterministic:
fixed rcParams, no dates in the PNG metadata, no randomness.

Cost is bounded by the picture, not by the data (about 0.05 CPU-s a figure):

* axes sit at fixed pixel positions (no layout engine measuring every text twice);
* a series denser than the pixels that show it is drawn as its per-pixel-column
  minimum/maximum (a band for points, a min/max polyline for curves), which
  looks the same as the full series at this resolution;
* the rendered canvas is quantized once to 128 colours with the fast octree
  method and written once (no re-encode, no palette optimization pass).

Text from files (target names, file names) is drawn as plain text: mathtext
is off, so a ``$`` in TARGNAME is shown, never parsed.
"""
from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from qa.io.model import Dataset
from qa.io.reader import good_pixel_mask, read_dataset
from qa.remediate import relative_snr
from qa.results import FIGURE_NAMES, Product, Remediation, SnrGain, rootname_of

matplotlib.use("Agg")  # the plugin may run where no display exists

WAVE_LABEL = "Wavelength [Angstrom]"
FLUX_LABEL = "Flux [erg s⁻¹ cm⁻² Å⁻¹]"   # Unicode superscripts: no mathtext needed
DPI = 100
WIDE = (9.0, 4.0)        # one panel: 900 x 400 px, the report's width
TALL = (9.0, 6.6)        # two stacked panels
PNG_COLORS = 128
ZOOM_WIDTH = 50.0        # Angstrom, as the tutorial's 1450-1500 window
# The tutorial's window, used whenever the product covers it.
KNOWN_ZOOMS = {"E140M": (1450.0, 1500.0)}
COADD_COLOR = "black"
# Colour-blind-safe Okabe-Ito colours; past eight files the marker shape changes,
# so a 12-file program still gives every file its own (colour, marker) pair.
FILE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
               "#999999")
FILE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Up to this many points of one series in one panel are drawn as points; denser
# series become their per-pixel-column envelope (about 10 points per column).
MAX_POINTS = 8000
# Fixed settings so the same inputs give the same bytes whatever the user's matplotlibrc.
STYLE = {
    "font.family": "DejaVu Sans", "font.size": 9.0, "axes.titlesize": 10.0,
    "axes.labelsize": 9.0, "legend.fontsize": 8.0, "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0, "figure.dpi": DPI, "savefig.dpi": DPI, "axes.grid": True,
    "grid.alpha": 0.3, "axes.formatter.useoffset": False, "path.simplify": True,
    "agg.path.chunksize": 20000, "savefig.facecolor": "white", "figure.facecolor": "white",
    "text.parse_math": False, "text.usetex": False,
    # Unhinted glyphs render a third faster and look the same at 100 dpi.
    "text.hinting": "no_hinting",
}

@contextmanager
def _style() -> Iterator[None]:
    # rcParams are read when artists are created and when they are drawn: wrap both.
    with matplotlib.rc_context(STYLE):
        yield


_CANVASES = threading.local()


def _canvas(fig: Figure) -> FigureCanvasAgg:
    """An Agg canvas for ``fig``, shared by every figure of its size in this thread.

    Its renderer, and so matplotlib's text-metrics cache keyed on the renderer,
    survives from one figure to the next: tick labels, axis labels and legend
    texts that recur are laid out once per worker instead of once per figure.
    """
    pool = getattr(_CANVASES, "pool", None)
    if pool is None:
        pool = _CANVASES.pool = {}
    key = tuple(fig.get_size_inches()) + (fig.dpi,)
    canvas = pool.get(key)
    if canvas is None:
        canvas = pool[key] = FigureCanvasAgg(fig)
    canvas.figure = fig
    fig.set_canvas(canvas)
    return canvas


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` to a 128-colour palette PNG without date or software stamp.

    Dense noisy spectra make full-colour PNGs large; 128 colours without dithering
    look the same and keep a figure near 50-100 kB. Pillow writes no text chunks
    unless asked to, so the bytes are reproducible.
    """
    canvas = _canvas(fig)
    with _style():
        canvas.draw()
    width, height = canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    # RGB first: the figure is opaque, and an RGBA palette would add a tRNS chunk.
    image = image.convert("RGB").quantize(PNG_COLORS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    # zlib level 3: half the time of level 6 for files 7 % larger.
    image.save(out, format="png", compress_level=3)
    return out.getvalue()


def product_title(product: Product, what: str) -> str:
    """Figure title: what is shown, then program, target, instrument/grating and level."""
    level = f"visit {product.visit}" if product.level == "visit" else "program level"
    return (f"{what}\nprogram {product.program}, {product.target}, "
            f"{product.instrument}/{product.grating}, {level}")


@dataclass(frozen=True)
class SeriesStyle:
    """How one input file is drawn in every figure of its product."""

    color: str
    marker: str


def file_styles(product: Product) -> dict[str, SeriesStyle]:
    """Each input file's (colour, marker), distinct for up to 64 files, in input order."""
    n = len(FILE_COLORS)
    return {f: SeriesStyle(FILE_COLORS[i % n], FILE_MARKERS[(i // n) % len(FILE_MARKERS)])
            for i, f in enumerate(product.inputs)}


def _rejection_note(product: Product) -> dict[str, str]:
    return {r.file: f"rejected, iteration {r.iteration}" for r in product.rejected}


# ---------------------------------------------------------------- layout and density

def _px_rect(fig: Figure, left: float, bottom: float, width: float, height: float
             ) -> tuple[float, float, float, float]:
    w, h = fig.get_size_inches() * DPI
    return (left / w, bottom / h, width / w, height / h)


_POOL = threading.local()


def _figure(kind: str, size: tuple[float, float], rects: list[tuple[float, float, float, float]],
            pooled: bool) -> tuple[Figure, list[Axes]]:
    """A figure with axes at ``rects`` (pixels from the lower left corner).

    ``pooled``: this thread's figure of this kind is emptied and reused. Its axes keep
    their tick objects and the canvas its renderer, so a product's figures cost about
    a third less than built from nothing (the PNG bytes are the same; a test checks).
    """
    pool = _POOL.__dict__.setdefault("figures", {}) if pooled else {}
    if kind in pool:
        fig, axes = pool[kind]
        _empty(fig, axes)
    else:
        fig = Figure(figsize=size)
        axes = [fig.add_axes(_px_rect(fig, *r)) for r in rects]
        for ax in axes:
            # Five ticks per axis read as well as nine; every tick label is a text layout.
            ax.locator_params(nbins=5)
        if pooled:
            pool[kind] = (fig, axes)
    for ax, r in zip(axes, rects):
        ax.set_position(_px_rect(fig, *r))
    return fig, axes


def _empty(fig: Figure, axes: list[Axes]) -> None:
    """Remove what the last figure of this kind drew; keep axes, ticks and canvas."""
    for legend in list(fig.legends):
        legend.remove()
    for ax in axes:
        for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts]:
            artist.remove()
        for loc in ("left", "center", "right"):
            ax.set_title("", loc=loc)
        ax.relim()
        ax.set_autoscale_on(True)


def _columns(ax: Axes) -> int:
    """The number of pixel columns of ``ax`` (its width on the PNG)."""
    return max(int(ax.bbox.width), 1)


def column_envelope(x: np.ndarray, y: np.ndarray, lo: float, hi: float, ncols: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum and maximum of ``y`` in each of ``ncols`` columns spanning ``[lo, hi]``.

    Returns
    -------
    centres, ymin, ymax : ndarray
        Column centres; NaN where no finite point falls in a column (drawn as a gap).
    """
    use = np.isfinite(x) & np.isfinite(y) & (x >= lo) & (x <= hi)
    scale = ncols / (hi - lo) if hi > lo else 0.0
    col = np.clip(((x[use] - lo) * scale).astype(np.intp), 0, ncols - 1)
    ymin = np.full(ncols, np.inf)
    ymax = np.full(ncols, -np.inf)
    np.minimum.at(ymin, col, y[use])
    np.maximum.at(ymax, col, y[use])
    empty = ~np.isfinite(ymin)
    ymin[empty] = np.nan
    ymax[empty] = np.nan
    return lo + (np.arange(ncols) + 0.5) * ((hi - lo) / ncols), ymin, ymax


def _draw_points(ax: Axes, x: np.ndarray, y: np.ndarray, style: SeriesStyle, *, filled: bool,
                 xlim: tuple[float, float], label: str, zorder: float, size: float = 2.0) -> None:
    """Points with the file's marker, or their per-column envelope when denser than the pixels.

    Open markers (and an outlined band) mean a rejected file.
    """
    inside = (x >= xlim[0]) & (x <= xlim[1])
    x, y = x[inside], y[inside]
    if x.size <= MAX_POINTS:
        ax.plot(x, y, linestyle="none", marker=style.marker, markersize=size, color=style.color,
                markerfacecolor=style.color if filled else "none", markeredgewidth=0 if filled else 0.6,
                alpha=0.8, label=label, zorder=zorder)
        return
    centres, ymin, ymax = column_envelope(x, y, *xlim, _columns(ax))
    has = np.isfinite(ymin)
    ax.fill_between(centres, np.where(has, ymin, 0), np.where(has, ymax, 0), where=has,
                    step="mid", facecolor=style.color if filled else "none",
                    edgecolor="none" if filled else style.color, linewidth=0 if filled else 0.7,
                    alpha=0.55 if filled else 0.9, label=label, zorder=zorder)


def _draw_curve(ax: Axes, x: np.ndarray, y: np.ndarray, xlim: tuple[float, float],
                **kwargs) -> Line2D:
    """A step curve; denser than the pixels, its per-column min/max polyline (same look)."""
    a, b = np.searchsorted(x, xlim)
    x, y = x[max(a - 1, 0):b + 1], y[max(a - 1, 0):b + 1]
    if x.size <= 2 * _columns(ax):
        return ax.plot(x, y, drawstyle="steps-mid", **kwargs)[0]
    centres, ymin, ymax = column_envelope(x, y, *xlim, _columns(ax))
    return ax.plot(np.repeat(centres, 2), np.column_stack([ymin, ymax]).ravel(), **kwargs)[0]


def _ylim(values: list[np.ndarray], include_zero: bool = True) -> tuple[float, float]:
    """Robust limits: the 0.5-99.5 percentiles, so single hot pixels do not flatten the spectrum.

    ``include_zero`` keeps the zero line in view (full-range panels); zoom panels
    frame the data only, so a small difference between files stays visible.
    """
    data = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if data.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(data, [0.5, 99.5]))
    pad = 0.1 * (hi - lo or abs(hi) or 1.0)
    return (min(lo - pad, 0.0) if include_zero else lo - pad, hi + pad)


def _enlarged(handles: list) -> list:
    """Legend copies of point handles with a readable marker size (data points are 2 px)."""
    out = []
    for h in handles:
        if isinstance(h, Line2D) and h.get_linestyle() == "None":
            h = Line2D([], [], linestyle="none", marker=h.get_marker(), color=h.get_color(),
                       markerfacecolor=h.get_markerfacecolor(), markersize=6,
                       markeredgewidth=h.get_markeredgewidth() or 0.0, label=h.get_label())
        out.append(h)
    return out


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


def coadd_curve(product: Product, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Wavelength and one co-add column, NaN in bins no pixel reached (drawn as gaps, not zeros)."""
    values = getattr(product, name).astype(float)
    if product.eff_exptime is not None:
        values = np.where(product.eff_exptime > 0, values, np.nan)
    return product.wavelength, values


def _full_range(product: Product, pixels: list[InputPixels]) -> tuple[float, float]:
    edges = [(float(p.wavelength.min()), float(p.wavelength.max())) for p in pixels if p.wavelength.size]
    if product.wavelength is not None and product.wavelength.size:
        edges.append((float(np.nanmin(product.wavelength)), float(np.nanmax(product.wavelength))))
    if not edges:
        return (0.0, 1.0)
    lo, hi = min(e[0] for e in edges), max(e[1] for e in edges)
    pad = 0.01 * (hi - lo or 1.0)
    return (lo - pad, hi + pad)


def _draw_spectra(ax: Axes, product: Product, pixels: list[InputPixels], labels: dict[str, str],
                  xlim: tuple[float, float]) -> None:
    """Inputs as points or envelopes (rejected files open), the co-add as a black step line.

    The co-add lies under the kept files' points: with one file kept the co-add
    equals it, and the file must stay visible.
    """
    styles, rejected = file_styles(product), _rejection_note(product)
    ax.set_xlim(*xlim)
    for p in pixels:
        _draw_points(ax, p.wavelength, p.flux, styles[p.file], filled=p.file not in rejected,
                     xlim=xlim, label=labels[p.file], zorder=3 if p.file in rejected else 2.5)
    if product.wavelength is not None:
        wave, flux = coadd_curve(product, "flux")
        _draw_curve(ax, wave, flux, xlim, color=COADD_COLOR, linewidth=0.7, alpha=0.85, zorder=2,
                    label=f"co-add ({len(product.kept)} of {len(product.inputs)} files)")
    else:
        ax.text(0.5, 0.95, "no co-add: every input file was rejected", transform=ax.transAxes,
                ha="center", va="top", color="darkred")


def make_spectra_figure(product: Product, datasets: list[Dataset], title: str,
                        labels: dict[str, str], zoom: tuple[float, float] | None = None,
                        pooled: bool = False) -> Figure:
    """Two panels, full range and a zoom window: input pixels and the product's co-add.

    Parameters
    ----------
    product : Product
        The co-add to draw; its ``inputs`` choose the files and their styles.
    datasets : list of Dataset
        The input files, read (others are ignored).
    title : str
        The figure's first title line.
    labels : dict
        File name -> legend label.
    zoom : (float, float), optional
        The zoom window in Angstrom; default :func:`default_zoom`.
    pooled : bool
        Draw into this thread's reused figure (see :func:`_figure`); the PNG functions do.
    """
    pixels = input_pixels(product, datasets)
    window = zoom or default_zoom(product, pixels)
    entries = len(pixels) + 1
    ncols = 4
    legend_h = 16 * math.ceil(entries / ncols) + 6
    panel_h = (TALL[1] * DPI - 170 - legend_h) / 2
    with _style():
        fig, (full, near) = _figure("spectra", TALL, [(82, legend_h + 40 + panel_h + 60, 800, panel_h),
                                                      (82, legend_h + 40, 800, panel_h)], pooled)
        fig.suptitle(product_title(product, title), y=1 - 6 / (TALL[1] * DPI), va="top")
        for ax, xlim, include_zero in ((full, _full_range(product, pixels), True),
                                       (near, window, False)):
            _draw_spectra(ax, product, pixels, labels, xlim)
            inside = [p.flux[(p.wavelength >= xlim[0]) & (p.wavelength <= xlim[1])] for p in pixels]
            ax.set_ylim(*_ylim(inside, include_zero))
            ax.set_xlabel(WAVE_LABEL, labelpad=2)
            ax.set_ylabel(FLUX_LABEL)
        full.set_title("full range", fontsize=9, loc="right")
        near.set_title(f"zoom {window[0]:.0f}-{window[1]:.0f} Angstrom", fontsize=9, loc="right")
        full.axvspan(*window, color="grey", alpha=0.15, linewidth=0)
        # The zoom panel's handles: there files are points, with their markers.
        handles, names = near.get_legend_handles_labels()
        fig.legend(_enlarged(handles), names, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                   ncols=min(len(names), ncols), frameon=False, handletextpad=0.3,
                   columnspacing=1.2, borderaxespad=0.3)
    return fig


def make_inputs_vs_coadd_figure(product: Product, datasets: list[Dataset],
                                zoom: tuple[float, float] | None = None, pooled: bool = False) -> Figure:
    """Each input file's good pixels and the co-add, rejected files open (tutorial figure 1)."""
    rejected = _rejection_note(product)
    labels = {f: f"{rootname_of(f)} ({rejected[f]})" if f in rejected else rootname_of(f)
              for f in product.inputs}
    return make_spectra_figure(product, datasets, "Input exposures vs co-add", labels, zoom, pooled)


def inputs_vs_coadd(product: Product, datasets: list[Dataset],
                    zoom: tuple[float, float] | None = None) -> bytes:
    """PNG of :func:`make_inputs_vs_coadd_figure`."""
    return to_png(make_inputs_vs_coadd_figure(product, datasets, zoom, pooled=True))


# ---------------------------------------------------------------- row statistics

def make_row_statistics_figure(product: Product, pooled: bool = False) -> Figure:
    """HASP's per-row scaled median deviation against row central wavelength, with the threshold.

    Iteration 1 (every input in the co-add) is drawn with filled markers, later
    iterations with open ones; rows below the threshold are ringed in red.
    """
    styles = file_styles(product)
    # A row without qualifying pixels (e.g. fully flagged) has no statistic to place.
    stats = [r for r in product.row_stats
             if np.isfinite([r.scaled_median, r.wave_min, r.wave_max]).all()]
    with _style():
        fig, (ax,) = _figure("rows", WIDE, [(62, 42, 560, 300)], pooled)
        ax.axhspan(min(product.threshold * 10, -1e6), product.threshold, color="red", alpha=0.06,
                   linewidth=0)
        for file in product.inputs:
            for first in (True, False):
                rows = [r for r in stats if r.file == file and (r.iteration == 1) == first]
                if not rows:
                    continue
                st = styles[file]
                ax.plot([(r.wave_min + r.wave_max) / 2 for r in rows],
                        [r.scaled_median for r in rows], linestyle="none", marker=st.marker,
                        markersize=4.5 if first else 5.5, color=st.color,
                        markerfacecolor=st.color if first else "none",
                        markeredgewidth=0 if first else 1.0, zorder=3)
        below = [r for r in stats if r.scaled_median < product.threshold]
        if below:
            ax.plot([(r.wave_min + r.wave_max) / 2 for r in below], [r.scaled_median for r in below],
                    linestyle="none", marker="o", markersize=9, markerfacecolor="none",
                    markeredgecolor="red", markeredgewidth=0.8, zorder=4, label="row below threshold")
        ax.axhline(product.threshold, color="red", linestyle="--", linewidth=1.2,
                   label=f"threshold {product.threshold:g}")
        values = [r.scaled_median for r in stats] + [product.threshold, 0.0]
        span = max(values) - min(values)
        ax.set_ylim(min(values) - 0.08 * span, max(values) + 0.08 * span)
        ax.set_xlabel(f"Row central {WAVE_LABEL[0].lower()}{WAVE_LABEL[1:]}", labelpad=2)
        ax.set_ylabel("Scaled median deviation [sigma * sqrt(N)]")
        # An axes title, not a suptitle: the legend on the right then cannot overlap it.
        ax.set_title(product_title(product, "Flux-filter statistic per row "
                                            "(median deviation from the co-add x sqrt(N))"),
                     fontsize=9)
        _row_legend(fig, ax, product, styles, len(product.row_stats) - len(stats))
    return fig


def _row_legend(fig: Figure, ax: Axes, product: Product, styles: dict[str, SeriesStyle],
                missing: int) -> None:
    rejected = _rejection_note(product)
    handles = [Line2D([], [], linestyle="none", marker=styles[f].marker, color=styles[f].color,
                      markersize=6, markeredgewidth=0,
                      label=f"{rootname_of(f)} ({rejected[f]})" if f in rejected else rootname_of(f))
               for f in product.inputs]
    handles += [Line2D([], [], linestyle="none", marker="o", color="grey", markeredgewidth=0,
                       label="iteration 1"),
                Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", color="grey",
                       label="later iterations")]
    own, _ = ax.get_legend_handles_labels()
    handles += own
    if missing:
        handles.append(Line2D([], [], linestyle="none", label=f"{missing} rows without statistic"))
    # Beyond ~20 entries two columns in a smaller font keep the legend inside the figure.
    many = len(handles) > 20
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(632 / 900, 0.98), frameon=False,
               ncols=2 if many else 1, fontsize=6.5 if many else None, handletextpad=0.2,
               borderaxespad=0.0, columnspacing=0.6)


def row_statistics(product: Product) -> bytes:
    """PNG of :func:`make_row_statistics_figure`."""
    return to_png(make_row_statistics_figure(product, pooled=True))


# ---------------------------------------------------------------- scaled inputs

def factor_text(remediation: Remediation, file: str) -> str:
    """The scale factor(s) of one file, e.g. ``x1.1936`` (one per SCI extension when several)."""
    values = [v for k, v in remediation.factors.items() if k == file or k.startswith(file + "[")]
    return "x" + "/".join(f"{v:.4f}" for v in values) if values else "not scaled"


def make_scaled_inputs_figure(remediation: Remediation, scaled_datasets: list[Dataset],
                              remediated_product: Product,
                              zoom: tuple[float, float] | None = None, pooled: bool = False) -> Figure:
    """The scaled input files against the co-add made from them (tutorial figure 3)."""
    rejected = _rejection_note(remediated_product)
    labels = {}
    for f in remediated_product.inputs:
        labels[f] = f"{rootname_of(f)} {factor_text(remediation, f)}"
        if f in rejected:
            labels[f] += f" ({rejected[f]})"
    title = f"Scaled inputs (reference {rootname_of(remediation.scaled_to)}) vs remediated co-add"
    return make_spectra_figure(remediated_product, scaled_datasets, title, labels, zoom, pooled)


def scaled_inputs(remediation: Remediation, scaled_datasets: list[Dataset],
                  remediated_product: Product, zoom: tuple[float, float] | None = None) -> bytes:
    """PNG of :func:`make_scaled_inputs_figure`."""
    return to_png(make_scaled_inputs_figure(remediation, scaled_datasets, remediated_product, zoom,
                                            pooled=True))


# ---------------------------------------------------------------- SNR gain

def make_snr_gain_figure(original: Product, remediated: Product, gain: SnrGain | None,
                         pooled: bool = False) -> Figure:
    """SNR of both co-adds, and their ratio with its median (tutorial figures 2 and 4)."""
    curves = [p for p in (original, remediated) if p.wavelength is not None and p.wavelength.size]
    lo = min((float(np.nanmin(p.wavelength)) for p in curves), default=0.0)
    hi = max((float(np.nanmax(p.wavelength)) for p in curves), default=1.0)
    xlim = (lo - 0.01 * (hi - lo or 1.0), hi + 0.01 * (hi - lo or 1.0))
    with _style():
        fig, (top, bottom) = _figure("snr", TALL, [(72, 84 + 225 + 50, 810, 225), (72, 84, 810, 225)],
                                     pooled)
        for ax in (top, bottom):
            ax.set_xlim(*xlim)
        for product, color, label in ((original, "grey", "original co-add"),
                                      (remediated, "#0072B2", "remediated co-add")):
            if product.snr is not None:
                _draw_curve(top, *coadd_curve(product, "snr"), xlim, color=color, linewidth=0.5,
                            label=label)
        top.set_ylabel("SNR per bin")
        top.set_ylim(*_ylim([p.snr for p in (original, remediated) if p.snr is not None]))
        if original.snr is None or remediated.snr is None:
            bottom.text(0.5, 0.5, "no ratio: the original co-add is empty (every file rejected)",
                        transform=bottom.transAxes, ha="center", va="center", color="darkred")
        else:
            _draw_ratio(bottom, *relative_snr(original, remediated), gain, xlim)
        bottom.set_xlabel(WAVE_LABEL, labelpad=2)
        bottom.set_ylabel("SNR remediated / original")
        top.set_xlabel(WAVE_LABEL, labelpad=2)
        fig.suptitle(product_title(original, "Signal-to-noise: original vs remediated co-add"),
                     y=1 - 6 / (TALL[1] * DPI), va="top")
        handles = top.get_legend_handles_labels()[0] + bottom.get_legend_handles_labels()[0]
        fig.legend(handles=_enlarged(handles), loc="lower center", bbox_to_anchor=(0.5, 0.0),
                   ncols=3, frameon=False, borderaxespad=0.3)
    return fig


def _draw_ratio(ax: Axes, wave: np.ndarray, ratio: np.ndarray, gain: SnrGain | None,
                xlim: tuple[float, float]) -> None:
    _draw_points(ax, wave, ratio, SeriesStyle("#0072B2", "o"), filled=True, xlim=xlim,
                 label="SNR ratio per bin", zorder=2, size=1.2)
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
    return to_png(make_snr_gain_figure(original, remediated, gain, pooled=True))


# ---------------------------------------------------------------- all figures of a product

def product_figures(product: Product, input_dir: str | Path | None = None,
                    remediation: Remediation | None = None, remediated: Product | None = None,
                    reader: Callable[[Path], Dataset] = read_dataset, *,
                    datasets: list[Dataset] | None = None,
                    scaled_datasets: list[Dataset] | None = None) -> dict[str, bytes]:
    """Every figure of one product, keyed by :data:`FIGURE_NAMES`.

    Called where the product was computed (core's ``compute(job)``), so the
    figures are drawn in the worker that holds the arrays and travel as bytes.

    Parameters
    ----------
    product : Product
        The original product.
    input_dir : path-like, optional
        The directory holding ``product.inputs``; not needed when ``datasets`` is given.
    remediation, remediated : Remediation and Product, optional
        The remediation outcome and the product co-added from the scaled copies
        (in ``remediation.scaled_dir``); when given and possible, the scaled-input
        and SNR-gain figures are added.
    reader : callable
        Reads one file (``qa.io.reader.read_dataset``) that is not in ``datasets``.
    datasets, scaled_datasets : list of Dataset, optional
        Files already read (originals, scaled copies); the others are read.

    Returns
    -------
    dict
        Figure name -> PNG bytes, in display order.
    """
    def read(names: list[str], folder: str | Path | None, have: list[Dataset] | None) -> list[Dataset]:
        by_name = {ds.name: ds for ds in have or []}
        return [by_name[n] if n in by_name else reader(Path(folder) / n) for n in names]

    originals = read(product.inputs, input_dir, datasets)
    figures = {"inputs_vs_coadd": inputs_vs_coadd(product, originals),
               "row_statistics": row_statistics(product)}
    if remediation is not None and remediation.possible and remediated is not None:
        scaled = read(remediated.inputs, remediation.scaled_dir, scaled_datasets)
        figures["scaled_inputs"] = scaled_inputs(remediation, scaled, remediated)
        figures["snr_gain"] = snr_gain(product, remediated, remediation.snr_gain)
    return figures

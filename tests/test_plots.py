"""Structural tests of the diagnostic figures (pytest-mpl style, without baseline images).

The inputs are real: copies of the real o4vt02040 scaled 1 : 0.838 : 0.755 give a
product where HASP's filter rejects o5jy03030 and then o5jy03020 (a cascade).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from qa.engine import native
from qa.io.model import Dataset
from qa.io.reader import read_dataset
from qa.remediate import relative_snr, remediate
from qa.render import plots
from qa.results import Product, Remediation

from .conftest import derive_copy

TEMPLATE = "o4vt02040_x1d.fits"
KEY = "8016-G191B2B-STIS/E140M-visit03"
SCALES = (1.0, 0.838, 0.755)


@dataclass
class Case:
    """A product with rejections, its remediation, and every input the figures need."""

    input_dir: Path
    product: Product
    datasets: list[Dataset]
    remediation: Remediation
    fixed: Product
    scaled: list[Dataset]


@pytest.fixture(scope="session")
def cascade(real_dir, tmp_path_factory) -> Case:
    """Three scaled copies of a real E140M file, co-added and remediated by the native engine."""
    root = tmp_path_factory.mktemp("cascade")
    inputs = root / "in"
    inputs.mkdir()
    for i, scale in enumerate(SCALES):
        derive_copy(real_dir / TEMPLATE, inputs, f"o5jy030{i + 1}0", flux_scale=scale)
    product = native.run(inputs).product(KEY)
    datasets = [read_dataset(inputs / n) for n in product.inputs]
    rem, fixed = remediate(product, datasets, root / "scaled", native.run)
    scaled = [read_dataset(Path(rem.scaled_dir) / n) for n in fixed.inputs]
    return Case(inputs, product, datasets, rem, fixed, scaled)


def decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(io.BytesIO(png), format="png")


def legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_the_fixture_has_a_cascade(cascade):
    assert [(r.file, r.iteration) for r in cascade.product.rejected] == [
        ("o5jy03030_x1d.fits", 1), ("o5jy03020_x1d.fits", 2)]
    assert cascade.remediation.possible and cascade.remediation.rejected_after == []


@pytest.mark.parametrize("name, size", [("inputs_vs_coadd", (660, 900)), ("row_statistics", (400, 900)),
                                        ("scaled_inputs", (660, 900)), ("snr_gain", (660, 900))])
def test_product_figures_are_decodable_pngs_of_report_size(cascade, name, size):
    figures = plots.product_figures(cascade.product, cascade.input_dir, cascade.remediation,
                                    cascade.fixed)
    assert list(figures) == list(plots.FIGURE_NAMES)
    image = decode(figures[name])
    assert image.shape[:2] == size
    assert image.std() > 0.05, "a blank image"
    assert len(figures[name]) < 150_000, "keeps a report of several modes under 3 MB"


def points(ax) -> list[Line2D]:
    """The point series of an axes (lines drawn without a line style)."""
    return [ln for ln in ax.lines if ln.get_linestyle() == "None"]


def test_inputs_vs_coadd_structure(cascade):
    fig = plots.make_inputs_vs_coadd_figure(cascade.product, cascade.datasets)
    full, zoom = fig.axes
    for ax in (full, zoom):
        assert ax.get_xlabel() == "Wavelength [Angstrom]"
        assert ax.get_ylabel() == "Flux [erg s⁻¹ cm⁻² Å⁻¹]"
        assert [ln.get_label() for ln in ax.lines if ln.get_linestyle() != "None"] == \
            ["co-add (1 of 3 files)"]
    # Full range: ~30,000 pixels a file, denser than the 800 pixel columns: one band a file.
    bands = [c for c in full.collections if isinstance(c, PolyCollection) and c.get_label()[0] != "_"]
    assert len(bands) == 3, "one envelope per input file"
    # The zoom shows every good pixel of the window as a point, one series per file.
    assert len(points(zoom)) == 3
    assert zoom.get_xlim() == (1450.0, 1500.0), "the tutorial's window for E140M"
    zoomed = np.concatenate([ln.get_xdata() for ln in points(zoom)])
    assert zoomed.min() >= 1450.0 and zoomed.max() <= 1500.0
    labels = legend_texts(fig)
    assert "o5jy03030 (rejected, iteration 1)" in labels
    assert "o5jy03020 (rejected, iteration 2)" in labels
    assert "o5jy03010" in labels
    title = fig.get_suptitle()
    assert "8016" in title and "G191B2B" in title and "STIS/E140M" in title and "visit 03" in title


def test_rejected_files_are_open_markers_and_the_kept_file_stays_visible(cascade):
    """One file kept: the co-add equals it, so the co-add is drawn under its points."""
    fig = plots.make_inputs_vs_coadd_figure(cascade.product, cascade.datasets)
    zoom = fig.axes[1]
    kept, *rejected = points(zoom)
    (coadd,) = [ln for ln in zoom.lines if ln.get_linestyle() != "None"]
    assert kept.get_label() == "o5jy03010" and kept.get_markerfacecolor() != "none"
    assert all(ln.get_markerfacecolor() == "none" for ln in rejected)
    assert kept.get_zorder() > coadd.get_zorder()


def test_zoom_y_range_frames_the_data_not_zero(cascade):
    fig = plots.make_inputs_vs_coadd_figure(cascade.product, cascade.datasets)
    full, zoom = fig.axes
    assert full.get_ylim()[0] <= 0.0, "the full range keeps the zero line"
    flux = np.concatenate([ln.get_ydata() for ln in points(zoom)])
    low, high = zoom.get_ylim()
    assert 0.0 < low < np.percentile(flux, 1) and np.percentile(flux, 99) < high


def test_inputs_draw_only_good_pixels(cascade):
    fig = plots.make_inputs_vs_coadd_figure(cascade.product, cascade.datasets)
    drawn = points(fig.axes[1])[0]
    ds = cascade.datasets[0]
    good = [(e.wavelength[m], e.flux[m]) for e in ds.exposures
            for m in [plots.good_pixel_mask(e, ds.instrument, ds.detector)]]
    wave = np.concatenate([w for w, _ in good])
    inside = (wave >= 1450.0) & (wave <= 1500.0)
    assert 0 < len(drawn.get_xdata()) == int(inside.sum())
    everything = sum(((e.wavelength >= 1450.0) & (e.wavelength <= 1500.0)).sum() for e in ds.exposures)
    assert int(inside.sum()) < everything, "flagged pixels are not drawn"


def test_column_envelope_keeps_extremes_and_gaps():
    x = np.array([0.05, 0.06, 0.07, 0.35, 0.95, np.nan])
    y = np.array([1.0, -2.0, 3.0, 5.0, 7.0, 100.0])
    centres, low, high = plots.column_envelope(x, y, 0.0, 1.0, 10)
    assert centres == pytest.approx(np.arange(10) / 10 + 0.05)
    assert (low[0], high[0]) == (-2.0, 3.0) and (low[3], high[3]) == (5.0, 5.0)
    assert np.isnan(low[1]) and np.isnan(high[5]), "columns without points are gaps"


def test_more_than_eight_files_stay_distinguishable(cascade):
    """A 12-file program: every file gets its own (colour, marker) in every figure."""
    files = [f"o5jy0{i:02d}10_x1d.fits" for i in range(12)]
    stats = [replace(cascade.product.row_stats[0], file=f) for f in files]
    product = replace(cascade.product, inputs=files, kept=files, rejected=[], row_stats=stats)
    styles = plots.file_styles(product)
    assert len({(s.color, s.marker) for s in styles.values()}) == 12
    fig = plots.make_row_statistics_figure(product)
    handles = [h for h in fig.legends[0].legend_handles if h.get_label().startswith("o5jy")]
    assert len({(h.get_color(), h.get_marker()) for h in handles}) == 12


def test_text_from_files_is_plain_text(cascade):
    """Mathtext is off: a TARGNAME with dollars is drawn as is, never parsed (or refused)."""
    weird = replace(cascade.product, target=r"$\frac{a}{$ 50% _x^")
    png = plots.row_statistics(weird)
    assert decode(png).shape[:2] == (400, 900)
    fig = plots.make_inputs_vs_coadd_figure(weird, cascade.datasets)
    assert r"$\frac{a}{$ 50% _x^" in fig.get_suptitle()
    plots.to_png(fig)


def test_explicit_zoom_and_automatic_window(cascade):
    fig = plots.make_inputs_vs_coadd_figure(cascade.product, cascade.datasets, zoom=(1300.0, 1320.0))
    assert fig.axes[1].get_xlim() == (1300.0, 1320.0)
    # Another grating has no tutorial window: the 50 A window of highest median co-add SNR.
    other = replace(cascade.product, grating="E140H")
    lo, hi = plots.default_zoom(other, [])
    assert hi - lo == pytest.approx(plots.ZOOM_WIDTH)
    inside = (other.wavelength >= lo) & (other.wavelength <= hi)
    assert np.median(other.snr[inside]) > np.median(other.snr)


def test_best_window_finds_the_bright_part():
    wave = np.linspace(1000.0, 2000.0, 10_001)
    snr = np.where((wave > 1600) & (wave < 1660), 50.0, 5.0)
    lo, hi = plots.best_window(wave, snr, 50.0)
    assert hi - lo == 50.0
    assert np.median(snr[(wave >= lo) & (wave <= hi)]) == 50.0


def test_row_statistics_structure(cascade):
    product = cascade.product
    fig = plots.make_row_statistics_figure(product)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Row central wavelength [Angstrom]"
    assert "Scaled median" in ax.get_ylabel()
    (threshold,) = [ln for ln in ax.lines if ln.get_label().startswith("threshold")]
    assert set(threshold.get_ydata()) == {product.threshold}
    # One filled set (iteration 1) per file, open markers for later iterations, red rings.
    by_iteration = {(r.file, r.iteration > 1) for r in product.row_stats}
    sets = points(ax)
    assert len(sets) == len(by_iteration) + 1
    centres = np.concatenate([ln.get_xdata() for ln in sets[:-1]])
    expected = [(r.wave_min + r.wave_max) / 2 for r in product.row_stats
                if np.isfinite([r.scaled_median, r.wave_min, r.wave_max]).all()]
    assert len(expected) < len(product.row_stats), "order 86 is fully flagged: no statistic"
    assert "rows without statistic" in " ".join(legend_texts(fig))
    assert sorted(centres) == pytest.approx(sorted(expected))
    rings = np.asarray(sets[-1].get_ydata())
    assert sets[-1].get_label() == "row below threshold"
    assert (rings < product.threshold).all()
    assert len(rings) == sum(r.scaled_median < product.threshold for r in product.row_stats)
    labels = legend_texts(fig)
    assert "o5jy03030 (rejected, iteration 1)" in labels and "later iterations" in labels
    low, high = ax.get_ylim()
    assert low < min(r.scaled_median for r in product.row_stats) and high > product.threshold


def test_scaled_inputs_label_factors(cascade):
    fig = plots.make_scaled_inputs_figure(cascade.remediation, cascade.scaled, cascade.fixed)
    labels = legend_texts(fig)
    assert "o5jy03030 x1.3245" in labels and "o5jy03010 x1.0000" in labels
    assert "co-add (3 of 3 files)" in labels
    assert "reference o5jy03010" in fig.get_suptitle()


def test_snr_gain_structure(cascade):
    gain = cascade.remediation.snr_gain
    fig = plots.make_snr_gain_figure(cascade.product, cascade.fixed, gain)
    top, bottom = fig.axes
    assert top.get_ylabel() == "SNR per bin" and bottom.get_xlabel() == "Wavelength [Angstrom]"
    assert [ln.get_label() for ln in top.lines] == ["original co-add", "remediated co-add"]
    (median,) = [ln for ln in bottom.lines if ln.get_label().startswith("median")]
    assert set(median.get_ydata()) == {gain.median}
    # ~40,000 bins over 800 pixel columns: the ratio is drawn as its per-column envelope.
    (band,) = [c for c in bottom.collections if c.get_label() == "SNR ratio per bin"]
    _wave, ratio = relative_snr(cascade.product, cascade.fixed)
    assert len(ratio) == gain.nbins > plots.MAX_POINTS
    edges = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    assert edges.min() == pytest.approx(ratio.min()) and edges.max() == pytest.approx(ratio.max())
    low, high = bottom.get_ylim()
    assert low < 1.0 < gain.median < high


def test_relative_snr_matches_by_wavelength_not_index(cascade):
    original = cascade.product
    # Drop the first 100 bins of the remediated grid: indices shift, wavelengths do not.
    shifted = replace(cascade.fixed, wavelength=cascade.fixed.wavelength[100:],
                      snr=cascade.fixed.snr[100:])
    wave, ratio = relative_snr(original, shifted)
    assert wave.min() >= shifted.wavelength[0]
    assert np.median(ratio) == pytest.approx(cascade.remediation.snr_gain.median, rel=1e-6)


def test_figures_when_every_file_is_rejected(cascade):
    empty = replace(cascade.product, kept=[], wavelength=None, flux=None, error=None, snr=None,
                    eff_exptime=None)
    assert decode(plots.inputs_vs_coadd(empty, cascade.datasets)).shape[1] == 900
    fig = plots.make_snr_gain_figure(empty, cascade.fixed, None)
    assert "original co-add is empty" in fig.axes[1].texts[0].get_text()


def test_png_is_deterministic(cascade):
    first = plots.row_statistics(cascade.product)
    assert plots.row_statistics(cascade.product) == first
    assert plots.inputs_vs_coadd(cascade.product, cascade.datasets) == \
        plots.inputs_vs_coadd(cascade.product, cascade.datasets)
    assert b"tIME" not in first and b"Software" not in first


def test_reused_figures_give_the_same_png_as_new_ones(cascade):
    """The PNG functions draw into per-thread reused figures: nothing of the last product stays."""
    other = replace(cascade.product, inputs=cascade.product.inputs[:2], kept=cascade.product.inputs[:2],
                    rejected=[], target="OTHER", threshold=-20.0)
    fresh = {
        "inputs": plots.to_png(plots.make_inputs_vs_coadd_figure(cascade.product, cascade.datasets)),
        "rows": plots.to_png(plots.make_row_statistics_figure(cascade.product)),
        "scaled": plots.to_png(plots.make_scaled_inputs_figure(cascade.remediation, cascade.scaled,
                                                               cascade.fixed)),
        "snr": plots.to_png(plots.make_snr_gain_figure(cascade.product, cascade.fixed,
                                                       cascade.remediation.snr_gain))}
    for _ in range(2):   # the second round reuses figures the first filled with another product
        plots.product_figures(other, cascade.input_dir, cascade.remediation, cascade.fixed)
        figures = plots.product_figures(cascade.product, cascade.input_dir, cascade.remediation,
                                        cascade.fixed)
        assert figures["inputs_vs_coadd"] == fresh["inputs"]
        assert figures["row_statistics"] == fresh["rows"]
        assert figures["scaled_inputs"] == fresh["scaled"]
        assert figures["snr_gain"] == fresh["snr"]

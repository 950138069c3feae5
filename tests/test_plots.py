"""Structural tests of the diagnostic figures (pytest-mpl style, without baseline images).

The inputs are real: copies of the real o4vt02040 scaled 1 : 0.838 : 0.755 give a
product where HASP's filter rejects o5jy03030 and then o5jy03020 (a cascade).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

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


def test_inputs_vs_coadd_structure(cascade):
    fig = plots.make_inputs_vs_coadd_figure(cascade.product, cascade.datasets)
    full, zoom = fig.axes
    for ax in (full, zoom):
        assert ax.get_xlabel() == "Wavelength [Angstrom]"
        assert ax.get_ylabel() == r"Flux [erg s$^{-1}$ cm$^{-2}$ Å$^{-1}$]"
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(points) == 3, "one point set per input file"
        assert all(c.get_rasterized() for c in points)
        assert [ln.get_label() for ln in ax.lines] == ["co-add (1 of 3 files)"]
    assert zoom.get_xlim() == (1450.0, 1500.0), "the tutorial's window for E140M"
    zoomed = np.concatenate([c.get_offsets()[:, 0] for c in zoom.collections
                             if isinstance(c, PathCollection)])
    assert zoomed.min() >= 1450.0 and zoomed.max() <= 1500.0
    labels = legend_texts(fig)
    assert "o5jy03030 (rejected, iteration 1)" in labels
    assert "o5jy03020 (rejected, iteration 2)" in labels
    assert "o5jy03010" in labels
    title = fig.get_suptitle()
    assert "8016" in title and "G191B2B" in title and "STIS/E140M" in title and "visit 03" in title


def test_inputs_draw_only_good_pixels(cascade):
    fig = plots.make_inputs_vs_coadd_figure(cascade.product, cascade.datasets)
    drawn = len(fig.axes[0].collections[0].get_offsets())
    ds = cascade.datasets[0]
    good = sum(int(plots.good_pixel_mask(e, ds.instrument, ds.detector).sum()) for e in ds.exposures)
    assert 0 < drawn <= good < sum(e.flux.size for e in ds.exposures)


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
    # One filled set (iteration 1) per file, open squares for later iterations, red rings.
    by_iteration = {(r.file, r.iteration > 1) for r in product.row_stats}
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == len(by_iteration) + 1
    centres = np.concatenate([c.get_offsets()[:, 0] for c in points[:-1]])
    expected = [(r.wave_min + r.wave_max) / 2 for r in product.row_stats
                if np.isfinite([r.scaled_median, r.wave_min, r.wave_max]).all()]
    assert len(expected) < len(product.row_stats), "order 86 is fully flagged: no statistic"
    assert "rows without statistic" in " ".join(legend_texts(fig))
    assert sorted(centres) == pytest.approx(sorted(expected))
    rings = points[-1].get_offsets()[:, 1]
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
    ratio = np.asarray(bottom.collections[0].get_offsets())[:, 1]
    assert len(ratio) == gain.nbins
    assert np.median(ratio) == pytest.approx(gain.median)
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


def test_rendering_is_fast(cascade):
    """About half a second per figure here; the bound only catches a per-pixel regression."""
    timings = {}
    for name, draw in [("inputs", lambda: plots.inputs_vs_coadd(cascade.product, cascade.datasets)),
                       ("rows", lambda: plots.row_statistics(cascade.product)),
                       ("snr", lambda: plots.snr_gain(cascade.product, cascade.fixed,
                                                      cascade.remediation.snr_gain))]:
        start = time.perf_counter()
        draw()
        timings[name] = time.perf_counter() - start
    assert max(timings.values()) < 3.0, timings

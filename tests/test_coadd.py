"""The native engine's building blocks: row stacks shared by a run's products, row medians."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qa.bench.engine import e140m_program
from qa.engine import coadd, native
from qa.engine.grouping import plan_products

ARRAYS = ("wavelength", "flux", "error", "testable", "exptime", "weight", "flux_weight",
          "gcounts", "net_counts", "row_min", "row_max", "row_maxdiff", "row_ngood",
          "row_index", "row_exptime", "row_file")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """Ten generated E140M exposures of one target: two visits of five and their program."""
    files = e140m_program(tmp_path_factory.mktemp("e140m"), 10)
    datasets, errors = native.load_datasets(files)
    assert not errors
    return files, datasets


@pytest.fixture
def computed(monkeypatch) -> list[str]:
    """The files whose exposures the engine computes, one entry per call of the real
    ``exposure_pixels``."""
    names: list[str] = []
    real = coadd.exposure_pixels

    def counting(exp, instrument, detector):
        names.append(exp.path.name)
        return real(exp, instrument, detector)

    monkeypatch.setattr(coadd, "exposure_pixels", counting)
    return names


def test_each_exposure_is_computed_once_per_run(program, computed):
    files, _ = program
    result = native.run(files)
    assert [p.level for p in result.products] == ["visit", "visit", "program"]
    assert sorted(computed) == sorted(f.name for f in files)   # one SCI extension each


def test_a_visit_takes_its_rows_from_the_program_stack(program):
    _, datasets = program
    plans = plan_products(datasets)
    pool = native.RowsPool(plans)
    whole, visit = pool.rows(plans[-1]), pool.rows(plans[1])
    assert np.shares_memory(visit.flux_weight, whole.flux_weight)   # a view, not a copy
    alone = coadd.flatten_rows(plans[1].datasets, "STIS", "FUV-MAMA")
    for name in ARRAYS:
        assert np.array_equal(getattr(visit, name), getattr(alone, name)), name
    assert visit.row_exp == alone.row_exp


def test_rows_of_files_that_are_not_consecutive(program):
    _, datasets = program
    whole = coadd.flatten_rows(datasets, "STIS", "FUV-MAMA")
    picked = [1, 4, 8]
    some = whole.subset(picked)
    alone = coadd.flatten_rows([datasets[i] for i in picked], "STIS", "FUV-MAMA")
    for name in ARRAYS:
        assert np.array_equal(getattr(some, name), getattr(alone, name)), name
    assert some.row_exp == alone.row_exp


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
                  elements=st.sampled_from([0.0, 1.0, -1.0, 2.5, -0.5, 1e300, np.inf, -np.inf,
                                            np.nan])),
       st.data())
def test_row_medians_equal_np_median_per_row(values, data):
    valid = data.draw(hnp.arrays(bool, values.shape))
    with np.errstate(invalid="ignore"):   # inf - inf in a mean of two middles is NaN
        expected = np.array([np.median(row[ok]) if ok.any() else 0.0
                             for row, ok in zip(values, valid)])
    got = coadd.row_medians(values.copy(), valid)
    assert np.array_equal(got, expected, equal_nan=True)


def test_a_job_computes_each_exposure_once(program, computed):
    """The pytest path (qa.pipeline) shares one row stack between a program's products too."""
    from qa.pipeline import Job, RunParams, compute

    files, _ = program
    job = Job(id="x:8436", source="x", directory=str(files[0].parent),
              files=[f.name for f in files], sha256=[], params=RunParams(), cache_dir=None)
    outcome = compute(job)
    assert len(outcome.products) == 3 and all(p.error is None for p in outcome.products)
    assert sorted(computed) == sorted(f.name for f in files)


def test_a_file_whose_rows_are_all_dropped(tmp_path, monkeypatch):
    """A file with only a segment HASP leaves out (as COS G230L's NUVC) stacks no row; the
    products of its setting are still made, from the other files' rows."""
    from qa.engine.prefilter import BAD_SEGMENTS
    from qa.synth import write_cos

    monkeypatch.setitem(BAD_SEGMENTS, "COS/G130M", ("FUVB",))
    files = [write_cos(tmp_path, rootname=f"lbch0101{i}", grating="G130M", cenwave=1291,
                       program=99103, target="T", seed=i, expstart=58200.0 + i,
                       segments=("FUVB",) if i == 3 else None)
             for i in range(4)]
    result = native.run(files)
    assert [p.level for p in result.products] == ["visit", "program"]
    for product in result.products:
        assert product.kept == [f.name for f in files] and product.flux.size


def test_a_product_keeps_its_own_dtypes(tmp_path):
    """One file with FLUX stored as float64 changes nothing in a product without it."""
    from astropy.io import fits

    files = e140m_program(tmp_path, 10)
    wide = files[0]                       # visit 01
    with fits.open(wide, memmap=False) as hdul:
        table = hdul[1]
        cols = [fits.Column(name=c.name, unit=c.unit,
                            format=f"{c.format.repeat}D" if c.name == "FLUX" else c.format,
                            array=table.data[c.name].astype(np.float64) if c.name == "FLUX"
                            else table.data[c.name]) for c in table.columns]
        hdul[1] = fits.BinTableHDU.from_columns(cols, header=table.header)
        hdul.writeto(wide, overwrite=True)
    together = {p.key: p for p in native.run(files).products}
    alone = native.run(files[5:]).products            # visit 02 only
    visit02 = [p for p in alone if p.level == "visit"][0]
    mine = together[visit02.key]
    assert [(r.file, r.row, r.iteration, r.n, r.scaled_median) for r in mine.row_stats] == \
        [(r.file, r.row, r.iteration, r.n, r.scaled_median) for r in visit02.row_stats]
    for name in ("flux", "error", "snr", "eff_exptime"):
        assert np.array_equal(getattr(mine, name), getattr(visit02, name)), name

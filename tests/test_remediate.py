"""Remediation: factors, scaled copies with provenance, originals untouched, properties."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.engine import native
from qa.io.reader import read_dataset
from qa.remediate import NotPossible, remediate, scale_factors

from .conftest import derive_copy

TEMPLATE = "o4vt02040_x1d.fits"
FAST = settings(max_examples=8, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_set(real_dir, d, scales, visit="03"):
    d.mkdir(exist_ok=True)
    return [derive_copy(real_dir / TEMPLATE, d, f"o5jy{visit}0{i + 1}0", flux_scale=s)
            for i, s in enumerate(scales)]


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_factors_brightest_reference():
    ref, factors = scale_factors({"a": 7.332182e-12, "b": 6.142719e-12, "c": 5.53908e-12})
    assert ref == "a"
    assert factors["a"] == 1.0
    assert factors["b"] == pytest.approx(1.1936, abs=1e-4)
    assert factors["c"] == pytest.approx(1.3237, abs=1e-4)


@pytest.mark.parametrize("medians, why", [
    ({"a": 1.0}, "single exposure"),
    ({"a": 1.0, "b": 0.0}, "not positive for b"),
    ({"a": 1.0, "b": -2e-14}, "not positive for b"),
    ({"a": float("nan"), "b": 1.0}, "not positive for a"),
])
def test_factors_not_possible(medians, why):
    with pytest.raises(NotPossible, match=why):
        scale_factors(medians)


def test_other_reference_rules():
    assert scale_factors({"a": 2.0, "b": 1.0, "c": 4.0}, "median")[1] == {"a": 1.0, "b": 2.0, "c": 0.5}
    assert scale_factors({"a": 2.0, "b": 1.0}, "first") == ("a", {"a": 1.0, "b": 2.0})


def test_remediation_writes_provenance_and_keeps_originals(real_dir, tmp_path):
    paths = make_set(real_dir, tmp_path / "in", [1.0, 0.9, 0.75])
    before = {p: sha(p) for p in paths}
    result = native.run(tmp_path / "in")
    product = result.product("8016-G191B2B-STIS/E140M-visit03")
    assert product.rejected
    rem, fixed = remediate(product, [read_dataset(p) for p in paths], tmp_path / "out", native.run)
    assert {p: sha(p) for p in paths} == before
    assert rem.possible and rem.rejected_after == [] and len(fixed.kept) == 3
    assert rem.factors["o5jy03030_x1d.fits"] == pytest.approx(1 / 0.75, rel=1e-3)
    with fits.open(tmp_path / "out" / "o5jy03030_x1d.fits") as h, fits.open(paths[2]) as o:
        assert h[1].header["SCALEFAC"] == pytest.approx(rem.factors["o5jy03030_x1d.fits"])
        assert h[0].header["QASRC"] == str(paths[2].resolve())
        assert h[0].header["QASRCSHA"] == before[paths[2]]
        assert h[0].header["QAREF"] == "o5jy03010_x1d.fits (rule brightest)"
        assert "FLUX and ERROR scaled" in str(h[0].header["HISTORY"])
        np.testing.assert_allclose(h[1].data["FLUX"], o[1].data["FLUX"] * np.float32(h[1].header["SCALEFAC"]), rtol=1e-6)
        assert np.array_equal(h[1].data["NET"], o[1].data["NET"])
    assert rem.snr_gain.median > 1.0 and rem.snr_gain.p5 <= rem.snr_gain.median <= rem.snr_gain.p95


def test_an_integer_flux_column_is_a_reason_not_a_crash(real_dir, tmp_path):
    paths = make_set(real_dir, tmp_path / "in", [1.0, 0.9, 0.75])
    with fits.open(paths[1], memmap=False) as hdul:   # FLUX as integers (counts of 1e-15)
        table = hdul[1]
        cols = [fits.Column(name=c.name, unit=c.unit,
                            format=f"{c.format.repeat}J" if c.name == "FLUX" else c.format,
                            array=np.round(table.data[c.name] * 1e15).astype(np.int32)
                            if c.name == "FLUX" else table.data[c.name]) for c in table.columns]
        hdul[1] = fits.BinTableHDU.from_columns(cols, header=table.header)
        hdul.writeto(paths[1], overwrite=True)
    before = sha(paths[1])
    product = native.run(tmp_path / "in").product("8016-G191B2B-STIS/E140M-visit03")
    rem, fixed = remediate(product, [read_dataset(p) for p in paths], tmp_path / "out", native.run)
    assert not rem.possible and fixed is None
    assert "o5jy03020_x1d.fits" in rem.reason and "FLUX is stored as int32" in rem.reason
    assert sha(paths[1]) == before


def test_single_exposure_is_reported(real_dir, tmp_path):
    (path,) = make_set(real_dir, tmp_path, [1.0])
    product = native.run(tmp_path).products[0]
    rem, fixed = remediate(product, [read_dataset(path)], tmp_path / "out", native.run)
    assert not rem.possible and "single exposure" in rem.reason and fixed is None


def _verdicts(result):
    return {p.key: (tuple(p.kept), tuple(r.file for r in p.rejected)) for p in result.products}


@FAST
@given(scales=st.lists(st.floats(0.7, 1.0), min_size=2, max_size=3), common=st.floats(0.01, 100.0))
def test_common_factor_changes_no_verdict(real_dir, tmp_path_factory, scales, common):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    make_set(real_dir, a, scales)
    make_set(real_dir, b, [s * common for s in scales])
    assert _verdicts(native.run(a)) == _verdicts(native.run(b))


@FAST
@given(low=st.floats(0.01, 0.6), n=st.integers(2, 3))
def test_far_low_exposure_is_always_rejected(real_dir, tmp_path_factory, low, n):
    d = tmp_path_factory.mktemp("low")
    make_set(real_dir, d, [1.0] * n + [low])
    visit = native.run(d).product("8016-G191B2B-STIS/E140M-visit03")
    assert f"o5jy030{n + 1}0_x1d.fits" in [r.file for r in visit.rejected]


@FAST
@given(scales=st.lists(st.floats(0.3, 1.0), min_size=2, max_size=3))
def test_remediation_never_lowers_kept(real_dir, tmp_path_factory, scales):
    d = tmp_path_factory.mktemp("rem")
    paths = make_set(real_dir, d, scales)
    product = native.run(d).product("8016-G191B2B-STIS/E140M-visit03")
    rem, fixed = remediate(product, [read_dataset(p) for p in paths],
                           tmp_path_factory.mktemp("out"), native.run)
    assert len(fixed.kept) >= len(product.kept)

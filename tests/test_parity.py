"""The native engine decides exactly what the installed hasp decides.

Reference runs take seconds each: these tests are marked slow but run by default.
"""
from __future__ import annotations

import gzip
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.engine import native, reference
from qa.engine.parity import differences

from .conftest import derive_copy

pytestmark = pytest.mark.slow
RTOL = 1e-6


def assert_same(inputs, **kw):
    a = native.run(inputs, **kw)
    b = reference.run(inputs, **kw)
    assert not differences(a, b, rtol=RTOL), "\n".join(differences(a, b, rtol=RTOL))
    return a


@pytest.mark.parametrize("name", ["o4vt02040", "o3zx02070", "odbue5030", "ocb6f1020", "ocb6i2020"])
def test_each_real_file(real_dir, name):
    result = assert_same([real_dir / f"{name}_x1d.fits"])
    assert {p.level for p in result.products} == {"visit", "program"}


def test_two_sci_extensions_rejected_at_file_level(real_dir):
    # ocb6f1020 holds two exposures; HASP tests its second extension against the
    # co-add of both and removes the whole file.
    result = assert_same([real_dir / "ocb6f1020_x1d.fits"])
    visit = result.products[0]
    assert visit.kept == [] and visit.rejected[0].file == "ocb6f1020_x1d.fits"
    assert {s.extver for s in visit.row_stats} == {1, 2}


def test_real_cross_program_pair(real_dir, tmp_path):
    for name in ("o3zx02070", "odbue5030"):
        shutil.copy(real_dir / f"{name}_x1d.fits", tmp_path)
    result = assert_same(tmp_path, cross_program=True)
    (product,) = result.products
    assert product.kept == ["o3zx02070_x1d.fits", "odbue5030_x1d.fits"]
    assert product.rejected == []


def test_scaled_copies_cascade(real_dir, tmp_path):
    # The primer's calibration hint: at o4vt02040's SNR, 1 : 0.838 : 0.755 cascades.
    src = real_dir / "o4vt02040_x1d.fits"
    for root, scale in (("o5jy03010", 1.0), ("o5jy03020", 0.838), ("o5jy03030", 0.755)):
        derive_copy(src, tmp_path, root, flux_scale=scale)
    result = assert_same(tmp_path)
    visit = result.product("8016-G191B2B-STIS/E140M-visit03")
    assert [r.file for r in visit.rejected] == ["o5jy03030_x1d.fits", "o5jy03020_x1d.fits"]
    assert [r.iteration for r in visit.rejected] == [1, 2]


def test_dq_changes_and_keyword_filters(real_dir, tmp_path):
    src = real_dir / "o4vt02040_x1d.fits"
    derive_copy(src, tmp_path, "o4vt05010", flag_fraction=0.2, seed=1)
    derive_copy(src, tmp_path, "o4vt05020", flag_rows=(3, 10, 20), flux_scale=0.97)
    derive_copy(src, tmp_path, "o4vt05030", sci={"EXPFLAG": "INTERRUPTED"})
    derive_copy(src, tmp_path, "o4vt05040", primary={"POSTARG1": 0.05})
    result = assert_same(tmp_path)
    assert sorted((k.file, k.filter) for k in result.keyword_filtered) == [
        ("o4vt05030_x1d.fits", "EXPFLAG"), ("o4vt05040_x1d.fits", "POSTARG1")]
    assert_same(tmp_path, keyword_filtering=False)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scales=st.lists(st.floats(0.5, 1.2), min_size=2, max_size=3),
       flagged=st.floats(0.0, 0.3), snrmax=st.sampled_from([5.0, 20.0, 50.0]),
       threshold=st.sampled_from([-50.0, -20.0, -200.0]))
def test_hypothesis_derived_sets(real_dir, tmp_path_factory, scales, flagged, snrmax, threshold):
    d = tmp_path_factory.mktemp("derived")
    for i, scale in enumerate(scales):
        derive_copy(real_dir / "o4vt02040_x1d.fits", d, f"o4vt06{i}10", flux_scale=scale,
                    flag_fraction=flagged, seed=i)
    assert_same(d, snrmax=snrmax, threshold=threshold)


def test_swrapper_command_writes_what_native_predicts(tmp_path):
    """The real `swrapper` CLI on the demo program: same product files, same co-adds."""
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    from astropy.io import fits

    from qa.synth import write_demo_program

    data = tmp_path / "8435"
    write_demo_program("8435", data)
    out = tmp_path / "products"
    swrapper = Path(sys.executable).with_name("swrapper")
    log = subprocess.run([str(swrapper), "-i", str(data), "-o", str(out)], capture_output=True,
                         text=True, check=True, timeout=600).stdout
    result = native.run(data)
    expected = {p.filename: p for p in result.products if p.flux is not None}
    written = {f.name for f in out.glob("*_cspec.fits")}
    # Besides single-grating co-adds swrapper writes the abutted E140M-E230M program product.
    assert written - set(expected) == {"hst_8435_stis_g191b2b_e140m-e230m_o5jy_cspec.fits"}
    assert set(expected) <= written
    for name, product in expected.items():
        with fits.open(out / name) as hdul:
            sci = hdul[1].data
            np.testing.assert_array_equal(sci["WAVELENGTH"][0], product.wavelength.astype(np.float32))
            np.testing.assert_allclose(sci["FLUX"][0], product.flux.astype(np.float32), rtol=1e-6)
            np.testing.assert_allclose(sci["SNR"][0], product.snr.astype(np.float32), rtol=1e-6)
            assert sorted(hdul[2].data["FILENAME"]) == sorted(product.kept)
    assert "Removing file" in log and "o5jy03030_x1d.fits" in log


@pytest.mark.parametrize("program", ["8435", "99101", "99102"])
def test_generated_demo_programs(tmp_path, program):
    from qa.synth import write_demo_program

    write_demo_program(program, tmp_path)
    result = assert_same(tmp_path)
    assert result.products


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scales=st.lists(st.floats(0.85, 1.1), min_size=2, max_size=3),
       flagged=st.floats(0.0, 0.2), grating=st.sampled_from(["G130M", "G160M", "G185M"]))
def test_hypothesis_generated_cos(tmp_path_factory, scales, flagged, grating):
    from qa.synth import write_cos

    d = tmp_path_factory.mktemp("cos")
    cenwave = {"G130M": 1291, "G160M": 1600, "G185M": 1850}[grating]
    for i, scale in enumerate(scales):
        write_cos(d, rootname=f"lzzz01{i + 1}10", grating=grating, cenwave=cenwave, program=99999,
                  flux_scale=scale, fppos=i % 4 + 1, seed=i, extra_dq_fraction=flagged)
    assert_same(d)


def test_gzip_inputs(real_dir, tmp_path):
    # hasp's classes open *.fits.gz through astropy; the visit, which HASP takes from the
    # plain file name, comes from the name without .gz in both engines.
    plain, packed = tmp_path / "plain", tmp_path / "gz"
    plain.mkdir()
    packed.mkdir()
    for root, scale in (("o5jy03010", 1.0), ("o5jy03020", 0.838), ("o5jy03030", 0.755)):
        path = derive_copy(real_dir / "o4vt02040_x1d.fits", plain, root, flux_scale=scale)
        (packed / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    result = assert_same(packed)
    visit = result.product("8016-G191B2B-STIS/E140M-visit03")
    assert [r.file for r in visit.rejected] == ["o5jy03030_x1d.fits.gz", "o5jy03020_x1d.fits.gz"]

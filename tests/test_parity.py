"""The native engine decides exactly what the installed hasp decides.

Reference runs take seconds each: these tests are marked slow but run by default.
"""
from __future__ import annotations

import gzip
import shutil

import numpy as np
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


def _write(specs, real_dir, directory):
    from .differential import write_file

    directory.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(specs, start=1):
        write_file(spec, i, real_dir, directory)
    return directory


def test_stis_ccd_bit_identical(real_dir, tmp_path):
    # STIS CCD first-order cuts of a real file: three exposures take ullyses' CCD
    # multi-file path (float32 scalar squares), the visit of one its single-file path
    # (float64 SNR). Both engines agree to the last bit.
    from .differential import FileSpec

    specs = [FileSpec("o4vt02040", visit=1, ccd=True, scale=s, seed=i, flag_fraction=0.05)
             for i, s in enumerate((1.0, 0.93, 1.08))]
    specs.append(FileSpec("o4vt02040", visit=2, ccd=True, noise=0.05, seed=7))
    d = _write(specs, real_dir, tmp_path / "ccd")
    a, b = native.run(d), reference.run(d)
    assert not differences(a, b, rtol=0.0), "\n".join(differences(a, b, rtol=0.0))
    multi, single = a.product("8016-G191B2B-STIS/G430M-visit01"), a.product("8016-G191B2B-STIS/G430M-visit02")
    assert (multi.detector, len(multi.kept), len(single.kept)) == ("CCD", 3, 1)
    # The single-file CCD product keeps the exposure's own (unevenly spaced) wavelengths;
    # several exposures are resampled onto HASP's even grid.
    assert np.ptp(np.diff(multi.wavelength)) < 1e-9 < np.ptp(np.diff(single.wavelength))


def test_ccd_error_squares_like_hasp():
    from qa.engine.coadd import scalar_square_float32

    rng = np.random.default_rng(3)
    x = (rng.random(200_000) * 10.0 ** rng.uniform(-20, 5, 200_000)).astype(np.float32)
    expected = np.array([v ** 2 for v in x], dtype=np.float32)  # what ullyses does, per pixel
    assert np.array_equal(scalar_square_float32(x), expected)
    assert not np.array_equal(x * x, expected)  # the vectorized square is not HASP's


def test_single_row_products(real_dir, tmp_path):
    # One row per product: never tested by the flux filter (N = 0, statistic 0).
    from .differential import FileSpec

    d = _write([FileSpec("o3zx02070", rows=(5, 6))], real_dir, tmp_path / "one")
    result = assert_same(d)
    for product in result.products:
        assert [(s.n, s.scaled_median) for s in product.row_stats] == [(0, 0.0)]
    # A positive threshold removes even an untested single row, in both engines.
    result = assert_same(d, threshold=1.0)
    assert all(p.kept == [] and p.rejected for p in result.products)


def test_dead_extension_is_an_input_and_a_finding(real_dir, tmp_path):
    # ocb6f1020's second SCI extension fully flagged: HASP still co-adds the first,
    # builds its grid from every pixel, and writes the product.
    from .differential import FileSpec

    d = _write([FileSpec("ocb6f1020", rows=(10, 14), dead_ext=(2,)),
                FileSpec("ocb6f1020", rows=(10, 14), scale=0.98, seed=1)], real_dir, tmp_path / "dead")
    result = assert_same(d)
    visit = result.product("13346-UPS-ORI-STIS/E140H-visit01")
    assert visit.findings == ["oq3a0101q_x1d.fits[SCI,2]: no good pixel (every DQ flagged)"]
    assert "oq3a0101q_x1d.fits" in visit.inputs and visit.flux is not None
    dead_rows = [s for s in visit.row_stats if s.file == "oq3a0101q_x1d.fits" and s.extver == 2]
    assert dead_rows and all(s.n == 0 for s in dead_rows)


def test_dead_file_alone_makes_no_product(real_dir, tmp_path):
    from .differential import FileSpec

    d = _write([FileSpec("o3zx02070", rows=(0, 3), dead_ext=(1,))], real_dir, tmp_path / "dead")
    result = assert_same(d)
    assert result.input_errors == {}
    assert all(p.flux is None and p.kept == [] for p in result.products)
    assert all(p.findings for p in result.products)


def test_hidden_files_are_ignored_by_both_engines(real_dir, tmp_path):
    from .differential import FileSpec

    d = _write([FileSpec("o4vt02040", rows=(0, 3), hidden="copy"),
                FileSpec("o4vt02040", rows=(0, 3), hidden="appledouble", scale=0.95)],
               real_dir, tmp_path / "hidden")
    result = assert_same(d)
    assert result.inputs == ["oq0a0101q_x1d.fits", "oq0a0102q_x1d.fits"]
    assert result.input_errors == {}


def test_products_selects_what_is_computed(real_dir, tmp_path):
    for name in ("o3zx02070", "odbue5030"):
        shutil.copy(real_dir / f"{name}_x1d.fits", tmp_path)
    want = {"7096-BD+28D4211-STIS/E230M-program"}
    for engine in (native, reference):
        result = engine.run(tmp_path, products=want)
        assert [p.key for p in result.products] == sorted(want)


def test_reference_is_hasp_main(real_dir, tmp_path):
    # The reference engine's log is swrapper's own output, product files included.
    shutil.copy(real_dir / "o3zx02070_x1d.fits", tmp_path)
    result = reference.run(tmp_path)
    assert result.log[0].startswith("HASP version")
    assert any(line.startswith("   Wrote ") and "hst_7096_stis_bdp28d4211_e230m_o3zx02_cspec.fits" in line
               for line in result.log)
    assert [p.filename for p in result.products] == [
        "hst_7096_stis_bdp28d4211_e230m_o3zx02_cspec.fits", "hst_7096_stis_bdp28d4211_e230m_o3zx_cspec.fits"]

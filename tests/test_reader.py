"""Bad input is refused with a message naming the file and the problem."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from qa.engine import native
from qa.errors import InputError
from qa.io import fitsio
from qa.io.reader import find_spectra, read_dataset, read_dataset_astropy, validate_dataset

from .conftest import derive_copy


def test_reads_real_echelle_file(real_dir):
    ds = read_dataset(real_dir / "o4vt02040_x1d.fits")
    (exp,) = ds.exposures
    assert (ds.instrument, ds.grating, ds.detector, ds.program) == ("STIS", "E140M", "FUV-MAMA", 8016)
    assert exp.flux.shape == (44, 1024) and exp.flux.dtype == np.float32
    assert exp.row_labels[0] == "order 86" and exp.exptime == 3096.0 and exp.sdqflags == 31743
    assert ds.visit == "02"


def test_reads_every_extension(real_dir):
    ds = read_dataset(real_dir / "ocb6f1020_x1d.fits")
    assert [e.extver for e in ds.exposures] == [1, 2]
    assert ds.exposures[1].header["EXPNAME"] != ds.exposures[0].header["EXPNAME"]


def _expect(path, fragment):
    with pytest.raises(InputError) as info:
        validate_dataset(read_dataset(path))
    assert path.name in str(info.value) and fragment in str(info.value)


def test_not_fits(tmp_path):
    bad = tmp_path / "o1234567a_x1d.fits"
    bad.write_text("this is not FITS\n" * 200)
    _expect(bad, "not a FITS file")


@pytest.mark.parametrize("keep", [0.95, 0.3, 0.002])
def test_truncated(real_dir, tmp_path, keep):
    data = (real_dir / "o4vt02040_x1d.fits").read_bytes()
    bad = tmp_path / "o4vt02040_x1d.fits"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError) as info:
        read_dataset(bad)
    assert "o4vt02040_x1d.fits" in str(info.value)
    assert "truncated" in str(info.value) or "not a FITS" in str(info.value)


def test_missing_file(tmp_path):
    _expect(tmp_path / "o0000000a_x1d.fits", "does not exist")


def _edit(real_dir, tmp_path, edit):
    path = derive_copy(real_dir / "o4vt02040_x1d.fits", tmp_path, "o4vt09010")
    with fits.open(path, mode="update") as hdul:
        edit(hdul)
    return path


def test_no_sci_extension(real_dir, tmp_path):
    path = _edit(real_dir, tmp_path, lambda h: h[1].header.set("EXTNAME", "OTHER"))
    _expect(path, "no SCI extension")


def test_missing_keyword(real_dir, tmp_path):
    path = _edit(real_dir, tmp_path, lambda h: h[0].header.remove("OPT_ELEM"))
    _expect(path, "OPT_ELEM")
    (tmp_path / "sci").mkdir()
    path = _edit(real_dir, tmp_path / "sci", lambda h: h[1].header.remove("SDQFLAGS"))
    _expect(path, "SDQFLAGS")


def test_missing_column(real_dir, tmp_path):
    src = derive_copy(real_dir / "o4vt02040_x1d.fits", tmp_path, "o4vt09020")
    with fits.open(src) as hdul:
        cols = [c for c in hdul[1].columns if c.name != "NET"]
        hdu = fits.BinTableHDU.from_columns(cols, header=hdul[1].header)
        fits.HDUList([hdul[0].copy(), hdu]).writeto(tmp_path / "o4vt09030_x1d.fits")
    _expect(tmp_path / "o4vt09030_x1d.fits", "NET")


def test_unknown_instrument(real_dir, tmp_path):
    path = _edit(real_dir, tmp_path, lambda h: h[0].header.set("INSTRUME", "WFC3"))
    _expect(path, "unknown instrument")


def test_nan_in_good_pixels(real_dir, tmp_path):
    def poison(h):
        h[1].data["FLUX"][5, 100:110] = np.nan
    _expect(_edit(real_dir, tmp_path, poison), "NaN")


def test_all_pixels_flagged_is_an_input_with_a_finding(real_dir, tmp_path):
    # HASP keeps a fully flagged file as a member of its product: not an input error.
    def flag(h):
        h[1].data["DQ"][:] = 4
    path = _edit(real_dir, tmp_path, flag)
    validate_dataset(read_dataset(path))
    shutil.copy(real_dir / "o4vt02040_x1d.fits", tmp_path / "o4vt09020_x1d.fits")
    result = native.run(tmp_path)
    assert result.input_errors == {}
    visit = result.products[0]
    assert visit.inputs == visit.kept == [path.name, "o4vt09020_x1d.fits"]
    assert visit.findings == [f"{path.name}[SCI,1]: no good pixel (every DQ flagged)"]


def test_hidden_files_are_not_inputs(real_dir, tmp_path):
    # HASP's glob.glob skips dot-files: AppleDouble junk and hidden copies alike.
    shutil.copy(real_dir / "o4vt02040_x1d.fits", tmp_path)
    shutil.copy(real_dir / "o4vt02040_x1d.fits", tmp_path / ".o4vt02050_x1d.fits")
    (tmp_path / "._o4vt02040_x1d.fits").write_bytes(bytes(4096))
    assert [p.name for p in find_spectra(tmp_path)] == ["o4vt02040_x1d.fits"]


def test_one_bad_file_does_not_stop_the_others(real_dir, tmp_path):
    shutil.copy(real_dir / "o3zx02070_x1d.fits", tmp_path)
    (tmp_path / "o9zz01010_x1d.fits").write_bytes(b"SIMPLE  =  garbage")
    result = native.run(tmp_path)
    assert "o9zz01010_x1d.fits" in result.input_errors
    assert [p.kept for p in result.products] == [["o3zx02070_x1d.fits"]] * 2


def test_files_are_not_modified(real_dir):
    before = (real_dir / "o4vt02040_x1d.fits").read_bytes()
    native.run([real_dir / "o4vt02040_x1d.fits"])
    assert (real_dir / "o4vt02040_x1d.fits").read_bytes() == before


REAL_NAMES = ["o4vt02040", "o3zx02070", "odbue5030", "ocb6f1020", "ocb6i2020"]


def assert_same_data(a, b):
    assert a.primary == b.primary and a.visit == b.visit
    for x, y in zip(a.exposures, b.exposures, strict=True):
        assert x.header == y.header and x.row_labels == y.row_labels
        for col in ("wavelength", "flux", "error", "gross", "net", "dq"):
            assert np.array_equal(getattr(x, col), getattr(y, col))


@pytest.mark.parametrize("name", REAL_NAMES)
def test_fast_reader_equals_astropy(real_dir, name):
    fast = read_dataset(real_dir / f"{name}_x1d.fits")
    slow = read_dataset_astropy(real_dir / f"{name}_x1d.fits")
    assert_same_data(fast, slow)


def gzip_copy(src: Path, dest_dir: Path) -> Path:
    """``dest_dir/<src name>.gz``, as the archive and users keep files."""
    dest = dest_dir / f"{src.name}.gz"
    dest.write_bytes(gzip.compress(src.read_bytes()))
    return dest


@pytest.mark.parametrize("name", REAL_NAMES)
def test_gzip_files_read_like_plain_ones(real_dir, tmp_path, name):
    plain = read_dataset(real_dir / f"{name}_x1d.fits")
    gz = gzip_copy(real_dir / f"{name}_x1d.fits", tmp_path)
    for ds in (read_dataset(gz), read_dataset_astropy(gz)):
        assert ds.path == gz
        assert_same_data(ds, plain)


def test_truncated_gzip(real_dir, tmp_path):
    gz = gzip_copy(real_dir / "o4vt02040_x1d.fits", tmp_path)
    gz.write_bytes(gz.read_bytes()[:100_000])
    with pytest.raises(InputError) as info:
        read_dataset(gz)
    assert "o4vt02040_x1d.fits.gz" in str(info.value) and "gzip" in str(info.value)


def test_find_spectra_takes_gzip_files_once(tmp_path):
    for name in ("o1aa01010_x1d.fits", "o1aa01010_x1d.fits.gz", "o1aa01020_x1d.fits.gz",
                 "o1aa01030_sx1.fits.gz", "o1aa01040_flt.fits.gz", "o1aa01050_x1d.fits.bz2"):
        (tmp_path / name).write_bytes(b"")
    # Where both forms exist the plain file is the one HASP would read: never both.
    assert [p.name for p in find_spectra(tmp_path)] == [
        "o1aa01010_x1d.fits", "o1aa01020_x1d.fits.gz", "o1aa01030_sx1.fits.gz"]


def test_engine_on_gzip_files_decides_as_on_plain_ones(real_dir, tmp_path):
    plain, packed = tmp_path / "plain", tmp_path / "gz"
    plain.mkdir()
    packed.mkdir()
    for root, scale in (("o5jy03010", 1.0), ("o5jy03020", 0.838), ("o5jy03030", 0.755)):
        gzip_copy(derive_copy(real_dir / "o4vt02040_x1d.fits", plain, root, flux_scale=scale), packed)
    a, b = native.run(plain), native.run(packed)
    assert b.inputs == [f"{name}.gz" for name in a.inputs] and not b.input_errors
    # Same products (the visit comes from the name without .gz), same decisions, same arrays.
    assert [p.key for p in b.products] == [p.key for p in a.products]
    assert "8016-G191B2B-STIS/E140M-visit03" in [p.key for p in b.products]
    for p, q in zip(a.products, b.products):
        assert [f"{f}.gz" for f in p.kept] == q.kept
        assert [f"{r.file}.gz" for r in p.rejected] == [r.file for r in q.rejected]
        assert np.array_equal(p.flux, q.flux) and np.array_equal(p.snr, q.snr)


def test_scaled_columns_fall_back_to_astropy(real_dir, tmp_path):
    # An unsigned DQ column (TZERO = 32768) is valid FITS the fast reader leaves to astropy.
    path = tmp_path / "o4vt02041_x1d.fits"
    with fits.open(real_dir / "o4vt02040_x1d.fits") as hdul:
        cols = [c if c.name != "DQ" else
                fits.Column(name="DQ", format="1024I", bzero=32768,
                            array=hdul[1].data["DQ"].astype(np.uint16))
                for c in hdul[1].columns]
        hdu = fits.BinTableHDU.from_columns(cols, header=hdul[1].header)
        fits.HDUList([hdul[0].copy(), hdu]).writeto(path)
    buf, hdus = fitsio.read_hdus(path)
    with pytest.raises(fitsio.Unsupported):
        fitsio.table(buf, hdus[1])
    ds = read_dataset(path)
    real = read_dataset(real_dir / "o4vt02040_x1d.fits").exposures[0]
    assert ds.exposures[0].dq.dtype == np.uint16
    assert np.array_equal(ds.exposures[0].dq, real.dq)
    assert np.array_equal(ds.exposures[0].flux, real.flux)

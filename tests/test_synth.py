"""qa.synth: generated x1d files look like the real ones, are deterministic, and the
demo programs make the real hasp reject exactly what they are built to."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import hasp.wrapper
import numpy as np
import pytest
from astropy.io import fits

from qa import synth

STIS_SERIOUS = synth.STIS_SDQFLAGS & ~16  # HASP drops bit 16 for the MAMAs
_ROW = re.compile(r"^Order (\d+) from segment (\S+) in file (\S+) has scaled median = (\S+)$")
_REMOVE = re.compile(r"^Removing file (\S+) from product$")


def _sci(path: Path) -> tuple[fits.Header, fits.Header, fits.FITS_rec]:
    with fits.open(path, memmap=False) as hdul:
        return hdul[0].header, hdul[1].header, hdul[1].data


def _snr(data: fits.FITS_rec) -> float:
    good = ((data["DQ"] & STIS_SERIOUS) == 0) & (data["ERROR"] > 0)
    return float(np.median(data["FLUX"][good] / data["ERROR"][good]))


# ----------------------------------------------------------------- realism vs a real file

def test_e140m_matches_real_template(tmp_path: Path, real_dir: Path) -> None:
    _, real_sci, real = _sci(real_dir / "o4vt02040_x1d.fits")
    path = synth.write_stis_echelle(tmp_path, rootname="o9zz01010", exptime=3096.0,
                                    flux_norm=1.2e-11, seed=3)
    primary, sci, data = _sci(path)

    assert data.dtype.names == real.dtype.names
    assert [data.dtype[n] for n in data.dtype.names] == [real.dtype[n] for n in real.dtype.names]
    assert len(data) == len(real) == 44
    assert np.array_equal(data["SPORDER"], real["SPORDER"])
    for ours, theirs in ((data["WAVELENGTH"].min(), real["WAVELENGTH"].min()),
                         (data["WAVELENGTH"].max(), real["WAVELENGTH"].max())):
        assert abs(ours - theirs) / theirs < 0.01
    spacing = np.diff(data["WAVELENGTH"], axis=1)
    assert 0.011 < spacing.min() and spacing.max() < 0.0195
    assert 0.1 < _snr(data) / _snr(real) < 10.0
    dead = data["SPORDER"] == 86
    assert np.all(data["DQ"][dead] & synth.STIS_SDQFLAGS)
    assert not np.any(data["DQ"][~dead].all(axis=1))
    assert sci["SDQFLAGS"] == real_sci["SDQFLAGS"] == 31743
    # bits the real file carries, in small fractions outside the dead order
    for bit in (4, 16, 32, 512, 1024, 2048):
        assert 0.0 < np.mean(data["DQ"][~dead] & bit != 0) < 0.05, bit


def test_stis_headers_have_what_hasp_reads(tmp_path: Path) -> None:
    path = synth.write_stis_echelle(tmp_path, rootname="o9zz01020", program=9999, target="G191B2B")
    primary, sci, _ = _sci(path)
    for key in ("TELESCOP", "INSTRUME", "DETECTOR", "OPT_ELEM", "CENWAVE", "TARGNAME", "RA_TARG",
                "DEC_TARG", "PROPOSID", "ROOTNAME", "PROPAPER", "APERTURE", "MTFLAG", "OBSMODE",
                "MINWAVE", "MAXWAVE", "PR_INV_L", "CAL_VER", "SPECRES", "NEXTEND", "FILENAME",
                "POSTARG1", "POSTARG2", "P1_PURPS", "PATTERN1"):
        assert key in primary, key
    assert primary["MTFLAG"].strip() == ""
    assert isinstance(primary["MINWAVE"], float) and primary["MINWAVE"] < primary["MAXWAVE"]
    assert primary["FILENAME"] == path.name == "o9zz01020_x1d.fits"
    assert (primary["PROPOSID"], primary["ROOTNAME"], primary["NEXTEND"]) == (9999, "o9zz01020", 1)
    assert (sci["EXTNAME"], sci["EXTVER"], sci["EXPFLAG"], sci["FGSLOCK"]) == ("SCI", 1, "NORMAL", "FINE")
    assert sci["EXPEND"] > sci["EXPSTART"] and sci["PLANTIME"] == sci["EXPTIME"]
    assert str(path)[-14:-12] == "01"  # HASP's visit


def test_count_model_is_consistent(tmp_path: Path) -> None:
    full = synth.write_stis_echelle(tmp_path / "a", rootname="o9zz01030", exptime=800.0, seed=5)
    dim = synth.write_stis_echelle(tmp_path / "b", rootname="o9zz01030", exptime=800.0, seed=5,
                                   flux_scale=0.5)
    _, sci, d = _sci(full)
    _, _, h = _sci(dim)
    live = d["SPORDER"] != 86
    assert np.allclose(d["NET"], d["GROSS"] - d["BACKGROUND"], atol=1e-6)
    counts = d["GROSS"][live] * sci["EXPTIME"]
    assert np.allclose(counts, np.round(counts), atol=1e-3)  # Poisson counts
    sens = d["NET"][live] / d["FLUX"][live]
    assert np.allclose(d["ERROR"][live] * sens, np.sqrt(counts) / sci["EXPTIME"], rtol=1e-4)
    # Fewer source counts, same sensitivity: NET/FLUX unchanged, median flux halves.
    assert np.allclose(h["NET"][live] / h["FLUX"][live], sens, rtol=1e-5)
    assert np.median(h["FLUX"][live]) / np.median(d["FLUX"][live]) == pytest.approx(0.5, rel=0.03)
    assert np.all(d["NET"][live] != 0)  # HASP's weight NET/FLUX must stay finite


def test_e230m_cenwave_picks_orders(tmp_path: Path) -> None:
    _, low = synth.echelle_wavelengths("E230M", 1978)
    orders, high = synth.echelle_wavelengths("E230M", 2707)
    assert low.shape == (40, 1024)
    assert 1600 < low.min() < 1615 and 2360 < low.max() < 2370  # o3zx02070: 1606.7-2366.4
    assert high.min() == pytest.approx(2277.5, abs=5) and high.max() == pytest.approx(3071.8, abs=5)
    ml = orders[:, None] * high
    assert np.ptp(ml) / ml.mean() < 0.02  # m*lambda nearly constant per grating
    with pytest.raises(ValueError):
        synth.echelle_wavelengths("E230M", 1234)


def test_first_order_g140l(tmp_path: Path) -> None:
    _, sci, d = _sci(synth.write_stis_first_order(tmp_path, rootname="o9zz02010"))
    assert len(d) == 1 and d["WAVELENGTH"].shape == (1, 1024) and d["SPORDER"][0] == 1
    assert 1130 < d["WAVELENGTH"].min() < 1160 and 1720 < d["WAVELENGTH"].max() < 1745
    assert 1 < _snr(d) < 1000


# ----------------------------------------------------------------- determinism

def test_same_seed_same_bytes(tmp_path: Path) -> None:
    def arrays(sub: str, seed: int, writer, **kw) -> list[bytes]:
        with fits.open(writer(tmp_path / sub, seed=seed, **kw), memmap=False) as hdul:
            return [np.ascontiguousarray(hdu.data).tobytes() for hdu in hdul[1:]]

    stis = dict(writer=synth.write_stis_echelle, rootname="o9zz03010", nsci=2)
    cos = dict(writer=synth.write_cos, rootname="l9zz03010")
    assert arrays("a", 7, **stis) == arrays("b", 7, **stis)
    assert arrays("c", 7, **cos) == arrays("d", 7, **cos)
    assert arrays("e", 8, **stis) != arrays("a", 7, **stis)


def test_nsci_and_overrides(tmp_path: Path) -> None:
    path = synth.write_stis_echelle(tmp_path, rootname="o9zz04010", nsci=2,
                                    header={"EXPFLAG": "INTERRUPTED", "POSTARG1": 0.05})
    with fits.open(path) as hdul:
        assert hdul[0].header["NEXTEND"] == 2 and [h.header["EXTVER"] for h in hdul[1:]] == [1, 2]
        assert len({h.header["EXPNAME"] for h in hdul[1:]}) == 2
        assert all(h.header["EXPFLAG"] == "INTERRUPTED" for h in hdul[1:])
        assert hdul[0].header["POSTARG1"] == 0.05 and "EXPFLAG" not in hdul[0].header
        assert not np.array_equal(hdul[1].data["GROSS"], hdul[2].data["GROSS"])
    with contextlib.redirect_stdout(io.StringIO()) as log:
        kept = hasp.wrapper.prefilter([str(path)], hasp.wrapper.PREFILTERS)
    assert kept == [] and "EXPFLAG = INTERRUPTED" in log.getvalue()


# ----------------------------------------------------------------- COS

def test_cos_fuv_layout(tmp_path: Path) -> None:
    primary, sci, d = _sci(synth.write_cos(tmp_path, rootname="l9zz05010", fppos=2, life_adj=4))
    assert list(d["SEGMENT"]) == ["FUVA", "FUVB"] and d["WAVELENGTH"].shape == (2, 16384)
    for col in ("VARIANCE_COUNTS", "VARIANCE_BKG", "VARIANCE_FLAT", "ERROR_LOWER", "GCOUNTS",
                "DQ_WGT", "EXPTIME", "NELEM"):
        assert col in d.dtype.names, col
    assert np.all(d["EXPTIME"] == sci["EXPTIME"]) and np.all(d["NELEM"] == 16384)
    assert (primary["LIFE_ADJ"], primary["FPPOS"], primary["INSTRUME"]) == (4, 2, "COS")
    active = (d["DQ"] & 128) == 0
    assert d["WAVELENGTH"][1][active[1]].max() < d["WAVELENGTH"][0][active[0]].min()  # FUVB bluer
    good = (d["DQ"] & sci["SDQFLAGS"]) == 0
    assert 0.8 < good.mean() < 0.9 and np.all(d["DQ_WGT"][~good] == 0)
    assert np.allclose(d["GCOUNTS"], d["VARIANCE_COUNTS"])
    sens = d["NET"][good] / d["FLUX"][good]
    assert np.all(np.isfinite(sens) & (sens > 0))  # HASP's COS weight


def test_cos_nuv_layout(tmp_path: Path) -> None:
    _, _, d = _sci(synth.write_cos(tmp_path, rootname="l9zz05020", grating="G185M", cenwave=1850))
    assert list(d["SEGMENT"]) == ["NUVA", "NUVB", "NUVC"] and d["WAVELENGTH"].shape == (3, 1274)
    assert np.all(np.diff(d["WAVELENGTH"][:, 0]) > 0)


# ----------------------------------------------------------------- calibration against hasp

def _run_hasp(indir: Path, outdir: Path) -> dict[str, dict]:
    """Run the real hasp; per level (visit, proposal): removed files and flagged rows."""
    outdir.mkdir()
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        hasp.wrapper.main(str(indir), str(outdir))
    log = buf.getvalue()
    assert "Looping over proposals" in log, log[-2000:]
    levels = {}
    for name, text in zip(("visit", "proposal"), log.split("Looping over proposals")):
        rows = [(Path(m[3]).name, int(m[1]), float(m[4]))
                for m in map(_ROW.match, text.splitlines()) if m]
        removed = [Path(m[1]).name for m in map(_REMOVE.match, text.splitlines()) if m]
        levels[name] = {"removed": removed, "rows": rows}
    return levels


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_demo_8435_reproduces_the_tutorial(tmp_path: Path) -> None:
    files = synth.write_demo_program("8435", tmp_path / "8435")
    names = [f.name for f in files]
    assert names == [f"o5jy0{v}0{i}0_x1d.fits" for v in (3, 4) for i in (1, 2, 3)]
    medians = {f.name[:9]: float(np.median(_sci(f)[2]["FLUX"])) for f in files}
    assert medians["o5jy03010"] == pytest.approx(7.332182e-12, rel=0.02)
    assert medians["o5jy03010"] / medians["o5jy03020"] == pytest.approx(1.1936, rel=0.02)
    assert medians["o5jy03010"] / medians["o5jy03030"] == pytest.approx(1.3237, rel=0.02)

    levels = _run_hasp(tmp_path / "8435", tmp_path / "out")
    for level in levels.values():
        assert level["removed"] == ["o5jy03030_x1d.fits"]
        flagged = level["rows"]
        assert {name for name, _, _ in flagged} == {"o5jy03030_x1d.fits"}
        assert 3 <= len(flagged) <= 20
        assert all(-80.0 <= value <= -50.0 for _, _, value in flagged)
    products = {p.name for p in (tmp_path / "out").glob("*_cspec.fits")}
    assert "hst_8435_stis_g191b2b_e140m_o5jy03_cspec.fits" in products
    assert "hst_8435_stis_g191b2b_e230m_o5jy04_cspec.fits" in products


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_demo_99101_rejects_the_faint_exposure(tmp_path: Path) -> None:
    files = synth.write_demo_program("99101", tmp_path / "p")
    assert len(files) == 4
    medians = {f.name: float(np.median(_sci(f)[2]["FLUX"])) for f in files}
    faint = min(medians, key=medians.get)
    others = [m for name, m in medians.items() if name != faint]
    assert 0.88 < medians[faint] / np.mean(others) < 0.96
    for level in _run_hasp(tmp_path / "p", tmp_path / "out").values():
        assert level["removed"] == [faint]
        assert {name for name, _, _ in level["rows"]} == {faint}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_demo_99102_keeps_everything(tmp_path: Path) -> None:
    files = synth.write_demo_program("99102", tmp_path / "p")
    assert {_sci(f)[0]["INSTRUME"] for f in files} == {"COS", "STIS"}
    for level in _run_hasp(tmp_path / "p", tmp_path / "out").values():
        assert level == {"removed": [], "rows": []}


def test_write_demo_layout(tmp_path: Path) -> None:
    written = synth.write_demo(tmp_path)
    assert set(written) == set(synth.DEMO_PROGRAMS)
    for pid, paths in written.items():
        assert paths and all(p.parent == tmp_path / pid and p.name.endswith("_x1d.fits") for p in paths)
        assert {_sci(p)[0]["PROPOSID"] for p in paths} == {int(pid)}

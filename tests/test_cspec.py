"""The remediated co-add written as a HASP cspec, against the real ``swrapper`` on the scaled copies.

The demo's E140M visit 03 (8435, o5jy03010/020/030 at 1 : 0.838 : 0.755) is
remediated by the native engine; swrapper then co-adds the same scaled copies
and its cspec must match ours.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from qa.cspec import write_cspec
from qa.engine import native
from qa.io.reader import read_dataset
from qa.remediate import _sha256, remediate
from qa.synth import write_demo_program

KEY = "8435-G191B2B-STIS/E140M-visit03"
COLUMNS = ("WAVELENGTH", "FLUX", "ERROR", "SNR", "EFF_EXPTIME")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("cspec")
    data = root / "8435"
    write_demo_program("8435", data)
    product = native.run(data).product(KEY)
    datasets = [read_dataset(data / n) for n in product.inputs]
    rem, fixed = remediate(product, datasets, root / "scaled", native.run)
    sha = {n: _sha256(data / n) for n in product.inputs}
    scaled = sorted(Path(rem.scaled_dir).glob("*_x1d.fits"))
    ours = write_cspec(fixed, scaled, root / "ours" / fixed.filename, rem, sha)
    return ours, rem, fixed, sha, Path(rem.scaled_dir)


def test_cspec_carries_the_remediation(written):
    ours, rem, fixed, sha, _ = written
    assert ours.name == fixed.filename == "hst_8435_stis_g191b2b_e140m_o5jy03_cspec.fits"
    with fits.open(ours) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "PROVENANCE"]
        h = hdul[0].header
        assert h["QAREMED"] is True and h["QAREF"] == rem.scaled_to == "o5jy03010_x1d.fits"
        assert h["FILENAME"] == ours.name and h["HLSP_LVL"] == 1
        files = {h[f"QAFIL{i:03d}"]: (h[f"QAFAC{i:03d}"], h[f"QASHA{i:03d}"]) for i in (1, 2, 3)}
        assert files == {f: (pytest.approx(rem.factors[f]), sha[f]) for f in rem.factors}
        assert sorted(hdul[2].data["FILENAME"]) == sorted(fixed.kept)
        assert hdul[1].columns["FLUX"].unit == "erg /s /cm**2 /Angstrom"


@pytest.mark.slow
def test_cspec_matches_swrapper_on_the_scaled_copies(written, tmp_path):
    ours, _rem, fixed, _sha, scaled_dir = written
    swrapper = Path(sys.executable).with_name("swrapper")
    subprocess.run([str(swrapper), "-i", str(scaled_dir), "-o", str(tmp_path)], check=True,
                   capture_output=True, text=True, timeout=600)
    theirs = tmp_path / fixed.filename
    assert theirs.is_file(), sorted(p.name for p in tmp_path.iterdir())
    with fits.open(ours) as a, fits.open(theirs) as b:
        for name in COLUMNS:
            np.testing.assert_allclose(a[1].data[name], b[1].data[name], rtol=1e-6, err_msg=name)
            assert a[1].columns[name].unit == b[1].columns[name].unit
        assert a[2].columns.names == b[2].columns.names
        for name in a[2].columns.names:
            assert list(a[2].data[name]) == list(b[2].data[name]), name
        skip = {"DATE", "FILENAME"}
        theirs_keys = {k: v for k, v in b[0].header.items() if k not in skip}
        ours_keys = {k: v for k, v in a[0].header.items() if k not in skip and not k.startswith("QA")}
        assert ours_keys == theirs_keys
        assert dict(a[1].header) == dict(b[1].header)

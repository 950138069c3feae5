"""The plugin as a user runs it: pytest in a subprocess on a directory of spectra.

Data: three copies of the real o4vt02040 (E140M) scaled 1 : 0.9 : 0.75, so that
HASP rejects the faintest one, plus the real o3zx02070 (E230M) that passes.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from qa.archive.mast_server import MastServer

ROOT = Path(__file__).resolve().parents[1]
VISIT = "8016-G191B2B-STIS/E140M-visit03"


def qa(tmp_path, *args, cwd=None):
    """Run pytest with the plugin; returns (exit code, stdout, results JSON)."""
    results = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", f"--cache-dir={tmp_path / 'cache'}",
           f"--qa-results={results}", "-rA", *args]
    proc = subprocess.run(cmd, cwd=cwd or ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    data = json.loads(results.read_text()) if results.exists() else None
    return proc.returncode, proc.stdout + proc.stderr, data


def outcomes(data):
    return {(r["check"], r["case_id"]): r["status"] for r in data["results"]}


EXPECTED_FAILED = {
    ("flux_variance", f"{VISIT}-o5jy03030"),
    ("flux_variance", "8016-G191B2B-STIS/E140M-program-o5jy03030"),
    ("rejection", VISIT),
    ("rejection", "8016-G191B2B-STIS/E140M-program"),
}


def test_data_dir_run(data_dir, tmp_path):
    code, out, data = qa(tmp_path, f"--data-dir={data_dir}")
    assert code == 1, out
    got = outcomes(data)
    assert {k for k, v in got.items() if v == "failed"} == EXPECTED_FAILED
    assert got[("snr_gain", VISIT)] == "passed"
    assert got[("snr_gain", "7096-BD+28D4211-STIS/E230M-visit02")] == "skipped"
    assert f"test_flux_variance[{VISIT}-o5jy03030]" in out
    assert "remediation: scaled to o5jy03010_x1d.fits" in out and "hasp-qa summary" in out
    rem = data["products"][VISIT]["remediation"]
    assert rem["rejected_after"] == [] and rem["factors"]["o5jy03030_x1d.fits"] > 1.3
    assert data["products"][VISIT]["engine"] == "native"
    assert "hasp" in data["environment"]


def test_gzip_data_dir_gives_the_same_verdicts(data_dir, tmp_path):
    packed = tmp_path / "gz" / "8016"
    packed.mkdir(parents=True)
    for path in data_dir.iterdir():
        (packed / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    code, out, data = qa(tmp_path, f"--data-dir={packed}")
    assert code == 1, out
    got = outcomes(data)
    assert {k for k, v in got.items() if v == "failed"} == EXPECTED_FAILED
    assert got[("snr_gain", VISIT)] == "passed"
    assert "remediation: scaled to o5jy03010_x1d.fits.gz" in out


def test_select_with_k_and_junit(data_dir, tmp_path):
    junit = tmp_path / "junit.xml"
    code, out, data = qa(tmp_path, f"--data-dir={data_dir}", "-k", "o5jy03030", f"--junitxml={junit}")
    assert code == 1
    assert set(outcomes(data)) == {k for k in EXPECTED_FAILED if k[0] == "flux_variance"}
    cases = ET.parse(junit).getroot().iter("testcase")
    names = {c.get("name"): c.find("failure") for c in cases}
    assert set(names) == {f"test_flux_variance[{VISIT}-o5jy03030]",
                          "test_flux_variance[8016-G191B2B-STIS/E140M-program-o5jy03030]"}
    assert all("below -50" in f.get("message") for f in names.values())


def test_xdist_computes_once_and_merges_results(data_dir, tmp_path):
    code, out, data = qa(tmp_path, f"--data-dir={data_dir}", "-n", "2", "-v")
    assert code == 1, out
    # Each program's cases ran on one worker.
    ran = {m.group(2): set() for m in re.finditer(r"^\[(gw\d)\] .*@(hasp-qa-job\d+)", out, re.M)}
    for m in re.finditer(r"^\[(gw\d)\] .*@(hasp-qa-job\d+)", out, re.M):
        ran[m.group(2)].add(m.group(1))
    assert len(ran) == 2 and all(len(workers) == 1 for workers in ran.values()), ran
    assert {k for k, v in outcomes(data).items() if v == "failed"} == EXPECTED_FAILED
    assert len(data["results"]) == (3 + 3 + 1 + 1) + 4 * 3  # exposures per product, 3 mode checks
    # One job per program, computed once for both workers; the program product of 8016
    # has the same inputs as its only visit, so they share one co-add and one remediation.
    entries = [json.loads(p.read_text())["outcome"]
               for p in (tmp_path / "cache" / "outcomes").glob("*/*.json")]
    assert sorted(e["job"] for e in entries) == ["8016:7096", "8016:8016"]
    assert [e["engine_runs"] for e in entries] == [1, 1]
    assert sum(e["remediations"] for e in entries) == 1


def test_last_failed(data_dir, tmp_path):
    shutil.copytree(ROOT / "checks", tmp_path / "proj" / "checks")
    qa(tmp_path, f"--data-dir={data_dir}", cwd=tmp_path / "proj")
    code, out, data = qa(tmp_path, f"--data-dir={data_dir}", "--lf", cwd=tmp_path / "proj")
    assert set(outcomes(data)) == EXPECTED_FAILED, out


def test_bad_check_file_is_a_collection_error(data_dir, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[check.strict]\nkind = "flux_variance"\n[check.strict.params]\nthreshold = "x"\n')
    code, out, _ = qa(tmp_path, f"--data-dir={data_dir}", f"--checks={bad}")
    assert code == 2, out
    assert f"{bad}: check.strict.params.threshold: expected float, got str" in out


def test_stricter_copy_and_threshold_override(data_dir, tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text('[check.fv_strict]\nkind = "flux_variance"\n'
                      '[check.fv_strict.params]\nthreshold = -5.0\n')
    code, out, data = qa(tmp_path, f"--data-dir={data_dir}", f"--checks={strict}", "--remediate=off")
    strict_failed = {k for k, v in outcomes(data).items() if v == "failed"}
    assert ("fv_strict", f"{VISIT}-o5jy03020") in strict_failed  # passes at -50, fails at -5
    code, out, data = qa(tmp_path, f"--data-dir={data_dir}", "--threshold=-500")
    assert code == 0, out


def test_unreadable_file_errors_its_case_only(data_dir, tmp_path):
    d = tmp_path / "mixed"
    shutil.copytree(data_dir, d)
    (d / "o9zz01010_x1d.fits").write_bytes(b"SIMPLE  = T" + b" " * 3000)
    code, out, data = qa(tmp_path, f"--data-dir={d}")
    got = outcomes(data)
    assert got[("flux_variance", "mixed-o9zz01010")] == "error"
    assert "o9zz01010_x1d.fits" in out and "ERROR" in out
    assert {k for k, v in got.items() if v == "failed"} == EXPECTED_FAILED


def test_archive_program_matches_data_dir(data_dir, tmp_path):
    root = tmp_path / "mast"
    shutil.copytree(data_dir, root / "8016")
    html = tmp_path / "report.html"
    with MastServer(root) as server:
        code, out, data = qa(tmp_path, "--program=8016", f"--mast-url={server.url}",
                             f"--html={html}", "--self-contained-html")
    assert code == 1, out
    page = html.read_text()
    assert f"archive {server.url}" in page and "4 downloaded, 0 reused from the cache" in page
    assert "o5jy03030_x1d.fits" in page
    (tmp_path / "local").mkdir()
    _, _, local = qa(tmp_path / "local", f"--data-dir={data_dir}")
    assert outcomes(data) == outcomes(local)
    assert data["sources"]["8016"]["manifest"]["program"] == "8016"


def test_unknown_program_is_an_error_outcome(tmp_path):
    (tmp_path / "mast").mkdir()
    with MastServer(tmp_path / "mast") as server:
        code, out, data = qa(tmp_path, "--program=99999", f"--mast-url={server.url}")
    assert code == 1
    assert set(outcomes(data).values()) == {"error"} and "99999" in out


@pytest.mark.slow
def test_hasp_engine_same_verdicts(data_dir, tmp_path):
    (tmp_path / "native").mkdir()
    _, _, native = qa(tmp_path / "native", f"--data-dir={data_dir}")
    code, out, ref = qa(tmp_path, f"--data-dir={data_dir}", "--engine=hasp")
    assert code == 1, out
    assert outcomes(ref) == outcomes(native)
    assert ref["products"][VISIT]["engine"] == "hasp"


def test_same_product_from_two_sources(real_dir, tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent / "data").mkdir(parents=True)
        shutil.copy(real_dir / "o3zx02070_x1d.fits", tmp_path / parent / "data")
    code, out, data = qa(tmp_path, f"--data-dir={tmp_path / 'a' / 'data'}",
                         f"--data-dir={tmp_path / 'b' / 'data'}")
    assert code == 0, out
    assert set(data["sources"]) == {"data", "data-data-dir2"}
    ids = [(r["check"], r["case_id"]) for r in data["results"]]
    assert len(ids) == len(set(ids)) == 2 * (2 + 2 + 2 + 2)
    assert ("rejection", "data-data-dir2:7096-BD+28D4211-STIS/E230M-visit02") in ids


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")} \
        if root.exists() else {}


def test_collect_only_runs_nothing_and_writes_nothing(data_dir, tmp_path):
    code, out, data = qa(tmp_path, f"--data-dir={data_dir}", "--collect-only", "-q")
    assert code == 0, out
    assert f"test_flux_variance[{VISIT}-o5jy03030]" in out
    assert data is None and not (tmp_path / "cache").exists(), "collect-only wrote a file"
    # After a full run the cache is there; listing again changes nothing in it.
    qa(tmp_path, f"--data-dir={data_dir}")
    before = _tree(tmp_path / "cache")
    (tmp_path / "results.json").unlink()
    code, out, data = qa(tmp_path, f"--data-dir={data_dir}", "--collect-only", "-q")
    assert code == 0 and data is None and _tree(tmp_path / "cache") == before


def test_xdist_queries_the_archive_once(data_dir, tmp_path):
    root = tmp_path / "mast"
    shutil.copytree(data_dir, root / "8016")
    with MastServer(root) as server:
        code, out, data = qa(tmp_path, "--program=8016", f"--mast-url={server.url}", "-n", "2")
        services = Counter(r.service for r in server.log if r.service)
    assert code == 1, out
    assert {k for k, v in outcomes(data).items() if v == "failed"} == EXPECTED_FAILED
    assert services and set(services.values()) == {1}, services
    assert server.downloads() == 4


INTERRUPT = '''
def pytest_runtest_call(item):
    if "o5jy03020" in item.name:
        raise KeyboardInterrupt
'''


def test_interrupted_run_is_marked(data_dir, tmp_path):
    (tmp_path / "interrupter.py").write_text(INTERRUPT)
    env_path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    results = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "interrupter", "-p", "no:randomly",
                           f"--data-dir={data_dir}", f"--cache-dir={tmp_path / 'cache'}",
                           f"--qa-results={results}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": env_path})
    assert proc.returncode == 2, proc.stdout[-2000:]
    data = json.loads(results.read_text())
    assert data["status"] == "interrupted" and data["schema"] == 2
    assert 0 < len(data["results"]) < 16
    assert "INTERRUPTED" in proc.stdout

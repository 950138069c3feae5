"""The distribution: a wheel that works outside the source tree, with the checks inside it.

The slow tests build the sdist and wheel with ``python -m build``, install the wheel
into a new virtual environment (no system site-packages; pip may reuse its cache)
and run the demo from an empty directory, as a user who never saw the repository.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from qa import __version__
from qa.pytest_plugin.plugin import PROJECT_CHECKS

REPO = Path(__file__).resolve().parents[1]
DIST = f"hasp_qa-{__version__}"
# What a source checkout holds that a build must not see (local state, not sources).
LOCAL_STATE = (".git", ".venv", "*.egg-info", "build", "dist", "reports", ".hasp-qa-cache",
               ".hypothesis", ".pytest_cache", "__pycache__")


def test_packaged_checks_are_the_repository_checks():
    # checks/ is where users read and copy the checks; qa/default_checks/ is what an
    # installed hasp-qa runs. Edit checks/, then: cp checks/*.toml qa/default_checks/
    repository = {p.name: p.read_bytes() for p in (REPO / "checks").glob("*.toml")}
    packaged = {p.name: p.read_bytes() for p in PROJECT_CHECKS.glob("*.toml")}
    assert repository and packaged == repository, "qa/default_checks/ differs from checks/"
    assert PROJECT_CHECKS == REPO / "qa" / "default_checks"


def _env() -> dict[str, str]:
    # Byte-compiling stays on (distutils warns when it is disabled); nothing leaks in
    # from the calling environment's Python path or hasp-qa settings.
    drop = ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "HASP_QA_CACHE", "HASP_QA_MAST_URL")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(cmd: list, cwd: Path, timeout: float = 900) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_env())
    return proc, time.perf_counter() - start


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict:
    """Wheel and sdist built with ``python -m build`` from a copy of the sources."""
    root = tmp_path_factory.mktemp("build")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*LOCAL_STATE))
    proc, seconds = _run([sys.executable, "-m", "build", "--outdir", root / "dist", src], cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"python -m build: {seconds:.1f} s")
    return {"wheel": root / "dist" / f"{DIST}-py3-none-any.whl",
            "sdist": root / "dist" / f"{DIST}.tar.gz", "log": proc.stdout + proc.stderr}


@pytest.mark.slow
def test_build_is_clean_and_the_wheel_holds_only_qa(dists):
    warnings = [line for line in dists["log"].splitlines() if "warn" in line.lower()]
    assert warnings == []
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = whl.namelist()
        metadata = whl.read(f"{DIST}.dist-info/METADATA").decode()
        packaged = whl.read("qa/default_checks/hasp.toml")
        top_level = whl.read(f"{DIST}.dist-info/top_level.txt").decode().split()
    assert {n.split("/")[0] for n in names} == {"qa", f"{DIST}.dist-info"}
    assert top_level == ["qa"]
    assert packaged == (REPO / "checks" / "hasp.toml").read_bytes()
    assert f"{DIST}.dist-info/licenses/LICENSE" in names and "qa/py.typed" in names
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "Classifier: Framework :: Pytest" in metadata and "Project-URL: " in metadata
    assert not any(n.startswith(("tests/", "fixtures/")) for n in names)
    with tarfile.open(dists["sdist"]) as sdist:
        members = {name.removeprefix(f"{DIST}/") for name in sdist.getnames()}
    # The sdist tests itself: every file of checks/ and tests/ (MANIFEST.in lists their kinds).
    sources = {str(p.relative_to(REPO)) for folder in ("checks", "tests") for p in (REPO / folder).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert sources - members == set()
    assert {"qa/default_checks/hasp.toml", "LICENSE", "Makefile", "conftest.py"} <= members


def _outcomes(results: Path) -> dict[tuple[str, str], str]:
    return {(r["check"], r["case_id"]): r["status"] for r in json.loads(results.read_text())["results"]}


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_from_an_empty_directory(dists, tmp_path):
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    proc, seconds = _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc, seconds = _run([python, "-m", "pip", "install", "-q", dists["wheel"]], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"pip install of the wheel and its dependencies: {seconds:.1f} s")

    empty, elsewhere = tmp_path / "empty", tmp_path / "elsewhere"
    empty.mkdir()
    elsewhere.mkdir()
    proc, _ = _run([python, "-c", "import qa; print(qa.__file__)"], cwd=empty)
    assert Path(proc.stdout.strip()).is_relative_to(venv), proc.stdout + proc.stderr

    common = ["-m", "pytest", "--demo", "-p", "no:cacheprovider"]
    proc, seconds = _run([python, *common, f"--cache-dir={tmp_path / 'collect'}", "--collect-only", "-q"],
                         cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Node ids are relative to the packaged check file's directory (pytest's rootdir).
    assert "hasp.toml::test_flux_variance[8435-G191B2B-STIS/E140M-visit03-o5jy03030]" in proc.stdout
    assert "50 tests collected" in proc.stdout
    print(f"wheel: pytest --demo --collect-only: {seconds:.1f} s")

    # The same demo through the wheel and through this (editable) install: same verdicts.
    runs = {}
    for name, interpreter in (("wheel", python), ("editable", sys.executable)):
        results = tmp_path / f"{name}.json"
        proc, seconds = _run([interpreter, *common, f"--cache-dir={tmp_path / name}",
                              f"--qa-results={results}", "-q"], cwd=empty)
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[name] = _outcomes(results)
        print(f"{name}: pytest --demo: {seconds:.1f} s")
    assert runs["wheel"] == runs["editable"]
    statuses = list(runs["wheel"].values())
    assert (statuses.count("failed"), statuses.count("passed"), statuses.count("skipped")) == (8, 36, 6)
    assert sorted(p.name for p in empty.iterdir()) == []

"""The unit of work: collection from headers, compute(job), the content-keyed cache.

Data: copies of the real o4vt02040 (E140M) in one visit of program 8016, scaled
1 : 0.9 : 0.9 (HASP keeps all three), and the real o3zx02070 (E230M, program 7096).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import qa.engine.native
from qa.pipeline import Job, JobOutcome, collect, compute, evaluate
from qa.pytest_plugin.plugin import PROJECT_CHECKS
from qa.sources import Options, resolve_sources
from qa.summary import run_in_process

from .conftest import derive_copy, derive_visit

VISIT = "8016-G191B2B-STIS/E140M-visit03"
PROGRAM = "8016-G191B2B-STIS/E140M-program"
E230M = "7096-BD+28D4211-STIS/E230M-visit02"


@pytest.fixture
def data_dir(real_dir, tmp_path) -> Path:
    return derive_visit(real_dir, tmp_path / "data", (1.0, 0.9, 0.9))


def options(data_dir: Path, cache: Path, **kw) -> Options:
    return Options(data_dirs=[data_dir], checks=[PROJECT_CHECKS], cache_dir=cache, **kw)


def failed(doc: dict) -> set[tuple[str, str]]:
    return {(r["check"], r["case_id"]) for r in doc["results"] if r["status"] == "failed"}


def test_collection_reads_headers_only(data_dir, tmp_path, monkeypatch):
    def no_engine(*args, **kwargs):
        raise AssertionError("collection ran the engine or read the data")
    monkeypatch.setattr(qa.engine.native, "run_product", no_engine)
    monkeypatch.setattr("qa.io.reader.read_dataset", no_engine)
    opts = options(data_dir, tmp_path / "cache")
    coll = collect(opts, resolve_sources(opts))
    assert sorted(coll.jobs) == ["data:7096", "data:8016"]
    assert {p.pid for p in coll.products.values()} >= {VISIT, PROGRAM, E230M}
    assert coll.products[VISIT].files == ["o5jy03010_x1d.fits", "o5jy03020_x1d.fits",
                                          "o5jy03030_x1d.fits"]
    ids = {(c.spec.name, c.case_id) for c in coll.cases}
    assert ("flux_variance", f"{VISIT}-o5jy03020") in ids and ("rejection", PROGRAM) in ids
    assert not (tmp_path / "cache").exists(), "collection wrote a file"
    # A Job is small plain data: it round-trips through JSON for other executors.
    job = coll.jobs["data:8016"]
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_files_are_hashed_once_when_computed(data_dir, tmp_path, monkeypatch):
    """Collection (which every xdist worker repeats) hashes no file; compute hashes each of
    its files once, and the results name the bytes they were computed from."""
    import hashlib

    import qa.pipeline

    hashed = []
    real = qa.pipeline.sha256_file
    monkeypatch.setattr(qa.pipeline, "sha256_file",
                        lambda path: hashed.append(Path(path).name) or real(path))
    opts = options(data_dir, tmp_path / "cache")
    coll = collect(opts, resolve_sources(opts))
    assert hashed == []
    job = coll.jobs["data:8016"]
    outcome = compute(job)
    assert sorted(hashed) == sorted(job.files)
    assert outcome.sha256 == {f: hashlib.sha256((data_dir / f).read_bytes()).hexdigest()
                              for f in job.files}
    doc, _ = run_in_process(opts)
    inputs = {i["file"]: i["sha256"] for i in doc["products"][VISIT]["inputs"]}
    assert inputs == {f: outcome.sha256[f] for f in inputs} and len(inputs) == 3


def dim(data_dir: Path, tmp_path: Path, rootname: str, scale: float) -> None:
    """Replace ``rootname`` in place by a copy of o5jy03010 scaled by ``scale``."""
    derive_copy(data_dir / "o5jy03010_x1d.fits", tmp_path, rootname, flux_scale=scale)
    shutil.copyfile(tmp_path / f"{rootname}_x1d.fits", data_dir / f"{rootname}_x1d.fits")


def test_identical_products_share_one_engine_run(data_dir, tmp_path):
    dim(data_dir, tmp_path, "o5jy03030", 0.75)
    opts = options(data_dir, tmp_path / "cache", figures="all")
    coll = collect(opts, resolve_sources(opts))
    outcome = compute(coll.jobs["data:8016"])
    assert [p.key for p in outcome.products] == [VISIT, PROGRAM]
    # The program's only visit has the program's inputs: one co-add, one remediation, one figure set.
    assert (outcome.engine_runs, outcome.remediations, outcome.figure_sets) == (1, 1, 1)
    visit, program = outcome.products
    assert visit.product.rejected and program.product.rejected == visit.product.rejected
    assert program.product.level == "program" and program.product.filename != visit.product.filename
    assert program.remediation.product == PROGRAM and program.remediation.factors == visit.remediation.factors
    assert program.figures is visit.figures and set(visit.figures) >= {"inputs_vs_coadd", "snr_gain"}
    assert all(getattr(p.product, a) is None for p in outcome.products
               for a in ("wavelength", "flux", "error", "snr", "eff_exptime")), "outcomes carry no arrays"
    # Two visits: each visit and the program are different computations.
    derive_copy(data_dir / "o5jy03010_x1d.fits", data_dir, "o5jy04010", flux_scale=1.0)
    coll = collect(opts, resolve_sources(opts))
    outcome = compute(coll.jobs["data:8016"])
    assert len(outcome.products) == 3 and outcome.engine_runs == 3


def test_an_exception_in_one_product_is_that_products_error(data_dir, tmp_path, monkeypatch):
    real = qa.engine.native.run_product

    def flaky(plan, *args):
        if plan.grating == "E230M":
            raise ZeroDivisionError("boom")
        return real(plan, *args)
    monkeypatch.setattr(qa.engine.native, "run_product", flaky)
    doc, _ = run_in_process(options(data_dir, tmp_path / "cache"))
    errors = {(r["check"], r["case_id"]): r["message"] for r in doc["results"] if r["status"] == "error"}
    assert errors[("rejection", E230M)] == f"{E230M}: ZeroDivisionError: boom"
    assert ("flux_variance", f"{E230M}-o3zx02070") in errors
    assert not any(VISIT in case for _check, case in errors)
    assert doc["products"][E230M]["error"] == f"{E230M}: ZeroDivisionError: boom"
    assert doc["products"][VISIT]["error"] is None and doc["products"][VISIT]["kept"]


def test_cache_follows_the_bytes_not_the_name(data_dir, tmp_path):
    """A file replaced in place (same name, size and mtime) by a 0.6x copy flips the verdict."""
    cache = tmp_path / "cache"
    target = data_dir / "o5jy03030_x1d.fits"
    original = target.read_bytes()
    stat = target.stat()
    before, _ = run_in_process(options(data_dir, cache))
    assert not failed(before)

    dim(data_dir, tmp_path, "o5jy03030", 0.6)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size
    dimmed, _ = run_in_process(options(data_dir, cache))
    assert ("flux_variance", f"{VISIT}-o5jy03030") in failed(dimmed)
    assert ("rejection", VISIT) in failed(dimmed)

    target.write_bytes(original)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    opts = options(data_dir, cache)
    coll = collect(opts, resolve_sources(opts))
    outcome = compute(coll.jobs["data:8016"])
    assert outcome.from_cache, "the restored bytes are the first run's entry"
    assert not [c for c in coll.cases if c.job == "data:8016"
                and evaluate(c, outcome).status != "passed" and c.spec.name != "snr_gain"]


def test_damaged_or_moved_cache_is_recomputed_or_reused(data_dir, tmp_path):
    cache = tmp_path / "cache"
    dim(data_dir, tmp_path, "o5jy03030", 0.75)
    opts = options(data_dir, cache)
    coll = collect(opts, resolve_sources(opts))
    first = compute(coll.jobs["data:8016"])
    assert first.remediations == 1
    (entry,) = [p for p in (cache / "outcomes").glob("*/*.json")
                if json.loads(p.read_text())["outcome"]["job"] == "data:8016"]
    text = entry.read_text()
    assert str(tmp_path) not in text and "/remediated/" not in text.replace('"remediated/', "")
    assert "pickle" not in text and not list(cache.rglob("*.pkl"))

    entry.write_text(text[: len(text) // 2])          # truncated
    again = compute(coll.jobs["data:8016"])
    assert not again.from_cache
    # (compared as JSON text: NaN row statistics are equal there)
    assert json.dumps(again.to_dict()) == json.dumps({**first.to_dict(), "from_cache": False})

    moved = tmp_path / "moved"
    cache.rename(moved)
    shutil.rmtree(moved / "remediated")
    job = Job.from_dict({**coll.jobs["data:8016"].to_dict(), "cache_dir": str(moved)})
    reused = compute(job)
    assert reused.from_cache and reused.products[0].remediation.possible
    # The scaled copies are written again for people to look at, with their provenance.
    copies = moved / reused.products[0].remediation.scaled_dir
    assert sorted(p.name for p in copies.iterdir()) == reused.products[0].product.inputs


def test_job_outcome_round_trips_through_json(data_dir, tmp_path):
    dim(data_dir, tmp_path, "o5jy03030", 0.75)
    opts = options(data_dir, None, figures="all")
    coll = collect(opts, resolve_sources(opts))
    outcome = compute(coll.jobs["data:8016"])
    text = json.dumps(outcome.to_dict())
    back = JobOutcome.from_dict(json.loads(text))
    assert json.dumps(back.to_dict()) == text
    assert back.products[0].figures["inputs_vs_coadd"][:4] == b"\x89PNG"


def test_a_figure_that_cannot_be_drawn_is_a_note(data_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("mathtext: unknown symbol \\foo")
    monkeypatch.setattr("qa.render.plots.product_figures", broken)
    doc, outcomes = run_in_process(options(data_dir, tmp_path / "cache", figures="all"))
    assert outcomes[VISIT].error is None and outcomes[VISIT].figures == {}
    assert doc["products"][VISIT]["notes"] == [
        f"figures of {VISIT} could not be drawn: ValueError: mathtext: unknown symbol \\foo"]
    assert not [r for r in doc["results"] if r["status"] == "error"]

"""qa.worker: a worker that does not see the controller's files finds or fetches them."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from qa.archive.mast_server import MastServer
from qa.pipeline import Job, collect, compute, with_digests
from qa.sources import Options, resolve_sources
from qa.worker import StagingError, WorkerJob, compute_on_worker

from .conftest import derive_copy

ROOT = Path(__file__).resolve().parents[1]


def plan(tmp_path: Path, **options) -> dict[str, Job]:
    """The run's jobs as the controller submits them, with the sha256 of their files
    (cache under ``tmp_path/controller``)."""
    opts = Options(checks=[ROOT / "checks"], cache_dir=tmp_path / "controller", **options)
    return {k: with_digests(job) for k, job in collect(opts, resolve_sources(opts)).jobs.items()}


def elsewhere(job: Job, tmp_path: Path) -> Job:
    """The job as a worker on another machine sees it: no file at the planned path."""
    return replace(job, directory=str(tmp_path / "not-on-this-worker"),
                   cache_dir=str(tmp_path / "worker-side-cache"))


def same(a, b) -> bool:
    """Equal outcomes (NaN statistics included), whether or not one was read back from a cache."""
    return json.dumps({**a.to_dict(), "from_cache": None}, sort_keys=True) == \
        json.dumps({**b.to_dict(), "from_cache": None}, sort_keys=True)


@pytest.fixture
def worker_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "worker"
    monkeypatch.setenv("HASP_QA_CACHE", str(cache))
    return cache


def test_files_in_place_are_used_as_they_are(tmp_path, worker_cache):
    job = plan(tmp_path, demo=True)["99101:99101"]
    assert same(compute_on_worker(WorkerJob(job, "demo")), compute(job))
    assert not worker_cache.exists()  # nothing staged


def test_demo_program_is_generated_again(tmp_path, worker_cache):
    job = plan(tmp_path, demo=True)["99101:99101"]
    got = compute_on_worker(WorkerJob(elsewhere(job, tmp_path), "demo"))
    assert same(got, compute(job))
    assert sorted(p.name for p in (worker_cache / "demo" / "99101").glob("*_x1d.fits")) == sorted(job.files)


def test_archive_program_is_fetched_by_the_worker(real_dir, tmp_path, worker_cache):
    root = tmp_path / "mast" / "8016"
    root.mkdir(parents=True)
    for name, scale in (("o5jy03010", 1.0), ("o5jy03020", 0.9), ("o5jy03030", 0.75)):
        derive_copy(real_dir / "o4vt02040_x1d.fits", root, name, flux_scale=scale)
    with MastServer(tmp_path / "mast") as server:
        (job,) = plan(tmp_path, programs=["8016"], mast_url=server.url).values()
        got = compute_on_worker(WorkerJob(elsewhere(job, tmp_path), "archive", server.url))
        assert same(got, compute(job))
        assert (worker_cache / "mast" / "8016" / "o5jy03030_x1d.fits").is_file()
        # Reprocessed in the archive after collection: never computed from the other bytes.
        shutil.rmtree(worker_cache)
        derive_copy(real_dir / "o4vt02040_x1d.fits", tmp_path, "o5jy03030", flux_scale=0.6)
        shutil.move(tmp_path / "o5jy03030_x1d.fits", root / "o5jy03030_x1d.fits")
        with pytest.raises(StagingError, match="o5jy03030_x1d.fits: the copy on this worker differs"):
            compute_on_worker(WorkerJob(elsewhere(job, tmp_path), "archive", server.url))


def test_data_dir_needs_shared_storage(real_dir, tmp_path, worker_cache):
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(real_dir / "o3zx02070_x1d.fits", d)
    (job,) = plan(tmp_path, data_dirs=[d]).values()
    with pytest.raises(StagingError, match="must be on storage the workers share"):
        compute_on_worker(WorkerJob(elsewhere(job, tmp_path), "data-dir"))


def test_unwritable_cache_dir_falls_back_to_the_workers(tmp_path, worker_cache):
    job = plan(tmp_path, demo=True)["99102:99102"]
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    got = compute_on_worker(WorkerJob(replace(job, cache_dir=str(blocked / "cache")), "demo"))
    assert same(got, compute(job))
    assert list((worker_cache / "outcomes").rglob("*.json"))

"""What a Dask worker runs for one Job: find (or fetch) its files, then ``compute`` it.

A cluster need not share a disk with the controller. The worker uses the job's
files where the controller collected them when it can read them there with the
same bytes (shared storage, or the same machine); otherwise it brings them into
its own cache (env ``HASP_QA_CACHE``, else ``<tmp>/hasp-qa-cache``):

- an archive program is fetched from MAST by the worker (once per worker
  machine: the download cache is keyed by program and verified by sha256);
- a demo program is generated again (the generator is deterministic);
- a ``--data-dir`` has no other copy: the job is an error outcome that says the
  directory must be on storage the workers share.

Either way every file must have the sha256 the controller took when it
submitted the job (:func:`qa.pipeline.with_digests`): a file the archive
reprocessed in between is an error for the job, never a result computed from
other bytes than the ones planned.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock

from qa.cache import sha256_file
from qa.pipeline import Job, JobOutcome, compute


class StagingError(RuntimeError):
    """The job's files cannot be made available on this worker."""


@dataclass
class WorkerJob:
    """A :class:`~qa.pipeline.Job` with what a worker needs to find its files elsewhere."""

    job: Job
    origin: str                 # the source's origin: "archive", "demo" or "data-dir"
    mast_url: str | None = None


def worker_cache() -> Path:
    """This machine's hasp-qa cache: env ``HASP_QA_CACHE`` or ``<tmp>/hasp-qa-cache``."""
    return Path(os.environ.get("HASP_QA_CACHE") or Path(tempfile.gettempdir()) / "hasp-qa-cache")


def compute_on_worker(task: WorkerJob) -> JobOutcome:
    """``compute`` the job with its files (and cache) where this process can use them."""
    job = task.job
    if len(job.sha256) != len(job.files):
        raise StagingError(f"{job.id}: submitted without the controller's sha256 of its files "
                           "(qa.pipeline.with_digests), so its copies here cannot be checked")
    if not _has_files(Path(job.directory), job):
        job = replace(job, directory=str(_stage(task)))
    if job.cache_dir is not None and not _usable_dir(Path(job.cache_dir)):
        job = replace(job, cache_dir=str(worker_cache()))
    return compute(job)


def _has_files(directory: Path, job: Job) -> bool:
    try:
        return all(sha256_file(directory / name) == digest
                   for name, digest in zip(job.files, job.sha256))
    except OSError:
        return False


def _usable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def _stage(task: WorkerJob) -> Path:
    """A directory on this worker holding the job's files with the collected bytes."""
    job = task.job
    program = job.id.rsplit(":", 1)[1]
    cache = worker_cache()
    if task.origin == "archive":
        from qa.archive.fetch import ArchiveError, fetch_program
        try:
            directory = Path(fetch_program(program, cache / "mast", mast_url=task.mast_url).directory)
        except ArchiveError as exc:
            raise StagingError(f"program {program}: not on this worker and not fetched: {exc}") from exc
    elif task.origin == "demo":
        from qa.synth import write_demo_program
        directory = cache / "demo" / program
        directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(directory) + ".lock"):
            if not _has_files(directory, job):
                write_demo_program(program, directory)
    else:
        raise StagingError(f"{job.directory}: not readable on this worker; a --data-dir must be "
                           f"on storage the workers share, at the same path")
    for name, digest in zip(job.files, job.sha256):
        path = directory / name
        if not path.is_file():
            raise StagingError(f"{name}: not in program {program} as fetched on this worker")
        if sha256_file(path) != digest:
            raise StagingError(f"{name}: the copy on this worker differs from the collected one "
                               f"(sha256 {digest[:12]}...): the archive reprocessed it; run again")
    return directory

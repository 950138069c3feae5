"""Run units of work on a Dask cluster and gather what they return.

Every job is submitted when the run starts and the results are gathered with
``as_completed``, so a cluster of any size is kept busy while the controller (the
pytest process) only collects plain data. The task a worker runs returns
``compute(job).to_dict()`` (JSON-ready data with figure bytes), never paths: the
workers need not share a disk with the controller.

Failure semantics
-----------------
- A worker that dies mid-task (SIGKILL, out of memory, pre-empted node): the
  scheduler runs the task again on another worker, up to its
  ``distributed.scheduler.allowed-failures`` deaths per task (``retries`` for a
  ``local`` cluster); past that the job completes with an error naming the
  ``KilledWorker``. Dask's own ``submit(retries=)`` is not used: it re-runs tasks
  that *raised*, and a job raises on the same bytes every time.
- An exception escaping the job function is caught on the worker and returned
  as the job's error (type, message and the worker's address); it is not retried.
- A scheduler that cannot be reached raises :class:`ClusterError` before any job
  is submitted.
"""
from __future__ import annotations

import os
import re
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LOCAL = re.compile(r"^local(?::(\d+))?$")
ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"


class ClusterError(RuntimeError):
    """The Dask cluster cannot be used: bad address, scheduler unreachable."""


@dataclass
class Completed:
    """One job's end: the data its function returned, or why there is none."""

    job: Any
    outcome: dict | None     # ``compute(job).to_dict()`` as the worker returned it
    error: str | None        # "<ExceptionType>: <message> (worker <address>)"
    worker: str              # address of the worker that finished it, "" when unknown
    seconds: float = 0.0     # time the job function ran on the worker


@dataclass
class Progress:
    """How far a run is: shown in the terminal while jobs complete."""

    done: int
    total: int
    failed: int


def parse_address(address: str) -> tuple[str, int | None]:
    """``("local", N)`` for ``local[:N]`` (N None: one per core), else ``(address, None)``.

    Raises
    ------
    ClusterError
        For an empty address or ``local:0``.
    """
    address = address.strip()
    match = LOCAL.match(address)
    if match:
        n = int(match.group(1)) if match.group(1) else None
        if n == 0:
            raise ClusterError("--dask=local:N needs N >= 1 worker processes")
        return "local", n
    if not address:
        raise ClusterError("--dask needs a scheduler address (tcp://host:8786) or local[:N]")
    return address, None


@contextmanager
def open_client(address: str, *, retries: int = 2, timeout: float = 10.0) -> Iterator[Any]:
    """A connected :class:`distributed.Client`; closed (and a local cluster stopped) on exit.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` of a running scheduler, or ``local[:N]`` for a
        :class:`~distributed.LocalCluster` of N single-threaded worker processes.
    retries : int
        Worker deaths a task survives on a local cluster (a running scheduler
        applies its own ``distributed.scheduler.allowed-failures``).
    timeout : float
        Seconds to wait for the scheduler to answer.

    Raises
    ------
    ClusterError
        When the scheduler cannot be reached within ``timeout``.
    """
    from distributed import Client, LocalCluster

    target, n_workers = parse_address(address)
    if target == "local":
        # Loopback only; the HTTP server serves the dashboard pages when bokeh is installed.
        with LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                          processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                          scheduler_kwargs={"allowed_failures": retries}) as cluster, \
                Client(cluster) as client:
            yield client
        return
    try:
        client = Client(target, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"Dask scheduler {target} unreachable (waited {timeout:g} s): "
                           f"{type(exc).__name__}: {exc}") from exc
    with client:
        yield client


def dashboard_link(client: Any) -> str | None:
    """The scheduler's dashboard URL when it serves one (bokeh installed there), else None."""
    try:
        if "dashboard" not in client.scheduler_info(n_workers=0)["services"]:
            return None
        link = client.dashboard_link
        with urllib.request.urlopen(link, timeout=2) as response:
            page = response.read(2000)
        # Without bokeh the scheduler serves a page that asks for it instead of the dashboard.
        return None if b"bokeh" in page and b"for the dashboard" in page else link
    except (KeyError, OSError):  # no HTTP server, or the page is missing (no bokeh)
        return None


def run_task(compute: Callable[[Any], Any], job: Any) -> dict:
    """What a worker runs: the job's outcome as data, or the exception that escaped it."""
    from distributed import get_worker

    try:
        worker = get_worker().address
    except ValueError:  # not on a worker (called directly)
        worker = ""
    t0 = time.perf_counter()
    try:
        outcome = compute(job)
    except Exception as exc:  # any failure of one job is that job's error outcome
        return {"worker": worker, "error": f"{type(exc).__name__}: {exc} (worker {worker})",
                "traceback": traceback.format_exc(), "seconds": time.perf_counter() - t0}
    return {"worker": worker, "outcome": outcome.to_dict(), "seconds": time.perf_counter() - t0}


def run_jobs(client: Any, jobs: Iterable[Any], compute: Callable[[Any], Any], *,
             progress: Callable[[Progress], None] | None = None,
             name: Callable[[Any], str] = str) -> Iterator[Completed]:
    """Submit every job now; the returned iterator yields each :class:`Completed` as it finishes.

    Parameters
    ----------
    client : distributed.Client
        From :func:`open_client`.
    jobs : iterable
        Picklable units of work.
    compute : callable
        ``compute(job) -> outcome`` with ``outcome.to_dict()``; importable on the workers.
    progress : callable, optional
        Called with a :class:`Progress` after each job.
    name : callable
        A readable task name for the dashboard (made unique per run).
    """
    run_id = uuid.uuid4().hex[:8]
    futures = {}
    for i, job in enumerate(jobs):
        key = f"hasp-qa-{_key_safe(name(job))}-{run_id}-{i}"
        futures[client.submit(run_task, compute, job, key=key, pure=False)] = job
    # Submitted now, gathered as the caller iterates.
    return _gather(futures, progress)


def _gather(futures: dict, progress: Callable[[Progress], None] | None) -> Iterator[Completed]:
    from distributed import as_completed

    total, done, failed = len(futures), 0, 0
    for future in as_completed(list(futures)):
        job = futures.pop(future)
        if future.status == "finished":
            data = future.result()
            completed = Completed(job, data.get("outcome"), data.get("error"), data["worker"],
                                  data["seconds"])
        else:
            # The task never returned: its workers kept dying (KilledWorker), or it could
            # not be sent or unpacked on a worker.
            exc = future.exception()
            completed = Completed(job, None, f"{type(exc).__name__}: {exc}", "")
        future.release()
        done += 1
        failed += completed.error is not None
        if progress is not None:
            progress(Progress(done, total, failed))
        yield completed


def _key_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)[:80]

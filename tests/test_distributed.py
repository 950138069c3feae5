"""qa.distributed against a real cluster: a ``dask scheduler`` and ``dask worker`` processes on
127.0.0.1, computing the Jobs of generated COS programs with ``qa.pipeline.compute``."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import replace

import pytest
from distributed import Client

from qa.bench.cluster import generate
from qa.distributed import ClusterError, open_client, parse_address, run_jobs
from qa.pipeline import Job, collect, compute
from qa.pytest_plugin.plugin import PROJECT_CHECKS
from qa.sources import Options, resolve_sources

from .dask_cluster import DaskCluster


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> list[Job]:
    """Eight jobs: four generated COS programs (2 visits x 3 exposures), each listed twice."""
    root = tmp_path_factory.mktemp("cos")
    options = Options(data_dirs=[generate(root, 12)], checks=[PROJECT_CHECKS], cache_dir=root)
    jobs = [replace(job, cache_dir=None)  # computed every time, never read from a cache
            for job in collect(options, resolve_sources(options)).jobs.values()]
    assert len(jobs) == 4
    return jobs + jobs


def text(outcome: dict) -> str:
    """An outcome as comparable text (its NaN statistics included)."""
    return json.dumps(outcome, sort_keys=True)


@pytest.fixture(scope="module")
def local_outcomes(programs) -> list[str]:
    return [text(compute(job).to_dict()) for job in programs]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Shared by the tests that leave its workers alive."""
    with DaskCluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def kill_busy_worker(cluster: DaskCluster, client: Client, deadline: float = 60) -> str:
    """SIGKILL a worker as soon as the scheduler has given it a task; its address."""
    pids = cluster.worker_pids()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        busy = [addr for addr, keys in client.processing().items() if keys]
        if busy:
            os.kill(pids[busy[0]], signal.SIGKILL)
            return busy[0]
        time.sleep(0.005)
    raise AssertionError("no task started on any worker")


def test_parse_address():
    assert parse_address("local") == ("local", None)
    assert parse_address("local:3") == ("local", 3)
    assert parse_address(" tcp://10.0.0.5:8786 ") == ("tcp://10.0.0.5:8786", None)
    with pytest.raises(ClusterError, match="N >= 1"):
        parse_address("local:0")
    with pytest.raises(ClusterError, match="scheduler address"):
        parse_address("")


def test_jobs_run_on_worker_processes(cluster, programs, local_outcomes):
    seen = []
    with open_client(cluster.address) as client:
        done = list(run_jobs(client, programs, compute, progress=seen.append))
    assert len(done) == len(programs) and all(d.error is None for d in done)
    for d in done:
        assert text(d.outcome) == local_outcomes[programs.index(d.job)]
    # Separate processes on the cluster, not the test's own.
    assert {d.worker for d in done} <= set(cluster.worker_pids())
    assert os.getpid() not in cluster.worker_pids().values()
    assert [(p.done, p.total) for p in seen] == [(i, len(programs)) for i in range(1, len(programs) + 1)]
    assert seen[-1].failed == 0


def test_killed_worker_task_runs_elsewhere(tmp_path, programs, local_outcomes):
    with DaskCluster(tmp_path / "cluster") as cluster, open_client(cluster.address) as client:
        results = run_jobs(client, programs, compute)
        killed = kill_busy_worker(cluster, client)
        done = list(results)
        assert killed not in client.scheduler_info(n_workers=-1)["workers"]
    assert all(d.error is None for d in done), [d.error for d in done]
    assert sorted(text(d.outcome) for d in done) == sorted(local_outcomes)
    assert all(d.worker != killed for d in done)


def test_worker_deaths_past_the_bound_are_that_jobs_error(tmp_path, programs, local_outcomes):
    with DaskCluster(tmp_path / "strict", allowed_failures=0) as cluster, \
            open_client(cluster.address) as client:
        results = run_jobs(client, programs, compute)
        killed = kill_busy_worker(cluster, client)
        done = list(results)
    errors = [d for d in done if d.error]
    assert errors and len(errors) < len(programs)
    for d in errors:
        assert d.outcome is None
        assert d.error.startswith("KilledWorker:") and killed in d.error
    for d in done:
        if not d.error:
            assert text(d.outcome) == local_outcomes[programs.index(d.job)]


def test_exception_in_a_task_is_its_error_only(cluster, programs, local_outcomes):
    jobs = [programs[0], 42, programs[1]]  # compute(42) raises on the worker
    with open_client(cluster.address) as client:
        done = [d for d in run_jobs(client, jobs, compute)]
    bad = next(d for d in done if d.job == 42)
    assert bad.outcome is None and bad.worker in cluster.worker_pids()
    assert bad.error.startswith("AttributeError: ") and f"(worker {bad.worker})" in bad.error
    good = sorted(text(d.outcome) for d in done if d.job != 42)
    assert good == sorted(local_outcomes[:2])


def test_unreachable_scheduler_is_a_clear_error():
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=rf"Dask scheduler tcp://127.0.0.1:{port} unreachable"):
        with open_client(f"tcp://127.0.0.1:{port}", timeout=2):
            pytest.fail("connected to nothing")


def test_local_cluster(programs, local_outcomes):
    with open_client("local:2", retries=1) as client:
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
        done = list(run_jobs(client, programs[:2], compute))
    assert sorted(text(d.outcome) for d in done) == sorted(local_outcomes[:2])

"""qa.distributed against a real cluster: a ``dask scheduler`` and ``dask worker`` processes on
127.0.0.1, with the native engine on generated COS programs as the unit of work."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from distributed import Client

from qa.bench import cos_g130m_program
from qa.distributed import ClusterError, open_client, parse_address, run_jobs
from qa.engine import native

from .dask_cluster import DaskCluster


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> list[list[Path]]:
    """Eight file sets: four generated COS programs, each listed twice (tasks are independent)."""
    root = tmp_path_factory.mktemp("cos")
    sets = [cos_g130m_program(root / f"p{n}", n) for n in (4, 6, 8, 10)]
    return sets + sets


@pytest.fixture(scope="module")
def local_outcomes(programs) -> list[dict]:
    return [native.run(files).to_dict() for files in programs]


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
        done = list(run_jobs(client, programs, native.run, progress=seen.append))
    assert len(done) == len(programs) and all(d.error is None for d in done)
    for d in done:
        assert d.outcome == local_outcomes[programs.index(d.job)]
    # Separate processes on the cluster, not the test's own.
    assert {d.worker for d in done} <= set(cluster.worker_pids())
    assert os.getpid() not in cluster.worker_pids().values()
    assert [(p.done, p.total) for p in seen] == [(i, len(programs)) for i in range(1, len(programs) + 1)]
    assert seen[-1].failed == 0


def test_killed_worker_task_runs_elsewhere(tmp_path, programs, local_outcomes):
    with DaskCluster(tmp_path / "cluster") as cluster, open_client(cluster.address) as client:
        results = run_jobs(client, programs, native.run)
        killed = kill_busy_worker(cluster, client)
        done = list(results)
        assert killed not in client.scheduler_info(n_workers=-1)["workers"]
    assert all(d.error is None for d in done), [d.error for d in done]
    assert sorted(map(str, (d.outcome for d in done))) == sorted(map(str, local_outcomes))
    assert all(d.worker != killed for d in done)


def test_worker_deaths_past_the_bound_are_that_jobs_error(tmp_path, programs, local_outcomes):
    with DaskCluster(tmp_path / "strict", allowed_failures=0) as cluster, \
            open_client(cluster.address) as client:
        results = run_jobs(client, programs, native.run)
        killed = kill_busy_worker(cluster, client)
        done = list(results)
    errors = [d for d in done if d.error]
    assert errors and len(errors) < len(programs)
    for d in errors:
        assert d.outcome is None
        assert d.error.startswith("KilledWorker:") and killed in d.error
    for d in done:
        if not d.error:
            assert d.outcome == local_outcomes[programs.index(d.job)]


def test_exception_in_a_task_is_its_error_only(cluster, programs, local_outcomes):
    jobs = [programs[0], 42, programs[1]]  # native.run(42): TypeError on the worker
    with open_client(cluster.address) as client:
        done = {id(d.job): d for d in run_jobs(client, jobs, native.run)}
    bad = done[id(jobs[1])]
    assert bad.outcome is None and bad.worker in cluster.worker_pids()
    assert bad.error.startswith("TypeError: ") and f"(worker {bad.worker})" in bad.error
    assert done[id(jobs[0])].outcome == local_outcomes[0]
    assert done[id(jobs[2])].outcome == local_outcomes[1]


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
        done = list(run_jobs(client, programs[:2], native.run))
    assert [d.outcome for d in done] in (local_outcomes[:2], local_outcomes[1::-1])

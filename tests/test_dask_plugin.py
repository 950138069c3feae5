"""``pytest --dask``: a demo + data-dir QA through real ``dask scheduler``/``dask worker``
processes on 127.0.0.1, compared with the same run without Dask."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client

from qa.archive.mast_server import MastServer

from .dask_cluster import DaskCluster
from .test_plugin import EXPECTED_FAILED, qa

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("created", "finished")


@pytest.fixture(scope="module")
def plain(data_dir, tmp_path_factory):
    """The reference: the same QA without Dask (results JSON and report assets)."""
    run = tmp_path_factory.mktemp("plain")
    code, out, data = qa(run, "--demo", f"--data-dir={data_dir}", f"--html={run / 'report.html'}")
    assert code == 1, out
    return run, data


def comparable(data: dict, run: Path) -> dict:
    """The results JSON without its timestamps, with the run's own folder named alike."""
    data = json.loads(json.dumps(data).replace(str(run), "<run>"))
    return {k: v for k, v in data.items() if k not in TIMING}


def assets(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (run / "assets").iterdir()}


def start_qa(run: Path, *args: str) -> subprocess.Popen:
    """The QA run of ``qa()`` in the background (same cache layout and options)."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", f"--cache-dir={run / 'cache'}",
           f"--qa-results={run / 'results.json'}", "-rA", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONHASHSEED": "0"})


def test_dask_run_equals_plain_run(data_dir, plain, tmp_path):
    ref_run, ref = plain
    with DaskCluster(tmp_path / "cluster") as cluster:
        code, out, data = qa(tmp_path, "--demo", f"--data-dir={data_dir}", f"--dask={cluster.address}",
                             f"--html={tmp_path / 'report.html'}")
        served = {k for k, v in _task_workers(cluster).items() if v}
    assert code == 1, out
    assert comparable(data, tmp_path) == comparable(ref, ref_run)
    assert {k for k, v in {(r["check"], r["case_id"]): r["status"] for r in data["results"]}.items()
            if v == "failed" and k[1].startswith("8016")} == EXPECTED_FAILED
    assert assets(tmp_path) == assets(ref_run)  # figures drawn on the workers, byte for byte
    assert f"5 jobs (14 products) on Dask scheduler {cluster.address}, 2 workers" in out
    assert "products 14/14 done (jobs 5/5), 0 failed so far" in out, out
    assert len(served) == 2, "both worker processes computed jobs"


def test_sigkilled_worker_run_completes_with_same_results(data_dir, plain, tmp_path):
    ref_run, ref = plain
    with DaskCluster(tmp_path / "cluster") as cluster, Client(cluster.address) as client:
        pids = cluster.worker_pids()
        proc = start_qa(tmp_path, "--demo", f"--data-dir={data_dir}", f"--dask={cluster.address}",
                        f"--html={tmp_path / 'report.html'}")
        busy = _wait_busy(client)
        os.kill(pids[busy], signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
        assert busy not in client.scheduler_info(n_workers=-1)["workers"]
    assert proc.returncode == 1, out
    data = json.loads((tmp_path / "results.json").read_text())
    assert comparable(data, tmp_path) == comparable(ref, ref_run)
    assert assets(tmp_path) == assets(ref_run)


def test_job_killing_its_workers_errs_its_cases_only(plain, tmp_path):
    """With no worker death allowed, the killed job is an error outcome; the rest is as usual."""
    _, ref = plain
    with DaskCluster(tmp_path / "cluster", allowed_failures=0) as cluster, \
            Client(cluster.address) as client:
        pids = cluster.worker_pids()
        proc = start_qa(tmp_path, "--demo", f"--dask={cluster.address}")
        busy = _wait_busy(client)
        os.kill(pids[busy], signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    data = json.loads((tmp_path / "results.json").read_text())
    ref_status = {(r["check"], r["case_id"]): r["status"] for r in ref["results"]}
    errored = [r for r in data["results"] if r["status"] == "error"]
    assert errored and len(errored) < len(data["results"]), out
    # Whole programs (the unit of work) err, each case naming its product and the lost worker.
    killed = {data["products"][r["product"]]["program"] for r in errored}
    for r in data["results"]:
        if data["products"][r["product"]]["program"] in killed:
            assert r["status"] == "error"
            assert r["message"].startswith(f"{data['products'][r['product']]['key']}: KilledWorker:")
            assert busy in r["message"]
        else:
            assert r["status"] == ref_status[(r["check"], r["case_id"])]
    assert re.search(r"products \d+/\d+ done \(jobs 3/3\), [1-9]\d* failed so far", out), out


def test_unreachable_scheduler_stops_before_any_work(data_dir, tmp_path):
    """Before any download or computation: the archive is not even asked."""
    shutil.copytree(data_dir, tmp_path / "mast" / "8016")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with MastServer(tmp_path / "mast") as server:
        code, out, _ = qa(tmp_path, "--program=8016", f"--mast-url={server.url}",
                          f"--dask=tcp://127.0.0.1:{port}")
        assert server.log == []
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert f"ERROR: Dask scheduler tcp://127.0.0.1:{port} unreachable" in out
    assert not any((tmp_path / "cache").rglob("*"))  # nothing downloaded, nothing computed


def test_dask_and_xdist_are_alternatives(data_dir, tmp_path):
    code, out, _ = qa(tmp_path, f"--data-dir={data_dir}", "--dask=local:1", "-n", "2")
    assert code == pytest.ExitCode.USAGE_ERROR
    assert "--dask and -n" in out


def test_local_cluster_computes_only_selected_jobs(data_dir, plain, tmp_path):
    _, ref = plain
    code, out, data = qa(tmp_path, "--demo", f"--data-dir={data_dir}", "--dask=local:1", "-k", "o5jy03030")
    assert code == 1, out
    assert "products 6/6 done (jobs 2/2), 0 failed so far" in out, out
    ref_status = {(r["check"], r["case_id"]): r["status"] for r in ref["results"]}
    assert {(r["check"], r["case_id"]): r["status"] for r in data["results"]}.items() <= ref_status.items()


def _task_workers(cluster: DaskCluster) -> dict[str, int]:
    """Tasks each worker has run."""
    with Client(cluster.address) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)


def _wait_busy(client: Client, deadline: float = 300) -> str:
    """The address of the first worker the scheduler gives a job to."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for addr, keys in client.processing().items():
            if any(str(k).startswith("hasp-qa-") for k in keys):
                return addr
        time.sleep(0.01)
    raise AssertionError("no job reached a worker")

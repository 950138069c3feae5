"""A real Dask cluster for tests: one ``dask scheduler`` and worker processes on 127.0.0.1.

Workers run without a nanny, so a SIGKILLed worker is gone for good (a nanny would
start a new one in its place) and the scheduler must retry its tasks elsewhere.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from distributed import Client

ROOT = Path(__file__).resolve().parents[1]
# The ``dask`` command line (``dask scheduler``, ``dask worker``) of this interpreter.
DASK = [sys.executable, "-m", "dask"]


class DaskCluster:
    """``dask scheduler`` on a free loopback port plus ``n_workers`` ``dask worker`` processes.

    Parameters
    ----------
    workdir : Path
        Scheduler file, logs and the workers' local directories go here.
    n_workers : int
        Worker processes (one thread each).
    allowed_failures : int
        The scheduler's bound on worker deaths per task before it gives up on the task.
    """

    def __init__(self, workdir: Path, n_workers: int = 2, allowed_failures: int = 3) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.n_workers = n_workers
        self.allowed_failures = allowed_failures
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.address = ""

    def _env(self) -> dict[str, str]:
        # Workers import the test helpers (tests.*) as the controller does.
        return {**os.environ, "PYTHONPATH": str(ROOT),
                "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(self.allowed_failures)}

    def _spawn(self, cmd: list[str], log: str) -> subprocess.Popen:
        out = open(self.workdir / log, "wb")
        try:
            return subprocess.Popen(cmd, cwd=ROOT, env=self._env(), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()

    def start(self) -> "DaskCluster":
        scheduler_file = self.workdir / "scheduler.json"
        self.scheduler = self._spawn([*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(scheduler_file)], "scheduler.log")
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"scheduler did not start:\n{self.log('scheduler.log')}")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one go, but give the writer its close
        self.address = json.loads(scheduler_file.read_text())["address"]
        for i in range(self.n_workers):
            self.add_worker(f"w{i}")
        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(self.n_workers, timeout=60)
        return self

    def add_worker(self, name: str) -> subprocess.Popen:
        proc = self._spawn([*DASK, "worker", self.address, "--no-nanny", "--nthreads", "1", "--no-dashboard",
                            "--name", name, "--local-directory", str(self.workdir / name)],
                           f"{name}.log")
        self.workers.append(proc)
        return proc

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> process id, as the scheduler knows them."""
        with Client(self.address, timeout=10) as client:
            return client.run(os.getpid)

    def log(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop every process this cluster started, then check that none is left."""
        procs = [p for p in (*self.workers, self.scheduler) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        tag = str(self.workdir)
        left = [p.pid for p in psutil.process_iter(["cmdline"])
                if any(tag in arg for arg in (p.info["cmdline"] or []))]
        assert not left, f"processes left behind: {left}"

    def __enter__(self) -> "DaskCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

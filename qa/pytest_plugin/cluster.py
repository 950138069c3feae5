"""``--dask``: compute every Job of the run on a Dask cluster before the first check runs.

The client connects when the session starts, so an unreachable scheduler stops
the run before anything is downloaded or computed. When the test loop starts (after collection and ``-k``/``--lf`` selection), the
jobs of the selected cases are submitted at once and gathered as they complete;
each outcome is written to a spill directory as it arrives, and the plugin's
outcome store reads it back when the job's first case runs and releases it after
its last, so the controller's memory does not grow with the run. The items
then only evaluate checks; pytest-html, the results JSON and the terminal
summary stay in this process.
"""
from __future__ import annotations

import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pytest

from qa.distributed import ClusterError, Completed, Progress, dashboard_link, open_client, run_jobs
from qa.pipeline import Collection, Job, JobOutcome, OutcomeStore, ProductOutcome, compute, with_digests
from qa.worker import WorkerJob, compute_on_worker

PROGRESS_EVERY_S = 2.0


class DaskRun:
    """The ``--dask`` executor: registered next to the QA plugin when the option is given."""

    def __init__(self, config: pytest.Config, plugin, address: str) -> None:
        self.config = config
        self.plugin = plugin
        self.address = address
        self._stack = ExitStack()
        self.client = None
        self._spill: tempfile.TemporaryDirectory | None = None
        self._files: dict[str, Path] = {}

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.config.option.collectonly:
            return  # nothing will be computed
        try:
            self.client = self._stack.enter_context(open_client(self.address))
        except ClusterError as exc:
            raise pytest.UsageError(str(exc)) from exc

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session):
        collection_failed = session.testsfailed and not self.config.option.continue_on_collection_errors
        if self.client is not None and not collection_failed:
            self.compute_all(session.items)
        return (yield)

    def pytest_unconfigure(self) -> None:
        self._stack.close()  # the client, and a local cluster's processes
        if self._spill is not None:
            self._spill.cleanup()

    # ------------------------------------------------------------------ running

    def compute_all(self, items: list[pytest.Item]) -> None:
        """Compute the jobs of ``items`` on the cluster; the plugin's store then reads them."""
        coll = self.plugin.collection()
        selected = dict.fromkeys(case.job for case in (getattr(i, "case", None) for i in items)
                                 if case is not None and case.job is not None and not case.error)
        if not selected:
            return
        tasks = [self._worker_job(coll, coll.jobs[job_id]) for job_id in selected]
        n_products = {j: sum(p.job == j for p in coll.products.values()) for j in selected}
        self._spill = tempfile.TemporaryDirectory(prefix="hasp-qa-dask-")
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        say = tr.write_line if tr is not None else print
        client = self.client
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        link = dashboard_link(client)
        say(f"hasp-qa: {len(tasks)} jobs ({sum(n_products.values())} products) on Dask "
            f"scheduler {client.scheduler.address}, {workers} workers"
            + (f"; dashboard {link}" if link else "")
            + ("" if workers else "; no worker connected yet: jobs wait for one"))
        meter = _Meter(say, sum(n_products.values()))
        t0 = time.perf_counter()
        for done in run_jobs(client, tasks, compute_on_worker, name=lambda t: t.job.id,
                             progress=meter.jobs):
            self._keep(coll, done, meter, n_products[done.job.job.id])
        say(f"hasp-qa: {meter.summary()}; gathered in {time.perf_counter() - t0:.1f} s "
            f"(workers computed for {meter.seconds:.1f} s)")
        self.plugin.store = OutcomeStore(self._load)

    def _worker_job(self, coll: Collection, job: Job) -> WorkerJob:
        # Workers do not share the controller's working directory; they check the bytes they
        # find or fetch against the controller's.
        job = with_digests(replace(job, directory=str(Path(job.directory).resolve())))
        return WorkerJob(job=job, origin=coll.source(job.source).origin,
                         mast_url=self.plugin.options.mast_url)

    def _keep(self, coll: Collection, done: Completed, meter: "_Meter", planned: int) -> None:
        """Spill one job's outcome (or its error outcome) to disk."""
        job = done.job.job
        data = done.outcome if done.outcome is not None else \
            error_outcome(coll, job, done.error or "no outcome").to_dict()
        path = Path(self._spill.name) / f"{len(self._files)}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        self._files[job.id] = path
        failed = planned if data.get("error") else sum(p["error"] is not None for p in data["products"])
        meter.products(planned, failed, done.seconds)

    def _load(self, job: Job) -> JobOutcome:
        path = self._files.get(job.id)
        if path is None:  # not submitted (not selected at the start): compute it here
            return compute(job)
        return JobOutcome.from_dict(json.loads(path.read_text(encoding="utf-8")))


def error_outcome(coll: Collection, job: Job, error: str) -> JobOutcome:
    """The outcome of a job that never returned: every planned product errs, named."""
    planned = [p for p in coll.products.values() if p.job == job.id]
    return JobOutcome(job=job.id, products=[
        ProductOutcome(key=p.key, filters=p.filters, error=f"{p.key}: {error}") for p in planned],
        sha256=dict(zip(job.files, job.sha256)))


class _Meter:
    """Progress lines: jobs and products done out of the total, failures so far (throttled)."""

    def __init__(self, say, total_products: int) -> None:
        self.say = say
        self.total_products = total_products
        self.done_products = 0
        self.failed = 0
        self.seconds = 0.0
        self.progress: Progress | None = None
        self._last = time.monotonic()

    def products(self, done: int, failed: int, seconds: float) -> None:
        self.done_products += done
        self.failed += failed
        self.seconds += seconds
        if self.progress is not None and self.progress.done < self.progress.total and \
                time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self._last = time.monotonic()
            self.say(f"hasp-qa: {self.summary()}")

    def jobs(self, progress: Progress) -> None:
        self.progress = progress

    def summary(self) -> str:
        p = self.progress
        jobs = f"jobs {p.done}/{p.total}" if p else "jobs 0"
        return (f"products {self.done_products}/{self.total_products} done "
                f"({jobs}), {self.failed} failed so far")

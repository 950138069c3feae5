"""Benchmark: one QA run over generated programs, plain, ``-n 2`` and ``--dask=local:2``.

Run ``python -m qa.bench.cluster`` (``make bench-cluster``). It prints one JSON
line per measurement:

- ``run``: wall time of the same pytest QA run plain, with ``-n 2`` and with
  ``--dask=local:2``, each with a cold outcome cache and the input files already
  on disk (generated once, then reused); without a report unless ``--figures``
  (then ``--html``, and every product's figures are drawn); with the machine's
  load average, since other processes share its cores;
- ``split``: where one core's compute time goes (engine co-adds, remediation,
  figures), from a profile of every job computed in this process;
- ``dask_overhead``: the cost of one task on the Dask path without the work
  (submit, schedule, run a no-op, return a small outcome, gather);
- ``projection``: a whole-archive re-check on N workers from these numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from filelock import FileLock

from qa.synth import write_cos

VISITS = 2
EXPOSURES = 3  # per visit: each program makes VISITS visit products and one program product


def generate(root: Path, n_products: int) -> Path:
    """COS G130M programs of 2 visits x 3 exposures (3 products each) in one directory.

    Every fourth program has one exposure 8 % low, which HASP rejects and the
    QA remediates. Written once per size; later runs reuse the files.
    """
    n_programs = -(-n_products // (VISITS + 1))
    out = root / f"programs-{n_programs}"
    marker = out / ".complete"
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if marker.exists():
            return out
        for k in range(n_programs):
            program = 97000 + k
            code = np.base_repr(program, 36).lower()[-3:]  # the ppp of an HST rootname
            for visit in range(1, VISITS + 1):
                for i in range(EXPOSURES):
                    low = k % 4 == 0 and visit == 1 and i == EXPOSURES - 1
                    write_cos(out, rootname=f"l{code}0{visit}0{i + 1}0", grating="G130M",
                              cenwave=1291, program=program, target=f"BENCH-{program}",
                              flux_scale=0.92 if low else 1.0 + 0.004 * i, fppos=i + 1,
                              seed=program * 10 + visit * EXPOSURES + i,
                              expstart=58000.0 + visit + 0.05 * i)
        marker.write_text(str(n_programs))
    return out


class _Nothing:
    """A job outcome of a few bytes: what the overhead measurement returns."""

    def to_dict(self) -> dict:
        return {"job": "nothing", "products": []}


def nothing(job: object) -> _Nothing:
    """A job function that does no work: isolates the Dask path's own cost."""
    return _Nothing()


def dask_overhead(n_tasks: int, workers: int) -> dict:
    """Seconds per task of submit + schedule + run + return + gather, on ``local:workers``."""
    from qa.distributed import open_client, run_jobs

    with open_client(f"local:{workers}") as client:
        list(run_jobs(client, range(workers * 4), nothing))  # warm the workers' imports
        t0 = time.perf_counter()
        done = list(run_jobs(client, range(n_tasks), nothing))
        wall = time.perf_counter() - t0
    assert all(d.error is None for d in done)
    return {"measure": "dask_overhead", "tasks": n_tasks, "workers": workers,
            "wall_s": round(wall, 3), "per_task_ms": round(1000 * wall / n_tasks, 2)}


def split(data: Path, workdir: Path, max_jobs: int) -> dict:
    """One core's compute time per phase over (up to ``max_jobs``) jobs of the run, no cache."""
    from qa import pipeline, remediate
    from qa.pytest_plugin.plugin import PROJECT_CHECKS
    from qa.sources import Options, resolve_sources

    options = Options(data_dirs=[data], checks=[PROJECT_CHECKS], cache_dir=workdir, figures="all")
    t0 = time.perf_counter()
    coll = pipeline.collect(options, resolve_sources(options))
    collect_s = time.perf_counter() - t0
    jobs = [replace(job, cache_dir=None) for job in coll.jobs.values()][:max_jobs]  # all computed
    spent: dict[str, float] = {}
    with _timed(pipeline, "_coadds", "engine", spent), \
            _timed(remediate, "remediate", "remediation", spent), \
            _timed(pipeline, "_figures", "figures", spent):
        t0 = time.perf_counter()
        for job in jobs:
            pipeline.compute(job)
        total = time.perf_counter() - t0
    n = sum(p.job in {j.id for j in jobs} for p in coll.products.values())
    spent["other"] = total - sum(spent.values())  # reading files, pre-filter, grouping, checks
    return {"measure": "split", "jobs": len(jobs), "products": n,
            "collect_s": round(collect_s, 2), "collected_products": len(coll.products), "compute_s": round(total, 2),
            "compute_per_product_ms": round(1000 * total / n, 1),
            **{f"{k}_s": round(v, 2) for k, v in spent.items()},
            **{f"{k}_share": round(v / total, 3) for k, v in spent.items()}}


@contextmanager
def _timed(module, name: str, phase: str, spent: dict[str, float]):
    """Add the time spent in ``module.name`` to ``spent[phase]`` while inside the block."""
    original = getattr(module, name)
    spent.setdefault(phase, 0.0)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[phase] += time.perf_counter() - t0
    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


def pytest_run(data: Path, workdir: Path, extra: list[str]) -> tuple[float, dict, str, float]:
    """Wall time, results JSON, output and summed test-item time of one QA run, cold cache."""
    workdir.mkdir(parents=True)
    results = workdir / "results.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-q", f"--data-dir={data}",
           f"--cache-dir={workdir / 'cache'}", f"--qa-results={results}",
           f"--junitxml={workdir / 'junit.xml'}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    items = sum(float(case.get("time", 0)) for case in
                ElementTree.parse(workdir / "junit.xml").getroot().iter("testcase"))
    return wall, json.loads(results.read_text()), proc.stdout, items


def verdicts(results: dict) -> dict:
    return {(r["check"], r["case_id"]): r["status"] for r in results["results"]}


def projection(products: int, split_: dict, runs: dict, overhead: dict, workers: list[int]) -> dict:
    """Wall time of a ``products``-product re-check on N workers, from the measured rates.

    The controller's share is serial: headers at collection, then each case's
    check and report extras (the test items of the ``--dask`` run, from its JUnit
    XML); the workers' share divides by N; the Dask path adds its per-task cost (one
    task per program); start-up (imports, cluster, results JSON) is paid once.
    """
    n = split_["collected_products"]
    wall, gather_s, items_s = runs["dask"]
    controller = (split_["collect_s"] + items_s) / n
    fixed = max(wall - gather_s - items_s - split_["collect_s"], 0.0)
    with_figures = split_["compute_s"] / split_["products"]
    figures = split_["figures_s"] / split_["products"]
    per_task = overhead["per_task_ms"] / 1000 * split_["jobs"] / split_["products"]

    def hours(compute: float) -> dict[str, float]:
        return {str(w): round((fixed + products * (controller + compute / w + per_task)) / 3600, 2)
                for w in workers}
    return {"measure": "projection", "products": products, "fixed_s": round(fixed, 1),
            "controller_per_product_ms": round(1000 * controller, 1),
            "compute_per_product_ms": round(1000 * (with_figures - figures), 1),
            "figures_per_product_ms": round(1000 * figures, 1),
            "dask_per_product_ms": round(1000 * per_task, 2),
            "hours_by_workers": hours(with_figures - figures),
            "hours_by_workers_with_figures": hours(with_figures),
            "speedup_limit": round((controller + with_figures - figures) / controller, 1),
            "speedup_limit_with_figures": round((controller + with_figures) / controller, 1),
            "excludes": "downloads (hundreds of GB from MAST; cached runs only)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.bench.cluster",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(".hasp-qa-cache") / "bench-cluster",
                        help="where the generated programs are kept between runs")
    parser.add_argument("--figures", action="store_true",
                        help="runs with --html: every product's figures drawn (slower)")
    parser.add_argument("--split-jobs", type=int, default=8,
                        help="jobs computed in-process for the time split")
    parser.add_argument("--archive", type=int, default=50_000,
                        help="products of the whole-archive re-check to project")
    args = parser.parse_args(argv)
    data = generate(args.data.resolve(), args.products)
    print(json.dumps({"measure": "data", "directory": str(data),
                      "files": len(list(data.glob("*_x1d.fits")))}), flush=True)
    runs: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="hasp-qa-bench-") as tmp:
        plain = None
        for name, extra in (("plain", []), ("xdist", ["-n", str(args.workers)]),
                            ("dask", [f"--dask=local:{args.workers}"])):
            if args.figures:
                extra = [*extra, f"--html={Path(tmp) / name / 'report.html'}"]
            wall, results, out, items_s = pytest_run(data, Path(tmp) / name, extra)
            plain = plain or results
            gathered = re.search(r"gathered in ([0-9.]+) s \(workers computed for ([0-9.]+) s\)", out)
            runs[name] = (wall, float(gathered.group(1)) if gathered else 0.0, items_s)
            line = {"measure": "run", "mode": name, "figures": args.figures,
                    "wall_s": round(wall, 2), "load_avg_1min": round(os.getloadavg()[0], 1),
                    "test_items_s": round(items_s, 2),
                    "cases": len(results["results"]), "products": len(results["products"]),
                    "same_verdicts_as_plain": verdicts(results) == verdicts(plain)}
            if gathered:
                # What a worker sends back per job (JSON with base64 PNGs; the cache holds the same).
                sizes = [f.stat().st_size for f in (Path(tmp) / name / "cache").rglob("outcomes/*/*.json")]
                # Dask's own cost per job: worker-seconds not spent computing, over the jobs.
                busy = float(gathered.group(2))
                jobs = int(re.search(r"(\d+) jobs \(", out).group(1))
                line.update(dask_gather_s=runs[name][1], worker_compute_s=busy, jobs=jobs,
                            worker_idle_or_overhead_per_job_ms=round(
                                1000 * (args.workers * runs[name][1] - busy) / jobs, 1),
                            outcome_kb_mean=round(sum(sizes) / max(len(sizes), 1) / 1024, 1))
            print(json.dumps(line), flush=True)
        split_ = split(data, Path(tmp) / "split", args.split_jobs)
    print(json.dumps(split_), flush=True)
    overhead = dask_overhead(args.products, args.workers)
    print(json.dumps(overhead), flush=True)
    print(json.dumps(projection(args.archive, split_, runs, overhead, [1, 2, 16, 64, 256])),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

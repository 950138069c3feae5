"""Benchmark: a nightly run of N products against the loopback archive, files cached.

``python -m qa.bench.nightly [--programs 20] [--visits 9] [--workers 0 2]`` writes
``programs x visits x 2`` synthetic STIS G140L exposures (each program: one product
per visit plus the program product, so 20 x 9 gives 200 products), serves them with
release dates in one night, fetches them once (warm-up), then times the night as cron
runs it (``--released-since``, ``--html`` in assets mode, a history store) once per
worker count, each time from a cache that holds the downloads but no computed
outcomes. Prints one JSON line per run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from qa.archive.mast_server import MastServer
from qa.synth import write_stis_first_order

NIGHT = ("--released-since=2026-01-01", "--released-until=2026-01-02")


def write_archive(root: Path, programs: int, visits: int) -> list[str]:
    """``root/<program>/`` with two exposures per visit; returns the rootnames."""
    roots = []
    for p in range(programs):
        program = 30001 + p
        for v in range(visits):
            for e in range(2):
                rootname = f"ob{p:02d}{v + 1:02d}0{e + 1}0"  # visit: rootname[4:6]
                write_stis_first_order(root / str(program), rootname=rootname, grating="G140L",
                                       program=program, target=f"BENCH-{p}",
                                       flux_scale=1.0 - 0.01 * e, seed=program * 100 + v * 2 + e,
                                       expstart=59000.0 + v + 0.05 * e)
                roots.append(rootname)
    return roots


def night(workdir: Path, cache: Path, server: MastServer, workers: int, tag: str) -> dict:
    """One timed night; the results JSON gives the counts."""
    out = workdir / tag
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
           *NIGHT, f"--mast-url={server.url}", f"--cache-dir={cache}",
           f"--history={out / 'history.sqlite'}", f"--html={out / 'report.html'}",
           f"--qa-results={out / 'results.json'}"]
    if workers:
        cmd += ["-n", str(workers)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{tag}: pytest exited {proc.returncode}\n{proc.stdout[-3000:]}")
    data = json.loads((out / "results.json").read_text())
    return {"run": tag, "workers": workers, "seconds": round(seconds, 1),
            "products": len(data["products"]), "checks": len(data["results"]),
            "programs": len(data["history"]["programs"]), "exit": proc.returncode}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qa.bench.nightly", description=__doc__)
    parser.add_argument("--programs", type=int, default=20)
    parser.add_argument("--visits", type=int, default=9)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="xdist worker counts to time (0: no xdist)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hasp-qa-bench-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        roots = write_archive(work / "archive", args.programs, args.visits)
        print(json.dumps({"setup": "archive written", "files": len(roots),
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)
        with MastServer(work / "archive") as server:
            for rootname in roots:
                server.release(rootname, datetime(2026, 1, 1, 12))
            warm = night(work, work / "warm", server, max(args.workers), "warm-up")
            print(json.dumps({**warm, "run": "warm-up (downloads)"}), flush=True)
            for workers in args.workers:
                cache = work / f"cache-{workers}"
                shutil.copytree(work / "warm" / "mast", cache / "mast")
                print(json.dumps(night(work, cache, server, workers, f"n{workers}")), flush=True)


if __name__ == "__main__":
    main()

"""Benchmarks of whole pytest runs (orchestration, not the engine: see ``qa.bench.engine``).

``python -m qa.bench.runs CASE`` prints one JSON line per measurement:

* ``memory``  -- peak RSS of a 40- and a 160-product run (generated COS programs,
  3 exposures each, a quarter with a dim exposure that gets remediated) and their ratio;
* ``xdist``   -- wall time of a 50-product run serial and with ``-n 2`` (cold caches),
  without and with an HTML report (figures), and of a run with no tests (xdist's own cost);
* ``scale``   -- results JSON size, peak RSS and time of a run over 1,500 small
  exposures (STIS G140L, 500 programs);
* ``collect`` -- ``pytest --demo --collect-only`` against the full demo run.

Each run is a fresh ``python -m pytest`` process whose own peak RSS is measured
(``resource.getrusage`` in the child), so runs do not see each other's memory.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qa.synth import write_cos, write_stis_first_order

# Runs pytest in this (child) process and prints its peak RSS in KiB (Linux ru_maxrss).
_CHILD = ("import resource, sys, pytest; code = pytest.main(sys.argv[1:]); "
          "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); "
          "sys.exit(code)")


def generate(directory: Path, programs: int, *, kind: str = "cos", first: int = 101) -> int:
    """``programs`` programs of one visit with 3 exposures each; every 4th has one at 0.75x.

    Each gives two products (visit and program level, with the same inputs).
    Returns the number of files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for i in range(programs):
        program = first + i
        for e in range(3):
            scale = 0.75 if (i % 4 == 0 and e == 2) else 1.0
            code = f"{program % 1000:03d}"   # rootname ipppssoot: program, visit 01, exposure
            if kind == "cos":
                write_cos(directory, rootname=f"l{code}01{e + 1:02d}0",
                          program=program, target=f"BENCH-{program}", flux_scale=scale,
                          fppos=e + 1, seed=program * 10 + e, expstart=58000.0 + e * 0.05)
            else:
                write_stis_first_order(directory, rootname=f"o{code}01{e + 1:02d}0",
                                       program=program, target=f"BENCH-{program}",
                                       flux_scale=scale, seed=program * 10 + e,
                                       expstart=51900.0 + e * 0.05)
            n += 1
    return n


def run_pytest(data_dir: Path | None, workdir: Path, *extra: str) -> dict:
    """One ``pytest`` QA run in a fresh process: exit code, seconds, peak RSS, JSON size."""
    results = workdir / "results.json"
    source = [f"--data-dir={data_dir}"] if data_dir else []
    args = [sys.executable, "-c", _CHILD, *source, f"--cache-dir={workdir / 'cache'}",
            f"--qa-results={results}", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=workdir)
    seconds = time.perf_counter() - t0
    peak = next((int(line.split()[1]) for line in proc.stdout.splitlines()
                 if line.startswith("PEAK_RSS_KIB")), 0)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"pytest exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    out = {"exit": proc.returncode, "seconds": round(seconds, 2), "peak_rss_mib": round(peak / 1024, 1)}
    if results.exists():
        data = json.loads(results.read_text())
        out.update(json_bytes=results.stat().st_size, products=len(data["products"]),
                   results=len(data["results"]))
    return out


def bench_memory(tmp: Path) -> list[dict]:
    lines = []
    for programs in (20, 80):
        data = tmp / f"data{programs}"
        files = generate(data, programs)
        work = tmp / f"run{programs}"
        work.mkdir()
        lines.append({"case": "memory", "programs": programs, "files": files,
                      **run_pytest(data, work)})
    lines.append({"case": "memory", "ratio_160_vs_40":
                  round(lines[1]["peak_rss_mib"] / lines[0]["peak_rss_mib"], 3)})
    return lines


def bench_xdist(tmp: Path) -> list[dict]:
    data = tmp / "data"
    files = generate(data, 25)
    lines = []
    for report in (False, True):
        # The report run draws every product's figures (50 products: --figures=auto is "all").
        extra = ("--html=report.html", "--self-contained-html") if report else ()
        pair = []
        for label, workers in (("serial", ()), ("-n 2", ("-n", "2"))):
            work = tmp / f"{label.replace(' ', '')}-{int(report)}"
            work.mkdir()
            pair.append({"case": "xdist", "mode": label, "report": report, "files": files,
                         **run_pytest(data, work, *workers, *extra)})
        lines += pair + [{"case": "xdist", "report": report,
                          "serial_over_n2": round(pair[0]["seconds"] / pair[1]["seconds"], 3)}]
    # xdist's own fixed cost: starting and stopping two workers in a run with nothing to do.
    empty = tmp / "empty"
    empty.mkdir()
    fixed = [_bare_pytest(empty, *w) for w in ((), ("-n", "2"))]
    lines.append({"case": "xdist", "mode": "no tests", "serial_s": fixed[0], "n2_s": fixed[1]})
    return lines


def _bare_pytest(workdir: Path, *extra: str) -> float:
    """Seconds of a pytest run that collects nothing (exit code 5)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                   capture_output=True, cwd=workdir)
    return round(time.perf_counter() - t0, 2)


def bench_scale(tmp: Path) -> list[dict]:
    data = tmp / "data"
    files = generate(data, 500, kind="stis")
    work = tmp / "run"
    work.mkdir()
    return [{"case": "scale", "exposures": files, **run_pytest(data, work)}]


def bench_collect(tmp: Path) -> list[dict]:
    work = tmp / "demo"
    work.mkdir()
    first = run_pytest(None, work, "--demo")   # also writes the demo inputs into the cache
    for folder in ("outcomes", "remediated"):
        shutil.rmtree(work / "cache" / folder, ignore_errors=True)
    (work / "results.json").unlink()
    listing = run_pytest(None, work, "--demo", "--collect-only")
    wrote = (work / "results.json").exists() or (work / "cache" / "outcomes").exists()
    full = run_pytest(None, work, "--demo")
    warm = run_pytest(None, work, "--demo")
    return [{"case": "collect", "run": "collect-only", "wrote_files": wrote, **listing},
            {"case": "collect", "run": "full (demo inputs present, cold outcome cache)", **full},
            {"case": "collect", "run": "full (warm outcome cache)", **warm},
            {"case": "collect", "run": "first full run (generates the demo inputs)", **first}]


CASES = {"memory": bench_memory, "xdist": bench_xdist, "scale": bench_scale,
         "collect": bench_collect}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.bench.runs", description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES), nargs="+")
    args = parser.parse_args(argv)
    for case in args.case:
        with tempfile.TemporaryDirectory(prefix=f"hasp-qa-{case}-") as tmp:
            for line in CASES[case](Path(tmp)):
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

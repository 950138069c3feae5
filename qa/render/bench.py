"""Benchmarks of the report side; they print figures, they assert nothing.

``python -m qa.bench figures``
    CPU-s to draw every figure of one product (original, row statistics, scaled
    inputs, SNR gain) for the demo's 3-exposure E140M visit and a 10-exposure COS
    G130M program product, both remediated; one JSON line per product.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from qa.bench import cos_g130m_program, demo_e140m_visit
from qa.engine import native
from qa.io.reader import read_dataset
from qa.remediate import remediate
from qa.render import plots

# Budgets from issue 12: CPU-s for all figures of one product.
FIGURE_BUDGETS = {"demo-e140m-visit03": 0.25, "cos-g130m-program-10": 0.5}


def _figure_cases(workdir: Path):
    """(name, product, datasets, remediation, remediated product, scaled datasets) per case."""
    for name, files, key in (
            ("demo-e140m-visit03", demo_e140m_visit(workdir / "e140m"), "8435-G191B2B-STIS/E140M-visit03"),
            ("cos-g130m-program-10", cos_g130m_program(workdir / "cos"),
             "99103-SYNTH-BENCH-COS/G130M-program")):
        product = native.run(files).product(key)
        datasets = [read_dataset(files[0].parent / n) for n in product.inputs]
        rem, fixed = remediate(product, datasets, workdir / f"{name}-scaled", native.run)
        scaled = [read_dataset(Path(rem.scaled_dir) / n) for n in fixed.inputs]
        yield name, product, datasets, rem, fixed, scaled


def bench_figures(repeat: int) -> list[dict]:
    """CPU-s of :func:`qa.render.plots.product_figures` per product (files already read)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, product, datasets, rem, fixed, scaled in _figure_cases(Path(tmp)):
            times, figures = [], {}
            for _ in range(repeat + 1):     # the first run warms fonts and caches
                t0 = time.process_time()
                figures = plots.product_figures(product, None, rem, fixed, datasets=datasets,
                                                scaled_datasets=scaled)
                times.append(time.process_time() - t0)
            times = times[1:]
            out.append({"product": name, "inputs": len(product.inputs), "figures": len(figures),
                        "cpu_s_median": round(statistics.median(times), 3),
                        "cpu_s_best": round(min(times), 3), "budget_cpu_s": FIGURE_BUDGETS[name],
                        "png_kb": {k: round(len(v) / 1024) for k, v in figures.items()}})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.bench figures",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("figures",))
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per product")
    args = parser.parse_args(argv)
    for line in bench_figures(args.repeat):
        print(json.dumps(line), flush=True)
    return 0

"""Benchmark: both engines on the same inputs in one process, one JSON line per case.

Run ``python -m qa.bench`` (``--repeat N`` for more timing runs). ``python -m qa.bench
figures`` and ``python -m qa.bench report`` run the report side's benchmarks
(:mod:`qa.render.bench`). Each timing includes reading the files: an engine run starts from paths on disk. The
printed ``agree`` is :func:`qa.engine.parity.differences` with rtol 1e-6.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from qa.engine import native, reference
from qa.engine.parity import differences
from qa.synth import write_cos, write_demo_program


def demo_e140m_visit(workdir: Path) -> list[Path]:
    """The demo program's E140M visit: o5jy03010/020/030."""
    files = write_demo_program("8435", workdir / "8435")
    return sorted(p for p in files if p.name.startswith("o5jy03"))


def cos_g130m_program(workdir: Path, n: int = 10) -> list[Path]:
    """A COS G130M program of ``n`` exposures over two visits, one of them 6 % low."""
    out = workdir / "cos"
    scales = [1.0] * n
    scales[n // 2] = 0.94
    return [write_cos(out, rootname=f"lbch0{1 + i // 5}0{i % 5 + 1}0", grating="G130M",
                      cenwave=1291, program=99103, target="SYNTH-BENCH", flux_scale=s,
                      fppos=i % 4 + 1, seed=1000 + i, expstart=58200.0 + 0.05 * i)
            for i, s in enumerate(scales)]


CASES: dict[str, Callable[[Path], list[Path]]] = {
    "demo-e140m-visit": demo_e140m_visit,
    "cos-g130m-program-10": cos_g130m_program,
}


def _best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def run_case(name: str, files: list[Path], repeat: int) -> dict:
    t_native, a = _best_time(lambda: native.run(files), repeat)
    t_hasp, b = _best_time(lambda: reference.run(files), max(1, repeat // 3))
    diffs = differences(a, b, rtol=1e-6)
    return {"case": name, "files": len(files),
            "bytes": int(sum(p.stat().st_size for p in files)),
            "native_s": round(t_native, 4), "hasp_s": round(t_hasp, 3),
            "speedup": round(t_hasp / t_native, 1), "agree": not diffs,
            "bit_identical": not differences(a, b, rtol=0.0),
            "rejected": sorted({r.file for p in a.products for r in p.rejected}),
            "differences": diffs[:3]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["figures"], ["report"]):
        from qa.render.bench import main as report_bench   # the report side's benchmarks
        return report_bench(argv)
    parser = argparse.ArgumentParser(prog="python -m qa.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timing runs of the native engine "
                        "(best is kept; the reference runs a third as often)")
    parser.add_argument("--case", choices=sorted(CASES), action="append",
                        help="run only these cases")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.case or CASES:
            line = run_case(name, CASES[name](Path(tmp) / name), args.repeat)
            ok &= line["agree"]
            print(json.dumps(line), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: both engines on the same inputs in one process, one JSON line per case.

Run ``python -m qa.bench`` (``--repeat N`` for more timing runs). Each timing
includes reading the files: an engine run starts from paths on disk. ``floor_s``
is the time to read the same files (:func:`qa.io.reader.read_dataset`), the
least any engine run costs; ``floor_ratio`` is the native time over it. The
printed ``agree`` is :func:`qa.engine.parity.differences` with rtol 1e-6 and
``bit_identical`` the same with rtol 0. The large cases run hasp only with
``--reference`` (minutes each). ``python -m qa.bench figures`` and ``python -m qa.bench
report`` run the report side's benchmarks (:mod:`qa.bench.report`).
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
from qa.io.reader import read_dataset
from qa.synth import write_cos, write_demo_program, write_stis_echelle


def demo_e140m_visit(workdir: Path) -> list[Path]:
    """The demo program's E140M visit: o5jy03010/020/030."""
    files = write_demo_program("8435", workdir / "8435")
    return sorted(p for p in files if p.name.startswith("o5jy03"))


def e140m_program(workdir: Path, n: int = 50) -> list[Path]:
    """``n`` STIS E140M exposures of one target in visits of 5, one in ten 9 % low."""
    out = workdir / "e140m"
    return [write_stis_echelle(out, rootname=f"o5jz{1 + i // 5:02d}0{i % 5 + 1}0", grating="E140M",
                               cenwave=1425, program=8436, target="G191B2B", exptime=600.0,
                               flux_scale=0.91 if i % 10 == 7 else 1.0, seed=2000 + i,
                               expstart=51800.0 + 0.03 * i)
            for i in range(n)]


def cos_g130m_program(workdir: Path, n: int = 10) -> list[Path]:
    """A COS G130M program of ``n`` exposures over two visits, one of them 6 % low."""
    out = workdir / "cos"
    scales = [1.0] * n
    scales[n // 2] = 0.94
    return [write_cos(out, rootname=f"lbch{1 + i // 5:02d}0{i % 5 + 1}0", grating="G130M",
                      cenwave=1291, program=99103, target="SYNTH-BENCH", flux_scale=s,
                      fppos=i % 4 + 1, seed=1000 + i, expstart=58200.0 + 0.05 * i)
            for i, s in enumerate(scales)]


CASES: dict[str, Callable[[Path], list[Path]]] = {
    "demo-e140m-visit": demo_e140m_visit,
    "cos-g130m-program-10": cos_g130m_program,
    "e140m-program-50": e140m_program,
    "cos-g130m-program-100": lambda workdir: cos_g130m_program(workdir, 100),
}
# Cases too large to run hasp on by default (it takes minutes there).
LARGE = ("e140m-program-50", "cos-g130m-program-100")


def _best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def read_floor(files: list[Path]) -> list:
    """Only read the files: what every engine run pays before any arithmetic."""
    return [read_dataset(p) for p in files]


def run_case(name: str, files: list[Path], repeat: int, with_reference: bool) -> dict:
    t_floor, _ = _best_time(lambda: read_floor(files), repeat)
    t_native, a = _best_time(lambda: native.run(files), repeat)
    line = {"case": name, "files": len(files), "products": len(a.products),
            "bytes": int(sum(p.stat().st_size for p in files)),
            "native_s": round(t_native, 4), "floor_s": round(t_floor, 4),
            "floor_ratio": round(t_native / t_floor, 2),
            "rejected": sorted({r.file for p in a.products for r in p.rejected})}
    if not with_reference:
        return line
    t_hasp, b = _best_time(lambda: reference.run(files), max(1, repeat // 3))
    diffs = differences(a, b, rtol=1e-6)
    return {**line, "hasp_s": round(t_hasp, 3), "speedup": round(t_hasp / t_native, 1),
            "agree": not diffs, "bit_identical": not differences(a, b, rtol=0.0),
            "differences": diffs[:3]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m qa.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timing runs of the native engine "
                        "(best is kept; the reference runs a third as often)")
    parser.add_argument("--case", choices=sorted(CASES), action="append",
                        help="run only these cases")
    parser.add_argument("--reference", action="store_true",
                        help=f"run hasp on the large cases too ({', '.join(LARGE)})")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.case or CASES:
            line = run_case(name, CASES[name](Path(tmp) / name), args.repeat,
                            args.reference or name not in LARGE)
            ok &= line.get("agree", True)
            print(json.dumps(line), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

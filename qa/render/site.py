"""The static trend site of the history store: nights, programs, verdicts over time.

``build_site(store, directory)`` writes ``index.html`` (one row per run: window, status,
counts of products, failing products, rejections and remediations, the changes, a link
to the run's HTML report), ``program-<id>.html`` (the program's verdicts per run and
what changed) and PNG trend figures under ``figures/``. Everything comes from the
store, never from report files. Pages are Jinja2 templates with autoescaping (target
names and messages come from FITS headers); images are files, not ``data:`` URLs, and
links are relative, so the site works from ``file://`` and from any web server.
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure

from qa import __version__
from qa.history.changes import KINDS
from qa.history.record import FAILING
from qa.history.store import HistoryStore, RunRow, display_name
from qa.render.plots import STYLE, WIDE, to_png
from qa.results import file_safe

QUIET_KINDS = ("still passing", "still failing")


def _environment() -> Environment:
    return Environment(loader=PackageLoader("qa.render", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True))


def program_page(program: str) -> str:
    return f"program-{file_safe(program)}.html"


@dataclass
class Night:
    """One run as the index lists it."""

    id: int
    started: str
    window_since: str | None
    window_until: str | None
    status: str
    exit_status: int | None
    programs: list[dict[str, str]]
    products: int
    failing: int
    rejections: int
    remediations: int
    tally: dict[str, int]
    report: str | None


def _report_link(report: str | None, directory: Path) -> str | None:
    """A relative link to the run's report when the file is there."""
    if not report or not Path(report).is_file():
        return None
    return Path(os.path.relpath(Path(report).resolve(), directory.resolve())).as_posix()


def _nights(store: HistoryStore, runs: list[RunRow], directory: Path
            ) -> tuple[list[Night], dict[int, set[str]]]:
    """Index rows (newest first) and, per run, the programs it checked."""
    per_run: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in store.product_rows():
        per_run[row["run_id"]].append(row)
    failing: dict[int, set[str]] = defaultdict(set)
    for v in store.verdicts():
        if v["status"] in FAILING:
            failing[v["run_id"]].add(v["pid"])
    tallies: dict[int, Counter] = defaultdict(Counter)
    for c in store.changes_of():
        tallies[c["run_id"]][c["kind"]] += 1
    nights, programs_of = [], {}
    for run in runs:
        rows = per_run.get(run.id, [])
        why = {p["program"]: p.get("reason", "") for p in run.programs}
        checked = sorted({r["program"] for r in rows} | set(why), key=_program_order)
        programs_of[run.id] = set(checked)
        nights.append(Night(
            id=run.id, started=run.started, window_since=run.window_since,
            window_until=run.window_until, status=run.status, exit_status=run.exit_status,
            programs=[{"program": p, "page": program_page(p), "why": why.get(p, "")}
                      for p in checked],
            products=len(rows), failing=len(failing.get(run.id, ())),
            rejections=sum(1 for r in rows if json.loads(r["rejected"] or "[]")),
            remediations=sum(1 for r in rows if r["remediation"]),
            tally={k: tallies[run.id][k] for k in KINDS if tallies[run.id][k]},
            report=_report_link(run.report, directory)))
    return nights, programs_of


def _program_order(program: str) -> tuple[int, str]:
    return (int(program), "") if program.isdigit() else (10**9, program)


def trend_figure(nights: list[Night]) -> bytes:
    """Counts per run, oldest first (the index's figure)."""
    ordered = nights[::-1]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=WIDE)
        ax = fig.add_subplot()
        x = list(range(len(ordered)))
        for attr, color in (("products", "#0072B2"), ("failing", "#D55E00"),
                            ("rejections", "#E69F00"), ("remediations", "#009E73")):
            ax.plot(x, [getattr(n, attr) for n in ordered], marker="o", color=color, label=attr)
        ax.set_xticks(x, [f"run {n.id}\n{n.started[:10]}" for n in ordered])
        ax.set_ylabel("count")
        ax.set_title("hasp-qa runs")
        ax.legend(loc="upper left")
        fig.tight_layout()
    return to_png(fig)


def program_figure(program: str, runs: list[RunRow], verdicts: list[dict[str, Any]]) -> bytes:
    """Failing and passing checks of one program per run (stacked bars)."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=WIDE)
        ax = fig.add_subplot()
        x = list(range(len(runs)))
        bad = [sum(1 for v in verdicts if v["run_id"] == r.id and v["status"] in FAILING)
               for r in runs]
        good = [sum(1 for v in verdicts if v["run_id"] == r.id and v["status"] not in FAILING)
                for r in runs]
        ax.bar(x, good, color="#009E73", label="passed or skipped")
        ax.bar(x, bad, bottom=good, color="#D55E00", label="failed or error")
        ax.set_xticks(x, [f"run {r.id}\n{r.started[:10]}" for r in runs])
        ax.set_ylabel("checks")
        ax.set_title(f"program {program}")
        ax.legend(loc="upper left")
        fig.tight_layout()
    return to_png(fig)


def build_site(store: HistoryStore, directory: str | Path) -> Path:
    """Write the trend site into ``directory``; returns the index path."""
    directory = Path(directory)
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    env = _environment()
    runs = store.runs()
    nights, programs_of = _nights(store, runs, directory)
    common = {"version": __version__, "store": display_name(store.target),
              "built": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (directory / "figures" / "trend.png").write_bytes(trend_figure(nights))

    verdicts = store.verdicts()
    changes = store.changes_of()
    programs = sorted({p for ps in programs_of.values() for p in ps}, key=_program_order)
    summaries = []
    for program in programs:
        mine = [v for v in verdicts if v["program"] == program]
        seen = [r for r in runs[::-1] if program in programs_of[r.id]]
        figure = f"figures/program-{file_safe(program)}.png"
        (directory / figure).write_bytes(program_figure(program, seen, mine))
        cases = sorted({(v["check_name"], v["case_id"]) for v in mine})
        status = {(v["run_id"], v["check_name"], v["case_id"]): v["status"] for v in mine}
        rows = [{"check": check, "case_id": case,
                 "statuses": [status.get((r.id, check, case)) for r in seen]}
                for check, case in cases]
        loud = [c for c in changes if c["program"] == program and c["kind"] not in QUIET_KINDS]
        page = env.get_template("site_program.html").render(
            title=f"hasp-qa program {program}", program=program, figure=figure, runs=seen,
            rows=rows, changes=sorted(loud, key=lambda c: (-c["run_id"], c["case_id"])),
            **common)
        (directory / program_page(program)).write_text(page)
        last = [s for s in (rows[i]["statuses"][-1] for i in range(len(rows))) if s]
        summaries.append({"program": program, "page": program_page(program), "runs": len(seen),
                          "last": "failing" if any(s in FAILING for s in last) else
                          ("passing" if last else "none")})
    index = directory / "index.html"
    index.write_text(env.get_template("site_index.html").render(
        title="hasp-qa nightly runs", nights=nights, programs=summaries, **common))
    return index


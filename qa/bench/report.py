"""Benchmarks of the report side; they print figures, they assert nothing.

``python -m qa.bench figures``
    CPU-s to draw every figure of one product (original, row statistics, scaled
    inputs, SNR gain) for the demo's 3-exposure E140M visit and a 10-exposure COS
    G130M program product, both remediated; one JSON line per product.
``python -m qa.bench report [--programs 20] [--scale 10]``
    A run over generated programs (10 products each; :func:`qa.synth.write_survey_program`)
    without a report, with ``--html``, the review site and ``--figures=failing``, and
    with ``--figures=all`` (CPU-s of pytest and its children); then the review site of
    the failing run's results copied ``--scale`` times (2,000 products by default):
    CPU-s to write it, and in headless Chromium the time from navigation until every
    thumbnail on screen is decoded, and the time to filter to "rejected and not fixed".
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from qa.bench.engine import cos_g130m_program, demo_e140m_visit
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
    parser = argparse.ArgumentParser(prog="python -m qa.bench figures|report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("figures", "report"))
    parser.add_argument("--repeat", type=int, default=7, help="figures: timed runs per product")
    parser.add_argument("--programs", type=int, default=20, help="report: generated programs")
    parser.add_argument("--scale", type=int, default=10, help="report: copies of the run for the site")
    parser.add_argument("--workdir", type=Path, default=Path(".hasp-qa-cache") / "bench-report",
                        help="report: generated data (kept) and the runs' output")
    args = parser.parse_args(argv)
    if args.what == "report":
        bench_report(args.workdir.resolve(), args.programs, args.scale)
        return 0
    for line in bench_figures(args.repeat):
        print(json.dumps(line), flush=True)
    return 0


# ---------------------------------------------------------------- runs and the review site at scale

def _survey(workdir: Path, programs: int) -> Path:
    """``programs`` generated programs (10 products each) in ``workdir``; reused when complete."""
    from qa.synth import write_survey_program

    data = workdir / f"survey-{programs}"
    marker = data / ".complete"
    if not marker.exists():
        for i in range(programs):
            write_survey_program(90001 + i, data)
        marker.write_text("ok")
    return data


def _timed_run(args: list[str], cwd: Path) -> dict:
    """Run pytest in a child process; its CPU-s (user + system, with its workers) and wall-s."""
    import resource
    import subprocess
    import sys

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          cwd=cwd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tail = proc.stdout.strip().splitlines()[-1:] or [proc.stderr[-300:]]
    return {"cpu_s": round(cpu, 1), "wall_s": round(time.perf_counter() - t0, 1),
            "exit": proc.returncode, "pytest": tail[0]}


def replicate(doc: dict, times: int) -> dict:
    """``doc`` with its programs copied ``times`` times under new program numbers (+1000 each):
    the same figures and facts at ``times`` the scale, for the site's size benchmark."""
    out = {**doc, "products": {}, "results": []}
    for k in range(times):
        def renamed(pid: str) -> str:
            head, _, rest = pid.partition("-")
            return f"{int(head) + 1000 * k}-{rest}" if head.isdigit() else f"{pid}~{k}"
        for pid, rec in doc["products"].items():
            out["products"][renamed(pid)] = {**rec, "program": int(rec["program"]) + 1000 * k}
        out["results"] += [{**r, "product": renamed(r["product"]) if r.get("product") else None,
                            "case_id": renamed(r["case_id"])} for r in doc["results"]]
    return out


def _chromium(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


# Milliseconds from navigation start until every image in the viewport is decoded.
_OPEN = """
const done = arguments[arguments.length - 1];
const shown = Array.from(document.images).filter(i => {
  const b = i.getBoundingClientRect(); return b.bottom > 0 && b.top < innerHeight; });
Promise.all(shown.map(i => i.decode())).then(() => requestAnimationFrame(() =>
  done([performance.now(), shown.length, shown.filter(i => i.naturalWidth > 0).length])));
"""
# Milliseconds to filter to "rejected and not fixed", until the next frame is painted.
_FILTER = """
const done = arguments[arguments.length - 1];
const t0 = performance.now();
const select = document.getElementById('f-outcome');
select.value = 'rejected-notfixed';
select.dispatchEvent(new Event('change'));
void document.body.offsetHeight;
requestAnimationFrame(() => setTimeout(() => done([performance.now() - t0,
  document.getElementById('shown').textContent]), 0));
"""


def bench_site(doc: dict, results_path: Path, out: Path, repeat: int = 3) -> dict:
    """CPU-s to write the site of ``doc``; index open and filter times in headless Chromium."""
    from qa.render.review_site import write_site

    t0 = time.process_time()
    index = write_site(doc, results_path, out)
    build = time.process_time() - t0
    driver = _chromium(out.parent / "chromium-profile")
    try:
        opens, filters = [], []
        for _ in range(repeat):
            driver.get("about:blank")
            driver.get(index.as_uri())
            ms, on_screen, decoded = driver.execute_async_script(_OPEN)
            opens.append(ms)
            ms_filter, shown = driver.execute_async_script(_FILTER)
            filters.append(ms_filter)
    finally:
        driver.quit()
    return {"products": len(doc["products"]), "site_build_cpu_s": round(build, 2),
            "index_kb": round(index.stat().st_size / 1024),
            "index_data_kb": round((out / "index-data.js").stat().st_size / 1024),
            "open_ms_median": round(statistics.median(opens)), "open_ms": [round(x) for x in opens],
            "thumbnails_on_screen": on_screen, "thumbnails_decoded": decoded,
            "filter_rejected_not_fixed_ms_median": round(statistics.median(filters), 1),
            "filter_ms": [round(x, 1) for x in filters], "filter_shows": shown}


def bench_report(workdir: Path, programs: int, scale: int) -> list[dict]:
    """The done-when figures of issue 12 (one JSON line each)."""
    import json as _json
    import shutil

    repo = Path(__file__).resolve().parents[2]
    data = _survey(workdir, programs)
    lines = []
    runs = {"no report (figures none)": [],
            "--html + review site, --figures=failing": ["--html", "{out}/run.html", "--figures=failing"],
            "--html + review site, --figures=all": ["--html", "{out}/run.html", "--figures=all"]}
    for name, extra in runs.items():
        out = workdir / f"run-{len(lines)}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        args = [f"--data-dir={data}", f"--cache-dir={out / 'cache'}", *(a.format(out=out) for a in extra)]
        line = {"run": name, "products": 10 * programs, **_timed_run(args, repo)}
        if extra:
            doc = _json.loads((out / "run.json").read_text())
            line["products_with_figures"] = sum(bool(p["figures"]) for p in doc["products"].values())
            line["cspec_files"] = len(list((out / "run-review" / "products").rglob("*.fits")))
        lines.append(line)
        print(_json.dumps(line), flush=True)
    failing = workdir / "run-1"
    doc = _json.loads((failing / "run.json").read_text())
    big = replicate(doc, scale)
    big_json = failing / f"run-x{scale}.json"
    big_json.write_text(_json.dumps(big))
    line = {"site": f"{len(big['products'])} products (the failing run's programs x{scale})",
            **bench_site(big, big_json, failing / f"run-x{scale}-review")}
    print(_json.dumps(line), flush=True)
    lines.append(line)
    return lines

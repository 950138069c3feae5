"""The review site: a small static site generated from the results JSON (schema 2).

The pytest-html report lists test cases; a reviewer asks something else: which
programs and modes lost exposures, why, and did remediation fix it. The site
answers that on its first screen, at archive scale:

* ``index.html`` -- counts, then one row per lost exposure (flux filter or
  keyword filter) grouped program -> product, with the remediation outcome beside
  it and a link to the product's page; a filter by program, instrument, mode and
  outcome and a rootname search run client-side on ``index-data.js`` (a script
  that defines the data: ``fetch()`` of a JSON file is refused from file://);
* ``p/<product>.html`` -- one page per product: HASP product name, threshold
  margin, the inputs with the header keywords a reviewer checks, the rejection
  cascade by iteration, the remediation (and its cspec file), the check results
  and the figures as lazily loaded thumbnails that open full size;
* ``products.html`` -- every product, for browsing what did not lose anything.

Everything is rendered from the results JSON, never recomputed. Templates are
Jinja2 with autoescaping, so text from files (target names, header values,
messages) is always text; figures are linked files (no ``data:`` URLs, which
Chromium refuses to open from a link), so the site works offline from file://.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from qa.history.changes import STEADY
from qa.results import file_safe, rootname_of

# Header keywords a reviewer checks for each input (primary or SCI header values).
REVIEW_KEYWORDS = ("APERTURE", "EXPTIME", "EXPSTART", "POSTARG1", "POSTARG2", "EXPFLAG", "CENWAVE")
FIGURE_ORDER = ("inputs_vs_coadd", "row_statistics", "scaled_inputs", "snr_gain")
FIGURE_CAPTIONS = {
    "inputs_vs_coadd": "Input exposures and the co-add (rejected files open markers)",
    "row_statistics": "Flux-filter statistic per row, with the threshold",
    "scaled_inputs": "Inputs scaled to the reference median, and their co-add",
    "snr_gain": "SNR of the original and remediated co-adds, and their ratio",
}
# Outcome flags of a lost exposure (bit values shared with site.js).
FLAGS = {"rejected": 1, "remediated": 2, "fixed": 4, "notfixed": 8, "changed": 16, "keyword": 32}
STATIC = ("site.css", "site.js")


# ---------------------------------------------------------------- model

@dataclass
class LostExposure:
    """One exposure one product lost, and what remediation made of it."""

    file: str
    why: str             # "flux filter, iteration 1: 12 rows below -50 (worst order 112: -58.2)"
    iteration: int       # 0 for keyword-filtered files
    outcome: str         # "fixed by remediation (x1.3245)", "not fixed: ...", "not remediated"
    outcome_class: str   # CSS class: fixed / notfixed / none
    flags: int

    @property
    def rootname(self) -> str:
        return rootname_of(self.file)


@dataclass
class ProductView:
    """What the pages show of one product (a view of its schema-2 record)."""

    pid: str
    record: dict
    page: str                     # relative to the site root: "p/....html"
    lost: list[LostExposure] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    flags: int = 0
    changed: str = ""             # what changed since the last run ("" when unknown or nothing)

    @property
    def program(self) -> str:
        return str(self.record.get("program", ""))

    @property
    def instrument(self) -> str:
        return str(self.record.get("instrument", ""))

    @property
    def mode(self) -> str:
        return f"{self.record.get('instrument', '')}/{self.record.get('grating', '')}"

    @property
    def level(self) -> str:
        r = self.record
        return f"visit {r.get('visit')}" if r.get("level") == "visit" else str(r.get("level", ""))

    @property
    def error(self) -> str | None:
        return self.record.get("error")

    @property
    def status(self) -> str:
        """Worst check status of the product: error, failed, skipped or passed."""
        states = {r.get("status") for r in self.results}
        for s in ("error", "failed", "passed", "skipped"):
            if s in states:
                return s
        return "error" if self.error else "unchecked"


@dataclass
class ProgramGroup:
    """The products of one program that lost exposures."""

    program: str
    products: list[ProductView]

    @property
    def counts(self) -> dict[str, int]:
        lost = [e for p in self.products for e in p.lost]
        return {"products": len(self.products), "lost": len(lost),
                "fixed": sum(bool(e.flags & FLAGS["fixed"]) for e in lost),
                "notfixed": sum(bool(e.flags & FLAGS["notfixed"]) for e in lost)}


def page_name(pid: str) -> str:
    """A product page's file name: readable, and unique even where file_safe merges two pids."""
    digest = hashlib.sha1(pid.encode("utf-8")).hexdigest()[:8]
    return f"{file_safe(pid)[:80]}-{digest}.html"


def _program_sort_key(program: str) -> tuple:
    return (0, int(program), "") if program.isdigit() else (1, 0, program)


def _worst(values: list) -> float | None:
    finite = [v for v in values if isinstance(v, (int, float))]
    return min(finite) if finite else None


def _factor(rem: Mapping, file: str) -> str:
    values = [v for k, v in (rem.get("factors") or {}).items() if k == file or k.startswith(file + "[")]
    return "/".join(f"x{v:.4f}" for v in values)


def reference_of(rem: Mapping) -> str:
    """The remediation's reference exposure (``scaled_to`` in newer results, ``reference_file`` before)."""
    return str(rem.get("scaled_to") or rem.get("reference_file") or "")


def _outcome(rem: Mapping | None, file: str) -> tuple[str, str, int]:
    """Text, CSS class and flags of the remediation outcome for one lost file."""
    if rem is None:
        return "not remediated", "none", FLAGS["notfixed"]
    if not rem.get("possible"):
        return f"remediation not possible: {rem.get('reason', '')}", "notfixed", \
            FLAGS["remediated"] | FLAGS["notfixed"]
    if file in (rem.get("rejected_after") or []):
        return "not fixed: rejected again after scaling", "notfixed", \
            FLAGS["remediated"] | FLAGS["notfixed"]
    gain = rem.get("snr_gain")
    gain_text = f", SNR gain {gain['median']:.3f}" if gain else ""
    return f"fixed by remediation ({_factor(rem, file) or 'not scaled'}{gain_text})", "fixed", \
        FLAGS["remediated"] | FLAGS["fixed"]


def lost_exposures(record: Mapping) -> list[LostExposure]:
    """Each exposure a product lost: flux-filter rejections by iteration, then keyword filters."""
    rem = record.get("remediation")
    threshold = record.get("threshold")
    out = []
    for r in sorted(record.get("rejected") or [], key=lambda r: (r.get("iteration", 0), r["file"])):
        rows, medians = r.get("rows") or [], r.get("scaled_medians") or []
        worst = _worst(medians)
        worst_row = rows[medians.index(worst)] if worst is not None and worst in medians else ""
        why = f"flux filter, iteration {r.get('iteration')}: {len(rows)} row(s) below {threshold:g}" \
            if isinstance(threshold, (int, float)) else f"flux filter, iteration {r.get('iteration')}"
        if worst is not None:
            why += f" (worst {worst_row}: {worst:.1f})"
        text, css, flags = _outcome(rem, r["file"])
        out.append(LostExposure(r["file"], why, int(r.get("iteration") or 0), text, css,
                                flags | FLAGS["rejected"]))
    for k in record.get("keyword_filtered") or []:
        out.append(LostExposure(k["file"], f"keyword filter {k.get('filter', '')}: {k.get('reason', '')}",
                                0, "not remediated (keyword pre-filter)", "none",
                                FLAGS["keyword"] | FLAGS["notfixed"]))
    return out


def history_changes(doc: Mapping) -> dict[str, str]:
    """Product id -> what changed since the last run (the nightly history's ``changes``).

    Steady verdicts are not changes, and neither is a product on a store's first run.
    """
    history = doc.get("history") or {}
    out: dict[str, list[str]] = defaultdict(list)
    for c in history.get("changes") or []:
        if c.get("kind") in STEADY or \
                (c.get("kind") == "new product" and not history.get("previous_runs")):
            continue
        text = f"{c.get('kind', 'changed')}" + (f" ({c['detail']})" if c.get("detail") else "")
        if text not in out[c.get("pid", "")]:
            out[c.get("pid", "")].append(text)
    return {pid: "; ".join(texts) for pid, texts in out.items()}


def build_views(doc: Mapping) -> list[ProductView]:
    """A view of every product of the results, sorted by program, mode, level and visit."""
    by_product: dict[str, list[dict]] = defaultdict(list)
    changes = history_changes(doc)
    for r in doc.get("results") or []:
        by_product[r.get("product") or ""].append(r)
    views = []
    for pid, record in (doc.get("products") or {}).items():
        view = ProductView(pid, record, f"p/{page_name(pid)}", lost_exposures(record),
                           sorted(by_product.get(pid, []),
                                  key=lambda r: (r.get("check", ""), r.get("subject", ""))))
        view.changed = changes.get(pid, "")
        view.flags = 0
        for e in view.lost:
            if view.changed:
                e.flags |= FLAGS["changed"]
            view.flags |= e.flags
        if view.changed:
            view.flags |= FLAGS["changed"]
        views.append(view)
    views.sort(key=lambda v: (_program_sort_key(v.program), v.record.get("source", ""), v.mode,
                              v.record.get("level") != "visit", str(v.record.get("visit", "")), v.pid))
    return views


def group_lost(views: list[ProductView]) -> list[ProgramGroup]:
    """Programs -> products that lost exposures, in program order."""
    groups: dict[str, list[ProductView]] = {}
    for v in views:
        if v.lost:
            groups.setdefault(v.program, []).append(v)
    return [ProgramGroup(k, ps) for k, ps in groups.items()]


def counts(doc: Mapping, views: list[ProductView]) -> dict[str, int]:
    """The numbers on top of the index page."""
    lost = [e for v in views for e in v.lost]
    exposures = {(v.record.get("source"), i.get("file")) for v in views
                 for i in v.record.get("inputs") or []}
    tally = Counter(r.get("status") for r in doc.get("results") or [])
    return {"programs": len({v.program for v in views}), "products": len(views),
            "exposures": len(exposures), "lost": len(lost),
            "products_lost": sum(bool(v.lost) for v in views),
            "remediated": sum(v.record.get("remediation") is not None for v in views),
            "fixed": sum(bool(e.flags & FLAGS["fixed"]) for e in lost),
            "notfixed": sum(bool(e.flags & FLAGS["notfixed"]) for e in lost),
            "changed": sum(bool(v.changed) for v in views),
            "errors": sum(bool(v.error) for v in views),
            "passed": tally["passed"], "failed": tally["failed"], "skipped": tally["skipped"],
            "check_errors": tally["error"]}


def index_data(views: list[ProductView]) -> dict[str, Any]:
    """The client-side index: one entry per product (for search) and per lost-exposure row.

    Rows are ``[product index, rootname, flags]``; products are ``[pid, page, program,
    instrument, mode, flags, rootnames]``. Kept short: at 2,000 products it is ~250 kB.
    """
    position = {v.pid: i for i, v in enumerate(views)}
    products = [[v.pid, v.page, v.program, v.instrument, v.mode, v.flags,
                 " ".join(rootname_of(i.get("file", "")) for i in v.record.get("inputs") or [])]
                for v in views]
    rows = [[position[v.pid], e.rootname, e.flags] for v in views for e in v.lost]
    return {"flags": FLAGS, "products": products, "rows": rows}


# ---------------------------------------------------------------- figures and files

def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def figure_links(record: Mapping, results_dir: Path, page_dir: Path) -> list[dict[str, str]]:
    """The product's figures that exist, as links relative to ``page_dir``, in display order."""
    figures = record.get("figures") or {}
    names = sorted(figures, key=lambda n: FIGURE_ORDER.index(n) if n in FIGURE_ORDER else 99)
    out = []
    for name in names:
        path = Path(figures[name])
        path = path if path.is_absolute() else results_dir / path
        if path.is_file():
            out.append({"name": name, "src": _relative(path, page_dir),
                        "caption": FIGURE_CAPTIONS.get(name, name)})
    return out


def product_file(record: Mapping, results_dir: Path, page_dir: Path) -> str | None:
    """Link to the remediated co-add (cspec FITS) when it was written."""
    rem = record.get("remediation") or {}
    given = rem.get("cspec")
    if not given:
        return None
    path = Path(given)
    path = path if path.is_absolute() else results_dir / path
    return _relative(path, page_dir) if path.is_file() else None


def margin_text(record: Mapping) -> str:
    """The threshold margin: the worst row statistic, i.e. the threshold at which the verdict changes."""
    worst, threshold = record.get("threshold_margin"), record.get("threshold")
    if not isinstance(worst, (int, float)) or not isinstance(threshold, (int, float)):
        return "no row statistic"
    if worst < threshold:
        return (f"worst row {worst:.2f} is {threshold - worst:.2f} below the threshold {threshold:g}: "
                f"a threshold below {worst:.2f} would keep every file")
    return (f"worst row {worst:.2f} is {worst - threshold:.2f} above the threshold {threshold:g}: "
            f"a threshold above {worst:.2f} would reject a file")


def cascade(record: Mapping) -> list[dict]:
    """The rejections iteration by iteration (iteration 1 first), with their rows."""
    steps: dict[int, list[dict]] = defaultdict(list)
    for r in record.get("rejected") or []:
        rows = [f"{row} ({m:.1f})" if isinstance(m, (int, float)) else str(row)
                for row, m in zip(r.get("rows") or [], r.get("scaled_medians") or [])]
        steps[int(r.get("iteration") or 0)].append({"file": r["file"], "rows": rows})
    return [{"iteration": i, "files": steps[i]} for i in sorted(steps)]


def input_rows(record: Mapping) -> list[dict]:
    """One row per input file: its fate in the product, scale factor and review keywords."""
    rejected = {r["file"]: r.get("iteration") for r in record.get("rejected") or []}
    keyword = {k["file"]: k.get("reason", "") for k in record.get("keyword_filtered") or []}
    kept = set(record.get("kept") or [])
    rem = record.get("remediation") or {}
    rows = []
    for i in record.get("inputs") or []:
        f = i.get("file", "")
        if f in rejected:
            fate = f"rejected, iteration {rejected[f]}"
        elif f in keyword:
            fate = f"keyword filter: {keyword[f]}"
        elif f in kept:
            fate = "kept"
        else:
            fate = "not co-added"
        headers = i.get("headers") or {}
        rows.append({"file": f, "fate": fate, "css": "kept" if f in kept else "lost",
                     "factor": _factor(rem, f), "sha256": (i.get("sha256") or "")[:12],
                     "keywords": [headers.get(k) for k in REVIEW_KEYWORDS]})
    return rows


def _fmt(value: Any) -> str:
    """Numbers to 6 significant digits, None as a dash (a Jinja2 filter; escaping stays on)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# ---------------------------------------------------------------- writing

def _environment() -> Environment:
    env = Environment(loader=PackageLoader("qa.render", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["rootname"] = rootname_of
    return env


def _js_data(name: str, data: Any) -> str:
    """A script that defines ``window[name]``; ``<`` escaped so no text can close a script element."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"window.{name} = {text};\n"


def write_site(doc: Mapping, results_path: str | Path, out_dir: str | Path) -> Path:
    """Write the review site of the results ``doc`` into ``out_dir``; returns ``index.html``.

    Parameters
    ----------
    doc : mapping
        The results JSON (schema 2).
    results_path : path-like
        Where ``doc`` is (or will be) stored: figure and product-file paths in it are
        relative to its folder.
    out_dir : path-like
        The site's folder (created; pages of an earlier run are replaced).
    """
    out = Path(out_dir)
    results_dir = Path(results_path).resolve().parent
    pages = out / "p"
    if pages.is_dir():
        shutil.rmtree(pages)        # products of an earlier run must not linger
    pages.mkdir(parents=True)
    env = _environment()
    views = build_views(doc)
    groups = group_lost(views)
    summary = counts(doc, views)
    programs = sorted({v.program for v in views}, key=_program_sort_key)
    instruments = sorted({v.instrument for v in views})
    modes = sorted({v.mode for v in views})
    thumbs = {v.pid: next((f for f in figure_links(v.record, results_dir, out)
                           if f["name"] == "row_statistics"), None) for g in groups for v in g.products}
    common = {"doc": doc, "counts": summary, "results_name": _relative(Path(results_path).resolve(), out)}
    for name in STATIC:
        (out / name).write_text(env.loader.get_source(env, name)[0], encoding="utf-8")
    (out / "index-data.js").write_text(_js_data("HQA_INDEX", index_data(views)), encoding="utf-8")
    (out / "index.html").write_text(env.get_template("index.html.j2").render(
        groups=groups, programs=programs, instruments=instruments, modes=modes, thumbs=thumbs,
        errors=[v for v in views if v.error], sources=doc.get("sources") or {}, root="",
        **common), encoding="utf-8")
    (out / "products.html").write_text(env.get_template("products.html.j2").render(
        views=views, root="", **common), encoding="utf-8")
    template = env.get_template("product.html.j2")
    for v in views:
        (out / v.page).write_text(template.render(
            v=v, rec=v.record, figures=figure_links(v.record, results_dir, pages),
            cspec=product_file(v.record, results_dir, pages), margin=margin_text(v.record),
            cascade=cascade(v.record), inputs=input_rows(v.record), keywords=REVIEW_KEYWORDS,
            reference=reference_of(v.record.get("remediation") or {}), root="../", **common),
            encoding="utf-8")
    return out / "index.html"


def product_page(out_dir: str | Path, pid: str) -> Path:
    """Where :func:`write_site` puts the page of product ``pid``."""
    return Path(out_dir) / "p" / page_name(pid)


def default_site_dir(html: str | Path) -> Path:
    """The review site next to a pytest-html report: ``reports/x.html`` -> ``reports/x-review/``."""
    html = Path(html)
    return html.with_name(re.sub(r"\.html?$", "", html.name) + "-review")


def main(argv: list[str] | None = None) -> int:
    """``python -m qa.render.review_site RESULTS.json [--out DIR]``: (re)build a review site."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qa.render.review_site", description=main.__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=None,
                        help="site folder (default: <results stem>-review next to the JSON)")
    args = parser.parse_args(argv)
    doc = json.loads(args.results.read_text(encoding="utf-8"))
    index = write_site(doc, args.results, args.out or default_site_dir(args.results.with_suffix(".html")))
    print(index)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""HTML for pytest-html reports and the results JSON they are rendered from.

Two pieces end up in a pytest-html page:

* :func:`case_extras` -- per test case: the verdict, observed values, parameters,
  remediation outcome and (for the first case of a mode) the diagnostic figures;
* :func:`summary_html` -- the block above the results table, rendered only from
  the results JSON (schema 2, :mod:`qa.summary`, written by :func:`write_results_json`),
  so a report can be re-rendered from a stored JSON file.

Every text that comes from a file or a message (target names, header values,
file names, messages) goes through :func:`html.escape`: a TARGNAME
``<script>alert(1)</script>`` is shown as text, never run.

Figures are shown full width inside the HTML block rather than as pytest-html
image extras, whose viewer is a 320 x 240 px thumbnail carousel where the plots
are unreadable. With ``--self-contained-html`` they are embedded as data URIs;
otherwise they are written as PNG files into ``assets_dir`` (the folder
pytest-html itself uses, ``<report dir>/assets``) and linked relatively.
"""
from __future__ import annotations

import base64
import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from pytest_html import extras

from qa.history.changes import listed
from qa.results import FIGURE_NAMES, CheckResult, Remediation, file_safe, rootname_of

FIGURE_CAPTIONS = {
    "inputs_vs_coadd": "Input exposures (good pixels) and the co-add; rejected files drawn with open markers.",
    "row_statistics": "HASP's flux-filter statistic per row; files with a row below the threshold "
                      "are rejected.",
    "scaled_inputs": "Inputs scaled to the reference median flux, and the co-add made from them.",
    "snr_gain": "SNR of the original and remediated co-adds, and their ratio (matched by wavelength).",
}
STATUS_CLASS = {"passed": "hqa-passed", "failed": "hqa-failed", "error": "hqa-failed",
                "skipped": "hqa-skipped"}
# Styles for both the summary and the case blocks; pytest-html inserts the summary
# once at the top of the page, so the case blocks can rely on these classes.
CSS = """
.hqa h2, .hqa h3, .hqa h4 { margin: 0.6em 0 0.3em 0; }
.hqa table.hqa-table { border-collapse: collapse; margin: 0.3em 0 0.8em 0; font-size: 13px; }
.hqa table.hqa-table th, .hqa table.hqa-table td { border: 1px solid #ccc; padding: 2px 6px;
  text-align: left; vertical-align: top; }
.hqa table.hqa-table th { background: #f2f2f2; }
.hqa .hqa-passed { color: #1a7f37; font-weight: bold; }
.hqa .hqa-failed { color: #b3261e; font-weight: bold; }
.hqa .hqa-skipped { color: #8a6d00; font-weight: bold; }
.hqa .hqa-message { font-family: monospace; white-space: pre-wrap; }
.hqa figure { margin: 0.5em 0 1em 0; }
.hqa figure img { width: 100%; max-width: 900px; height: auto; border: 1px solid #e6e6e6; }
.hqa figcaption { font-size: 12px; color: #555; }
.hqa .hqa-counts span { display: inline-block; margin-right: 1.5em; }
"""


# ---------------------------------------------------------------- value formatting

def _fmt(value: Any) -> str:
    """Escaped text of a scalar: floats to 4 significant digits, None/NaN as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return escape(f"{value:.4g}")
    return escape(str(value))


def value_html(value: Any) -> str:
    """HTML for an observed value: scalars, lists, mappings and lists of mappings (as tables)."""
    if isinstance(value, Mapping):
        return table_html([(escape(str(k)), value_html(v)) for k, v in value.items()]) if value \
            else "&ndash;"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, Mapping) for v in value):
            columns = list(dict.fromkeys(k for v in value for k in v))
            return table_html([[value_html(v.get(c)) for c in columns] for v in value],
                              header=[escape(str(c)) for c in columns])
        return ", ".join(value_html(v) for v in value) if value else "&ndash;"
    return _fmt(value)


def table_html(rows: list, header: list[str] | None = None) -> str:
    """A table of already-escaped cells."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="hqa-table">{head}{body}</table>'


# ---------------------------------------------------------------- per case

def remediation_html(rem: Remediation | Mapping | None) -> str:
    """The remediation outcome: factors, rejections after scaling, SNR gain."""
    if rem is None:
        return ""
    rem = rem if isinstance(rem, Mapping) else asdict(rem)
    if not rem["possible"]:
        return f'<h4>Remediation</h4><p>not possible: {escape(rem["reason"])}</p>'
    rows = [(escape(f), _fmt(rem["medians"].get(f)), _fmt(factor))
            for f, factor in rem["factors"].items()]
    parts = [
        "<h4>Remediation: inputs scaled to a common median flux</h4>",
        f"<p>reference {escape(rem['scaled_to'])} (rule {escape(rem['reference_rule'])})</p>",
        table_html(rows, header=["exposure", "median flux", "scale factor"]),
        f"<p>kept after scaling: {value_html(rem['kept_after'])}; "
        f"rejected after scaling: {value_html(rem['rejected_after']) if rem['rejected_after'] else 'none'}</p>",
    ]
    gain = rem.get("snr_gain")
    if gain:
        parts.append(table_html([(_fmt(gain["median"]), _fmt(gain["p5"]), _fmt(gain["p95"]),
                                  _fmt(gain["nbins"]))],
                                header=["median SNR gain", "5th percentile", "95th percentile", "bins"]))
    elif rem.get("reason"):
        parts.append(f"<p>{escape(rem['reason'])}</p>")
    return "".join(parts)


def asset_filename(stem: str, name: str) -> str:
    """File name of figure ``name`` of the product ``stem`` in the assets folder."""
    return f"{file_safe(stem)}-{name}.png"


def figures_html(figures: Mapping[str, bytes], stem: str, assets_dir: Path | None = None) -> str:
    """``<figure>`` elements, embedded (``assets_dir`` None) or written as files and linked.

    Parameters
    ----------
    figures : mapping
        Figure name -> PNG bytes (:func:`qa.render.plots.product_figures`).
    stem : str
        Prefix of the asset file names (made file-name safe).
    assets_dir : Path, optional
        A folder directly inside the report's folder; None embeds data URIs.
    """
    parts = []
    for name in sorted(figures, key=lambda n: FIGURE_NAMES.index(n) if n in FIGURE_NAMES else 99):
        png = figures[name]
        if assets_dir is None:
            src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        else:
            assets_dir.mkdir(parents=True, exist_ok=True)
            filename = asset_filename(stem, name)
            (assets_dir / filename).write_bytes(png)
            src = f"{assets_dir.name}/{filename}"
        caption = FIGURE_CAPTIONS.get(name, name)
        parts.append(f'<figure><img src="{escape(src)}" alt="{escape(name)}" '
                     f'data-figure="{escape(name)}"><figcaption>{escape(caption)}</figcaption></figure>')
    return "".join(parts)


def case_html(result: CheckResult, figures: Mapping[str, bytes] | None = None,
              assets_dir: Path | None = None, remediation: Remediation | Mapping | None = None,
              notes: tuple[str, ...] | list[str] = ()) -> str:
    """The HTML block of one case: verdict, observed values, parameters, remediation, figures.

    ``remediation`` is the case's product's (stored once per product in the results);
    ``notes`` say why figures are missing, if they could not be drawn.
    """
    status = escape(result.status)
    parts = [
        f'<div class="hqa hqa-case" data-case="{escape(result.case_id)}">',
        f'<h3><span class="{STATUS_CLASS.get(result.status, "")}">{status.upper()}</span> '
        f"{escape(result.check)} &mdash; {escape(result.subject)}</h3>",
        f'<p class="hqa-message">{escape(result.message)}</p>',
        table_html([("check", escape(f"{result.check} (kind {result.kind})")),
                    ("product", _fmt(result.product)), ("subject", escape(result.subject))]),
    ]
    if result.observed:
        parts += ["<h4>Observed</h4>", value_html(result.observed)]
    if result.params:
        parts += ["<h4>Parameters</h4>", value_html(result.params)]
    parts.append(remediation_html(remediation))
    parts += [f'<p class="hqa-note">{escape(n)}</p>' for n in notes]
    if figures:
        parts += [f"<h4>Diagnostic plots of {_fmt(result.product)}</h4>",
                  figures_html(figures, "-".join(filter(None, (result.source, result.product))),
                               assets_dir)]
    parts.append("</div>")
    return "".join(parts)


def case_extras(result: CheckResult, figures: Mapping[str, bytes] | None = None,
                assets_dir: Path | None = None, remediation: Remediation | Mapping | None = None,
                notes: tuple[str, ...] | list[str] = ()) -> list[dict]:
    """pytest-html extras of one case: the HTML block and the result as JSON.

    Parameters
    ----------
    result : CheckResult
        The case's verdict.
    figures : mapping, optional
        The product's figures; pass them only for the first case of a mode so each
        plot appears once in the report.
    assets_dir : Path, optional
        None with ``--self-contained-html`` (figures embedded); otherwise
        ``Path(htmlpath).parent / "assets"``.

    Returns
    -------
    list of dict
        Append to ``report.extras`` in ``pytest_runtest_makereport``.
    """
    return [extras.html(case_html(result, figures, assets_dir, remediation, notes)),
            extras.json(result.to_dict(), name="result JSON")]


# ---------------------------------------------------------------- run summary (schema 2)

def _counts(results_doc: Mapping) -> dict[str, int]:
    results = results_doc.get("results", [])
    products = results_doc["products"]
    exposures = {(p["source"], i["file"]) for p in products.values() for i in p["inputs"]}
    exposures |= {(label, f) for label, src in results_doc["sources"].items()
                  for f in src.get("input_errors", {})}
    tally = Counter(r["status"] for r in results)
    modes = {(p["source"], p["program"], p["target"], p["instrument"], p["grating"])
             for p in products.values()}
    return {"programs": len(results_doc["sources"]), "modes": len(modes),
            "products": len({(p["source"], p["key"]) for p in products.values()}),
            "exposures": len(exposures), "checks": len(results),
            "passed": tally["passed"], "failed": tally["failed"], "errors": tally["error"],
            "skipped": tally["skipped"],
            "rejections": sum(len(p["rejected"]) for p in products.values()),
            "remediations": sum(1 for p in products.values() if p.get("remediation"))}


def _source_html(label: str, source: Mapping, products: Mapping[str, Mapping]) -> str:
    from qa.render.terminal import remediation_line

    head = f"<h3>Program {escape(str(label))}</h3>"
    if source.get("error"):
        return head + f'<p class="hqa-failed">{escape(source["error"])}</p>'
    mine = {pid: p for pid, p in products.items() if p["source"] == label}
    settings = sorted({(p["engine"], p["threshold"], p["snrmax"]) for p in mine.values()},
                      key=str)
    info = (f"<p>source {escape(str(source.get('directory')))} "
            f"({escape(str(source.get('origin', '')))}); "
            + "; ".join(f"engine {escape(str(e))}, threshold {_fmt(t)}, snrmax {_fmt(s)}"
                        for e, t, s in settings) + "</p>")
    rows = []
    keyword: dict[str, str] = {}
    for pid, p in mine.items():
        rejected = ", ".join(f"{escape(rootname_of(r['file']))} (iteration {r['iteration']}, "
                             f"{len(r['rows'])} rows)" for r in p["rejected"]) or "none"
        rem = p.get("remediation")
        fate = escape(p["error"]) if p.get("error") else \
            escape(remediation_line(rem)) if rem else "&ndash;"
        rows.append((escape(pid), f"{len(p['kept'])} / {len(p['inputs'])}", rejected, fate))
        keyword.update({k["file"]: k["reason"] for k in p.get("keyword_filtered", [])})
    parts = [head, info, _manifest_html(source.get("manifest")),
             table_html(rows, header=["product", "kept / inputs", "rejected", "remediation"])]
    problems = [(escape(f), escape(why)) for f, why in source.get("input_errors", {}).items()]
    problems += [(escape(f), escape(why)) for f, why in keyword.items()]
    if problems:
        parts += ["<h4>Files not co-added</h4>", table_html(problems, header=["file", "reason"])]
    return "".join(parts)


def _manifest_html(manifest: Mapping | None) -> str:
    """Where an archive program's files came from: the download manifest."""
    if not manifest:
        return ""
    line = (f"<p>archive {escape(str(manifest.get('mast_url')))}, queried "
            f"{escape(str(manifest.get('query_time')))}: {len(manifest.get('downloaded', []))} "
            f"downloaded, {len(manifest.get('reused', []))} reused from the cache</p>")
    rows = [(escape(str(p.get("filename"))), escape(str(p.get("status"))), _fmt(p.get("size")),
             f'<code>{escape(str(p.get("sha256") or "")[:16])}</code>',
             escape(str(p.get("reason") or ""))) for p in manifest.get("products", [])]
    return line + table_html(rows, header=["file", "status", "bytes", "sha256", "problem"])


def _failures_html(results_doc: Mapping) -> str:
    bad = [r for r in results_doc.get("results", []) if r["status"] in ("failed", "error")]
    if not bad:
        return "<p>No check failed.</p>"
    rows = [(f'<span class="{STATUS_CLASS[r["status"]]}">{escape(r["status"])}</span>',
             escape(r["check"]), escape(r["case_id"]), f'<span class="hqa-message">'
             f'{escape(r["message"])}</span>') for r in bad]
    return table_html(rows, header=["status", "check", "case", "message"])


def summary_html(results_doc: Mapping) -> str:
    """The summary block above the results table, rendered from the results JSON (schema 2).

    Parameters
    ----------
    results_doc : mapping
        The results JSON (:mod:`qa.summary`): ``sources``, ``products`` (by product
        id, each with its remediation), ``results``, ``environment``, ``options``.

    Returns
    -------
    str
        HTML with its own ``<style>``; every value from files or messages escaped.
    """
    counts = _counts(results_doc)
    labels = [("programs", "programs"), ("modes", "modes"),
              ("products", "products (visit and program level)"), ("exposures", "exposures checked"),
              ("checks", "checks"), ("passed", "passed"), ("failed", "failed"),
              ("errors", "errors"), ("skipped", "skipped"), ("rejections", "flux-filter rejections"),
              ("remediations", "remediations")]
    count_html = "".join(f'<span data-count="{k}"><b>{counts[k]}</b> {text}</span>'
                         for k, text in labels)
    env = results_doc.get("environment", {})
    options = results_doc.get("options", {})
    status = results_doc.get("status", "complete")
    parts = [
        f"<style>{CSS}</style>",
        '<div class="hqa hqa-summary">',
        f"<h2>hasp-qa {escape(str(results_doc.get('hasp_qa', '')))} results</h2>",
        f"<p>created {escape(str(results_doc.get('created', '')))}"
        + ("" if status == "complete" else f' <span class="hqa-failed">({escape(status)})</span>')
        + "</p>",
        f'<p class="hqa-counts">{count_html}</p>',
        "<h3>Failures</h3>", _failures_html(results_doc),
        *(_source_html(label, src, results_doc["products"])
          for label, src in results_doc["sources"].items()),
        "<h3>Environment and options</h3>",
        table_html([(escape(str(k)), value_html(v)) for k, v in {**env, **options}.items()]),
        "</div>",
    ]
    return "".join(parts)


# ---------------------------------------------------------------- results JSON

def write_results_json(path: str | Path, results_doc: Mapping) -> Path:
    """Write the results JSON, atomically (a reader never sees half a file).

    NaN is not JSON: results carry None instead (``CheckResult.to_dict`` does that);
    any NaN left is refused here rather than written as invalid JSON.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results_doc, indent=1, allow_nan=False, default=str)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def load_results_json(path: str | Path) -> dict:
    """Read a results JSON written by :func:`write_results_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_check_results(results_doc: Mapping) -> list[CheckResult]:
    """The run's check results as :class:`CheckResult` objects."""
    return [CheckResult.from_dict(r) for r in results_doc.get("results", [])]


def changes_html(history: Mapping) -> str:
    """The block that opens the report: the night and what changed since the previous runs.

    Parameters
    ----------
    history : mapping
        The ``history`` part of the results JSON (written by the nightly plugin).
    """
    parts = ['<div class="hqa hqa-changes" id="hqa-changes">', "<h2>What changed</h2>"]
    window = history.get("window")
    if window:
        parts.append(f"<p>night {escape(window['since'])} .. {escape(window['until'])}: "
                     f"{len(history['programs'])} program(s)</p>")
        if history["programs"]:
            parts.append("<ul>" + "".join(f'<li data-program="{escape(p["program"])}">'
                                          f"{escape(p['text'])}</li>"
                                          for p in history["programs"]) + "</ul>")
        else:
            parts.append('<p class="hqa-empty-night">nothing released or re-archived</p>')
    previous = ", ".join(str(r) for r in history["previous_runs"]) or "none"
    parts.append(f"<p>run {escape(str(history['run']))}, compared with run(s) "
                 f"{escape(previous)}</p>")
    parts.append("<p>" + (", ".join(f'<span data-change-count="{escape(k)}"><b>{n}</b> '
                                    f"{escape(k)}</span>" for k, n in history["tally"].items())
                          or "no checks") + "</p>")
    rows = [(escape(c["kind"]), escape(c["case_id"]), escape(c["check"]),
             escape(c["before"] or "-"), escape(c["after"]), escape(c["detail"]),
             "new" if c["alert"] else "") for c in filter(listed, history["changes"])]
    if rows:
        parts.append(table_html(rows, header=["change", "case", "check", "before", "now",
                                              "detail", "alert"]))
    parts.append("</div>")
    return "\n".join(parts)

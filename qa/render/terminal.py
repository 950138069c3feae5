"""Plain-text summary of a QA run, rendered from the results JSON (schema 2)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from qa.history.changes import listed
from qa.results import rootname_of


def remediation_line(rem: Mapping) -> str:
    """The remediation in one line: the one wording for failures, the summary and the report.

    ``rem`` is a remediation as the results JSON stores it (``asdict(Remediation)``).
    """
    if not rem["possible"]:
        return f"remediation not possible: {rem['reason']}"
    factors = ", ".join(f"{rootname_of(k)} \u00d7{v:.4f}" for k, v in rem["factors"].items())
    after = ", ".join(rootname_of(f) for f in rem["rejected_after"]) or "none"
    gain = rem.get("snr_gain")
    gain_text = (f"; SNR gain median {gain['median']:.3f} (p5 {gain['p5']:.3f}, "
                 f"p95 {gain['p95']:.3f})" if gain else "")
    return (f"remediation: scaled to {rem['scaled_to']} ({factors}); "
            f"rejected after scaling: {after}{gain_text}")


def render_summary(results_doc: dict) -> str:
    """Sources, products (inputs, kept, rejected, remediation) and the check tally."""
    results = results_doc["results"]
    lines = []
    if results_doc.get("status") == "interrupted":
        lines.append("INTERRUPTED: the results below are partial")
    for label, src in results_doc["sources"].items():
        if src.get("error"):
            lines.append(f"program {label} ({src['origin']}): ERROR {src['error']}")
            continue
        lines.append(f"program {label} ({src['origin']}, {src['directory']})")
        for name, problem in src.get("input_errors", {}).items():
            lines.append(f"  unreadable {name}: {problem}")
        products = {pid: p for pid, p in results_doc["products"].items() if p["source"] == label}
        keyword = {k["file"]: k["reason"] for p in products.values() for k in p["keyword_filtered"]}
        for name, reason in keyword.items():
            lines.append(f"  keyword-filtered {name}: {reason}")
        for pid, p in products.items():
            if p.get("error"):
                lines.append(f"  {pid:<44} ERROR {p['error']}")
                continue
            rejected = ", ".join(f"{rootname_of(r['file'])} (iter {r['iteration']})"
                                 for r in p["rejected"]) or "none"
            rem = p.get("remediation")
            lines.append(f"  {pid:<44} kept {len(p['kept'])}/{len(p['inputs'])}  "
                         f"rejected: {rejected:<28} {remediation_line(rem) if rem else ''}".rstrip())
            lines += [f"    note: {n}" for n in p.get("notes", [])]
    tally = Counter(r["status"] for r in results)
    labels = {"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped"}
    lines.append("checks: " + ", ".join(f"{tally.get(k, 0)} {v}" for k, v in labels.items()))
    return "\n".join(lines)



CHANGE_LINES = 20


def render_changes(history: dict) -> str:
    """What changed since the previous runs (the ``history`` part of the results JSON)."""
    lines = []
    window = history.get("window")
    if window:
        programs = history["programs"]
        lines.append(f"night {window['since']} .. {window['until']}: "
                     + (f"{len(programs)} program(s)" if programs else
                        "nothing released or re-archived; no programs to check"))
        lines += [f"  {p['text']}" for p in programs]
    previous = history["previous_runs"]
    lines.append(f"run {history['run']} in {history['store']}, compared with "
                 + (f"run(s) {', '.join(map(str, previous))}" if previous else "no earlier run"))
    tally = history["tally"]
    lines.append("changes: " + (", ".join(f"{n} {k}" for k, n in tally.items()) or "none"))
    # Alerts first; a terminal shows the first CHANGE_LINES, the report and results JSON all.
    shown = sorted(filter(listed, history["changes"]), key=lambda c: not c["alert"])
    for c in shown[:CHANGE_LINES]:
        flag = "  [new]" if c["alert"] else ""
        lines.append(f"  {c['kind'].upper():<18} {c['case_id']} ({c['check']}): {c['detail']}{flag}")
    if len(shown) > CHANGE_LINES:
        lines.append(f"  ... and {len(shown) - CHANGE_LINES} more (HTML report, results JSON)")
    if history["fail_on"] == "new":
        lines.append(f"--fail-on=new: {history['alerts']} new failure(s) or changed verdict(s)")
    return "\n".join(lines)

"""Plain-text summary of a QA run, rendered from the results JSON."""
from __future__ import annotations

from collections import Counter

from qa.results import product_key, rootname_of


def _remediation_text(rem: dict | None) -> str:
    if rem is None:
        return "-"
    if not rem["possible"]:
        return f"not possible: {rem['reason']}"
    factors = "/".join(f"{v:.3f}" for v in rem["factors"].values())
    after = ", ".join(rootname_of(f) for f in rem["rejected_after"]) or "none"
    gain = rem.get("snr_gain")
    gain_text = f", SNR gain {gain['median']:.3f}" if gain else ""
    return f"x {factors} -> rejected: {after}{gain_text}"


def render_summary(summary: dict) -> str:
    """Programs, products (inputs, kept, rejected, remediation) and the check tally."""
    results = summary["results"]
    remediation = {r["product"]: r["remediation"] for r in results if r.get("remediation")}
    lines = []
    for label, prog in summary["programs"].items():
        if prog.get("error"):
            lines.append(f"program {label} ({prog['origin']}): ERROR {prog['error']}")
            continue
        er = prog["engine_result"]
        lines.append(f"program {label} ({prog['origin']}, {prog['source']}): engine {er['engine']}, "
                     f"threshold {prog['threshold']:g}, snrmax {prog['snrmax']:g}")
        for name, problem in er["input_errors"].items():
            lines.append(f"  unreadable {name}: {problem}")
        for k in er["keyword_filtered"]:
            lines.append(f"  keyword-filtered {k['file']}: {k['reason']}")
        for p in er["products"]:
            key = product_key(p["program"], p["target"], f"{p['instrument']}/{p['grating']}",
                              p["level"], p["visit"])
            rejected = ", ".join(f"{rootname_of(r['file'])} (iter {r['iteration']})"
                                 for r in p["rejected"]) or "none"
            lines.append(f"  {key:<44} kept {len(p['kept'])}/{len(p['inputs'])}  "
                         f"rejected: {rejected:<28} remediation: {_remediation_text(remediation.get(key))}")
    tally = Counter(r["status"] for r in results)
    labels = {"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped"}
    lines.append("checks: " + ", ".join(f"{tally.get(k, 0)} {v}" for k, v in labels.items()))
    return "\n".join(lines)


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
    for c in history["changes"]:
        flag = "  [new]" if c["alert"] else ""
        lines.append(f"  {c['kind'].upper():<18} {c['case_id']} ({c['check']}): {c['detail']}{flag}")
    if history["fail_on"] == "new":
        lines.append(f"--fail-on=new: {history['alerts']} new failure(s) or changed verdict(s)")
    return "\n".join(lines)

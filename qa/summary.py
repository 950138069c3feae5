"""The results JSON, schema 2: what the terminal summary, the report and the history read.

Products are stored once, by product id (pid); each check result names its
product's pid, and a product's remediation is stored once, in its product. The
document is plain JSON (NaN as null).
"""
from __future__ import annotations

import math
import platform
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from qa import __version__
from qa.checks import CheckSpec
from qa.pipeline import Collection, Job, PlannedProduct, ProductOutcome, check_result
from qa.results import nan_to_none
from qa.sources import Options, Source

SCHEMA = 2


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment(engine: str) -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(terse=True),
           "engine": engine}
    for dist in ("hasp-qa", "hasp", "ullyses", "numpy", "astropy", "astroquery", "matplotlib",
                 "pytest", "pytest-html"):
        try:
            env[dist] = version(dist)
        except PackageNotFoundError:
            env[dist] = "not installed"
    return env


def threshold_margin(po: ProductOutcome) -> float | None:
    """The worst (lowest) row statistic: the threshold at which the product's verdict changes."""
    values = [r.scaled_median for r in po.product.row_stats if math.isfinite(r.scaled_median)]
    return min(values) if values else None


def product_record(planned: PlannedProduct, job: Job, coll: Collection,
                   po: ProductOutcome | None, job_error: str | None = None,
                   sha: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One entry of ``products``: the small facts of a product (no arrays, no figures' bytes).

    ``sha`` maps the job's files to the sha256 of the bytes computed from
    (``JobOutcome.sha256``).
    """
    sha = sha or {}
    rec: dict[str, Any] = {
        "source": planned.source, "key": planned.key, "level": planned.level,
        "program": planned.program, "visit": planned.visit, "instrument": planned.instrument,
        "grating": planned.grating, "detector": planned.detector, "target": planned.target,
        "filename": "", "threshold": planned.filters.threshold, "snrmax": planned.filters.snrmax,
        "engine": job.params.engine,
        "inputs": [{"file": f, "sha256": sha.get(f), "headers": coll.headers.get((planned.source, f), {})}
                   for f in planned.files],
        "kept": [], "rejected": [], "iterations": 0, "keyword_filtered": [], "findings": [],
        "threshold_margin": None, "remediation": None, "figures": {}, "notes": [],
        "error": job_error,
    }
    if po is None:
        rec["error"] = rec["error"] or f"{planned.key}: not computed"
        return nan_to_none(rec)
    rec.update(keyword_filtered=[asdict(k) for k in po.keyword_filtered], findings=po.findings,
               notes=po.notes, error=po.error,
               remediation=asdict(po.remediation) if po.remediation else None)
    if po.product is not None:
        p = po.product
        rec.update(filename=p.filename, kept=p.kept, iterations=p.iterations,
                   rejected=[asdict(r) for r in p.rejected], threshold_margin=threshold_margin(po))
    return nan_to_none(rec)


def check_record(spec: CheckSpec) -> dict[str, Any]:
    return {"name": spec.name, "kind": spec.kind, "description": spec.description,
            "on_fail": spec.on_fail, "params": spec.params, "file": spec.file}


def source_record(source: Source, input_errors: dict[str, str]) -> dict[str, Any]:
    return {"origin": source.origin, "directory": source.directory, "manifest": source.manifest,
            "error": source.error, "input_errors": dict(input_errors)}


def document(*, options: Options, specs: list[CheckSpec], sources: list[Source],
             input_errors: dict[str, dict[str, str]], products: dict[str, dict],
             results: list[dict], created: str, interrupted: bool = False) -> dict[str, Any]:
    """The results JSON of a run (schema 2)."""
    return {
        "schema": SCHEMA, "hasp_qa": __version__, "created": created, "finished": now(),
        "status": "interrupted" if interrupted else "complete",
        "environment": environment(options.engine),
        "options": options.to_dict(),
        "checks": [check_record(s) for s in specs],
        "sources": {s.label: source_record(s, input_errors.get(s.label, {})) for s in sources},
        "products": products,
        "results": results,
    }


def run_in_process(options: Options) -> tuple[dict[str, Any], dict[str, ProductOutcome]]:
    """A whole run without pytest: the results JSON and every product's outcome by pid.

    For tools and tests; unlike the plugin it holds every outcome until it returns.
    """
    from qa.pipeline import collect, compute, evaluate
    from qa.sources import resolve_sources

    sources = resolve_sources(options)
    coll = collect(options, sources)
    outcomes = {job_id: compute(job) for job_id, job in coll.jobs.items()}
    results = [check_result(c, evaluate(c, outcomes.get(c.job))).to_dict() for c in coll.cases]
    by_pid = {pid: outcomes[p.job].product(p.key, p.filters) for pid, p in coll.products.items()}
    products = {pid: product_record(p, coll.jobs[p.job], coll, by_pid[pid], outcomes[p.job].error,
                                    outcomes[p.job].sha256)
                for pid, p in coll.products.items()}
    input_errors = {label: dict(errors) for label, errors in coll.input_errors.items()}
    for job_id, outcome in outcomes.items():
        input_errors.setdefault(coll.jobs[job_id].source, {}).update(outcome.input_errors)
    doc = document(options=options, specs=coll.specs, sources=sources, input_errors=input_errors,
                   products=products, results=results, created=now())
    return doc, by_pid

"""What changed since the last complete run that saw the same products.

Every (product, check subject) of a run is classified against the newest complete run
that had the product:

==========================  ==============================================================
``new product``             no earlier complete run had the product
``input set changed``       a dataset was added, removed or re-archived (sha256 differs)
``verdict changed``         same inputs, another verdict: a version changed (named)
``new failure``             same inputs and versions, now failing (check parameters changed)
``fixed``                   same inputs and versions, no longer failing
``still failing``           failing before and now
``still passing``           not failing before nor now
==========================  ==============================================================

``alert`` marks what ``--fail-on=new`` counts: a failure that is new (new product,
changed inputs or parameters) and any verdict that changed with the same inputs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from qa.history.record import FAILING, CheckRecord, ProductRecord

# Versions whose change can explain a verdict change with the same inputs.
VERSIONED = ("hasp-qa", "hasp", "numpy", "astropy", "astroquery", "engine")
KINDS = ("new failure", "verdict changed", "input set changed", "new product", "fixed",
         "still failing", "still passing")
# Kinds that are no change: counted, not listed one by one to a reviewer.
STEADY = ("still failing", "still passing")


def listed(change: Mapping[str, Any]) -> bool:
    """Whether a reviewer is shown this change one by one; the tally counts the rest.

    Steady verdicts and new products that pass are only counted: a first run would
    otherwise list every case.
    """
    return change["kind"] not in STEADY and \
        not (change["kind"] == "new product" and not change["alert"])


@dataclass
class Change:
    """One (product, check subject) compared with the previous run that had the product."""

    pid: str
    program: str
    check: str
    case_id: str
    kind: str
    before: str | None          # the previous verdict (None for a new product)
    after: str
    previous_run: int | None
    detail: str
    alert: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _input_changes(before: ProductRecord, after: ProductRecord) -> str:
    """``added o9..., re-archived o5jy03030 (sha256 changed)``; empty when identical."""
    old, new = before.inputs, after.inputs
    parts = []
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(f for f in set(old) & set(new) if old[f] != new[f])
    if added:
        parts.append("added " + ", ".join(added))
    if removed:
        parts.append("removed " + ", ".join(removed))
    if changed:
        parts.append("re-archived " + ", ".join(changed) + " (sha256 changed)")
    return "; ".join(parts)


def _version_changes(before: dict[str, str], after: dict[str, str]) -> str:
    return ", ".join(f"{k} {before.get(k)} -> {after.get(k)}" for k in VERSIONED
                     if before.get(k) != after.get(k))


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _classify(check: CheckRecord, old: CheckRecord | None, inputs: str, versions: str
              ) -> tuple[str, str, bool]:
    """(kind, detail, alert) for one check subject of a product seen before."""
    now_failing = check.status in FAILING
    if old is None:  # a check or subject the product did not have before
        return "new product" if not inputs else "input set changed", \
            f"new check subject; {inputs}".rstrip("; "), now_failing
    was_failing = old.status in FAILING
    verdict = f"{old.status} -> {check.status}"
    if inputs:
        return "input set changed", f"{inputs}; {verdict}", now_failing and not was_failing
    if old.status != check.status and versions:
        return "verdict changed", f"{verdict} with the same inputs; {versions}", True
    if now_failing and not was_failing:
        why = "" if old.threshold == check.threshold else \
            f" (threshold {_number(old.threshold)} -> {_number(check.threshold)})"
        return "new failure", f"{verdict} with the same inputs and versions{why}", True
    if was_failing and not now_failing:
        return "fixed", verdict, False
    return ("still failing" if now_failing else "still passing"), check.status, False


def classify(current: dict[str, ProductRecord], versions: dict[str, str],
             previous: dict[str, tuple[int, ProductRecord]],
             previous_versions: dict[int, dict[str, str]]) -> list[Change]:
    """Every (product, check subject) of ``current`` against its previous record.

    Parameters
    ----------
    current : dict
        This run's products by pid.
    versions : dict
        This run's versions (``environment`` of the results JSON).
    previous : dict
        pid -> (run id, record) of the newest earlier complete run with the product.
    previous_versions : dict
        run id -> versions of those runs.
    """
    out = []
    for pid, product in sorted(current.items()):
        run_id, before = previous.get(pid, (None, None))
        old_checks = {(c.check, c.case_id): c for c in before.checks} if before else {}
        inputs = _input_changes(before, product) if before else ""
        versions_changed = _version_changes(previous_versions.get(run_id, {}), versions) \
            if before else ""
        for check in product.checks:
            if before is None:
                kind, detail, alert = "new product", check.status, check.status in FAILING
            else:
                kind, detail, alert = _classify(check, old_checks.get((check.check, check.case_id)),
                                                inputs, versions_changed)
            old = old_checks.get((check.check, check.case_id))
            out.append(Change(pid=pid, program=product.program, check=check.check,
                              case_id=check.case_id, kind=kind,
                              before=old.status if old else None, after=check.status,
                              previous_run=run_id, detail=detail, alert=alert))
    return out


def tally(found: list[Change]) -> dict[str, int]:
    """Number of (product, check) per kind, in ``KINDS`` order, zeros left out."""
    counts = {k: sum(c.kind == k for c in found) for k in KINDS}
    return {k: n for k, n in counts.items() if n}

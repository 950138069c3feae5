"""What the history keeps of one run, read from the run's results JSON (schema 2).

The results JSON is the single source: products keyed by pid with their inputs
(file, sha256), kept and rejected files and remediation, and check results that
refer to their product by pid.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FAILING = ("failed", "error")


@dataclass
class CheckRecord:
    """One (check, subject) verdict of a product."""

    check: str
    case_id: str
    subject: str
    status: str
    message: str = ""
    threshold: float | None = None
    observed: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProductRecord:
    """One product of a run, with its inputs and check verdicts."""

    pid: str
    source: str
    program: str
    level: str = ""
    mode: str = ""
    inputs: dict[str, str | None] = field(default_factory=dict)   # file -> sha256
    kept: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    remediation: dict[str, Any] | None = None    # {"factors": {...}, "snr_gain": float|None}
    error: str | None = None
    checks: list[CheckRecord] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return self.error is not None or any(c.status in FAILING for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _threshold(result: dict[str, Any]) -> float | None:
    value = (result.get("params") or {}).get("threshold")
    return float(value) if isinstance(value, (int, float)) else None


def _check(result: dict[str, Any]) -> CheckRecord:
    return CheckRecord(check=result["check"], case_id=result["case_id"],
                       subject=str(result.get("subject") or ""), status=result["status"],
                       message=str(result.get("message") or ""), threshold=_threshold(result),
                       observed=result.get("observed") or {})


def _remediation(rem: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parts of a remediation a trend needs: scale factors and median SNR gain."""
    if not rem:
        return None
    gain = rem.get("snr_gain")
    return {"possible": bool(rem.get("possible")), "factors": rem.get("factors") or {},
            "snr_gain": gain.get("median") if isinstance(gain, dict) else gain,
            "rejected_after": rem.get("rejected_after") or []}


def products_of(summary: dict[str, Any]) -> dict[str, ProductRecord]:
    """The run's products by pid, each with its check verdicts."""
    out = {}
    for pid, p in summary.get("products", {}).items():
        out[pid] = ProductRecord(
            pid=pid, source=str(p.get("source") or ""), program=str(p.get("program") or ""),
            level=str(p.get("level") or ""),
            mode=f"{p.get('instrument', '')}/{p.get('grating', '')}",
            inputs={i["file"]: i.get("sha256") for i in p.get("inputs", [])},
            kept=list(p.get("kept", [])), rejected=[r["file"] for r in p.get("rejected", [])],
            remediation=_remediation(p.get("remediation")), error=p.get("error"))
    for result in summary.get("results", []):
        pid = result.get("product") or ""
        if pid not in out:
            # A case without product (an unusable source or file): keep it under its source.
            source = str(result.get("source") or "")
            pid = pid or f"{source or '?'}:inputs"
            out.setdefault(pid, ProductRecord(pid=pid, source=source, program=source))
        out[pid].checks.append(_check(result))
    return out

"""Content-keyed on-disk cache of job outcomes, in JSON (never pickle).

An entry's key is the sha256 of everything that decides the outcome: every input
file's name and sha256 (the bytes, not the name or mtime: the archive reprocesses
data under the same names), the run parameters, a fingerprint of the source of
the code that computes it, and the numpy/astropy/matplotlib/hasp versions. An
entry holds data only (JSON: numbers, strings, base64 PNG), no absolute path, so
the cache directory can be moved or shared; loading it runs no code. An entry
that cannot be read (truncated, edited, foreign) is treated as absent and
computed again.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import AbstractContextManager
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from filelock import FileLock

# Modules whose source decides an outcome: reading, pre-filtering, grouping, the
# engines, remediation, the check kinds (they decide when to remediate), the figures
# and the orchestration itself.
CODE_MODULES = (
    "qa.io.fitsio", "qa.io.reader", "qa.io.model", "qa.engine.prefilter", "qa.engine.grouping",
    "qa.engine.coadd", "qa.engine.native", "qa.engine.reference", "qa.remediate", "qa.checks",
    "qa.results", "qa.render.plots", "qa.pipeline",
)
VERSIONED = ("numpy", "astropy", "matplotlib", "hasp", "ullyses")
FORMAT = 1  # bump when the entry layout changes


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_fingerprint(modules: tuple[str, ...]) -> str:
    """sha256 over the source files of ``modules`` (found, not imported)."""
    h = hashlib.sha256()
    for name in modules:
        spec = find_spec(name)
        h.update(name.encode())
        if spec is not None and spec.origin and os.path.isfile(spec.origin):
            h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_fingerprint() -> dict[str, Any]:
    """The code and library versions an outcome depends on."""
    versions = {}
    for dist in VERSIONED:
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    return {"format": FORMAT, "source": source_fingerprint(CODE_MODULES), "versions": versions}


def cache_key(material: dict[str, Any]) -> str:
    """sha256 of ``material`` (JSON-able) together with :func:`code_fingerprint`."""
    text = json.dumps({"material": material, "code": code_fingerprint()}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class OutcomeCache:
    """Entries ``<root>/outcomes/<key[:2]>/<key>.json``, written atomically under a file lock."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / "outcomes" / key[:2] / f"{key}.json"

    def lock(self, key: str) -> AbstractContextManager:
        """Held while one process computes ``key``, so that xdist workers compute it once."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(target.with_suffix(".lock")))

    def load(self, key: str) -> dict[str, Any] | None:
        """The entry, or None when it is absent or cannot be read as this format."""
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key or "outcome" not in data:
            return None
        return data["outcome"]

    def store(self, key: str, outcome: dict[str, Any]) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # NaN (a row statistic of a NaN row) is kept as Python's JSON extension.
        tmp.write_text(json.dumps({"key": key, "outcome": outcome}), encoding="utf-8")
        tmp.replace(target)

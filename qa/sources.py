"""Where a run's inputs come from: demo programs, archive programs, user directories.

A :class:`Source` is one directory of spectra with a unique label. Resolving the
sources is the only step that talks to the archive or writes the demo data; it
runs once per run (under xdist, in the controller, which hands the result to the
workers), never once per worker.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from qa.cache import source_fingerprint
from qa.io.reader import directory_label, find_spectra, not_a_directory


@dataclass
class Options:
    """The run's command-line options, resolved (one value per option)."""

    programs: list[str] = field(default_factory=list)
    data_dirs: list[Path] = field(default_factory=list)
    demo: bool = False
    engine: str = "native"
    checks: list[Path] = field(default_factory=list)
    threshold: float | None = None     # overrides every check's (HASP -t)
    snrmax: float | None = None        # overrides every check's (HASP -s)
    remediate: str = "auto"
    cache_dir: Path = Path(".hasp-qa-cache")
    mast_url: str | None = None
    offline: bool = False
    figures: str = "none"              # figures policy (qa.render.policy): all, failing, none;
                                       # "auto" until the number of products is known
    report: bool = False               # a report is written: remediated co-adds become cspec files
    archive_timeout: float = 60.0          # seconds per archive request
    archive_deadline: float | None = None  # seconds per program, all requests and retries

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v]
                    if isinstance(v, list) else v) for k, v in asdict(self).items()}


@dataclass
class Source:
    """One directory of inputs: a demo program, a downloaded program or a user directory."""

    label: str
    origin: str                    # "demo", "archive" or "data-dir"
    directory: str | None = None
    manifest: dict | None = None
    error: str | None = None       # the whole source is unusable
    missing: dict[str, str] = field(default_factory=dict)  # archive products that did not arrive

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Source":
        return cls(**data)


def resolve_sources(options: Options) -> list[Source]:
    """Every source of the run, with unique labels; archive programs are fetched here."""
    sources = []
    if options.demo:
        sources += _demo_sources(options.cache_dir)
    for program in options.programs:
        sources.append(_archive_source(program, options))
    for d in options.data_dirs:
        src = Source(label=directory_label(d), origin="data-dir", directory=str(d))
        problem = not_a_directory(d)
        if problem:
            src.directory, src.error = None, f"--data-dir {d}: {problem}"
        elif not find_spectra(d):
            src.directory, src.error = None, f"--data-dir {d}: holds no *_x1d.fits or *_sx1.fits file"
        sources.append(src)
    # Labels key results, case ids and output folders: make repeated ones unique.
    seen: dict[str, int] = {}
    for src in sources:
        seen[src.label] = seen.get(src.label, 0) + 1
        if seen[src.label] > 1:
            src.label = f"{src.label}-{src.origin}{seen[src.label]}"
    return sources


def _demo_sources(cache_dir: Path) -> list[Source]:
    from qa.synth import DEMO_PROGRAMS, write_demo_program
    # The demo files are regenerated when the generator's code changes.
    stamp = source_fingerprint(("qa.synth",))
    out = []
    for program in DEMO_PROGRAMS:
        directory = cache_dir / "demo" / str(program)
        marker = directory / ".complete"
        if not (marker.is_file() and marker.read_text() == stamp):
            directory.mkdir(parents=True, exist_ok=True)
            with FileLock(str(directory) + ".lock"):
                if not (marker.is_file() and marker.read_text() == stamp):
                    write_demo_program(str(program), directory)
                    marker.write_text(stamp)
        out.append(Source(label=str(program), origin="demo", directory=str(directory)))
    return out


def _archive_source(program: str, options: Options) -> Source:
    from qa.archive.fetch import ArchiveError, fetch_program
    try:
        fetched = fetch_program(program, options.cache_dir / "mast",
                                mast_url=options.mast_url, offline=options.offline,
                                timeout=options.archive_timeout, deadline=options.archive_deadline)
    except ArchiveError as exc:
        return Source(label=program, origin="archive", error=str(exc))
    manifest = json.loads(Path(fetched.manifest).read_text())
    return Source(label=program, origin="archive", directory=str(fetched.directory),
                  manifest=manifest, missing={m.filename: m.reason for m in fetched.missing})

"""Differential testing of the native engine against the real hasp (``hasp.wrapper.main``).

A :class:`Scenario` is a directory of inputs derived from the real test files
(random scalings, noise, DQ flags, fully flagged extensions, second SCI
extensions, keyword triggers, hidden files, row cuts, STIS CCD first-order
cuts) or written by :mod:`qa.synth` (COS), plus HASP's ``-t``/``-s``/``-k``/``-x``.
:func:`compare` runs both engines on it and sorts their differences by kind.

``python -m tests.differential`` (``make fuzz``) runs many fresh scenarios and
prints one summary line; a mismatch is shrunk (:func:`shrink`) and saved under
``tests/data/differential/`` where ``tests/test_differential.py`` replays it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from astropy.io import fits
from hypothesis import strategies as st

from qa.engine import native, reference
from qa.engine.parity import differences

REGRESSIONS = Path(__file__).parent / "data" / "differential"
REAL_SOURCES = ("o4vt02040", "o3zx02070", "odbue5030", "ocb6f1020", "ocb6i2020")
COS_SOURCES = ("cos-G130M", "cos-G160M", "cos-G185M")
# Keyword triggers: (where, key, value) edits that HASP's pre-filters look at.
TRIGGERS = {
    "EXPFLAG": ("sci", "EXPFLAG", "INTERRUPTED"),
    "ZEROEXPTIME": ("sci", "EXPTIME", 0.0),
    "PLANTIME": ("sci", "PLANTIME", 1.0e6),
    "FGSLOCK": ("sci", "FGSLOCK", "COARSE"),
    "POSTARG1": ("primary", "POSTARG1", 0.05),
    "POSTARG2": ("primary", "POSTARG2", 0.1),
    "POSTARG2-DITHER": ("primary", "POSTARG2", 0.1),  # with P1_PURPS = DITHER: kept by STIS
    "PERP": ("primary", "PATTERN1", "STIS-PERP-TO-SLIT"),
    "MOSAIC": ("primary", "P1_PURPS", "MOSAIC"),
    "MTFLAG": ("primary", "MTFLAG", "T"),
    "WAVE": ("primary", "TARGNAME", "WAVE"),
    "BOA": ("primary", "APERTURE", "BOA"),
    "PRISM": ("primary", "OPT_ELEM", "PRISM"),
}


@dataclass
class FileSpec:
    """One input file: a source and the mutations applied to a copy of it."""

    source: str                   # a real rootname, or "cos-<grating>" (qa.synth)
    visit: int = 1
    scale: float = 1.0            # FLUX and ERROR multiplied (as the tutorial scales)
    noise: float = 0.0            # relative Gaussian noise added to FLUX
    flag_fraction: float = 0.0    # random pixels given a serious DQ bit
    rows: tuple[int, int] | None = None   # keep rows [a, b) of every SCI extension
    ccd: bool = False             # STIS CCD first-order cut: middle row, DETECTOR = CCD
    second_ext: float = 0.0       # > 0: append a copy of SCI 1 scaled by this, as EXTVER 2
    dead_ext: tuple[int, ...] = ()  # SCI extensions (1-based) with every pixel flagged
    trigger: str = ""             # a key of TRIGGERS
    hidden: str = ""              # "appledouble" (junk ._ file) or "copy" (valid dot-file copy)
    seed: int = 0


@dataclass
class Scenario:
    files: list[FileSpec]
    threshold: float = -50.0
    snrmax: float = 20.0
    keyword_filtering: bool = True
    cross_program: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Scenario":
        data = json.loads(text)
        data.pop("note", None)
        files = [FileSpec(**{**f, "rows": tuple(f["rows"]) if f["rows"] else None,
                             "dead_ext": tuple(f["dead_ext"])}) for f in data.pop("files")]
        return cls(files=files, **data)

    def run_kwargs(self) -> dict:
        return {"threshold": self.threshold, "snrmax": self.snrmax,
                "keyword_filtering": self.keyword_filtering, "cross_program": self.cross_program}


# ------------------------------------------------------------------ strategies

def file_specs(source: str, visit: int, max_rows: int | None) -> st.SearchStrategy[FileSpec]:
    cos = source.startswith("cos-")
    nrows = 3 if cos else 51
    if max_rows is None:
        rows = st.none() | st.tuples(st.integers(0, nrows - 1), st.integers(1, nrows)).map(
            lambda ab: (min(ab), max(ab[0], ab[1]) + 1))
    else:
        rows = st.integers(0, 30).map(lambda a: (a, a + max_rows))
    return st.builds(
        FileSpec, source=st.just(source), visit=st.just(visit),
        scale=st.sampled_from([1.0, 1.0, 0.97, 0.9, 0.8, 1.1]) | st.floats(0.5, 1.5),
        noise=st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.3]),
        flag_fraction=st.sampled_from([0.0, 0.0, 0.05, 0.3, 0.9]),
        rows=st.none() if cos else rows,
        second_ext=st.sampled_from([0.0, 0.0, 0.0, 1.0, 0.9]),
        dead_ext=st.sampled_from([(), (), (), (1,), (2,)]),
        trigger=st.sampled_from([""] * 6 + sorted(TRIGGERS)),
        hidden=st.sampled_from(["", "", "", "", "appledouble", "copy"]),
        seed=st.integers(0, 2**16))


@st.composite
def scenarios(draw, max_rows: int | None = 6, cos: bool = True) -> Scenario:
    """Scenarios of 1-2 sources, each 1-4 files over 1-2 visits, with random options."""
    sources = st.sampled_from(REAL_SOURCES + (COS_SOURCES if cos else ()))
    groups = draw(st.lists(sources, min_size=1, max_size=2, unique=True))
    files = []
    for source in groups:
        ccd = not source.startswith("cos-") and draw(st.booleans()) and draw(st.booleans())
        n = draw(st.integers(1, 3 if source.startswith("cos-") else 4))
        for _ in range(n):
            spec = draw(file_specs(source, draw(st.integers(1, 2)), max_rows))
            files.append(replace(spec, ccd=ccd))
    return Scenario(files=files,
                    threshold=draw(st.sampled_from([-50.0, -50.0, -20.0, -5.0, -200.0, 2.0])),
                    snrmax=draw(st.sampled_from([20.0, 20.0, 5.0, 50.0, 1.0e6])),
                    keyword_filtering=draw(st.sampled_from([True, True, False])),
                    cross_program=draw(st.sampled_from([False, False, False, True])))


# ------------------------------------------------------------------ writing

def _rootname(spec: FileSpec, index: int) -> str:
    # Same source and visit -> same program code, so that they make products together.
    if spec.source.startswith("cos-"):
        return f"lq{REAL_SOURCES.index('o4vt02040') + COS_SOURCES.index(spec.source)}a{spec.visit:02d}{index:02d}q"
    return f"oq{REAL_SOURCES.index(spec.source)}a{spec.visit:02d}{index:02d}q"


def _serious_bit(sdqflags: int) -> int:
    bits = [b for b in (4, 8, 32, 128, 256, 512, 2048) if sdqflags & b]
    return bits[0]


def write_file(spec: FileSpec, index: int, real_dir: Path, outdir: Path) -> Path:
    """Write ``spec``'s input file (plus its hidden companion) into ``outdir``."""
    root = _rootname(spec, index)
    dest = outdir / f"{root}_x1d.fits"
    rng = np.random.default_rng(spec.seed)
    if spec.source.startswith("cos-"):
        from qa.synth import write_cos
        grating = spec.source[4:]
        cenwave = {"G130M": 1291, "G160M": 1600, "G185M": 1850}[grating]
        with tempfile.TemporaryDirectory() as tmp:
            made = write_cos(tmp, rootname=root, grating=grating, cenwave=cenwave, program=99990,
                             fppos=index % 4 + 1, seed=spec.seed % 7)
            hdul = fits.open(made, memmap=False)
            hdul = fits.HDUList([h.copy() for h in hdul])
    else:
        source = real_dir / f"{spec.source}_x1d.fits"
        if not source.exists():  # the repository's gzip-compressed copy (astropy reads it)
            source = source.with_name(source.name + ".gz")
        with fits.open(source, memmap=False) as src:
            hdul = fits.HDUList([h.copy() for h in src])
    primary = hdul[0].header
    primary["ROOTNAME"] = root
    primary["FILENAME"] = dest.name
    scis = [h for h in hdul[1:] if h.header.get("EXTNAME") == "SCI"]
    if spec.second_ext and len(scis) == 1:
        extra = scis[0].copy()
        extra.header["EXTVER"] = 2
        extra.header["EXPNAME"] = root[:-1] + "r"
        extra.data["FLUX"] = extra.data["FLUX"] * np.float32(spec.second_ext)
        extra.data["ERROR"] = extra.data["ERROR"] * np.float32(spec.second_ext)
        hdul.append(extra)
        scis.append(extra)
    for k, hdu in enumerate(scis, start=1):
        data = hdu.data
        if spec.ccd:
            data = data[len(data) // 2:len(data) // 2 + 1]  # the same order in every file
            data["SPORDER"] = 1
        elif spec.rows is not None:
            a, b = spec.rows
            a = min(a, len(data) - 1)
            data = data[a:max(b, a + 1)]
        data = data.copy()
        data["FLUX"] = data["FLUX"] * np.float32(spec.scale)
        data["ERROR"] = data["ERROR"] * np.float32(spec.scale)
        if spec.noise:
            flux = data["FLUX"]
            data["FLUX"] = (flux + rng.normal(0.0, spec.noise, flux.shape) * np.abs(flux)).astype(np.float32)
        bit = _serious_bit(int(hdu.header["SDQFLAGS"]))
        dq = data["DQ"]
        if spec.flag_fraction:
            dq[rng.random(dq.shape) < spec.flag_fraction] |= bit
        if k in spec.dead_ext:
            dq |= bit
        data["DQ"] = dq
        hdul[hdul.index(hdu)] = fits.BinTableHDU(data=data, header=hdu.header)
    primary["NEXTEND"] = len(hdul) - 1
    if spec.ccd:
        primary["DETECTOR"], primary["OPT_ELEM"] = "CCD", "G430M"
    if spec.trigger:
        where, key, value = TRIGGERS[spec.trigger]
        if where == "sci":
            hdul[1].header[key] = value
        else:
            primary[key] = value
        if spec.trigger == "POSTARG2-DITHER":
            primary["P1_PURPS"] = "DITHER"
        elif spec.trigger == "POSTARG2":
            primary["P1_PURPS"] = "NONE"
        elif spec.trigger == "PERP":
            primary["P1_FRAME"] = "POS-TARG"
    hdul.writeto(dest)
    if spec.hidden == "appledouble":
        (outdir / f"._{dest.name}").write_bytes(b"\x00\x05\x16\x07" + bytes(4092))
    elif spec.hidden == "copy":
        with fits.open(dest) as h:
            h[1].data["FLUX"] = h[1].data["FLUX"] * np.float32(0.5)
            h.writeto(outdir / f".{dest.name}")
    return dest


def build(scenario: Scenario, real_dir: Path, outdir: Path) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(scenario.files):
        write_file(spec, i + 1, real_dir, outdir)
    return outdir


# ------------------------------------------------------------------ comparing

_KINDS = (("input errors", "input-errors"), ("keyword filtering", "keyword-filtering"),
          ("products differ", "products"), ("inputs:", "inputs"), ("kept:", "kept"),
          ("filename:", "filename"), ("iterations:", "iterations"), ("rejections:", "rejections"),
          ("findings:", "findings"), ("wavelength", "grid"), ("row statistics cover", "rows"),
          ("N of", "row-N"), ("scaled median", "scaled-median"), ("flux:", "flux"),
          ("error:", "error"), ("snr:", "snr"), ("eff_exptime:", "eff-exptime"))


def kind_of(message: str) -> str:
    """A short class for a :func:`qa.engine.parity.differences` message."""
    text = re.sub(r"^[^:]*-(?:visit\d\d|program|cross-program): ", "", message)
    return next((k for prefix, k in _KINDS if text.startswith(prefix)), "other")


@dataclass
class Outcome:
    differences: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    native_s: float = 0.0
    hasp_s: float = 0.0


def compare(directory: Path, scenario: Scenario) -> Outcome:
    """Both engines on ``directory``; any difference at all (rtol 0) is a mismatch."""
    out = Outcome()
    kw = scenario.run_kwargs()
    results = []
    for engine, attr in ((native, "native_s"), (reference, "hasp_s")):
        t0 = time.perf_counter()
        try:
            results.append(engine.run(directory, **kw))
        except Exception as exc:  # a crash is a finding of its own kind
            out.differences.append(f"{engine.ENGINE_NAME} crashed: {type(exc).__name__}: {exc}")
            out.kinds[f"crash-{engine.ENGINE_NAME}"] += 1
            traceback.print_exc(file=sys.stderr)
        setattr(out, attr, time.perf_counter() - t0)
    if len(results) == 2:
        out.differences = differences(results[0], results[1], rtol=0.0)
        out.kinds.update(kind_of(d) for d in out.differences)
    return out


def check(scenario: Scenario, real_dir: Path) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="hasp-qa-diff-") as tmp:
        return compare(build(scenario, real_dir, Path(tmp) / "inputs"), scenario)


def shrink(scenario: Scenario, still: Callable[[Scenario], bool]) -> Scenario:
    """Greedy shrink: drop files and undo mutations while ``still(scenario)`` holds."""
    defaults = FileSpec(source="")
    changed = True
    while changed:
        changed = False
        candidates = [replace(scenario, files=scenario.files[:i] + scenario.files[i + 1:])
                      for i in range(len(scenario.files)) if len(scenario.files) > 1]
        for name, value in (("threshold", -50.0), ("snrmax", 20.0), ("keyword_filtering", True),
                            ("cross_program", False)):
            if getattr(scenario, name) != value:
                candidates.append(replace(scenario, **{name: value}))
        for i, spec in enumerate(scenario.files):
            for name in ("scale", "noise", "flag_fraction", "rows", "second_ext", "dead_ext",
                         "trigger", "hidden", "visit", "seed"):
                if getattr(spec, name) != getattr(defaults, name):
                    files = list(scenario.files)
                    files[i] = replace(spec, **{name: getattr(defaults, name)})
                    candidates.append(replace(scenario, files=files))
        for candidate in candidates:
            if still(candidate):
                scenario, changed = candidate, True
                break
    return scenario


def mismatches(kind: str, real_dir: Path) -> Callable[[Scenario], bool]:
    """Shrinking predicate: the scenario still shows a ``kind`` mismatch."""
    return lambda s: check(s, real_dir).kinds.get(kind, 0) > 0


def save_regression(scenario: Scenario, kind: str, note: str = "") -> Path:
    """Keep a shrunk scenario for ``tests/test_differential.py`` to replay."""
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    n = len(list(REGRESSIONS.glob("*.json"))) + 1
    path = REGRESSIONS / f"{n:03d}-{kind}.json"
    data = {"note": note or f"{kind} mismatch found by python -m tests.differential",
            **json.loads(scenario.to_json())}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


# ------------------------------------------------------------------ the long run

def main(argv: list[str] | None = None) -> int:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from tests.conftest import REAL_DATA

    parser = argparse.ArgumentParser(prog="python -m tests.differential",
                                     description="native vs hasp on fresh random scenarios")
    parser.add_argument("--scenarios", type=int, default=300)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--max-rows", type=int, default=8,
                        help="rows kept per STIS file (0: sometimes whole files)")
    parser.add_argument("--no-shrink", action="store_true")
    args = parser.parse_args(argv)
    tally: Counter = Counter()
    failing: list[tuple[Scenario, str]] = []
    times = {"native": 0.0, "hasp": 0.0}
    count = 0

    @hseed(args.seed)
    @settings(max_examples=args.scenarios, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(scenarios(max_rows=args.max_rows or None))
    def one(scenario: Scenario) -> None:
        nonlocal count
        outcome = check(scenario, REAL_DATA)
        count += 1
        times["native"] += outcome.native_s
        times["hasp"] += outcome.hasp_s
        tally.update(outcome.kinds.keys())
        if outcome.kinds:
            print(f"mismatch in scenario {count}: {outcome.differences[:3]}\n{scenario.to_json()}",
                  file=sys.stderr)
            failing.append((scenario, sorted(outcome.kinds)[0]))

    one()
    mismatched = len(failing)
    saved = []
    if not args.no_shrink:
        for scenario, kind in failing[:5]:
            saved.append(str(save_regression(shrink(scenario, mismatches(kind, REAL_DATA)), kind)))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(tally.items())) or "none"
    print(f"differential seed {args.seed}: {count} scenarios, {mismatched} with mismatches "
          f"(by kind: {kinds}); per scenario native {times['native'] / max(count, 1):.3f} s, "
          f"hasp {times['hasp'] / max(count, 1):.3f} s"
          + (f"; shrunk regressions: {', '.join(saved)}" if saved else ""), flush=True)
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())

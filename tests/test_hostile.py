"""Hostile input, table-driven: one bad thing never costs the run, never runs code, never passes.

Each row of a table says how a hostile input is made and what must come of it.
The file rows all go into one copy of the demo program 8435 and the source rows
are further ``--data-dir`` arguments of the same run, so one run checks them all;
the good data beside them must keep exactly the verdicts of a clean run of the
same files (``test_good_data_keeps_its_verdicts``). The data are the generated
demo files (:mod:`qa.synth`), so nothing outside the repository is read.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from astropy.io import fits
from filelock import FileLock

from qa.archive.fetch import fetch_program
from qa.archive.mast_server import DOWNLOAD_PATH
from qa.checks import CheckFileError, load_check_file
from qa.engine import native
from qa.io.reader import find_spectra
from qa.results import printable
from qa.synth import write_demo_program

from .test_report import browser, open_report  # noqa: F401 - the Chromium fixture and page loader

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "o5jy03010_x1d.fits"      # demo 8435, E140M visit 03, the brightest exposure
XSS_TARGET = '<img src=x onerror="window.pwned=1">'
XSS_FILE = "<script>window.pwned=2<svg onload=window.pwned=3>_x1d.fits"   # rootname: up to "_"
MATH_TARGET = r"$\badcmd{$ G191"
FAST = {"backoff": 0.01}   # short retry waits; the schedule is not under test
ESC_TARGET = "G1\x1b[2JB2"   # as long as G191B2B: patched in place


def run_qa(where: Path, *args: str, timeout: float = 600) -> tuple[int, str, dict | None]:
    """pytest with the plugin in a subprocess: (exit code, output, results JSON or None)."""
    results = where / "results.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-rA",
           f"--cache-dir={where / 'cache'}", f"--qa-results={results}", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONHASHSEED": "0", "COLUMNS": "200"})
    data = json.loads(results.read_text()) if results.exists() else None
    return proc.returncode, proc.stdout + proc.stderr, data


def statuses(data: dict) -> dict[tuple[str, str, str], str]:
    """(source, check, case id without a source prefix) -> status."""
    out = {}
    for r in data["results"]:
        source = r.get("source") or ""
        case = r["case_id"].removeprefix(f"{source}:")
        out[(source, r["check"], case)] = r["status"]
    return out


def page_data(html: Path) -> dict:
    """The test data pytest-html 4 embeds in its page (attribute ``data-jsonblob``)."""
    found = re.search(r'data-jsonblob="([^"]*)"', html.read_text())
    return json.loads(unescape(found.group(1)))


def result_of(data: dict, case_id: str, check: str = "flux_variance") -> dict:
    found = [r for r in data["results"] if r["check"] == check and r["case_id"] == case_id]
    assert len(found) == 1, (case_id, sorted(r["case_id"] for r in data["results"]))
    return found[0]


# ---------------------------------------------------------------- how hostile files are made

def modified_copy(d: Path, name: str, *, primary: dict | None = None, sci: dict | None = None,
                  arrays: Callable[[fits.FITS_rec], None] | None = None) -> None:
    """A copy of the template under ``name`` with header values or arrays changed."""
    with fits.open(d / TEMPLATE, memmap=False) as hdul:
        out = fits.HDUList([h.copy() for h in hdul])
    for key, value in (primary or {}).items():
        out[0].header[key] = value
    for key, value in (sci or {}).items():
        out[1].header[key] = value
    if arrays:
        arrays(out[1].data)
    out.writeto(d / name)


def patched_copy(src: Path, dest: Path, old: bytes, new: bytes, start: int = 0) -> None:
    """A byte-patched copy (for what astropy refuses to write), same length."""
    raw = bytearray(src.read_bytes())
    i = raw.index(old, start)
    raw[i:i + len(new)] = new
    dest.write_bytes(bytes(raw))


def _zero_flux(data):
    data["FLUX"] = 0.0


def _nan_flux(data):
    data["FLUX"][3] = np.nan


def _drop_flux(d: Path, name: str) -> None:
    with fits.open(d / TEMPLATE, memmap=False) as hdul:
        table = hdul[1]
        cols = fits.ColDefs([c for c in table.columns if c.name != "FLUX"])
        sci = fits.BinTableHDU.from_columns(cols, header=table.header)
        fits.HDUList([hdul[0].copy(), sci]).writeto(d / name)


def _link_loop(d: Path, name: str) -> None:
    other = name.replace("_x1d", "1_x1d")
    os.symlink(d / other, d / name)
    os.symlink(d / name, d / other)


def _gzip_body(d: Path, name: str) -> None:
    (d / name).write_bytes(gzip.compress((d / TEMPLATE).read_bytes()))


def _huge_naxis2(d: Path, name: str) -> None:
    patched_copy(d / TEMPLATE, d / name, b"NAXIS2  =", b"NAXIS2  =            999999999",
                 start=2880)


def _gzip_bomb(d: Path, name: str) -> None:
    """Valid x1d headers whose table claims 160 MiB of zeros: 160 kB of gzip."""
    from qa.io import fitsio
    raw = (d / TEMPLATE).read_bytes()
    _, hdus = fitsio.read_hdus(d / TEMPLATE)
    head = bytearray(raw[:hdus[1].data_offset])
    rows = (160 << 20) // int(hdus[1].header["NAXIS1"])
    at = head.index(b"NAXIS2  =", fitsio.BLOCK)
    head[at:at + 30] = f"NAXIS2  = {rows:>20}".encode()
    left = -(-rows * int(hdus[1].header["NAXIS1"]) // fitsio.BLOCK) * fitsio.BLOCK
    zeros = bytes(1 << 20)
    with gzip.open(d / name, "wb", compresslevel=1) as out:
        out.write(bytes(head))
        while left:
            left -= out.write(zeros[:left])


def _read_fails(d: Path, name: str) -> None:
    # Tests run as root, so chmod 000 cannot make a file unreadable. /proc/self/mem is
    # a regular file whose read(2) from offset 0 fails with EIO in every process.
    os.symlink("/proc/self/mem", d / name)


@dataclass(frozen=True)
class FileCase:
    """A hostile file beside the good ones: its flux_variance case errors with ``expect``."""

    id: str
    make: Callable[[Path, str], None]
    expect: str
    suffix: str = ""     # after the usual name, e.g. ".gz"


FILE_CASES = [
    FileCase("exptime-string", lambda d, n: modified_copy(d, n, sci={"EXPTIME": "abc"}),
             "keyword EXPTIME = 'abc' (str); expected a number"),
    FileCase("exptime-logical", lambda d, n: modified_copy(d, n, sci={"EXPTIME": True}),
             "keyword EXPTIME = True (bool); expected a number"),
    FileCase("targname-number", lambda d, n: modified_copy(d, n, primary={"TARGNAME": 5}),
             "keyword TARGNAME = 5 (int); expected a string"),
    FileCase("flux-zero-everywhere", lambda d, n: modified_copy(d, n, arrays=_zero_flux),
             "FLUX is zero in every good pixel"),
    FileCase("flux-nan", lambda d, n: modified_copy(d, n, arrays=_nan_flux),
             "NaN/infinite FLUX value(s) in good pixels"),
    FileCase("unknown-instrument", lambda d, n: modified_copy(d, n, primary={"INSTRUME": "WFC3"}),
             "unknown instrument INSTRUME = 'WFC3'"),
    FileCase("no-flux-column", _drop_flux, "lacks column(s) FLUX"),
    FileCase("directory", lambda d, n: (d / n).mkdir(), "is a directory, not a FITS file"),
    FileCase("fifo", lambda d, n: os.mkfifo(d / n), "is a FIFO (named pipe), not a FITS file"),
    FileCase("dangling-link", lambda d, n: os.symlink(d / "gone" / n, d / n),
             "is a dangling symbolic link"),
    FileCase("link-loop", _link_loop, "is a symbolic link loop"),
    FileCase("read-fails", _read_fails, "cannot be read (OSError: [Errno 5] Input/output error)"),
    FileCase("empty-file", lambda d, n: (d / n).write_bytes(b""), "not a FITS file"),
    FileCase("text-file", lambda d, n: (d / n).write_text("<html>not fits</html>\n"),
             "not a FITS file"),
    FileCase("truncated", lambda d, n: (d / n).write_bytes((d / TEMPLATE).read_bytes()[:200_000]),
             "truncated FITS file"),
    FileCase("gzip-body", _gzip_body, "not a FITS file"),
    FileCase("huge-naxis2", _huge_naxis2, "truncated FITS file: HDU 1 needs"),
    FileCase("gzip-bomb", _gzip_bomb, "gzip data expand to more than 128 MiB", suffix=".gz"),
]


def file_name(index: int) -> str:
    # Visit "90" (HASP reads the visit from characters [-14:-12] of the path).
    return f"o5jy90{index:02d}0_x1d.fits"


def case_of(source: str, index: int) -> str:
    return f"{source}-{file_name(index).split('_')[0]}"


# ---------------------------------------------------------------- whole sources

def _math_target(d: Path) -> None:
    """Demo 8435 whose failing E140M visit has a mathtext TARGNAME (figures are drawn)."""
    write_demo_program("8435", d)
    for f in d.glob("o5jy03*_x1d.fits"):
        with fits.open(f, mode="update") as hdul:
            hdul[0].header["TARGNAME"] = MATH_TARGET


def _odd_names(d: Path) -> None:
    """Non-ASCII directory, a newline in a file name; the visit is remediated."""
    write_demo_program("8435", d)
    for f in d.glob("o5jy04*"):
        f.unlink()
    os.rename(d / "o5jy03020_x1d.fits", d / "o5jy\n03020_x1d.fits")


def _escape_target(d: Path) -> None:
    write_demo_program("8435", d)
    for f in d.glob("o5jy04*"):
        f.unlink()
    for f in sorted(d.glob("o5jy03*")):
        patched_copy(f, f, b"TARGNAME= 'G191B2B ", b"TARGNAME= '" + ESC_TARGET.encode())


@dataclass(frozen=True)
class SourceCase:
    """A whole --data-dir made hostile; ``expect`` is in the error of every case it gets."""

    id: str
    make: Callable[[Path], Path]   # returns the path to pass to --data-dir
    expect: str | None             # None: the source is usable, see its own test


SOURCE_CASES = [
    SourceCase("datadir-dangling", lambda p: (os.symlink(p / "nowhere", p / "dangling"),
                                              p / "dangling")[1], "is a dangling symbolic link"),
    SourceCase("datadir-loop", lambda p: (os.symlink(p / "loop-b", p / "loop-a"),
                                          os.symlink(p / "loop-a", p / "loop-b"),
                                          p / "loop-a")[2], "is a symbolic link loop"),
    SourceCase("datadir-is-a-file", lambda p: ((p / "afile").write_text("x"), p / "afile")[1],
               "is not a directory"),
    SourceCase("datadir-without-spectra", lambda p: ((p / "empty").mkdir(), p / "empty")[1],
               "holds no *_x1d.fits or *_sx1.fits file"),
    SourceCase("mathtext-targname", lambda p: (_math_target(p / "math"), p / "math")[1], None),
    SourceCase("non-ascii-dir-newline-name", lambda p: (_odd_names(p / "dé mo✓"), p / "dé mo✓")[1],
               None),
    SourceCase("escape-sequence-targname", lambda p: (_escape_target(p / "esc"), p / "esc")[1], None),
]


@dataclass
class Runs:
    clean: dict
    hostile: dict
    code: int
    out: str
    html: Path
    cache: Path
    sources: dict[str, Path]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    """One clean run of demo 8435 and one with every hostile file and source beside it.

    Made once per session, also under pytest-xdist: the first worker makes them under
    a file lock in the session's shared temporary directory, the others read them.
    """
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "hostile-runs"
    shared.mkdir(exist_ok=True)
    with FileLock(str(shared) + ".lock"):
        done = shared / "runs.json"
        if not done.exists():
            made = _make_runs(shared)
            done.write_text(json.dumps({**made.__dict__, "html": str(made.html),
                                        "cache": str(made.cache),
                                        "sources": {k: str(v) for k, v in made.sources.items()}}))
    saved = json.loads(done.read_text())
    return Runs(saved["clean"], saved["hostile"], saved["code"], saved["out"], Path(saved["html"]),
                Path(saved["cache"]), {k: Path(v) for k, v in saved["sources"].items()})


def _make_runs(base: Path) -> Runs:
    clean_dir = base / "clean" / "8435"
    write_demo_program("8435", clean_dir)
    mixed = base / "mixed" / "8435"
    shutil.copytree(clean_dir, mixed)
    for i, case in enumerate(FILE_CASES):
        case.make(mixed, file_name(i) + case.suffix)
    sources = {}
    for case in SOURCE_CASES:
        (base / case.id).mkdir()
        sources[case.id] = case.make(base / case.id)
    (base / "clean-run").mkdir()
    (base / "hostile-run").mkdir()
    code, out, clean = run_qa(base / "clean-run", f"--data-dir={clean_dir}")
    assert code == 1 and clean, out           # the demo's designed failures
    html = base / "hostile-run" / "report.html"
    code, out, hostile = run_qa(base / "hostile-run", f"--data-dir={mixed}",
                                *(f"--data-dir={p}" for p in sources.values()),
                                f"--html={html}", "--self-contained-html")
    return Runs(clean, hostile, code, out, html, base / "hostile-run" / "cache", sources)


def test_the_run_completes(runs):
    assert runs.code == 1, runs.out[-3000:]          # checks failed; nothing crashed
    assert "INTERNALERROR" not in runs.out and "Traceback" not in runs.out
    assert runs.hostile is not None and runs.html.is_file()
    assert runs.hostile.get("status", "complete") == "complete"


def test_good_data_keeps_its_verdicts(runs):
    clean = statuses(runs.clean)
    hostile = statuses(runs.hostile)
    assert clean and {k: hostile.get(k) for k in clean} == clean
    assert "failed" in clean.values() and "passed" in clean.values()


@pytest.mark.parametrize("index,case", list(enumerate(FILE_CASES)), ids=[c.id for c in FILE_CASES])
def test_hostile_file(runs, index, case):
    # A file unusable from its headers has one case; one whose data are unusable errors
    # in every product it was planned into. Either way: its cases, and no other file's.
    name = file_name(index) + case.suffix
    root = name.split("_")[0]
    mine = [r for r in runs.hostile["results"] if r["source"] == "8435"
            and r["check"] == "flux_variance" and r["case_id"].endswith(f"-{root}")]
    assert mine and {r["status"] for r in mine} == {"error"}, mine
    for r in mine:
        assert r["message"].startswith(f"{name}: ") and case.expect in r["message"], r
    assert case.expect in runs.hostile["sources"]["8435"]["input_errors"][name]
    # The terminal shows the message itself, not pytest's traceback.
    assert f"{name}: " in runs.out


@pytest.mark.parametrize("case", [c for c in SOURCE_CASES if c.expect], ids=lambda c: c.id)
def test_hostile_source(runs, case):
    label = runs.sources[case.id].name
    got = [r for r in runs.hostile["results"] if r["source"] == label]
    assert {r["status"] for r in got} == {"error"} and len(got) == 4   # one per check
    assert all(case.expect in r["message"] and "--data-dir" in r["message"] for r in got)


def test_error_lines_show_the_problem_not_a_traceback(runs):
    line = next(x for x in runs.out.splitlines()
                if x.startswith("ERROR ") and case_of("8435", 0) in x)
    assert "keyword EXPTIME" in line and "CheckError" not in line
    assert len(runs.out.splitlines()) < 400      # ~520 lines for one file before


def test_mathtext_targname_is_drawn_as_text(runs):
    results = [r for r in runs.hostile["results"] if r["source"] == "math"]
    assert results and "error" not in {r["status"] for r in results}
    failed = {r["case_id"] for r in results if r["status"] == "failed"}
    assert f"8435-{MATH_TARGET}-STIS/E140M-visit03-o5jy03030" in failed
    extras = "".join(e["content"] for rows in page_data(runs.html)["tests"].values()
                     for row in rows for e in row["extras"] if e["format_type"] == "html")
    block = extras.split(f"Diagnostic plots of 8435-{MATH_TARGET}-STIS/E140M-visit03", 1)[1]
    assert block.split("</div>", 1)[0].count('data-figure="') == 4


def test_non_ascii_directory_and_newline_name_are_remediated(runs):
    source = runs.sources["non-ascii-dir-newline-name"]
    results = [r for r in runs.hostile["results"] if r["source"] == source.name]
    assert results and "error" not in {r["status"] for r in results}
    rem = next(p["remediation"] for p in runs.hostile["products"].values()
               if p["source"] == source.name and p["remediation"])
    assert rem["possible"] and "o5jy\n03020_x1d.fits" in rem["factors"]
    copy = runs.cache / rem["scaled_dir"] / "o5jy\n03020_x1d.fits"
    header = fits.getheader(copy)
    # Provenance is printable ASCII in the file and decodes to the source's real path.
    assert header["QASRC"].isascii() and "%0A" in header["QASRC"]
    assert unquote(header["QASRC"]) == str((source / "o5jy\n03020_x1d.fits").resolve())
    # The test id shows the newline as %0A.
    assert "o5jy%0A03020" in runs.out


def test_escape_sequences_never_reach_the_terminal(runs):
    assert "\x1b[2J" not in runs.out
    assert "G1%1B[2JB2" in runs.out
    results = [r for r in runs.hostile["results"] if r["source"] == "esc"]
    assert results and "error" not in {r["status"] for r in results}


def test_printable_is_reversible_and_safe():
    text = "a\nb\\x%\x1b[31m\u200b é<img>"
    out = printable(text)
    assert out == "a%0Ab%5Cx%25%1B[31m%E2%80%8B é<img>"
    assert unquote(out) == text
    assert printable("one\ntwo", keep="\n") == "one\ntwo"


# ---------------------------------------------------------------- the engines on their own

@pytest.mark.parametrize("engine", ["native", pytest.param("hasp", marks=pytest.mark.slow)])
def test_engine_reports_an_exposure_without_flux(engine, tmp_path):
    write_demo_program("8435", tmp_path)
    modified_copy(tmp_path, "o5jy03040_x1d.fits", arrays=_zero_flux)   # joins visit 03
    if engine == "hasp":
        from qa.engine import reference
        result = reference.run(tmp_path)
    else:
        result = native.run(tmp_path)
    assert "FLUX is zero in every good pixel" in result.input_errors["o5jy03040_x1d.fits"]
    visit = next(p for p in result.products if p.key.endswith("E140M-visit03"))
    assert [r.file for r in visit.rejected] == ["o5jy03030_x1d.fits"]


# ---------------------------------------------------------------- parameters

NONSENSE_OPTIONS = [
    ("--threshold=nan", "--threshold=nan: expected a finite number"),
    ("--threshold=inf", "--threshold=inf: expected a finite number"),
    ("--threshold=-inf", "--threshold=-inf: expected a finite number"),
    ("--snrmax=0", "--snrmax=0.0: expected a finite number > 0"),
    ("--snrmax=-20", "--snrmax=-20.0: expected a finite number > 0"),
    ("--snrmax=nan", "--snrmax=nan: expected a finite number > 0"),
    ("--archive-timeout=0", "--archive-timeout=0.0: expected a finite number of seconds > 0"),
    ("--archive-deadline=-1", "--archive-deadline=-1.0: expected a finite number of seconds > 0"),
]


@pytest.mark.parametrize("option,message", NONSENSE_OPTIONS, ids=[o for o, _ in NONSENSE_OPTIONS])
def test_nonsense_option_is_a_usage_error(option, message, tmp_path):
    stale = tmp_path / "results.json"
    stale.write_text('{"schema": 2, "results": []}')    # an earlier run's results
    code, out, data = run_qa(tmp_path, "--demo", option)
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert f"ERROR: {message}" in out and "Traceback" not in out
    assert data is None, "the earlier run's results JSON must not be left looking current"


CHECK_FILES = [
    ("threshold-nan", "threshold = nan", "params.threshold: expected a finite number"),
    ("threshold-inf", "threshold = -inf", "params.threshold: expected a finite number"),
    ("snrmax-zero", "snrmax = 0.0", "params.snrmax: expected a finite number > 0"),
    ("snrmax-negative", "snrmax = -5", "params.snrmax: expected a finite number > 0"),
    ("worst-rows-zero", "worst_rows = 0", "params.worst_rows: expected an integer >= 1"),
    ("worst-rows-negative", "worst_rows = -3", "params.worst_rows: expected an integer >= 1"),
]


@pytest.mark.parametrize("name,line,message", CHECK_FILES, ids=[c[0] for c in CHECK_FILES])
def test_nonsense_check_parameter(name, line, message, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'[check.fv]\nkind = "flux_variance"\n[check.fv.params]\n{line}\n')
    with pytest.raises(CheckFileError, match="check.fv." + message.replace("(", r"\(")):
        load_check_file(path)


def test_snr_gain_limit_must_be_positive(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[check.g]\nkind = "snr_gain"\n[check.g.params]\nmin_median_gain = nan\n')
    with pytest.raises(CheckFileError, match="min_median_gain: expected a finite number > 0"):
        load_check_file(path)


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


BAD_SETUPS = [
    ("checks-dir-empty", lambda t: f"--checks={(t / 'empty').mkdir() or t / 'empty'}",
     "the directory holds no *.toml check file", 4),
    ("checks-missing", lambda t: f"--checks={t / 'nope'}", "does not exist", 4),
    ("check-file-not-utf8", lambda t: f"--checks={_write(t / 'c' / 'x.toml', b'[check.a]' + bytes([255]))}",
     "is not UTF-8 text (byte 0xff at offset 9)", 2),
    ("check-is-a-number", lambda t: f"--checks={_write(t / 'c' / 'x.toml', b'check = 5')}",
     "check: expected tables [check.<name>], got int 5", 2),
    ("qa-results-unwritable", lambda t: f"--qa-results={_write(t / 'f', b'') / 'r.json'}",
     "is a file, not a directory", 4),
    ("cache-dir-unwritable", lambda t: f"--cache-dir={_write(t / 'f', b'') / 'cache'}",
     "is a file, not a directory", 4),
]


@pytest.mark.parametrize("name,arg,message,code", BAD_SETUPS, ids=[c[0] for c in BAD_SETUPS])
def test_bad_setup_gives_one_clear_line(name, arg, message, code, tmp_path):
    given = arg(tmp_path)
    code_, out, data = run_qa(tmp_path, "--demo", given)
    assert code_ == code, out
    assert message in out and "Traceback" not in out and "INTERNALERROR" not in out
    lines = [x for x in out.splitlines() if message in x]
    assert len(lines) == 1, out


# ---------------------------------------------------------------- the archive and its cache

@pytest.fixture
def archive(tmp_path) -> Path:
    """Demo programs 8435 and 99102 laid out as the loopback archive serves them."""
    for program in ("8435", "99102"):
        write_demo_program(program, tmp_path / "archive" / program)
    return tmp_path / "archive"


def cached_spectra(cache: Path, program: str) -> list[str]:
    """What a run would co-add from the program's cache directory."""
    return sorted(p.name for p in find_spectra(cache / program))


def test_cache_coadds_what_the_manifest_vouches_for(archive, tmp_path, mast_server):
    cache, server = tmp_path / "cache" / "mast", mast_server(archive)
    every = sorted(p.name for p in (archive / "8435").glob("*.fits"))
    assert [Path(f).name for f in fetch_program(8435, cache, mast_url=server.url, **FAST).files] == every
    # The archive stops listing a file: it is no longer co-added, online or offline.
    gone = archive / "8435" / "o5jy04030_x1d.fits"
    shutil.move(gone, tmp_path / gone.name)
    fetched = fetch_program(8435, cache, mast_url=server.url, **FAST)
    assert gone.name not in [Path(f).name for f in fetched.files]
    assert cached_spectra(cache, "8435") == [n for n in every if n != gone.name]
    manifest = json.loads((cache / "8435" / "manifest.json").read_text())
    assert gone.name in manifest["set_aside"]
    assert [Path(f).name for f in fetch_program(8435, cache, offline=True).files] == \
        cached_spectra(cache, "8435")
    # A file dropped into the cache by hand is not vouched for either.
    shutil.copyfile(tmp_path / gone.name, cache / "8435" / "o5jy04040_x1d.fits")
    fetch_program(8435, cache, offline=True)
    assert "o5jy04040_x1d.fits" not in cached_spectra(cache, "8435")
    # A file whose size changed and whose re-download fails: the old copy is not used.
    changed = archive / "8435" / "o5jy04020_x1d.fits"
    modified_copy(archive / "8435", "changed.fits", primary={"HISTORY": "reprocessed"})
    os.replace(archive / "8435" / "changed.fits", changed)
    server.fail_next(100, DOWNLOAD_PATH)
    fetched = fetch_program(8435, cache, mast_url=server.url, retries=1, **FAST)
    assert [m.filename for m in fetched.missing] == [changed.name]
    assert changed.name not in cached_spectra(cache, "8435")
    assert cached_spectra(cache, "8435") == sorted(Path(f).name for f in fetched.files)


def test_gzip_body_under_a_fits_name_is_not_cached(archive, tmp_path, mast_server):
    name = "o5jy04030_x1d.fits"
    _gzip_body(archive / "8435", "gz.tmp")
    os.replace(archive / "8435" / "gz.tmp", archive / "8435" / name)
    server, cache = mast_server(archive), tmp_path / "cache"
    fetched = fetch_program(8435, cache, mast_url=server.url, retries=0, **FAST)
    (missing,) = fetched.missing
    assert missing.filename == name and "gzip-compressed bytes under a .fits name" in missing.reason
    assert name not in cached_spectra(cache, "8435") and len(fetched.files) == 5
    manifest = json.loads((cache / "8435" / "manifest.json").read_text())
    entry = next(p for p in manifest["products"] if p["filename"] == name)
    assert entry["status"] == "missing" and entry["sha256"] is None


def test_stalled_program_errors_within_its_deadline(archive, tmp_path, mast_server, runs):
    server = mast_server(archive)
    server.stall("99102", 300)                 # every download of 99102 hangs for 5 minutes
    started = time.monotonic()
    code, out, data = run_qa(tmp_path, "--program=8435,99102", f"--mast-url={server.url}",
                             "--archive-timeout=1", "--archive-deadline=4")
    elapsed = time.monotonic() - started
    assert code == 1 and data is not None, out
    stalled = [r for r in data["results"] if r["source"] == "99102"]
    assert stalled and {r["status"] for r in stalled} == {"error"}
    assert all("program 99102: deadline of 4 s passed" in r["message"] for r in stalled)
    # The other program ran as in a clean run of the same files.
    good = {k: v for k, v in statuses(data).items() if k[0] == "8435"}
    assert good == {k: v for k, v in statuses(runs.clean).items() if k[0] == "8435"}
    assert elapsed < 120, f"the run waited {elapsed:.0f} s for a stalled archive"


# ---------------------------------------------------------------- script in the report

def _xss_source(d: Path) -> Path:
    """Demo 8435 whose failing visit has an HTML TARGNAME, plus a file named with a script."""
    write_demo_program("8435", d)
    for f in d.glob("o5jy03*_x1d.fits"):
        with fits.open(f, mode="update") as hdul:
            hdul[0].header["TARGNAME"] = XSS_TARGET
    shutil.copyfile(d / "o5jy04020_x1d.fits", d / XSS_FILE)
    return d


@pytest.mark.slow
@pytest.mark.parametrize("self_contained", [True, False], ids=["self-contained", "assets"])
def test_no_script_from_a_file_runs_in_the_report(self_contained, browser, tmp_path):
    from selenium.webdriver.common.by import By

    data = _xss_source(tmp_path / "8435")
    html = tmp_path / "out" / "report.html"
    code, out, results = run_qa(tmp_path, f"--data-dir={data}", f"--html={html}",
                                *(["--self-contained-html"] if self_contained else []))
    assert code == 1 and results, out
    ids = {r["case_id"] for r in results["results"]}
    assert any(XSS_TARGET in i for i in ids) and any(XSS_FILE.split("_")[0] in i for i in ids)
    open_report(browser, html)
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    injected = browser.execute_script(
        "return Array.from(document.querySelectorAll('[onerror], [onload], img[src=\"x\"], script'))"
        ".filter(e => e.tagName !== 'SCRIPT' || e.textContent.includes('pwned'))"
        ".map(e => e.outerHTML.slice(0, 200))")
    assert injected == []
    # The same text is on the page as text: in the test ids and in the summary.
    shown = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "td.col-testId")]
    assert any(XSS_TARGET in t for t in shown)
    assert any("<script>window.pwned=2<svg onload=window.pwned=3>" in t for t in shown)
    assert XSS_TARGET in browser.find_element(By.CSS_SELECTOR, ".hqa-summary").text


# ---------------------------------------------------------------- an interrupted run

@pytest.mark.slow
def test_sigint_marks_the_results_interrupted(tmp_path):
    """A real SIGINT mid-run (the reference engine keeps the run busy long enough)."""
    results = tmp_path / "results.json"
    results.write_text('{"schema": 2, "status": "complete", "results": []}')   # an earlier run
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-v",
           "--demo", "--engine=hasp", f"--cache-dir={tmp_path / 'cache'}", f"--qa-results={results}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if " PASSED" in line or " FAILED" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=600)
    out = "".join(seen) + rest
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    data = json.loads(results.read_text())
    assert data["status"] == "interrupted", out[-3000:]
    assert 0 < len(data["results"]) < 40      # what ran before the signal, not the whole demo


# ---------------------------------------------------------------- a co-add no HASP check questions

def test_negative_median_exposure_fails_coadd_consistency(tmp_path):
    """An exposure of slightly negative flux is kept, drags the co-add to ~2 % of the data
    and hides a 38 %-low exposure; every HASP check passes, coadd_consistency does not."""
    d = tmp_path / "8435"
    write_demo_program("8435", d)
    for f in d.glob("o5jy04*"):
        f.unlink()
    for name, scale in (("o5jy03020_x1d.fits", 0.62 / 0.838), ("o5jy03030_x1d.fits", -0.02)):
        with fits.open(d / name, mode="update") as hdul:
            hdul[1].data["FLUX"] = hdul[1].data["FLUX"] * np.float32(scale)
            if scale > 0:
                hdul[1].data["ERROR"] = hdul[1].data["ERROR"] * np.float32(scale)
    code, out, data = run_qa(tmp_path, f"--data-dir={d}")
    assert code == 1, out
    visit = "8435-G191B2B-STIS/E140M-visit03"
    got = {(r["check"], r["case_id"]): r for r in data["results"] if r["case_id"].startswith(visit)}
    assert {k[0] for k, r in got.items() if r["status"] == "failed"} == {"coadd_consistency"}
    assert got[("rejection", visit)]["status"] == "passed"          # HASP kept all three
    message = got[("coadd_consistency", visit)]["message"]
    assert "o5jy03030_x1d.fits (-1.12e-13)" in message and "co-add median is 1.54e-13" in message

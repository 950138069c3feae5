"""Datasets from the archive: fetch a program's STIS/COS x1d files from MAST into a cache.

``fetch_program`` asks MAST (through astroquery) for a program's HST spectra, keeps the
calibrated 1-D products HASP co-adds (``X1D``/``SX1``; the COS ``X1DSUM*`` products are
not HASP inputs) and downloads them flat into ``cache_dir/<program>/``, where HASP
expects them. Every file is verified before use; downloads are atomic, retried with
back-off, and serialised per program by a file lock so concurrent runs (and
pytest-xdist workers) share the cache. ``cache_dir/<program>/manifest.json`` records
what was fetched, with sizes and SHA-256 checksums; offline runs use only what it
vouches for.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import requests
from astropy.io import fits
from astropy.table import Table
from astroquery.exceptions import RemoteServiceError
from filelock import FileLock, Timeout
from requests.adapters import HTTPAdapter

DEFAULT_MAST_URL = "https://mast.stsci.edu"
MAST_URL_ENV = "HASP_QA_MAST_URL"
HASP_SUBGROUPS = ("X1D", "SX1")
HASP_INSTRUMENTS = ("STIS", "COS")
MANIFEST_NAME = "manifest.json"
_TMP_PREFIX = ".download-"
# Spectrum files in a program's directory that its current manifest does not vouch for
# are moved here, out of the ``*_x1d.fits`` glob: the cache co-adds what the manifest lists.
UNVOUCHED_DIR = ".unvouched"
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_START = b"SIMPLE  ="
# An HST file name: a 9-character rootname (instrument letter first) and a HASP suffix.
_HST_NAME = re.compile(r"[a-z][a-z0-9]{8}_(x1d|sx1)\.fits", re.IGNORECASE)
_PROGRAM_ID = re.compile(r"\d{1,6}")
T = TypeVar("T")


# -- errors --------------------------------------------------------------------------
class ArchiveError(Exception):
    """Fetching a program failed; ``kind`` says how, the message says what to do.

    Parameters
    ----------
    message : str
        What went wrong, in words a user can act on.
    program : str, optional
        The program concerned.
    missing : list of MissingProduct, optional
        Products that could not be had, with reasons.
    """

    kind = "archive"

    def __init__(self, message: str, *, program: str | None = None,
                 missing: list[MissingProduct] | None = None) -> None:
        self.program = program
        self.missing = list(missing or [])
        super().__init__(message)


class InvalidProgramError(ArchiveError):
    """The program ID is not an HST proposal number."""

    kind = "invalid-program"


class UnknownProgramError(ArchiveError):
    """MAST has no HST spectroscopic observations for the program."""

    kind = "unknown-program"


class NoSpectraError(ArchiveError):
    """The program has observations but no STIS/COS X1D/SX1 spectra."""

    kind = "no-spectra"


class ArchiveUnreachableError(ArchiveError):
    """The archive did not answer (connection refused, timeouts, HTTP 5xx) after retries."""

    kind = "unreachable"


class DownloadFailedError(ArchiveError):
    """None of the program's products could be downloaded and verified."""

    kind = "download-failed"


class OfflineCacheError(ArchiveError):
    """Offline mode, and the cache does not hold everything the program needs."""

    kind = "offline-missing"


class ArchiveDeadlineError(ArchiveError):
    """The program's deadline passed before its files were all fetched and verified."""

    kind = "deadline"


class CacheBusyError(ArchiveError):
    """Another run held the program's cache lock for longer than the lock timeout."""

    kind = "cache-busy"


# -- results -------------------------------------------------------------------------
@dataclass
class MissingProduct:
    """A product that is not in the result, and why."""

    filename: str
    reason: str


@dataclass
class FetchResult:
    """What ``fetch_program`` produced (``asdict``/``to_json`` give plain JSON).

    Attributes
    ----------
    program : str
        The proposal ID.
    directory : str
        ``cache_dir/<program>``, holding the flat x1d files.
    files : list of str
        Verified files, absolute paths, sorted.
    missing : list of MissingProduct
        Products listed by the archive but not delivered, with reasons.
    manifest : str
        Path of ``manifest.json``.
    downloaded, reused : int
        How many files this run downloaded and how many it took from the cache.
    """

    program: str
    directory: str
    files: list[str]
    missing: list[MissingProduct] = field(default_factory=list)
    manifest: str = ""
    downloaded: int = 0
    reused: int = 0

    def to_json(self) -> str:
        """The result as a JSON document."""
        return json.dumps(asdict(self), indent=2)


@dataclass
class _Entry:
    """One HASP product in the manifest."""

    filename: str
    data_uri: str
    obs_id: str
    instrument: str
    subgroup: str
    size: int
    sha256: str | None = None
    status: str = "pending"  # downloaded | reused | missing
    reason: str | None = None


# -- public API ----------------------------------------------------------------------
def resolve_mast_url(mast_url: str | None = None) -> str:
    """The archive base URL: ``mast_url``, else ``$HASP_QA_MAST_URL``, else real MAST.

    Raises
    ------
    ArchiveError
        If the URL is not http(s).
    """
    url = (mast_url or os.environ.get(MAST_URL_ENV) or DEFAULT_MAST_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ArchiveError(f"MAST URL {url!r} must start with http:// or https://")
    return url


def fetch_program(program_id: str | int, cache_dir: str | Path, *,
                  mast_url: str | None = None, offline: bool = False, retries: int = 3,
                  backoff: float = 0.5, timeout: float = 60.0,
                  lock_timeout: float = 600.0, deadline: float | None = None) -> FetchResult:
    """Fetch a program's STIS/COS x1d/sx1 files into ``cache_dir/<program>/``.

    Parameters
    ----------
    program_id : str or int
        HST proposal ID, e.g. ``8016``.
    cache_dir : path-like
        Cache root; the program's files go flat into ``cache_dir/<program>/``.
    mast_url : str, optional
        Archive base URL (default ``$HASP_QA_MAST_URL`` or https://mast.stsci.edu).
    offline : bool, optional
        Use only files the program's manifest vouches for; never contact the archive.
    retries : int, optional
        Extra attempts after a failed request or a download that fails verification.
    backoff : float, optional
        First wait between attempts in seconds; doubles after each attempt.
    timeout : float, optional
        Seconds to wait for the archive to connect or send data, per request.
    lock_timeout : float, optional
        Seconds to wait for another run holding the program's cache lock.
    deadline : float, optional
        Seconds the whole program may take (lock wait, queries, downloads, retries);
        None: no overall limit. Every request's timeout is cut to what is left.

    Returns
    -------
    FetchResult
        The verified files, and what is missing (when some but not all products failed).

    Raises
    ------
    ArchiveError
        A subclass naming the problem: ``InvalidProgramError``, ``UnknownProgramError``,
        ``NoSpectraError``, ``ArchiveUnreachableError``, ``DownloadFailedError``,
        ``OfflineCacheError``, ``CacheBusyError`` or ``ArchiveDeadlineError``.
    """
    program = normalise_program(program_id)
    clock = Clock(program, timeout, deadline)
    directory = Path(cache_dir).resolve() / program
    directory.mkdir(parents=True, exist_ok=True)
    with program_lock(directory, program, clock.cap(lock_timeout)):
        _remove_stale_downloads(directory)
        if offline:
            return _from_cache(program, directory)
        return _fetch_online(program, directory, resolve_mast_url(mast_url),
                             retries=retries, backoff=backoff, clock=clock)


class Clock:
    """A time budget: per-request timeout, cut to what is left of the deadline.

    Shared with :mod:`qa.archive.discovery`, whose queries get the same timeouts.
    """

    def __init__(self, program: str, timeout: float, deadline: float | None) -> None:
        self.program, self.timeout, self.seconds = program, timeout, deadline
        self.end = None if deadline is None else time.monotonic() + deadline

    def remaining(self) -> float:
        return float("inf") if self.end is None else self.end - time.monotonic()

    def cap(self, seconds: float) -> float:
        """``seconds``, or less if the deadline comes first (at least a moment)."""
        return max(min(seconds, self.remaining()), 0.01)

    def check(self, what: str) -> None:
        """Raise ArchiveDeadlineError once the deadline has passed."""
        if self.remaining() <= 0:
            raise ArchiveDeadlineError(
                f"program {self.program}: deadline of {self.seconds:g} s passed during {what} "
                f"(each request may take {self.timeout:g} s); the archive is too slow or "
                "stalled; raise --archive-deadline or try later", program=self.program)

    def request_timeout(self) -> float:
        self.check("a request to the archive")
        return self.cap(self.timeout)


# -- helpers: cache ------------------------------------------------------------------
def normalise_program(program_id: str | int) -> str:
    """The program ID as a string of digits (it also names a cache directory)."""
    program = str(program_id).strip()
    if not _PROGRAM_ID.fullmatch(program):
        raise InvalidProgramError(
            f"program ID {program_id!r} is not an HST proposal number (digits only, e.g. 8016)")
    return program


@contextmanager
def program_lock(directory: Path, program: str, timeout: float) -> Iterator[None]:
    """Hold the program's cache lock: one run downloads, the others then reuse
    (:mod:`qa.archive.refresh` takes it too, to refresh a cached program)."""
    lock = FileLock(str(directory / ".lock"), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout as err:
        raise CacheBusyError(
            f"program {program}: cache {directory} is locked by another run for more than "
            f"{timeout:.0f} s; wait for it or remove {directory / '.lock'} if no run is active",
            program=program) from err


def _remove_stale_downloads(directory: Path) -> None:
    """Delete temporary download directories left by an interrupted run (lock is held)."""
    for stale in directory.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | Path, expected_size: int | None) -> str | None:
    """Check a downloaded x1d file; return the problem in words, or None when it is good.

    The size must match what the archive announced (a short transfer can still be
    reported COMPLETE by astroquery), the file must open as FITS and have a SCI
    extension whose table can be read.
    """
    path = Path(path)
    if not path.is_file():
        return "file was not written"
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"size {size} bytes, archive announced {expected_size}"
    problem = _not_plain_fits(path)
    if problem:
        return problem
    try:
        with fits.open(path, memmap=False) as hdul:
            if "SCI" not in hdul:
                return "no SCI extension"
            _ = hdul["SCI"].data  # reading the table catches truncated data blocks
    except Exception as err:  # astropy raises many types for damaged files
        return f"not a readable FITS file ({type(err).__name__}: {err})"
    return None


def _not_plain_fits(path: Path) -> str | None:
    """Refuse bytes that are not an uncompressed FITS file under an ``x1d.fits`` name.

    astropy opens gzip data whatever the name, so such a file would verify; but the
    checksum and size would then vouch for bytes that are not what the name says,
    and readers that trust the name (HASP's, ours) would fail on them later.
    """
    with path.open("rb") as fh:
        head = fh.read(len(_FITS_START))
    if head.startswith(_GZIP_MAGIC):
        return "gzip-compressed bytes under a .fits name (expected a plain FITS file)"
    if head != _FITS_START:
        return "not a FITS file (it does not start with a SIMPLE card)"
    return None


def _set_aside_unvouched(directory: Path, vouched: set[str]) -> dict[str, str]:
    """Move spectrum files the manifest does not vouch for out of the co-add's way.

    Returns
    -------
    dict
        File name -> why it was set aside (also recorded in the manifest).
    """
    aside = {}
    for path in sorted(directory.iterdir()):
        if path.name in vouched or not _is_spectrum_name(path.name):
            continue
        target = directory / UNVOUCHED_DIR
        target.mkdir(exist_ok=True)
        os.replace(path, target / path.name)
        aside[path.name] = (f"not vouched for by the current manifest; moved to "
                            f"{UNVOUCHED_DIR}/ (not co-added)")
    return aside


def _is_spectrum_name(name: str) -> bool:
    return name.lower().endswith(("_x1d.fits", "_sx1.fits", "_x1d.fits.gz", "_sx1.fits.gz"))


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged manifest vouches for nothing


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically (temporary file, then rename)."""
    path = directory / MANIFEST_NAME
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_TMP_PREFIX, suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2)
    os.replace(tmp, path)
    return path


def _known_checksums(directory: Path) -> dict[str, str]:
    """Checksums of files the previous manifest recorded as verified."""
    manifest = _read_manifest(directory) or {}
    return {p["filename"]: p["sha256"] for p in manifest.get("products", [])
            if p.get("sha256") and p.get("status") in ("downloaded", "reused")}


def _from_cache(program: str, directory: Path) -> FetchResult:
    """Offline: the files the manifest lists, each checked against its checksum."""
    manifest = _read_manifest(directory)
    if manifest is None:
        raise OfflineCacheError(
            f"program {program}: offline, and {directory / MANIFEST_NAME} does not exist; "
            "run once online (without --offline) to fill the cache", program=program)
    files, missing = [], []
    for product in manifest.get("products", []):
        path = directory / product["filename"]
        problem = _offline_problem(path, product)
        if problem:
            missing.append(MissingProduct(product["filename"], problem))
        else:
            files.append(str(path))
    _set_aside_unvouched(directory, {Path(f).name for f in files})
    if missing:
        listing = "; ".join(f"{m.filename} ({m.reason})" for m in missing)
        raise OfflineCacheError(
            f"program {program}: offline, and the cache in {directory} lacks {len(missing)} "
            f"file(s): {listing}; run online to fetch them", program=program, missing=missing)
    return FetchResult(program, str(directory), sorted(files), [],
                       str(directory / MANIFEST_NAME), 0, len(files))


def _offline_problem(path: Path, product: dict[str, Any]) -> str | None:
    if product.get("status") == "missing":
        return f"not fetched: {product.get('reason')}"
    if not path.is_file():
        return "not in cache"
    if _sha256(path) != product.get("sha256"):
        return "checksum differs from manifest"
    return _not_plain_fits(path)


# -- helpers: archive ----------------------------------------------------------------
class TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout: astroquery's downloads pass none and could hang."""

    def __init__(self, clock: Clock | float) -> None:
        super().__init__()
        # A plain number (other archive clients) is a per-request timeout without a deadline.
        self.clock = clock if isinstance(clock, Clock) else Clock("", float(clock), None)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # astroquery's queries pass their own (10-minute) timeout: ours always wins.
        kwargs["timeout"] = self.clock.request_timeout()
        return super().send(request, **kwargs)


def _client(mast_url: str, clock: Clock) -> Any:
    """A fresh astroquery ``ObservationsClass`` talking to ``mast_url``.

    The request URLs are class attributes built from ``conf.server`` at import; setting
    them on this instance's portal connection redirects it without touching the
    shared ``Observations`` object. The column-config cache is a class-level dict,
    so it gets its own per instance too.
    """
    from astroquery.mast import ObservationsClass  # slow import, only when online

    client = ObservationsClass()
    portal = client._portal_api_connection
    portal.MAST_REQUEST_URL = f"{mast_url}/api/v0/invoke"
    portal.COLUMNS_CONFIG_URL = f"{mast_url}/portal/Mashup/Mashup.asmx/columnsconfig"
    portal.MAST_DOWNLOAD_URL = f"{mast_url}/api/v0.1/Download/file"
    portal.MAST_BUNDLE_URL = f"{mast_url}/api/v0.1/Download/bundle"
    portal._column_configs = {}
    for scheme in ("http://", "https://"):
        client._session.mount(scheme, TimeoutAdapter(clock))
    return client


def _is_transient(err: Exception) -> bool:
    """Connection problems and server-side HTTP errors are worth retrying."""
    if isinstance(err, requests.HTTPError):
        status = err.response.status_code if err.response is not None else 500
        return status >= 500 or status == 429
    return isinstance(err, (requests.ConnectionError, requests.Timeout,
                            requests.exceptions.ChunkedEncodingError))


def _with_retries(call: Callable[[], T], what: str, program: str, mast_url: str, *,
                  retries: int, backoff: float, clock: Clock) -> T:
    """Run an archive query, retrying transient failures with exponential back-off."""
    attempt = 0
    while True:
        clock.check(what)
        try:
            return call()
        except RemoteServiceError as err:
            raise ArchiveError(f"program {program}: {what} at {mast_url} was refused by "
                               f"the archive: {err}", program=program) from err
        except requests.RequestException as err:
            if not _is_transient(err):
                raise ArchiveError(f"program {program}: {what} at {mast_url} failed: {err}",
                                   program=program) from err
            if attempt >= retries:
                raise ArchiveUnreachableError(
                    f"program {program}: archive {mast_url} unreachable during {what} "
                    f"after {retries + 1} attempts ({type(err).__name__}: {err}); check the "
                    "network or --mast-url, or run --offline with a filled cache",
                    program=program) from err
        time.sleep(clock.cap(backoff * 2 ** attempt))
        attempt += 1


def _query_observations(client: Any, program: str) -> Table:
    """The program's HST spectroscopic observations (an empty table if none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NoResultsWarning: an empty table says it
        return client.query_criteria(proposal_id=program, obs_collection="HST",
                                     dataproduct_type="spectrum")


def _hasp_observations(obs: Table, program: str) -> Table:
    """Keep STIS and COS observations; explain why when there is nothing to keep."""
    if len(obs) == 0:
        raise UnknownProgramError(
            f"program {program}: MAST has no HST spectroscopic observations for this "
            "proposal ID; check the number (e.g. on https://archive.stsci.edu/hst/)",
            program=program)
    keep = [str(name).split("/")[0].upper() in HASP_INSTRUMENTS for name in obs["instrument_name"]]
    if not any(keep):
        found = ", ".join(sorted({str(n) for n in obs["instrument_name"]}))
        raise NoSpectraError(
            f"program {program}: no STIS or COS spectra (instruments: {found}); HASP "
            "co-adds only STIS and COS", program=program)
    return obs[keep]


def _hasp_products(products: Table, program: str) -> Table:
    """Keep the X1D/SX1 products (exact subgroup: X1DSUM* are COS co-adds, not inputs)."""
    keep = [str(s).upper() in HASP_SUBGROUPS for s in products["productSubGroupDescription"]]
    if not any(keep):
        raise NoSpectraError(
            f"program {program}: STIS/COS observations exist but no X1D/SX1 calibrated "
            "1-D spectra among their products", program=program)
    return products[keep]


def _unsafe_name(filename: str, data_uri: str) -> str | None:
    """Why an archive-supplied name must not be written, or None when it is safe."""
    if "/" in filename or "\\" in filename or ".." in filename:
        return f"unsafe file name {filename!r} (path separator or '..') rejected"
    if not _HST_NAME.fullmatch(filename):
        return f"file name {filename!r} is not an HST x1d/sx1 name; rejected"
    if ".." in data_uri or data_uri.rsplit("/", 1)[-1] != filename:
        return f"data URI {data_uri!r} does not match file name {filename!r}; rejected"
    return None


def _entries(products: Table, instruments: dict[str, str]) -> Iterator[tuple[_Entry, Table]]:
    """Manifest entries for the products (each file once), with their one-row tables."""
    seen: set[str] = set()
    for i in range(len(products)):
        row = products[i]
        filename = str(row["productFilename"])
        if filename in seen:  # the same file listed under two observations
            continue
        seen.add(filename)
        obs_id = str(row["obs_id"])
        entry = _Entry(filename=filename, data_uri=str(row["dataURI"]), obs_id=obs_id,
                       instrument=instruments.get(obs_id.upper(), ""),
                       subgroup=str(row["productSubGroupDescription"]), size=int(row["size"]))
        yield entry, products[i:i + 1]


# -- helpers: downloads --------------------------------------------------------------
def _download_once(client: Any, product: Table, entry: _Entry, directory: Path) -> str | None:
    """One attempt: download into a private temporary directory, verify, move into place.

    Returns the problem in words, or None once the verified file is under its final name.
    """
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=_TMP_PREFIX))
    try:
        # flat=True needs download_dir to exist (mkdtemp made it); cache=False: the
        # temporary directory is empty anyway, and astroquery's cache only compares sizes.
        manifest = client.download_products(product, download_dir=str(tmp), flat=True,
                                            cache=False, verbose=False)
        if manifest is None or manifest["Status"][0] != "COMPLETE":
            message = "no manifest" if manifest is None else manifest["Message"][0]
            return f"download failed ({message})"
        part = tmp / entry.filename
        problem = verify_file(part, entry.size)
        if problem:
            return f"download did not verify: {problem}"
        entry.sha256 = _sha256(part)
        os.replace(part, directory / entry.filename)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download(client: Any, product: Table, entry: _Entry, directory: Path, *,
              retries: int, backoff: float, clock: Clock) -> None:
    """Download with bounded retries; sets ``entry.status`` (and ``reason`` on failure)."""
    problem = None
    for attempt in range(retries + 1):
        clock.check(f"the download of {entry.filename}")
        try:
            problem = _download_once(client, product, entry, directory)
        except requests.RequestException as err:  # astroquery only catches HTTPError
            problem = f"{type(err).__name__}: {err}"
        if problem is None:
            entry.status = "downloaded"
            return
        if attempt < retries:
            time.sleep(clock.cap(backoff * 2 ** attempt))
    entry.status, entry.reason = "missing", f"{problem} (after {retries + 1} attempts)"


def _reuse(entry: _Entry, directory: Path, known: dict[str, str]) -> bool:
    """Take the cached file when it is the one the archive announces."""
    path = directory / entry.filename
    if not path.is_file() or path.stat().st_size != entry.size:
        return False
    sha = _sha256(path)
    expected = known.get(entry.filename)
    # Our manifest's checksum vouches for an earlier verification, and any change since
    # means damage; a file the manifest does not know must verify from scratch.
    if (sha != expected) if expected else (verify_file(path, entry.size) is not None):
        return False
    entry.sha256, entry.status = sha, "reused"
    return True


def _fetch_online(program: str, directory: Path, mast_url: str, *, retries: int,
                  backoff: float, clock: Clock) -> FetchResult:
    """Query, download what the cache lacks, write the manifest."""
    client = _client(mast_url, clock)
    try:
        def again(call: Callable[[], T], what: str) -> T:
            return _with_retries(call, what, program, mast_url, retries=retries,
                                 backoff=backoff, clock=clock)

        obs = _hasp_observations(again(lambda: _query_observations(client, program),
                                       "the observation query"), program)
        products = _hasp_products(again(lambda: client.get_product_list(obs),
                                        "the product list"), program)
        instruments = {str(o).upper(): str(i)
                       for o, i in zip(obs["obs_id"], obs["instrument_name"])}
        known = _known_checksums(directory)
        entries = []
        for entry, row in _entries(products, instruments):
            entries.append(entry)
            unsafe = _unsafe_name(entry.filename, entry.data_uri)
            if unsafe:
                entry.status, entry.reason = "missing", unsafe
            elif not _reuse(entry, directory, known):
                _download(client, row, entry, directory, retries=retries, backoff=backoff,
                          clock=clock)
    finally:
        client._session.close()
    return _conclude(program, directory, mast_url, entries)


def _conclude(program: str, directory: Path, mast_url: str,
              entries: list[_Entry]) -> FetchResult:
    """Write the manifest and build the result, or fail when nothing came."""
    good = [e for e in entries if e.status in ("downloaded", "reused")]
    # A file the archive no longer lists, or an old copy whose re-download failed, stays
    # on disk; only what this manifest vouches for may be co-added.
    aside = _set_aside_unvouched(directory, {e.filename for e in good})
    manifest_path = _write_manifest(directory, {
        "program": program,
        "query_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mast_url": mast_url,
        "products": [asdict(e) for e in entries],
        "downloaded": [e.filename for e in entries if e.status == "downloaded"],
        "reused": [e.filename for e in entries if e.status == "reused"],
        "set_aside": aside,
    })
    missing = [MissingProduct(e.filename, e.reason or "unknown") for e in entries
               if e.status == "missing"]
    if not good:
        listing = "; ".join(f"{m.filename}: {m.reason}" for m in missing)
        raise DownloadFailedError(
            f"program {program}: none of {len(missing)} product(s) could be fetched from "
            f"{mast_url}: {listing}", program=program, missing=missing)
    return FetchResult(
        program=program, directory=str(directory),
        files=sorted(str(directory / e.filename) for e in good), missing=missing,
        manifest=str(manifest_path),
        downloaded=sum(e.status == "downloaded" for e in entries),
        reused=sum(e.status == "reused" for e in entries))

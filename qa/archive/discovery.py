"""Which HST programs the archive released or re-archived in a time window.

``discover`` asks the MAST Search API through ``astroquery.mast.MastMissions(mission="hst")``
for public science spectra of STIS and COS (``sci_instrume`` COS,STIS, ``sci_obs_type``
SPECTRUM, ``sci_aec`` S, ``sci_status`` PUBLIC) whose ``sci_release_date`` *or*
``sci_archive_date`` falls in the window. The Search API AND-s its conditions, so that
is two queries (one per date column), merged by dataset name. Each query pages with
``limit``/``offset`` until a page comes back short (the Search API has no automatic
paging). Datasets are grouped by ``sci_pep_id`` into programs, each with the reason it is
in the night: ``new`` (released in the window), ``re-archived`` (released before, archived
again in the window: a recalibration), or ``both`` (a program with datasets of each kind).
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from qa.archive.fetch import Clock, TimeoutAdapter, resolve_mast_url

INSTRUMENTS = "COS,STIS"
CONDITIONS = {"sci_instrume": INSTRUMENTS, "sci_obs_type": "SPECTRUM", "sci_aec": "S",
              "sci_status": "PUBLIC"}
COLUMNS = ("sci_data_set_name", "sci_pep_id", "sci_instrume", "sci_targname",
           "sci_release_date", "sci_archive_date")
PAGE_SIZE = 500
_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=timezone.utc)
_MJD = re.compile(r"\d{5}(\.\d*)?")


class DiscoveryError(Exception):
    """The archive could not say what was released (unreachable, refused the query)."""


def parse_when(text: str) -> datetime:
    """An ISO date or date-time, or an MJD (``60640`` or ``60640.5``), as aware UTC.

    Raises
    ------
    ValueError
        With the accepted forms, when ``text`` is neither.
    """
    text = text.strip()
    if _MJD.fullmatch(text):
        return _MJD_EPOCH + timedelta(days=float(text))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: give an ISO date (2026-11-24), an ISO "
                         "date-time (2026-11-24T06:00) or an MJD (61003)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Window:
    """A half-open interval ``[since, until)`` of UTC instants."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since >= self.until:
            raise ValueError(f"empty window: {self.since.isoformat()} is not before "
                             f"{self.until.isoformat()}")

    def contains(self, when: datetime | None) -> bool:
        return when is not None and self.since <= when < self.until

    def condition(self) -> str:
        """The Search API range (inclusive at both ends; ``contains`` trims the upper end)."""
        return f"{_naive_iso(self.since)}..{_naive_iso(self.until)}"

    def to_dict(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}


@dataclass
class Dataset:
    """One released or re-archived dataset."""

    name: str                  # sci_data_set_name, lower case as in file names
    program: str
    instrument: str
    target: str
    release_date: str | None   # ISO, UTC
    archive_date: str | None
    reason: str                # "new" or "re-archived"


@dataclass
class ProgramChange:
    """A program in the night, and why."""

    program: str
    reason: str                                   # "new", "re-archived" or "both"
    datasets: list[Dataset] = field(default_factory=list)

    @property
    def new(self) -> list[str]:
        return [d.name for d in self.datasets if d.reason == "new"]

    @property
    def rearchived(self) -> list[str]:
        return [d.name for d in self.datasets if d.reason == "re-archived"]

    def describe(self) -> str:
        """``program 8016: re-archived (o5jy03030)``: one line a user can read."""
        parts = []
        if self.new:
            parts.append(f"new data ({', '.join(self.new)})")
        if self.rearchived:
            parts.append(f"re-archived ({', '.join(self.rearchived)})")
        return f"program {self.program}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"program": self.program, "reason": self.reason,
                "datasets": [asdict(d) for d in self.datasets]}


def _naive_iso(when: datetime) -> str:
    """UTC without offset: the archive's dates are naive UTC."""
    return when.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def _archive_time(value: Any) -> datetime | None:
    """A date cell from the archive (naive UTC ISO text; masked or empty means none)."""
    text = str(value).strip() if value is not None else ""
    if not text or text in ("--", "None"):
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@contextmanager
def _column_server(mast_url: str) -> Iterator[None]:
    """Point astroquery's ``conf.server`` at ``mast_url`` for the column-list request.

    ``MastMissions.get_column_list`` builds its URL from the module-wide ``conf.server``,
    not from the instance; ``set_temp`` restores the previous value even on error.
    """
    from astroquery.mast import conf

    with conf.set_temp("server", mast_url):
        yield


def _client(mast_url: str, timeout: float) -> Any:
    """A ``MastMissionsClass`` for HST whose Search API requests go to ``mast_url``."""
    from astroquery.mast import MastMissionsClass

    client = MastMissionsClass(mission="hst")
    service = client._service_api_connection
    # SERVICE_URL is a class attribute frozen at import; the instance's own copy and a
    # fresh mission assignment rebuild REQUEST_URL without touching other clients.
    service.SERVICE_URL = mast_url
    client.mission = "hst"
    service.TIMEOUT = timeout
    for scheme in ("http://", "https://"):
        # The search has no per-program deadline: only the per-request timeout applies.
        service._session.mount(scheme, TimeoutAdapter(Clock("discovery", timeout, None)))
    with _column_server(mast_url):
        client.get_column_list()  # cached on the instance; later queries validate against it
    return client


def _pages(client: Any, date_column: str, window: Window, page_size: int) -> Iterator[Any]:
    """Every row matching the conditions with ``date_column`` in the window, page by page."""
    offset = 0
    while True:
        with warnings.catch_warnings():
            # NoResultsWarning / MaxResultsWarning: the page length says both.
            warnings.simplefilter("ignore")
            page = client.query_criteria(limit=page_size, offset=offset,
                                         select_cols=list(COLUMNS),
                                         **CONDITIONS, **{date_column: window.condition()})
        yield from page
        if len(page) < page_size:
            return
        offset += page_size


def discover(window: Window, mast_url: str | None = None, *, page_size: int = PAGE_SIZE,
             timeout: float = 60.0) -> list[ProgramChange]:
    """The programs with STIS/COS science spectra released or re-archived in ``window``.

    Parameters
    ----------
    window : Window
        The UTC interval to look at.
    mast_url : str, optional
        Archive base URL (default ``$HASP_QA_MAST_URL`` or https://mast.stsci.edu).
    page_size : int, optional
        Rows per Search API request.
    timeout : float, optional
        Seconds per request.

    Returns
    -------
    list of ProgramChange
        Sorted by program number; empty when nothing happened in the window.

    Raises
    ------
    DiscoveryError
        When the archive cannot be asked or refuses the query.
    """
    from astroquery.exceptions import InvalidQueryError, RemoteServiceError

    url = resolve_mast_url(mast_url)
    found: dict[str, Dataset] = {}
    try:
        client = _client(url, timeout)
        try:
            for column in ("sci_release_date", "sci_archive_date"):
                for row in _pages(client, column, window, page_size):
                    dataset = _dataset(row, window)
                    if dataset is not None:
                        # Released in the window outranks re-archived: it is new to us.
                        old = found.get(dataset.name)
                        if old is None or dataset.reason == "new":
                            found[dataset.name] = dataset
        finally:
            client._service_api_connection._session.close()
    except (requests.RequestException, ConnectionError, RuntimeError, InvalidQueryError,
            RemoteServiceError, TimeoutError) as err:
        raise DiscoveryError(f"MAST Search API at {url} could not list the HST spectra of "
                             f"{window.condition()}: {type(err).__name__}: {err}") from err
    return group_programs(found.values())


def _dataset(row: Any, window: Window) -> Dataset | None:
    """The row as a dataset with its reason, or None when neither date is in the window."""
    released = _archive_time(row["sci_release_date"])
    archived = _archive_time(row["sci_archive_date"])
    if window.contains(released):
        reason = "new"
    elif window.contains(archived) and (released is None or released < window.since):
        reason = "re-archived"
    else:
        return None  # the inclusive upper end of the range, or released after the window
    return Dataset(name=str(row["sci_data_set_name"]).strip().lower(),
                   program=str(int(row["sci_pep_id"])),
                   instrument=str(row["sci_instrume"]).strip(),
                   target=str(row["sci_targname"]).strip(),
                   release_date=released.isoformat() if released else None,
                   archive_date=archived.isoformat() if archived else None, reason=reason)


def group_programs(datasets: Any) -> list[ProgramChange]:
    """Group datasets by program, each program with its reason."""
    programs: dict[str, ProgramChange] = {}
    for dataset in sorted(datasets, key=lambda d: d.name):
        change = programs.setdefault(dataset.program, ProgramChange(dataset.program, ""))
        change.datasets.append(dataset)
    for change in programs.values():
        kinds = {d.reason for d in change.datasets}
        change.reason = "both" if len(kinds) == 2 else kinds.pop()
    return [programs[p] for p in sorted(programs, key=int)]

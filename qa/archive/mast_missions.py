"""The MAST Search API ("missions") as the loopback server speaks it, for HST datasets.

``astroquery.mast.MastMissions(mission="hst")`` asks two things:

* ``GET /search/util/api/v0.1/column_list?mission=hst``: the searchable columns
  (``column_name``, ``qual_type``, ``description``... as in astroquery's recorded
  ``mission_columns.json``);
* ``POST /search/hst/api/v0.1/search`` with a JSON body ``{"conditions": [{col: value}],
  "limit", "offset", "select_cols", ...}``: rows in ``results``, column types in
  ``info``, the number of matches before paging in ``totalResults`` (the shape of
  astroquery's recorded ``mission_results.json``).

Condition values follow the Search API's syntax: ``a..b`` (inclusive range), ``a,b,c``
(any of), ``<x``, ``>x``, ``<=x``, ``>=x``, else equality (strings compare
case-insensitively, after stripping: the archive pads instrument names).
Conditions are AND-ed, as on MAST.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

COLUMN_LIST_PATH = "/search/util/api/v0.1/column_list"
SEARCH_PATH = "/search/hst/api/v0.1/search"

# (column_name, qual_type, datatype, description); qual_type decides how conditions parse.
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("sci_data_set_name", "string", "char", "Data set name (nine characters)"),
    ("sci_pep_id", "integer", "long", "ID number assigned to the proposal"),
    ("sci_targname", "string", "char", "Target name designated by the observer"),
    ("sci_instrume", "string", "char", "Instrument used (e.g. COS, STIS)"),
    ("sci_obs_type", "string", "char", "Observation category (e.g. SPECTRUM)"),
    ("sci_aec", "string", "char", "Archived Exposures Catalog: C=Calibration, S=Science"),
    ("sci_status", "string", "char", "Data access status (PUBLIC or PROPRIETARY)"),
    ("sci_spec_1234", "string", "char", "Spectral elements"),
    ("sci_start_time", "datetime", "char", "Observation start time"),
    ("sci_stop_time", "datetime", "char", "Observation stop time"),
    ("sci_release_date", "datetime", "char", "Date of public release"),
    ("sci_archive_date", "datetime", "char", "The date when archiving was completed"),
)
_INFO_TYPE = {"string": "VARCHAR", "integer": "INTEGER", "datetime": "DATETIME"}
_QUAL = {name: qual for name, qual, _dt, _desc in COLUMNS}
# Columns returned when the request names none (the real default output lacks the archive date).
DEFAULT_OUTPUT = ("sci_data_set_name", "sci_pep_id", "sci_targname", "sci_instrume",
                  "sci_spec_1234", "sci_start_time", "sci_stop_time", "sci_release_date",
                  "sci_status")


def column_list() -> list[dict[str, str]]:
    """The ``column_list`` response body."""
    return [{"field_name": name, "column_name": name, "qual_type": qual, "datatype": dtype,
             "description": desc, "queryable": "yes",
             "default_output": "yes" if name in DEFAULT_OUTPUT else "no", "indexed": "no"}
            for name, qual, dtype, desc in COLUMNS]


class SearchError(Exception):
    """A request the real service would refuse (HTTP 400); the message says why."""


def _parser(column: str) -> Callable[[str], Any]:
    qual = _QUAL.get(column)
    if qual is None:
        raise SearchError(f"unknown column {column!r}")
    if qual == "integer":
        return int
    if qual == "datetime":
        return datetime.fromisoformat
    return lambda text: text.strip().upper()


def _predicate(column: str, condition: str) -> Callable[[Any], bool]:
    """The test one ``{column: condition}`` applies to a row value."""
    parse = _parser(column)
    text = str(condition).strip()
    try:
        if ".." in text:
            low, high = (parse(part) for part in text.split("..", 1))
            return lambda v: low <= parse(str(v)) <= high
        for op, cmp in (("<=", lambda a, b: a <= b), (">=", lambda a, b: a >= b),
                        ("<", lambda a, b: a < b), (">", lambda a, b: a > b)):
            if text.startswith(op):
                bound = parse(text[len(op):])
                return lambda v, cmp=cmp, bound=bound: cmp(parse(str(v)), bound)
        wanted = {parse(part) for part in text.split(",")}
    except ValueError as err:
        raise SearchError(f"{column}: cannot read {condition!r} ({err})") from err
    return lambda v: parse(str(v)) in wanted


def search(rows: list[dict[str, Any]], request: dict[str, Any]) -> dict[str, Any]:
    """Answer one search request over ``rows`` (one dict per dataset, all columns).

    Raises
    ------
    SearchError
        For an unknown column or an unreadable condition value.
    """
    tests = [(column, _predicate(column, value))
             for condition in request.get("conditions", []) for column, value in condition.items()
             if str(value) != ""]  # an empty condition is no condition (astroquery sends some)
    hits = [r for r in rows
            if all(r.get(c) is not None and test(r[c]) for c, test in tests)]
    hits.sort(key=lambda r: r["sci_data_set_name"])  # stable order makes offsets meaningful
    limit = int(request.get("limit", 5000))
    offset = int(request.get("offset", 0))
    columns = [c for c in dict.fromkeys(request.get("select_cols") or DEFAULT_OUTPUT) if c]
    for column in columns:
        if column not in _QUAL:
            raise SearchError(f"unknown column {column!r} in select_cols")
    page = [{c: r.get(c) for c in columns} for r in hits[offset:offset + limit]]
    return {"messages": [], "info": [{"name": c, "type": _INFO_TYPE[_QUAL[c]]} for c in columns],
            "search_params": request, "totalResults": len(hits), "results": page}

"""Discovery of released / re-archived programs through astroquery's MastMissions,
against the loopback server's Search API (nothing mocked)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from astroquery.mast import conf

from qa.archive.discovery import DiscoveryError, Window, discover, parse_when
from qa.archive.mast_missions import SEARCH_PATH
from qa.archive.mast_server import MastServer, copy_real_programs

from .conftest import derive_copy

DAY1 = datetime(2026, 1, 1, 12)


@pytest.fixture
def server(real_dir: Path, tmp_path: Path, mast_server) -> MastServer:
    root = copy_real_programs(real_dir, tmp_path / "archive")
    srv = mast_server(root)
    srv.release("o4vt02040", DAY1)                                 # 8016: new on day 1
    srv.release("ocb6f1020", DAY1.replace(hour=13))                # 13346: one new ...
    srv.release("ocb6i2020", datetime(2024, 5, 1), archived=DAY1)  # ... one re-archived
    srv.release("o3zx02070", datetime(2026, 1, 2, 0))              # 7096: exactly at the end
    return srv


def window(since: str, until: str) -> Window:
    return Window(parse_when(since), parse_when(until))


def test_parse_when_accepts_iso_and_mjd() -> None:
    utc = timezone.utc
    assert parse_when("2026-01-01") == datetime(2026, 1, 1, tzinfo=utc)
    assert parse_when("2026-01-01T06:30") == datetime(2026, 1, 1, 6, 30, tzinfo=utc)
    assert parse_when("61041") == datetime(2026, 1, 1, tzinfo=utc)
    assert parse_when("61041.25") == datetime(2026, 1, 1, 6, tzinfo=utc)
    with pytest.raises(ValueError, match="ISO date"):
        parse_when("yesterday")
    with pytest.raises(ValueError, match="empty window"):
        window("2026-01-02", "2026-01-01")


def test_discover_groups_programs_with_reasons(server: MastServer) -> None:
    before = conf.server
    changes = discover(window("2026-01-01", "2026-01-02"), server.url, page_size=1)
    assert conf.server == before  # the column-list redirect is undone
    assert [(c.program, c.reason) for c in changes] == [("8016", "new"), ("13346", "both")]
    both = changes[1]
    assert (both.new, both.rearchived) == (["ocb6f1020"], ["ocb6i2020"])
    assert both.describe() == "program 13346: new data (ocb6f1020); re-archived (ocb6i2020)"
    assert both.datasets[1].archive_date == "2026-01-01T12:00:00+00:00"
    # page_size=1: each query pages until a short page; 7096 sits on the exclusive end.
    searches = [r for r in server.log if r.path == SEARCH_PATH]
    assert len(searches) == (3 + 1) + (4 + 1)  # 3 released, 4 archived (end included)
    assert [c.program for c in discover(window("61042", "61043"), server.url)] == ["7096"]


def test_nothing_in_window_is_empty(server: MastServer) -> None:
    assert discover(window("2025-06-01", "2025-07-01"), server.url) == []


def test_rearchived_replacement_is_served(server: MastServer, real_dir: Path,
                                         tmp_path: Path) -> None:
    fainter = derive_copy(real_dir / "o4vt02040_x1d.fits", tmp_path, "o4vt02040", flux_scale=0.5)
    server.rearchive("8016", "o4vt02040_x1d.fits", fainter, datetime(2026, 2, 1))
    changes = discover(window("2026-02-01", "2026-02-02"), server.url)
    assert [(c.program, c.reason, c.rearchived) for c in changes] == \
        [("8016", "re-archived", ["o4vt02040"])]
    assert (server.root / "8016" / "o4vt02040_x1d.fits").read_bytes() == fainter.read_bytes()


def test_search_condition_syntax_and_paging(server: MastServer) -> None:
    def search(**body):
        reply = requests.post(server.url + SEARCH_PATH, json=body, timeout=10)
        return reply.status_code, reply.json() if reply.ok else reply.text

    status, data = search(conditions=[{"sci_pep_id": "8016,7096"}],
                          select_cols=["sci_data_set_name", "sci_pep_id"])
    assert status == 200 and data["totalResults"] == 2
    assert [r["sci_data_set_name"] for r in data["results"]] == ["O3ZX02070", "O4VT02040"]
    assert {"name": "sci_pep_id", "type": "INTEGER"} in data["info"]
    _, data = search(conditions=[{"sci_pep_id": ">8016"}])
    assert data["totalResults"] == 3  # the two 13346 datasets and 14833's
    _, data = search(conditions=[{"sci_pep_id": "<8016"}, {"sci_instrume": "STIS"}])
    assert [r["sci_pep_id"] for r in data["results"]] == [7096]
    _, data = search(conditions=[{"sci_release_date": "2026-01-01..2026-01-01T12:30:00"}],
                     limit=1, offset=0)
    assert data["totalResults"] == 1 and data["results"][0]["sci_data_set_name"] == "O4VT02040"
    _, data = search(conditions=[{"sci_instrume": "COS,STIS"}], limit=2, offset=4)
    assert data["totalResults"] == 5 and len(data["results"]) == 1
    assert search(conditions=[{"no_such_column": "1"}])[0] == 400
    assert search(conditions=[{"sci_release_date": "soon..later"}])[0] == 400


def test_unreachable_archive_is_a_discovery_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    server = MastServer(tmp_path / "empty")
    url = server.url
    server.stop()  # the port now refuses connections
    before = conf.server
    with pytest.raises(DiscoveryError, match="could not list the HST spectra"):
        discover(window("2026-01-01", "2026-01-02"), url, timeout=5)
    assert conf.server == before

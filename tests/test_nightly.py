"""Three nights against the loopback archive, as cron runs them: pytest in a subprocess.

Night 1: programs 8016 (three copies of o4vt02040 at flux 1 : 0.95 : 0.9) and 7096
(o3zx02070) are released; both pass. Night 2: 8016's o5jy03030 is re-archived at
flux 0.75 (HASP rejects it) and 14833 (odbue5030) is released. Night 3: nothing.
Run against the SQLite store and a real PostgreSQL server.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from qa.archive.mast_server import MastServer
from qa.history.store import HistoryStore

from .conftest import derive_copy
from .postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)
from .test_report import browser  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
VISIT = "8016-G191B2B-STIS/E140M-visit03"


def nightly(tmp_path: Path, name: str, server: MastServer, history: str, *args: str):
    """One night: (exit code, output, results JSON)."""
    out = tmp_path / name
    out.mkdir()
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
           f"--cache-dir={tmp_path / 'cache'}", f"--mast-url={server.url}",
           f"--history={history}", f"--qa-results={out / 'results.json'}",
           f"--html={out / 'report.html'}", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    results = out / "results.json"
    return proc.returncode, proc.stdout + proc.stderr, \
        json.loads(results.read_text()) if results.exists() else None


@pytest.fixture
def archive(real_dir: Path, tmp_path: Path, mast_server) -> MastServer:
    root = tmp_path / "archive"
    for program, files in {"8016": [("o5jy03010", 1.0), ("o5jy03020", 0.95),
                                    ("o5jy03030", 0.9)]}.items():
        (root / program).mkdir(parents=True)
        for rootname, scale in files:
            derive_copy(real_dir / "o4vt02040_x1d.fits", root / program, rootname,
                        flux_scale=scale)
    (root / "7096").mkdir()
    (root / "7096" / "o3zx02070_x1d.fits").write_bytes(
        (real_dir / "o3zx02070_x1d.fits").read_bytes())
    server = mast_server(root)
    for rootname in ("o5jy03010", "o5jy03020", "o5jy03030", "o3zx02070"):
        server.release(rootname, datetime(2026, 1, 1, 12))
    return server


def night_two(server: MastServer, real_dir: Path, tmp_path: Path) -> None:
    fainter = derive_copy(real_dir / "o4vt02040_x1d.fits", tmp_path, "o5jy03030",
                          flux_scale=0.75)
    server.rearchive("8016", "o5jy03030_x1d.fits", fainter, datetime(2026, 1, 2, 6))
    (server.root / "14833").mkdir()
    (server.root / "14833" / "odbue5030_x1d.fits").write_bytes(
        (real_dir / "odbue5030_x1d.fits").read_bytes())
    server.release("odbue5030", datetime(2026, 1, 2, 12))


def statuses(data: dict) -> dict[tuple[str, str], str]:
    return {(r["check"], r["case_id"]): r["status"] for r in data["results"]}


def three_nights(archive: MastServer, real_dir: Path, tmp_path: Path, history: str) -> None:
    code, out, data = nightly(tmp_path, "night1", archive, history,
                              "--released-since=2026-01-01", "--released-until=2026-01-02",
                              "--fail-on=new")
    assert code == 0, out
    night = data["history"]
    assert [(p["program"], p["reason"]) for p in night["programs"]] == \
        [("7096", "new"), ("8016", "new")]
    assert set(statuses(data).values()) <= {"passed", "skipped"}
    assert set(night["tally"]) == {"new product"} and night["alerts"] == 0
    assert "program 8016: new data (o5jy03010, o5jy03020, o5jy03030)" in out

    night_two(archive, real_dir, tmp_path)
    code, out, data = nightly(tmp_path, "night2", archive, history,
                              "--released-since=last", "--released-until=2026-01-03",
                              "--fail-on=new", "-n", "2")  # workers get the controller's night
    assert code == 1, out
    night = data["history"]
    assert night["window"]["since"] == "2026-01-01T23:00:00+00:00"  # last end minus overlap
    assert [(p["program"], p["reason"], p["text"]) for p in night["programs"]] == [
        ("8016", "re-archived", "program 8016: re-archived (o5jy03030)"),
        ("14833", "new", "program 14833: new data (odbue5030)")]
    assert statuses(data)[("rejection", VISIT)] == "failed"
    change = next(c for c in night["changes"] if c["case_id"] == VISIT
                  and c["check"] == "rejection")
    assert (change["kind"], change["before"], change["after"], change["alert"]) == \
        ("input set changed", "passed", "failed", True)
    assert "re-archived o5jy03030_x1d.fits (sha256 changed)" in change["detail"]
    assert {c["kind"] for c in night["changes"] if c["program"] == "14833"} == {"new product"}
    assert not any(c["program"] == "7096" for c in night["changes"])  # not in the night
    assert f"INPUT SET CHANGED  {VISIT} (rejection)" in out
    page = (tmp_path / "night2" / "report.html").read_text()
    assert 'id="hqa-changes"' in page and "re-archived o5jy03030_x1d.fits" in page
    assert page.index('id="hqa-changes"') < page.index('class="hqa hqa-summary"')

    code, out, data = nightly(tmp_path, "night3", archive, history,
                              "--released-since=last", "--released-until=2026-01-04",
                              "--fail-on=new")
    assert code == 0, out
    assert data["history"]["programs"] == [] and data["results"] == []
    assert "nothing released or re-archived" in out

    store = HistoryStore(history)
    try:
        runs = store.runs()
        assert [(r.status, r.exit_status) for r in runs] == [("complete", 0), ("complete", 1),
                                                             ("complete", 0)]
        assert runs[0].window_until == "2026-01-04T00:00:00+00:00"
        assert [p["program"] for p in runs[1].programs] == ["8016", "14833"]
        stored = {(c["case_id"], c["check_name"]): c for c in store.changes_of(runs[1].id)}
        assert stored[(VISIT, "rejection")]["kind"] == "input set changed"
    finally:
        store.close()


def trend_site(tmp_path: Path, history: str) -> Path:
    """``hasp-qa history --html``: the listing, and the site's files."""
    site = tmp_path / "site"
    proc = subprocess.run([str(Path(sys.executable).parent / "hasp-qa"), "history",
                           f"--history={history}", "-n", "5", f"--html={site}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "3 most recent run(s)" in lines[0]
    assert "complete" in lines[2] and "8016 (re-archived), 14833 (new)" in lines[3]
    pages = sorted(p.name for p in site.glob("*.html"))
    assert pages == ["index.html", "program-14833.html", "program-7096.html",
                     "program-8016.html"]
    assert len(list((site / "figures").glob("*.png"))) == 4
    for page in pages:
        assert "data:" not in (site / page).read_text()
    return site


def test_three_nights_sqlite(archive: MastServer, real_dir: Path, tmp_path: Path,
                             browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    three_nights(archive, real_dir, tmp_path, str(tmp_path / "history.sqlite"))
    site = trend_site(tmp_path, str(tmp_path / "history.sqlite"))

    def load(page: Path) -> list[int]:
        browser.get(page.as_uri())
        WebDriverWait(browser, 60).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every(i => i.complete)"))
        return browser.execute_script(
            "return Array.from(document.images).map(i => i.naturalWidth)")

    assert load(site / "index.html") == [900]  # decoded, at the report's figure width
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tr[data-run]")
    assert [r.get_attribute("data-run") for r in rows] == ["3", "2", "1"]
    assert "input set changed" in rows[1].text and "14833" in rows[1].text
    link = rows[1].find_element(By.LINK_TEXT, "report")
    link.click()
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return document.readyState === 'complete'"))
    assert browser.current_url.split("?")[0] == (tmp_path / "night2" / "report.html").as_uri()
    assert "re-archived o5jy03030_x1d.fits" in browser.find_element(By.ID, "hqa-changes").text

    assert load(site / "program-8016.html") == [900]
    changed = browser.find_elements(
        By.CSS_SELECTOR, '#changes tr[data-run="2"][data-kind="input set changed"]')
    texts = [c.text for c in changed if c.is_displayed()]
    assert f"{VISIT} rejection passed failed re-archived o5jy03030_x1d.fits (sha256 changed)" \
        in "\n".join(texts)
    verdicts = browser.find_element(By.ID, "verdicts").text
    assert f"rejection {VISIT} passed failed" in verdicts  # run 1, run 2
    assert browser.get_log("browser") == []


def test_three_nights_postgresql(archive: MastServer, real_dir: Path, tmp_path: Path,
                                 postgres_url: str) -> None:
    three_nights(archive, real_dir, tmp_path, postgres_url)
    site = trend_site(tmp_path, postgres_url)
    assert "input set changed" in (site / "program-8016.html").read_text()

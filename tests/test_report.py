"""HTML report pieces and results JSON, and the rendered page checked in headless Chromium.

The session dict is built from real engine results: copies of the real o4vt02040
scaled 1 : 0.838 : 0.755 (a rejection cascade, then a remediation) and a copy of
the real o3zx02070 whose TARGNAME is ``<script>alert(1)</script>``.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from qa.pytest_plugin.plugin import PROJECT_CHECKS
from qa.render import plots, report
from qa.results import CheckResult
from qa.sources import Options
from qa.summary import run_in_process

from .conftest import derive_copy

KEY = "8016-G191B2B-STIS/E140M-visit03"
EVIL = "<script>alert(1)</script>"
SCALES = (1.0, 0.838, 0.755)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Built:
    """A results JSON from real engine runs, and the figures of the cascade product."""

    session: dict
    figures: dict[str, bytes]
    owner: str            # case_id + check of the case that carries the figures


@pytest.fixture(scope="module")
def built(real_dir, tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("session")
    cascade, evil = root / "cascade", root / "evil"
    cascade.mkdir()
    evil.mkdir()
    for i, scale in enumerate(SCALES):
        derive_copy(real_dir / "o4vt02040_x1d.fits", cascade, f"o5jy030{i + 1}0", flux_scale=scale)
    derive_copy(real_dir / "o3zx02070_x1d.fits", evil, "o6ab01010", primary={"TARGNAME": EVIL})
    doc, outcomes = run_in_process(Options(data_dirs=[cascade, evil], checks=[PROJECT_CHECKS],
                                           cache_dir=root / "cache", figures="all"))
    owner = next(r for r in doc["results"] if r["product"] == KEY and r["status"] == "failed")
    return Built(doc, outcomes[KEY].figures, f"{owner['case_id']}/{owner['check']}")


def results_of(built: Built, **match) -> list[CheckResult]:
    return [CheckResult.from_dict(r) for r in built.session["results"]
            if all(r[k] == v for k, v in match.items())]


# ---------------------------------------------------------------- summary and case blocks

def test_summary_escapes_target_names(built):
    html = report.summary_html(built.session)
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_summary_shows_the_numbers(built):
    html = report.summary_html(built.session)
    counts = report._counts(built.session)
    assert counts["programs"] == 2 and counts["modes"] == 2 and counts["products"] == 4
    assert counts["exposures"] == 4
    assert counts["failed"] >= 3 and counts["remediations"] >= 1
    for name, value in counts.items():
        assert f'<span data-count="{name}"><b>{value}</b>' in html
    assert "o5jy03030 (iteration 1, " in html and "o5jy03020 (iteration 2, " in html
    assert "o5jy03030 \u00d71.3245" in html
    rem = built.session["products"][KEY]["remediation"]
    assert f"SNR gain median {rem['snr_gain']['median']:.3f}" in html
    assert "1.2.5" in html and "native" in html
    for r in results_of(built, status="failed"):
        assert report.escape(r.message) in html


def test_case_block_of_a_failing_exposure(built):
    (result,) = results_of(built, check="flux_variance", subject="o5jy03030_x1d.fits", product=KEY)
    html = report.case_html(result, built.figures,
                            remediation=built.session["products"][KEY]["remediation"])
    assert 'class="hqa-failed">FAILED</span>' in html
    assert report.escape(result.message) in html
    assert "<th>rows_below</th>" not in html and "<td>rows_below</td>" in html
    assert "<th>scale factor</th>" in html and "1.325" in html
    assert "<th>median SNR gain</th>" in html
    assert html.count("data:image/png;base64,") == len(built.figures) == 4
    src = html.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(src) == built.figures["inputs_vs_coadd"]


def test_case_extras_link_assets_when_not_self_contained(built, tmp_path):
    (result,) = results_of(built, check="rejection", product=KEY)
    extras = report.case_extras(result, built.figures, tmp_path / "assets")
    assert [e["format_type"] for e in extras] == ["html", "json"]
    assert "data:image" not in extras[0]["content"]
    for name, png in built.figures.items():
        # Named by source and product, so two sources never overwrite each other's plots.
        file = f"{result.source}-8016-G191B2B-STIS_E140M-visit03-{name}.png".lstrip("-")
        assert (tmp_path / "assets" / file).read_bytes() == png
        assert f'src="assets/{file}"' in extras[0]["content"]
    assert extras[1]["content"] == result.to_dict()


def test_case_block_escapes_messages():
    result = CheckResult(check="flux_variance", kind="flux_variance", case_id=f"x-{EVIL}",
                         product=EVIL, subject=EVIL, status="failed", message=f"bad {EVIL}",
                         observed={"target": EVIL, "rows": [{"row": EVIL}]}, params={"p": EVIL})
    html = report.case_html(result)
    assert EVIL not in html and html.count("&lt;script&gt;") >= 5


def test_value_html_formats():
    assert report.value_html(float("nan")) == "&ndash;"
    assert report.value_html(None) == "&ndash;"
    assert report.value_html(-52.196530649869544) == "-52.2"
    assert report.value_html([1, 2]) == "1, 2"
    assert "<th>row</th>" in report.value_html([{"row": "order 120", "scaled_median": -52.2}])


def test_results_json_round_trip(built, tmp_path):
    path = report.write_results_json(tmp_path / "out" / "results.json", built.session)
    assert report.load_results_json(path) == json.loads(json.dumps(built.session))
    loaded = report.load_check_results(report.load_results_json(path))
    assert [r.to_dict() for r in loaded] == built.session["results"]
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_results_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        report.write_results_json(tmp_path / "r.json", {"x": float("nan")})
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------- the page in a browser

CONFTEST = '''
import json
from pathlib import Path

import pytest

from qa.render import report
from qa.results import CheckResult

DATA = Path(__file__).parent / "data"
SESSION = report.load_results_json(DATA / "session.json")
RESULTS = {f"{r['case_id']}/{r['check']}": CheckResult.from_dict(r) for r in SESSION["results"]}
FIGURES = {p.stem: p.read_bytes() for p in sorted((DATA / "figures").glob("*.png"))}
OWNER = (DATA / "owner.txt").read_text()


def pytest_html_results_summary(prefix, summary, postfix, session):
    prefix.append(report.summary_html(SESSION))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        key = item.callspec.params["key"]
        config = item.config
        assets = (None if config.getoption("self_contained_html")
                  else Path(config.getoption("htmlpath")).parent / "assets")
        result = RESULTS[key]
        rem = SESSION["products"].get(result.product or "", {}).get("remediation")
        rep.extras = getattr(rep, "extras", []) + report.case_extras(
            result, FIGURES if key == OWNER else None, assets, remediation=rem)
'''

CASES = '''
import pytest

from conftest import RESULTS


@pytest.mark.parametrize("key", list(RESULTS))
def test_check(key):
    result = RESULTS[key]
    if result.status == "skipped":
        pytest.skip(result.message)
    if result.status != "passed":
        pytest.fail(result.message, pytrace=False)
'''


def browser_or_skip() -> None:
    """Skip only when Chromium is really absent; on CI (env CI set) that is a failure."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = (f"browser test needs {', '.join(missing)}: apt-get install -y chromium "
               "chromium-driver; pip install selenium (make test does both)")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def write_report(built: Built, where: Path, self_contained: bool) -> Path:
    """Run pytest-html in a subprocess on cases replaying the session's results."""
    (where / "data" / "figures").mkdir(parents=True)
    report.write_results_json(where / "data" / "session.json", built.session)
    for name, png in built.figures.items():
        (where / "data" / "figures" / f"{name}.png").write_bytes(png)
    (where / "data" / "owner.txt").write_text(built.owner)
    (where / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (where / "test_cases.py").write_text(textwrap.dedent(CASES))
    html = where / "out" / "report.html"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
            f"--html={html}", "test_cases.py"] + (["--self-contained-html"] if self_contained else [])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(args, cwd=where, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr   # some cases fail, as they should
    assert html.is_file(), proc.stdout + proc.stderr
    return html


@pytest.fixture
def browser(tmp_path):
    browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium must never try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_report(driver, html: Path) -> None:
    """Load the report and wait until pytest-html has built the table and our images loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(html.as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && document.querySelectorAll('.hqa-case').length > 0"
        " && Array.from(document.querySelectorAll('.hqa img')).every(i => i.complete)"))


def check_page(driver, html: Path, session: dict, screenshot: Path) -> list[tuple[str, int]]:
    """Assertions for any hasp-qa report; returns (figure name, natural width) of every image.

    Every image decodes, every failing case is shown with its message, the summary is
    visible, no script from the data ran, the console is clean; a screenshot is saved.
    """
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    open_report(driver, html)
    sizes = driver.execute_script(
        "return Array.from(document.querySelectorAll('.hqa img')).map(i => [i.alt, i.naturalWidth])")
    assert sizes and all(width == 900 for _, width in sizes), sizes

    failed = [r for r in session["results"] if r["status"] in ("failed", "error")]
    rows = driver.find_elements(By.CSS_SELECTOR, "tbody.results-table-row.failed, "
                                                 "tbody.results-table-row.error")
    assert len(rows) == len(failed)
    shown = {m.text for m in driver.find_elements(
        By.CSS_SELECTOR, "tbody.failed .hqa-case .hqa-message, tbody.error .hqa-case .hqa-message")
        if m.is_displayed()}
    assert {r["message"] for r in failed} <= shown

    assert driver.find_element(By.CSS_SELECTOR, ".hqa-summary").is_displayed()
    assert driver.execute_script("return document.querySelectorAll('.hqa script').length") == 0
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height, 12000))
    driver.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:4] == b"\x89PNG"
    return sizes


def check_mini_report(driver, html: Path, built: Built, screenshot: Path) -> None:
    sizes = check_page(driver, html, built.session, screenshot)
    assert sorted(name for name, _ in sizes) == sorted(built.figures), "plots once per mode"
    from selenium.webdriver.common.by import By
    assert EVIL in driver.find_element(By.CSS_SELECTOR, ".hqa-summary").text, "shown as text"


@pytest.mark.slow
def test_self_contained_report_in_a_browser(built, browser, tmp_path):
    html = write_report(built, tmp_path / "run", self_contained=True)
    assert html.stat().st_size < 3_000_000
    assert not (html.parent / "assets").exists() or not list((html.parent / "assets").glob("*.png"))
    check_mini_report(browser, html, built, tmp_path / "report.png")


@pytest.mark.slow
def test_report_with_linked_assets_in_a_browser(built, browser, tmp_path):
    html = write_report(built, tmp_path / "run", self_contained=False)
    assert len(list((html.parent / "assets").glob("*.png"))) == len(built.figures)
    check_mini_report(browser, html, built, tmp_path / "report-linked.png")
    shutil.rmtree(html.parent / "assets")   # the page must not have embedded them too
    assert "data:image/png" not in html.read_text()


def demo_report(where: Path, *extra: str) -> Path:
    """``pytest --demo --html=... --self-contained-html`` in a subprocess, in its own cache."""
    html = where / "demo.html"
    args = [sys.executable, "-m", "pytest", "--demo", f"--html={html}", "--self-contained-html",
            f"--cache-dir={where / 'cache'}", "-p", "no:cacheprovider", "-q", *extra]
    # From the repository, as a user runs it.
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # the demo has failures
    return html


@pytest.mark.slow
def test_demo_report_in_a_browser(browser, tmp_path):
    html = demo_report(tmp_path)
    assert html.stat().st_size < 3_000_000
    session = report.load_results_json(html.with_suffix(".json"))
    failed = {(r["check"], r["case_id"]) for r in session["results"] if r["status"] == "failed"}
    assert {("flux_variance", "8435-G191B2B-STIS/E140M-visit03-o5jy03030"),
            ("rejection", "8435-G191B2B-STIS/E140M-visit03"),
            ("rejection", "8435-G191B2B-STIS/E140M-program")} <= failed
    sizes = check_page(browser, html, session, tmp_path / "demo.png")
    assert set(plots.FIGURE_NAMES) <= {name for name, _ in sizes}
    # The plots of a failing mode must be open on arrival, not in a collapsed passed row.
    from selenium.webdriver.common.by import By
    shown = {img.get_attribute("alt") for img in browser.find_elements(
        By.CSS_SELECTOR, "tbody.failed .hqa-case img") if img.is_displayed()}
    assert set(plots.FIGURE_NAMES) <= shown

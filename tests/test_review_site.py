"""The review site and the figures policy."""
from __future__ import annotations

import pytest

from qa.render import policy


def test_default_policy_all_up_to_the_limit_then_failing():
    assert policy.resolve_policy(None, policy.ALL_UP_TO, True) == "all"
    assert policy.resolve_policy(None, policy.ALL_UP_TO + 1, True) == "failing"
    assert policy.resolve_policy("all", 5000, True) == "all"
    assert policy.resolve_policy("all", 3, False) == "none", "no report, no figures"
    with pytest.raises(ValueError, match="expected one of"):
        policy.resolve_policy("some", 3, True)


@pytest.mark.parametrize("facts, drawn", [
    ({}, False), ({"lost": True}, True), ({"remediated": True}, True), ({"error": True}, True),
    ({"changed": True}, True)])
def test_failing_policy_draws_products_that_lost_or_changed(facts, drawn):
    args = {"lost": False, "remediated": False, **facts}
    assert policy.wants_figures("failing", **args) is drawn
    assert policy.wants_figures("all", **args) is True
    assert policy.wants_figures("none", **args) is False


# ---------------------------------------------------------------- the site from a results document

import json
import re
from pathlib import Path

from qa.render import review_site as site

from .test_report import browser, browser_or_skip  # noqa: F401 - the shared Chromium fixture

EVIL = "<script>alert(1)</script>"
HEADERS = {"APERTURE": "0.1X0.03", "EXPTIME": 200.0, "EXPSTART": 51800.1, "POSTARG1": 0.0,
           "POSTARG2": 0.0, "EXPFLAG": "NORMAL", "CENWAVE": 1425}


def _product(program, visit, files, rejected=(), keyword=(), remediation=None, error=None,
             target="G191B2B", instrument="STIS", grating="E140M", figures=None):
    kept = [f for f in files if f not in {r[0] for r in rejected} | {k[0] for k in keyword}]
    return {
        "source": str(program), "key": "", "level": "visit" if visit else "program",
        "program": program, "visit": visit, "instrument": instrument, "grating": grating,
        "detector": "FUV-MAMA", "target": target, "filename": f"hst_{program}_cspec.fits",
        "threshold": -50.0, "snrmax": 20.0, "engine": "native",
        "inputs": [{"file": f, "sha256": "ab" * 32, "headers": dict(HEADERS)} for f in files],
        "kept": kept, "iterations": 1 + len(rejected),
        "rejected": [{"file": f, "iteration": it, "rows": ["order 112", "order 113"],
                      "scaled_medians": [-58.2, -51.0]} for f, it in rejected],
        "keyword_filtered": [{"file": f, "filter": "EXPFLAG", "reason": why, "product_keys": []}
                             for f, why in keyword],
        "findings": [], "threshold_margin": -58.2 if rejected else -12.5,
        "remediation": remediation, "figures": figures or {}, "error": error, "notes": []}


def _remediation(files, rejected_after=()):
    return {"product": "", "possible": True, "reason": "", "reference_rule": "brightest",
            "scaled_to": files[0], "medians": {f: 7e-12 for f in files},
            "factors": {f: 1.0 + i / 10 for i, f in enumerate(files)}, "scaled_dir": "x",
            "kept_after": [f for f in files if f not in rejected_after],
            "rejected_after": list(rejected_after),
            "snr_gain": {"median": 1.188, "p5": 1.1, "p95": 1.2, "nbins": 30000}}


@pytest.fixture
def doc(tmp_path) -> dict:
    """Three programs: a fixed rejection, a rejection remediation did not fix, a keyword
    filter, a product that errored, and a target name that is markup."""
    f1 = [f"o5jy030{i}0_x1d.fits" for i in (1, 2, 3)]
    f2 = [f"oabc010{i}0_x1d.fits" for i in (1, 2, 3)]
    f3 = [f"lxyz110{i}0_x1d.fits" for i in (1, 2, 3)]
    (tmp_path / "assets").mkdir()
    png = tmp_path / "assets" / "rows.png"
    from qa.render.plots import row_statistics  # a real figure file for the thumbnail
    from qa.results import Product
    png.write_bytes(row_statistics(Product(level="visit", program=8435, visit="03", instrument="STIS",
                                           grating="E140M", detector="FUV-MAMA", target="G191B2B",
                                           filename="", threshold=-50.0, snrmax=20.0, inputs=f1,
                                           kept=f1)))
    products = {
        "8435-G191B2B-STIS/E140M-visit03": _product(8435, "03", f1, rejected=[(f1[2], 1)],
                                                     remediation=_remediation(f1),
                                                     figures={"row_statistics": "assets/rows.png"}),
        "8435-G191B2B-STIS/E140M-program": _product(8435, "", f1, rejected=[(f1[2], 1)],
                                                     remediation=_remediation(f1)),
        "9000-EVIL-STIS/E140M-visit01": _product(9000, "01", f2, rejected=[(f2[1], 1), (f2[0], 2)],
                                                  remediation=_remediation(f2, [f2[1]]), target=EVIL),
        "77-T-COS/G130M-visit11": _product(77, "11", f3, keyword=[(f3[0], "EXPFLAG = INTERRUPTED")],
                                           instrument="COS", grating="G130M"),
        "77-T-COS/G130M-visit12": _product(77, "12", f3, instrument="COS", grating="G130M",
                                           error=f"77-T-COS/G130M-visit12: ValueError: {EVIL}"),
    }
    results = [{"check": "rejection", "kind": "rejection", "case_id": pid, "product": pid,
                "subject": pid, "status": "failed" if p["rejected"] else "passed",
                "message": f"lost {len(p['rejected'])} {EVIL}", "params": {}, "observed": {},
                "source": p["source"]} for pid, p in products.items()]
    return {"schema": 2, "hasp_qa": "0.1.0", "created": "2026-11-25T00:00:00+00:00",
            "finished": "", "status": "complete", "environment": {}, "options": {}, "checks": [],
            "sources": {"77": {"origin": "data-dir", "directory": "/d", "manifest": None,
                               "error": None, "input_errors": {"bad_x1d.fits": f"not FITS {EVIL}"}}},
            "products": products, "results": results,
            "history": {"changes": [{"pid": "77-T-COS/G130M-visit11", "kind": "input set changed",
                                     "detail": "lxyz11010_x1d.fits re-archived"}]}}


def written(doc, tmp_path) -> Path:
    results = tmp_path / "run.json"
    results.write_text(json.dumps(doc))
    return site.write_site(doc, results, tmp_path / "run-review")


def test_one_row_per_lost_exposure_grouped_program_then_product(doc, tmp_path):
    html = written(doc, tmp_path).read_text()
    rows = re.findall(r'<tr class="exposure-row" data-r="(\d+)"><td class="root">([^<]+)</td>', html)
    assert [r[1] for r in rows] == ["lxyz11010",                      # program 77 first (numeric order)
                                    "o5jy03030", "o5jy03030",        # 8435 visit, then program level
                                    "oabc01020", "oabc01010"]        # cascade: iteration 1, then 2
    assert [int(r[0]) for r in rows] == list(range(5))
    assert html.index("Program 77") < html.index("Program 8435") < html.index("Program 9000")
    assert "fixed by remediation (x1.2000, SNR gain 1.188)" in html
    assert "not fixed: rejected again after scaling" in html
    assert "keyword filter EXPFLAG: EXPFLAG = INTERRUPTED" in html
    assert "flux filter, iteration 2: 2 row(s) below -50 (worst order 112: -58.2)" in html
    assert "changed: input set changed (lxyz11010_x1d.fits re-archived)" in html


def test_text_from_files_is_escaped_everywhere(doc, tmp_path):
    index = written(doc, tmp_path)
    pages = [index, index.parent / "products.html", *(index.parent / "p").glob("*.html")]
    for page in pages:
        text = page.read_text()
        assert EVIL not in text, page
        assert "data:" not in text, "no data: URLs (Chromium will not open them from a link)"
    assert "&lt;script&gt;" in index.read_text()
    data = (index.parent / "index-data.js").read_text()
    assert data.startswith("window.HQA_INDEX = ") and "<" not in data


def test_product_page_shows_what_a_reviewer_checks(doc, tmp_path):
    index = written(doc, tmp_path)
    page = site.product_page(index.parent, "9000-EVIL-STIS/E140M-visit01").read_text()
    for keyword in site.REVIEW_KEYWORDS:
        assert f"<th>{keyword}</th>" in page
    assert "0.1X0.03" in page and "51800.1" in page and "NORMAL" in page
    assert "hst_9000_cspec.fits" in page
    assert page.index("iteration 1: rejected") < page.index("iteration 2: rejected")
    assert "worst row -58.20 is 8.20 below the threshold -50" in page
    visit = site.product_page(index.parent, "8435-G191B2B-STIS/E140M-visit03").read_text()
    assert 'href="../../assets/rows.png"' in visit and 'loading="lazy"' in visit
    assert 'href="p/' in index.read_text()


@pytest.mark.slow
def test_index_filters_in_chromium_from_file_url(doc, tmp_path, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.support.ui import Select

    index = written(doc, tmp_path)
    browser.get(index.as_uri())

    def visible() -> list[str]:
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('tr.exposure-row'))"
            ".filter(r => !r.hidden && !r.closest('tbody').hidden)"
            ".map(r => r.cells[0].textContent)")
    assert len(visible()) == 5
    img = browser.execute_script("var i = document.querySelector('tr.product-row img');"
                                 "return i && [i.complete, i.naturalWidth]")
    assert img == [True, 900], "the thumbnail is a linked file that decodes"
    Select(browser.find_element("id", "f-outcome")).select_by_value("rejected-notfixed")
    assert visible() == ["oabc01020"]
    Select(browser.find_element("id", "f-outcome")).select_by_value("")
    Select(browser.find_element("id", "f-instrument")).select_by_value("COS")
    assert visible() == ["lxyz11010"]
    Select(browser.find_element("id", "f-instrument")).select_by_value("")
    Select(browser.find_element("id", "f-outcome")).select_by_value("changed")
    assert visible() == ["lxyz11010"]
    Select(browser.find_element("id", "f-outcome")).select_by_value("")
    browser.find_element("id", "f-search").send_keys("o5jy03010")
    assert visible() == [], "o5jy03010 was kept"
    found = browser.find_element("id", "found")
    assert found.is_displayed() and "2 product(s)" in found.text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    browser.find_element("id", "f-search").clear()
    browser.execute_script("window.hqaApplyFilters()")
    assert len(visible()) == 5
    browser.find_element("link text", "9000-EVIL-STIS/E140M-visit01").click()
    assert EVIL in browser.find_element("css selector", "table.facts").text, "markup shown as text"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text


# ---------------------------------------------------------------- a real run: pytest --demo --html

@pytest.mark.slow
def test_demo_run_writes_the_review_site(tmp_path, browser):
    from astropy.io import fits
    from selenium.webdriver.common.by import By

    from .test_report import demo_report

    html = demo_report(tmp_path)          # --self-contained-html: the site gets figure files
    doc = json.loads(html.with_suffix(".json").read_text())
    review = tmp_path / "demo-review"
    visit = doc["products"]["8435-G191B2B-STIS/E140M-visit03"]
    assert set(visit["figures"]) == {"inputs_vs_coadd", "row_statistics", "scaled_inputs", "snr_gain"}
    assert all((html.parent / p).is_file() for p in visit["figures"].values())
    cspec = html.parent / visit["remediation"]["cspec"]
    assert cspec.parent.parent == review / "products"
    with fits.open(cspec) as hdul:
        assert hdul[0].header["QAREMED"] is True and hdul[0].header["HLSP_LVL"] == 1

    browser.get((review / "index.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.exposure-row")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in rows] == \
        ["o5jy03030", "o5jy03030", "l4gt01030", "l4gt01030"]
    browser.find_element(By.LINK_TEXT, "8435-G191B2B-STIS/E140M-visit03").click()
    browser.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    sizes = browser.execute_script(
        "return Promise.all(Array.from(document.querySelectorAll('.figures img'))"
        ".map(i => i.decode().then(() => [i.dataset.figure, i.naturalWidth])))")
    assert sorted(sizes) == sorted([[n, 900] for n in visit["figures"]])
    link = browser.find_element(By.CSS_SELECTOR, "a.cspec")
    assert link.text == cspec.name

    # The pytest-html report: failing rows link to their product page, skips show their reason.
    browser.get(html.as_uri())
    failed_links = browser.execute_script(
        "return Array.from(document.querySelectorAll('tbody.results-table-row.failed'))"
        ".map(t => Array.from(t.querySelectorAll('a.col-links__extra')).map(a => a.href))")
    assert failed_links and all(any(h.startswith("file://") and "/demo-review/p/" in h for h in links)
                                for links in failed_links)
    for href in {h for links in failed_links for h in links if "/demo-review/p/" in h}:
        assert Path(href.removeprefix("file://")).is_file()
    logs = browser.execute_script(
        "var d = JSON.parse(document.getElementById('data-container').dataset.jsonblob);"
        "return Object.entries(d.tests).map(([k, v]) => [k, v[0].result, v[0].log])")
    messages = {f"test_{r['check']}[{r['case_id']}]": r["message"] for r in doc["results"]}
    skipped = [(k, log) for k, result, log in logs if result == "Skipped"]
    assert skipped
    for nodeid, log in skipped:
        assert log.splitlines()[0] == messages[nodeid.split("::")[-1]], "the reason, not a tuple"
    ids = [k for k, _r, _l in logs]
    programs = [re.search(r"\[([^-:\]]+)", k).group(1) for k in ids]
    assert programs == sorted(programs, key=lambda p: (len(p), p)), "rows grouped by program"


def test_changed_means_a_change_a_reviewer_acts_on():
    change = lambda pid, kind, detail="": {"pid": pid, "kind": kind, "detail": detail}  # noqa: E731
    changes = [change("a", "still passing"), change("b", "still failing"), change("c", "new product"),
               change("d", "input set changed", "re-archived o5jy03030"), change("e", "fixed")]
    first = site.history_changes({"history": {"previous_runs": [], "changes": changes}})
    assert first == {"d": "input set changed (re-archived o5jy03030)", "e": "fixed"}
    later = site.history_changes({"history": {"previous_runs": [3], "changes": changes}})
    assert set(later) == {"c", "d", "e"}

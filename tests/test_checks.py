"""Check files are data: validated at load, evaluated against engine results."""
from __future__ import annotations

from pathlib import Path

import pytest

from qa.checks import REGISTRY, CheckFileError, Subject, Verdict, load_check_file, load_checks, register
from qa.engine import native

from .conftest import derive_copy

PROJECT_CHECKS = Path(__file__).resolve().parents[1] / "checks"


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_project_checks_load():
    specs = load_checks([PROJECT_CHECKS])
    assert [s.name for s in specs] == ["flux_variance", "rejection", "snr_gain", "coadd_consistency"]
    fv = specs[0]
    assert fv.params == {"threshold": -50.0, "snrmax": 20.0, "worst_rows": 3, "reference_rule": "brightest"}
    assert fv.subject == "exposure" and fv.on_fail == "remediate"


@pytest.mark.parametrize("text, fragment", [
    ('[check.a]\nkind = "nope"\n', "check.a.kind: expected one of"),
    ('[check.a]\nkind = "flux_variance"\ncolour = 1\n', "check.a.colour: unknown key"),
    ('[check.a]\nkind = "flux_variance"\n[check.a.params]\nthreshold = "low"\n',
     "check.a.params.threshold: expected float, got str"),
    ('[check.a]\nkind = "flux_variance"\n[check.a.params]\nworst_rows = 2.5\n',
     "check.a.params.worst_rows: expected int, got float"),
    ('[check.a]\nkind = "rejection"\n[check.a.params]\nkeyword_filtered_fails = 1\n',
     "expected bool, got int"),
    ('[check.a]\nkind = "snr_gain"\n[check.a.params]\nmin_gain = 1.0\n',
     "check.a.params.min_gain: unknown parameter of snr_gain"),
    ('[check.a]\nkind = "snr_gain"\non_fail = "panic"\n', "check.a.on_fail"),
    ('[check.a]\nkind = "rejection"\n[check.a.params]\nreference_rule = "loudest"\n',
     "check.a.params.reference_rule: expected one of brightest, median, first"),
    ('[check.a\nkind = 1', "cannot be read as TOML"),
    ('[other]\nx = 1\n', "unknown top-level table"),
])
def test_bad_check_files_name_file_key_and_type(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(CheckFileError) as info:
        load_check_file(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_duplicate_names_across_files(tmp_path):
    write(tmp_path, '[check.x]\nkind = "rejection"\n', "a.toml")
    write(tmp_path, '[check.x]\nkind = "snr_gain"\n', "b.toml")
    with pytest.raises(CheckFileError, match="already defined"):
        load_checks([tmp_path])


def test_integer_threshold_is_a_float(tmp_path):
    (spec,) = load_check_file(write(tmp_path, '[check.s]\nkind = "flux_variance"\n'
                                              '[check.s.params]\nthreshold = -30\n'))
    assert spec.params["threshold"] == -30.0 and isinstance(spec.params["threshold"], float)


def test_new_kind_registered_by_name(tmp_path):
    @register("max_iterations", "mode", limit=(int, 1))
    def max_iterations(subject, params):
        n = subject.product.iterations
        return Verdict("passed" if n <= params["limit"] else "failed", f"{n} iterations", {"n": n})

    try:
        (spec,) = load_check_file(write(tmp_path, '[check.it]\nkind = "max_iterations"\n'
                                                  '[check.it.params]\nlimit = 0\n'))
        assert spec.params == {"threshold": -50.0, "snrmax": 20.0, "limit": 0}
    finally:
        del REGISTRY["max_iterations"]


@pytest.fixture(scope="module")
def scaled_result(real_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("scaled")
    for root, scale in (("o5jy03010", 1.0), ("o5jy03020", 0.95), ("o5jy03030", 0.7)):
        derive_copy(real_dir / "o4vt02040_x1d.fits", d, root, flux_scale=scale)
    return native.run(d)


def test_flux_variance_names_file_rows_and_threshold(scaled_result):
    (fv,) = [s for s in load_checks([PROJECT_CHECKS]) if s.name == "flux_variance"]
    product = scaled_result.product("8016-G191B2B-STIS/E140M-visit03")
    bad = fv.evaluate(Subject(product=product, file="o5jy03030_x1d.fits"))
    good = fv.evaluate(Subject(product=product, file="o5jy03010_x1d.fits"))
    assert bad.status == "failed" and good.status == "passed"
    assert "o5jy03030_x1d.fits" in bad.message and "below -50" in bad.message
    assert "order" in bad.message and bad.observed["rows_below"] > 0
    assert bad.observed["min_scaled_median"] < -50 < good.observed["min_scaled_median"]
    assert len(bad.observed["worst"]) == 3


def test_rejection_lists_files_and_keyword_filters(scaled_result):
    (rej,) = [s for s in load_checks([PROJECT_CHECKS]) if s.name == "rejection"]
    product = scaled_result.product("8016-G191B2B-STIS/E140M-program")
    verdict = rej.evaluate(Subject(product=product))
    assert verdict.status == "failed"
    assert verdict.observed["rejected"][0]["file"] == "o5jy03030_x1d.fits"
    assert "iteration 1" in verdict.message


def test_snr_gain_without_remediation_is_skipped(scaled_result):
    (gain,) = [s for s in load_checks([PROJECT_CHECKS]) if s.name == "snr_gain"]
    product = scaled_result.products[0]
    assert gain.evaluate(Subject(product=product)).status == "skipped"


def test_keyword_filtered_files_are_reported_and_optionally_fail(real_dir, tmp_path):
    src = real_dir / "o4vt02040_x1d.fits"
    derive_copy(src, tmp_path, "o4vt07010")
    derive_copy(src, tmp_path, "o4vt07020")
    derive_copy(src, tmp_path, "o4vt07030", sci={"EXPFLAG": "INTERRUPTED"})
    result = native.run(tmp_path)
    product = result.product("8016-G191B2B-STIS/E140M-visit07")
    keyword = [k for k in result.keyword_filtered if product.key in k.product_keys]
    subject = Subject(product=product, keyword_filtered=keyword)
    lenient = (tmp_path / "a.toml", 'false')
    strict = (tmp_path / "b.toml", 'true')
    verdicts = []
    for path, flag in (lenient, strict):
        path.write_text(f'[check.r]\nkind = "rejection"\n[check.r.params]\n'
                        f'keyword_filtered_fails = {flag}\n')
        (spec,) = load_check_file(path)
        verdicts.append(spec.evaluate(subject))
    assert [v.status for v in verdicts] == ["passed", "failed"]
    assert "o4vt07030_x1d.fits (EXPFLAG = INTERRUPTED)" in verdicts[0].message
    assert verdicts[1].observed["keyword_filtered"][0]["filter"] == "EXPFLAG"


def test_flux_variance_lists_each_row_once_at_its_lowest(real_dir, tmp_path):
    # A cascade: o5jy03020 survives iteration 1 and fails in iteration 2.
    for root, scale in (("o5jy03010", 1.0), ("o5jy03020", 0.838), ("o5jy03030", 0.755)):
        derive_copy(real_dir / "o4vt02040_x1d.fits", tmp_path, root, flux_scale=scale)
    product = native.run(tmp_path).product("8016-G191B2B-STIS/E140M-visit03")
    (fv,) = [s for s in load_checks([PROJECT_CHECKS]) if s.name == "flux_variance"]
    verdict = fv.evaluate(Subject(product=product, file="o5jy03020_x1d.fits"))
    worst = verdict.observed["worst"]
    assert len({w["row"] for w in worst}) == len(worst) == 3
    assert all(w["iteration"] == 2 for w in worst)
    assert verdict.observed["rows"] == 44 and "iteration 2" in verdict.message

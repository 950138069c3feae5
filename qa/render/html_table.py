"""The pytest-html results table of a QA run: readable skip reasons, rows grouped by program.

Two things pytest-html does that do not suit a QA run, fixed from the plugin's hooks:

* a skipped case's log shows pytest's ``(path, line, 'Skipped: why')`` tuple; the
  reader wants the reason (:func:`skip_log`, from ``pytest_html_results_table_html``);
* rows are stored in the order reports arrive, so under pytest-xdist the programs
  of several workers interleave; :func:`sort_rows` orders them by case id (program,
  target, mode, level, exposure), then check, before the report is generated.
"""
from __future__ import annotations

import re
from html import escape

import pytest

_CASE = re.compile(r"::test_(?P<check>[^\[]*)\[(?P<case>.*)\]$")


def skip_log(report: pytest.TestReport, data: list[str]) -> None:
    """Replace the skip tuple heading a skipped case's log with its reason (in place)."""
    longrepr = report.longrepr
    if not (report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3 and data):
        return
    shown = escape(report.longreprtext)
    if data[0].startswith(shown):
        reason = str(longrepr[2]).removeprefix("Skipped: ")
        data[0] = escape(reason) + "\n" + data[0][len(shown):].lstrip("\n")


def _natural(text: str) -> tuple:
    # Program numbers sort as numbers: 8435 before 15000.
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


def row_key(nodeid: str) -> tuple:
    """Sort key of a results-table row: case id (program first), then check, then node id."""
    m = _CASE.search(nodeid)
    if m is None:
        return (1, (), "", nodeid)
    return (0, _natural(m.group("case")), m.group("check"), nodeid)


def sort_rows(config: pytest.Config) -> None:
    """Order pytest-html's rows by :func:`row_key`; call before pytest-html writes the report."""
    from pytest_html.basereport import BaseReport

    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, BaseReport):
            data = plugin._report._data            # pytest-html keeps its rows here
            tests = data["tests"]
            ordered = sorted(tests, key=row_key)
            data["tests"] = type(tests)(tests.default_factory, ((k, tests[k]) for k in ordered)) \
                if hasattr(tests, "default_factory") else {k: tests[k] for k in ordered}

"""A pytest run that does not ask for hasp-qa does not pay for it.

pytest imports the package's two pytest11 entry points (the plugin and the loopback
MAST server fixture) in every run of an environment where hasp-qa is installed;
the engine, astropy, matplotlib and pytest-html are imported only by a QA run.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

# Top-level packages that a run without --demo/--program/--data-dir must not import.
HEAVY = {"numpy", "astropy", "matplotlib", "PIL", "hasp", "ullyses", "astroquery", "filelock",
         "dask", "distributed", "sqlalchemy", "psycopg"}
# Loaded in every run by pytest-html's own entry point, never by this package's.
PYTEST_HTML = {"pytest_html", "jinja2"}


def test_importing_the_entry_points_loads_no_heavy_module():
    code = ("import json, sys, qa.pytest_plugin.plugin, qa.archive.mast_server; "
            "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = {name.split(".")[0] for name in json.loads(proc.stdout)}
    assert loaded & (HEAVY | PYTEST_HTML) == set()


PLAIN_TEST = """
import sys

HEAVY = {heavy!r}


def test_plain(request):
    assert request.config.pluginmanager.hasplugin("hasp_qa")
    assert request.config.pluginmanager.hasplugin("hasp_qa_mast")
    assert {{name.split(".")[0] for name in sys.modules}} & HEAVY == set()
"""


def test_a_plain_pytest_run_loads_no_heavy_module(tmp_path):
    (tmp_path / "test_plain.py").write_text(textwrap.dedent(PLAIN_TEST.format(heavy=HEAVY)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout


def test_a_qa_run_does_not_load_hypothesis_or_warn(tmp_path):
    # Only check files are collected: hypothesis' pytest plugin, which imports hypothesis for
    # every process's terminal summary, is left out (it is installed, for the unit tests).
    code = ("import json, sys, pytest; code = pytest.main(['--demo', '-q', '-p', 'no:cacheprovider', "
            f"'--cache-dir={tmp_path / 'cache'}', '--qa-results={tmp_path / 'r.json'}']); "
            "print(json.dumps([code, 'hypothesis' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    code, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 1, proc.stdout[-3000:]   # the demo's findings
    assert not loaded
    # Nor does it warn (the nightly plugin module was once imported before pytest could
    # rewrite its asserts).
    assert not re.search(r"\d+ warnings? in ", proc.stdout), proc.stdout[-3000:]

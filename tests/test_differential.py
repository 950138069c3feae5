"""The native engine against the real hasp (``hasp.wrapper.main``) on random derived inputs.

A bounded number of scenarios runs here; ``make fuzz`` runs hundreds
(``python -m tests.differential``). Mismatches it found, shrunk, are replayed
from ``tests/data/differential/``.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from .differential import REGRESSIONS, Scenario, check, kind_of, scenarios

pytestmark = pytest.mark.slow


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios(max_rows=3))
def test_native_equals_hasp_on_random_scenarios(real_dir, scenario):
    outcome = check(scenario, real_dir)
    assert not outcome.differences, "\n".join(outcome.differences[:10]) + "\n" + scenario.to_json()


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.json")), ids=lambda p: p.stem)
def test_shrunk_regressions(real_dir, path):
    outcome = check(Scenario.from_json(path.read_text()), real_dir)
    assert not outcome.differences, "\n".join(outcome.differences[:10])


def test_kinds_of_differences():
    assert kind_of("8016-G191B2B-STIS/E140M-visit03: kept: ['a'] vs []") == "kept"
    assert kind_of("13346-inputs-STIS/E230H-cross-program: flux: max relative difference 1e-08 > 0.0") == "flux"
    assert kind_of("input errors differ: [] vs ['x']") == "input-errors"
    assert kind_of("8016-G191B2B-STIS/E140M-program: N of ('a', 1, 'order 90', 1): 3 vs 4") == "row-N"

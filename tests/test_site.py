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

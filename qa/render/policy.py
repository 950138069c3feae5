"""Which products get figures: ``--figures=all|failing|none`` and the default rule.

Figures are most of a run's CPU time, and a reviewer reads those of the products
that lost something. The rule:

* no report is being written (neither ``--html`` nor ``--review``): ``none``;
* ``--figures`` given: that policy;
* otherwise ``all`` for runs of up to :data:`ALL_UP_TO` products, ``failing`` above.

``failing`` draws a product when one of its exposures was lost (flux filter or
keyword pre-filter), when it was remediated, when it could not be computed, or
when it changed since the last run (when the run compares with its history).
"""
from __future__ import annotations

POLICIES = ("all", "failing", "none")
ALL_UP_TO = 50
HELP = (f"which products get diagnostic figures: all, failing (a lost exposure, a remediation or a "
        f"change since the last run) or none; default all for up to {ALL_UP_TO} products, failing "
        f"above; none unless --html or --review writes a report")


def resolve_policy(option: str | None, products: int, writing_report: bool) -> str:
    """The run's figures policy.

    Parameters
    ----------
    option : str or None
        ``--figures`` as given (None: the default rule).
    products : int
        Number of products the run checks.
    writing_report : bool
        Whether ``--html`` or ``--review`` asked for a report.
    """
    if not writing_report:
        return "none"
    if option is not None:
        if option not in POLICIES:
            raise ValueError(f"--figures={option!r}: expected one of {', '.join(POLICIES)}")
        return option
    return "all" if products <= ALL_UP_TO else "failing"


def wants_figures(policy: str, *, lost: bool, remediated: bool, error: bool = False,
                  changed: bool = False) -> bool:
    """Whether a product gets figures under ``policy``.

    Parameters
    ----------
    policy : {"all", "failing", "none"}
        From :func:`resolve_policy`.
    lost : bool
        The product lost an exposure (flux-filter rejection or keyword pre-filter).
    remediated : bool
        A remediation ran (or was attempted) for it.
    error : bool
        It could not be computed completely.
    changed : bool
        It changed since the last run.
    """
    if policy == "all":
        return True
    if policy == "failing":
        return lost or remediated or error or changed
    return False

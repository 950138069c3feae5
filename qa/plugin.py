"""The hasp-qa pytest plugin (registered through the ``pytest11`` entry point)."""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hasp-qa", "QA of HASP co-adds")
    group.addoption("--demo", action="store_true", help="check the built-in demo programs")

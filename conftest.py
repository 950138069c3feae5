"""Root conftest, kept thin: the hasp-qa plugin and the loopback MAST server fixture
come from the package's pytest11 entry points (see pyproject.toml)."""

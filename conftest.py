"""Root conftest: kept thin. The plugin itself is registered through the pytest11 entry point."""

# The loopback MAST server fixture, for the project's tests and for users' own.
pytest_plugins = ["fixtures.mast_server"]

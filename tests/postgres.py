"""A real PostgreSQL server for tests: Debian's initdb + pg_ctl on a temporary directory.

The server listens on 127.0.0.1 on a free port (no Unix socket outside its own
directory), trusts local connections, and is stopped and deleted after the session.
initdb refuses to run as root, so under root the server runs as the ``postgres``
system user that Debian's package creates.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Start a throw-away PostgreSQL; yields the URL of its ``postgres`` database."""
    bindir = _bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries missing (/usr/lib/postgresql/*/bin/initdb): "
                    "install Debian's postgresql package (make test does)")
    base = Path(tempfile.mkdtemp(prefix="hasp-qa-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    data, port = base / "data", _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "hasp",
                                    "--auth=trust", "-E", "UTF8", "--no-sync"]), **run)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                                    "-l", str(base / "log"), "-w", "start"]), **run)
    try:
        yield f"postgresql://hasp@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                        "-w", "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the test server (one per test)."""
    import psycopg

    name = f"hqa_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"

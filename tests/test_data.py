"""The repository's real test data: complete, pinned by checksums, served read-only."""
from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

from .conftest import REAL_DATA, read_sums

REPO = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_compressed_files_match_their_checksums():
    sums = read_sums(REAL_DATA / "SHA256SUMS-compressed")
    assert sorted(sums) == sorted(p.name for p in REAL_DATA.glob("*.fits.gz"))
    assert {name: sha256(REAL_DATA / name) for name in sums} == sums


def test_every_file_is_listed_once_everywhere():
    plain = read_sums(REAL_DATA / "SHA256SUMS")
    compressed = read_sums(REAL_DATA / "SHA256SUMS-compressed")
    assert len(plain) == 5
    assert sorted(f"{name}.gz" for name in plain) == sorted(compressed)
    table = re.findall(r"^\| (\S+\.fits\.gz) \|", (REAL_DATA / "README.md").read_text(), re.M)
    assert sorted(table) == sorted(compressed)


def test_real_dir_serves_verified_read_only_copies(real_dir):
    sums = read_sums(REAL_DATA / "SHA256SUMS")
    assert sorted(p.name for p in real_dir.iterdir()) == sorted(sums)
    for name, digest in sums.items():
        path = real_dir / name
        assert sha256(path) == digest
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not real_dir.stat().st_mode & stat.S_IWUSR
    assert REAL_DATA not in real_dir.parents


def test_nothing_reads_outside_the_repository():
    # The data used to live in a sibling checkout; a fresh clone has nothing beside it.
    # (The patterns are spelled in pieces so that this file does not match itself.)
    patterns = ["/".join(("..", "shared")), "/".join(("shared", "data"))]
    sources = [REPO / "Makefile", *REPO.glob("qa/**/*.py"), *REPO.glob("tests/**/*.py")]
    offenders = [str(p.relative_to(REPO)) for p in sources
                 if any(pattern in p.read_text() for pattern in patterns)]
    assert offenders == []

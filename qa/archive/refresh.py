"""Drop cached copies of re-archived datasets so the next fetch downloads them again.

The archive announces a product's size but no checksum, and a recalibrated x1d file
usually keeps its size: ``fetch_program`` would reuse the old copy. Discovery knows
each re-archived dataset's ``sci_archive_date``; ``forget_rearchived`` deletes the cached
files of a dataset once per archive date, recorded in ``<program>/rearchived.json``.
A run interrupted after the deletion still downloads the file (it is missing), and a
restarted run does not delete the fresh copy again (the date is recorded).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from qa.archive.fetch import normalise_program, program_lock

RECORD_NAME = "rearchived.json"


def forget_rearchived(cache_dir: str | Path, program: str, archived: dict[str, str], *,
                      lock_timeout: float = 600.0) -> list[str]:
    """Delete cached files of datasets re-archived since they were fetched.

    Parameters
    ----------
    cache_dir : path-like
        The fetch cache root (``fetch_program``'s ``cache_dir``).
    program : str
        The proposal ID.
    archived : dict
        Rootname (lower case) -> its new ``sci_archive_date`` (ISO text).
    lock_timeout : float, optional
        Seconds to wait for the program's cache lock.

    Returns
    -------
    list of str
        The file names deleted.
    """
    directory = Path(cache_dir).resolve() / normalise_program(program)
    if not directory.is_dir():
        return []  # nothing cached: the fetch downloads everything anyway
    record_path = directory / RECORD_NAME
    deleted = []
    with program_lock(directory, program, lock_timeout):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        for root, when in sorted(archived.items()):
            if record.get(root) == when:
                continue
            for path in sorted(directory.glob(f"{root}_*.fits")):
                path.unlink()
                deleted.append(path.name)
            record[root] = when
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".download-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=2)
        os.replace(tmp, record_path)
    return deleted

"""The project's exception for unusable input."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A file cannot be used; the message names the file and the problem.

    Parameters
    ----------
    path : path-like
        The offending file.
    problem : str
        What is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

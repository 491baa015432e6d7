"""The one exception type for problems with the user's input: reported as one line, no traceback."""
from __future__ import annotations

import os


class CryoscapeError(Exception):
    """Bad input or an impossible request, with a message a user can act on."""


class InputFileError(CryoscapeError):
    """A file that cannot be used: the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

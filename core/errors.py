"""The exception type for problems with the user's input (reported as one line, no traceback),
and the warning type for input that is used but should be looked at."""
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


class CryoscapeWarning(UserWarning):
    """Input used as cryoDRGN would use it, but in a way the user should know about; the CLI
    prints it as one line."""


def warn(message: str) -> None:
    """Issue a CryoscapeWarning (shown once per message)."""
    import warnings

    warnings.warn(message, CryoscapeWarning, stacklevel=2)

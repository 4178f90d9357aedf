"""Exceptions that the command line turns into one-line messages with exit code 2."""

from __future__ import annotations

from pathlib import Path


class SubctError(Exception):
    """Base class of errors that are the user's to fix (bad input, bad configuration).

    The CLI prints ``error: <message>`` and exits with code 2, without a traceback
    unless ``--debug`` is given. Other exceptions are bugs and keep their traceback.
    """


class SubctInputError(SubctError):
    """An input file or folder is missing, unreadable or not what the step expects.

    The message always starts with the offending path so that, in a batch, the user
    knows at once which case failed.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class SubctConfigError(SubctError):
    """A configuration value (YAML key, CLI option) is invalid."""

"""The one place the CLI makes its consoles and turns outside text into plain text.

Paths, case names, library messages and hints can hold square brackets (``[/x]``,
``subct[atlas]``, ``[options]``) that Rich would read as markup: dropped, or a
``MarkupError`` that ends the batch. Every command prints such text through
:func:`plain` and makes its consoles with :func:`make_console` (no highlighting, no
wrapping of long paths).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape


def plain(text: object) -> str:
    """``text`` as literal console text: Rich markup characters escaped."""
    return escape(str(text))


class _Console(Console):
    """A Rich console that outlives its reader: when stdout's pipe closes (``subct
    segment ... | head``) it goes quiet instead of exiting, so a batch still finishes and
    writes volumes.csv and index.html (Rich's default ends the program)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (sys.stderr if self.stderr else sys.stdout).fileno())


def make_console(stderr: bool = False) -> Console:
    """A console for command output (stdout) or messages (``stderr=True``)."""
    return _Console(stderr=stderr, highlight=False, soft_wrap=True)

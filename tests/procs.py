"""Helpers for tests that start the lab's commands as child processes."""

from __future__ import annotations

import signal


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: the signal's default action,
    as a command typed in a terminal has. A background job of a non-interactive shell (a CI script's
    ``cmd &``) inherits SIGINT ignored, its children too, and Python then never raises
    KeyboardInterrupt: the Ctrl-C the test stands for would go unnoticed."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

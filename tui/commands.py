"""CLI subcommands contributed by tui/ (entry point tcplab.commands).

Each value of COMMANDS takes the tcplab subparsers object and adds its
subcommands; handlers return an exit status and report bad input with
lab.cli.fail.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

COMMANDS: dict[str, Callable[[Any], None]] = {}

"""The Graphs view and the highlights in a real terminal (tmux), at 80×24 and 160×48: path-failure's
stacked throughput with the link down and up on the axis, its reinjections marked on the data
sequence and named in the highlights, and the footer's Help and Quit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux to drive a real terminal")

ROOT = Path(__file__).resolve().parents[2]


def _tmux(session: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", session, *args], capture_output=True, text=True, check=False).stdout


def _wait_for(session: str, predicate, limit_s: float) -> str:
    deadline = time.monotonic() + limit_s
    screen = ""
    while time.monotonic() < deadline:
        screen = _tmux(session, "capture-pane", "-p", "-t", session)
        if predicate(screen):
            break
        time.sleep(0.3)
    return screen


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_path_failure_graphs_and_highlights_on_screen(size: tuple[int, int]) -> None:
    width, height = size
    session = f"tcplab-graphs-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} -m lab.cli tui path-failure --no-record --no-auto-pause --speed max"
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [
            "tmux",
            "-L",
            session,
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            str(width),
            "-y",
            str(height),
            "-c",
            str(ROOT),
            command,
        ],
        check=True,
        env=env,
    )
    try:
        # the transfer's delivery is the scenario's last moment: the run is over then
        screen = _wait_for(session, lambda s: "all 16 MiB delivered" in s, 240)
        assert "all 16 MiB delivered" in screen, screen
        _tmux(session, "send-keys", "-t", session, "7")
        whole = lambda s: "q Quit" in s.rstrip("\n").rsplit("\n", 1)[-1] and "via r2" in s and "◆" in s
        screen = _wait_for(session, whole, 20)
        lines = screen.rstrip("\n").split("\n")
        assert "via r1" in screen and "via r2" in screen, screen  # the stacked paths' legend
        assert sum("✗" in line and "└" in line for line in lines) == 2, screen  # link down on both time axes
        assert "◆" in "\n".join(lines[6:]), screen  # reinjections on the data sequence
        assert "█" in screen and "▓" in screen, screen  # path A and path B fills, told apart without colour
        footer = lines[-1]
        assert "? Help" in footer and "q Quit" in footer, screen
        assert len(lines) <= height and all(len(line) <= width for line in lines)
        if height < 30:
            assert "REINJECT" not in screen  # at 24 rows the pictures get the room (highlights: on Events)
        _tmux(session, "send-keys", "-t", session, "6")
        # the Events view: highlights (the pane shows its tail: the last ones) and the log
        events = lambda s: "DELIVERED" in s and "token=" in s and "retransmission timeout" in s
        screen = _wait_for(session, events, 20)
        assert "DELIVERED" in screen and "LINK-UP" in screen, screen
        # the failure's reinjection, moved from path A for its retransmission timeout (at 24 rows its
        # first line has scrolled above the tail; the transfer's end sends no copies of its own)
        assert "retransmission timeout" in screen and "after first sent" in screen, screen
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], check=False, capture_output=True)

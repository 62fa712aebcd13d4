"""The real app in a real terminal (tmux): with no key pressed, each key scenario stops at its
first key moment with the caption on screen, and the footer keeps Help and Quit, at 80×24 and 160×48."""

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
# scenario -> words of its first moment's caption (on its first line, so no wrap splits them)
FIRST_MOMENT = {
    "hotspot": "no answer over UDP 500",
    "iketcp-race": "starts with the 6 bytes",
    "path-failure": "link r1-h2 goes down",
    "two-paths": "opens a second subflow",
    "eno-basic": "both ends agree on",
    "eno-stripped": "removes the ENO option",
    "tcpcrypt-tamper": "both ends agree on",
    "mptcp-mpfail-fallback": "a DSS checksum fails at h2",
}


def _capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "-L", session, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
    ).stdout


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("name", sorted(FIRST_MOMENT))
def test_first_moment_on_screen_with_no_key_pressed(name: str, size: tuple[int, int]) -> None:
    width, height = size
    session = f"tcplab-test-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} -m lab.cli tui {name} --no-record"
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
        deadline = time.monotonic() + 90
        screen = ""
        while time.monotonic() < deadline:
            screen = _capture(session)
            last = screen.rstrip("\n").rsplit("\n", 1)[-1]
            if FIRST_MOMENT[name] in screen and "PAUSED" in screen and "q Quit" in last:
                break  # a whole frame: the terminal may be caught between two partial updates
            time.sleep(0.2)
        lines = screen.rstrip("\n").split("\n")
        assert FIRST_MOMENT[name] in screen, screen
        assert "PAUSED" in lines[0], screen  # paused at the moment, no key pressed
        assert "[RFC " in screen, screen  # the caption cites its section
        footer = lines[-1]
        assert "? Help" in footer and "q Quit" in footer, screen
        assert len(lines) <= height and all(len(line) <= width for line in lines)
    finally:
        # a server of its own (-L): no other tmux user on the machine can end it, and it ends here
        subprocess.run(["tmux", "-L", session, "kill-server"], check=False, capture_output=True)


def _start(session: str, args: str, size: tuple[int, int]) -> None:
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
            str(size[0]),
            "-y",
            str(size[1]),
            "-c",
            str(ROOT),
            f"{sys.executable} -m lab.cli tui {args}",
        ],
        check=True,
        env=env,
    )


def _wait_for(session: str, predicate, limit_s: float = 90.0) -> str:
    deadline = time.monotonic() + limit_s
    screen = ""
    while time.monotonic() < deadline:
        screen = _capture(session)
        if predicate(screen):
            break
        time.sleep(0.2)
    return screen


def test_eno_stripped_outcomes_read_as_expected_at_80x24() -> None:
    session = f"tcplab-test-{uuid.uuid4().hex[:8]}"
    _start(session, "eno-stripped --no-record --no-auto-pause --speed max", (80, 24))
    try:
        screen = _wait_for(session, lambda s: "finished" in s and s.count("as expected") >= 3)
        assert "finished" in screen.split("\n")[0], screen
        words = " ".join(screen.split())  # wrapped lines joined again
        assert words.count("— as expected") >= 3, screen  # opportunistic, mandatory-client, -server
        assert "unexpected" not in screen and "problems" not in screen and "✓" not in screen, screen
        assert "refused by the mandatory-ENO client" in words, screen
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], check=False, capture_output=True)


def test_slash_then_a_filter_fires_no_global_key_at_80x24() -> None:
    session = f"tcplab-test-{uuid.uuid4().hex[:8]}"
    _start(session, "two-paths --no-record --no-auto-pause --speed max", (80, 24))
    try:
        _wait_for(session, lambda s: "opens a second subflow" in s)  # the app is up, on its main view
        # '/' and the filter in one burst, as a paste or a fast typist delivers them
        subprocess.run(["tmux", "-L", session, "send-keys", "-t", session, "-l", "/flags=S"], check=True)
        # the filter typed and the Packets view showing the SYNs (the Subflows log names MP_CAPABLE too)
        screen = _wait_for(session, lambda s: " flags=S" in s and "MP_CAPABLE" in s and "Subflow  " not in s, limit_s=30)
        assert " flags=S" in screen and "MP_CAPABLE" in screen, screen  # the SYNs, MP_CAPABLE in view
        assert "Take a link down" not in screen, screen  # 'l' did not open the link picker
        # Escape leaves the filter (the footer's global keys come back), then 1 opens the Topology view;
        # sent in one go, a terminal reads Escape and 1 as Alt-1 (the filter got a '¡')
        subprocess.run(["tmux", "-L", session, "send-keys", "-t", session, "Escape"], check=True)
        screen = _wait_for(session, lambda s: "q Quit" in s.rstrip("\n").rsplit("\n", 1)[-1], limit_s=30)
        assert "q Quit" in screen.rstrip("\n").rsplit("\n", 1)[-1], screen
        subprocess.run(["tmux", "-L", session, "send-keys", "-t", session, "1"], check=True)
        # the Topology view (at 24 rows its map and path table; the Links table lies below them)
        screen = _wait_for(session, lambda s: "path A" in s and "path B" in s, limit_s=30)
        assert "path A" in screen, screen
        assert "DOWN" not in screen, screen  # no link was taken down by the typing
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], check=False, capture_output=True)


def test_hotspot_iketcp_timeline_on_screen_when_shown_after_the_run_at_80x24() -> None:
    """The IKETCP columns, filled while their view was hidden, are painted when it is first shown."""
    session = f"tcplab-test-{uuid.uuid4().hex[:8]}"
    _start(session, "hotspot --no-record --no-auto-pause --speed max", (80, 24))
    try:
        _wait_for(session, lambda s: "finished" in s.split("\n")[0])
        subprocess.run(["tmux", "-L", session, "send-keys", "-t", session, "4"], check=True)
        screen = _wait_for(session, lambda s: "TCP ike/1 closing" in s, limit_s=30)
        assert "h1 ike" in screen and "TCP ike/1 closing" in screen, screen  # the column's last lines
        assert "32.0 KiB each way — as expected" in " ".join(screen.split()), screen
    finally:
        subprocess.run(["tmux", "-L", session, "kill-server"], check=False, capture_output=True)

"""`tcplab serve` in a real browser: headless Chromium opens the page, the app starts in its
terminal, and a screenshot shows it drawing a running scenario."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .browser import chromium_binary, png_pixels, screenshot

pytest.importorskip("textual_serve")
pytest.importorskip("aiohttp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"tcplab serve exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("tcplab serve did not listen in time")


def _bright_fraction(rows: list[bytes], width: int, channels: int) -> float:
    bright = sum(1 for r in rows for x in range(0, len(r), channels) if max(r[x : x + 3]) > 150)
    return bright / (width * len(rows))


def test_serve_renders_a_running_scenario_in_headless_chromium(tmp_path: Path) -> None:
    if chromium_binary() is None:
        pytest.skip("no chromium (./run-tests installs Debian's chromium as root)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "serve",
            "two-paths",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--speed",
            "0.2",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the app processes it starts end with it
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        _wait_for_port(port, proc)
        shot = tmp_path / "serve.png"
        data = asyncio.run(screenshot(f"http://127.0.0.1:{port}/", shot, wait_s=7.0))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # the app process textual-serve started is in the same group; make sure it is gone
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    width, height, rows = png_pixels(data)
    channels = len(rows[0]) // width
    assert (width, height) == (1200, 800)
    # the splash page alone lights under 0.1 % of the pixels; the app's text fills far more,
    # starting with its status line at the top
    assert _bright_fraction(rows, width, channels) > 0.005
    assert _bright_fraction(rows[:40], width, channels) > 0.01

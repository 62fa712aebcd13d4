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


def _group_members(pgid: int) -> set[int]:
    """The live (non-zombie) processes in process group ``pgid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.add(int(entry.name))
    return found


def _bright_fraction(rows: list[bytes], width: int, channels: int) -> float:
    bright = sum(1 for r in rows for x in range(0, len(r), channels) if max(r[x : x + 3]) > 150)
    return bright / (width * len(rows))


def _app_drawn(data: bytes) -> bool:
    """The screenshot shows the app, not the splash page: text all over, the status line at the top."""
    width, _height, rows = png_pixels(data)
    channels = len(rows[0]) // width
    return _bright_fraction(rows, width, channels) > 0.005 and _bright_fraction(rows[:40], width, channels) > 0.01


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
        seen: set[int] = set()

        async def page_and_watch() -> bytes:
            async def watch() -> None:
                while True:  # the app process lives while the page is open (it may end with it)
                    seen.update(_group_members(proc.pid) - {proc.pid})
                    await asyncio.sleep(0.2)

            watcher = asyncio.create_task(watch())
            try:
                # until the app has drawn (bounded: a busy machine takes longer than an idle one)
                return await screenshot(f"http://127.0.0.1:{port}/", shot, wait_s=60.0, ready=_app_drawn)
            finally:
                watcher.cancel()

        data = asyncio.run(page_and_watch())
        assert seen, "the page did not start an app process"
    finally:
        proc.send_signal(signal.SIGKILL)  # the server alone, the hardest way: no chance to clean up
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 10.0
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _group_members(proc.pid)
        if left:  # never leave them behind, but fail: they should have ended with the server
            os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"app processes outlived tcplab serve: {sorted(left)}"
    width, height, rows = png_pixels(data)
    channels = len(rows[0]) // width
    assert (width, height) == (1200, 800)
    # the splash page alone lights under 0.1 % of the pixels; the app's text fills far more,
    # starting with its status line at the top
    assert _bright_fraction(rows, width, channels) > 0.005
    assert _bright_fraction(rows[:40], width, channels) > 0.01


def _half_open_clients(port: int) -> list[socket.socket]:
    """Clients that never finish: one opens TCP and says nothing, one stops in the middle of its
    request headers, two complete the websocket upgrade request and then never read a byte
    (the server starts an app for each, whose output then piles up)."""
    upgrade = (
        "GET /ws?width=80&height=24 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    clients[1].sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    for c in clients[2:]:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small: the app's output backs up soon
        c.sendall(upgrade)
    return clients


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_with_every_app_within_3_s_after_half_open_clients(tmp_path: Path, stop: signal.Signals) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "serve", "two-paths", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: what is left of it can be found
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    clients: list[socket.socket] = []
    try:
        _wait_for_port(port, proc)
        clients = _half_open_clients(port)
        deadline = time.monotonic() + 60.0
        while len(_group_members(proc.pid) - {proc.pid}) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_group_members(proc.pid) - {proc.pid}) >= 2, "the server started no app for the upgrade requests"
        # the apps are running once their output reaches the clients that never read it
        for c in clients[2:]:
            c.settimeout(60.0)
            assert c.recv(1, socket.MSG_PEEK) == b"H"  # "HTTP/1.1 101 Switching Protocols"
        started = time.monotonic()
        proc.send_signal(stop)
        try:
            proc.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            pass
        left = _group_members(proc.pid)
        while left and time.monotonic() < started + 3.0:
            time.sleep(0.05)
            left = _group_members(proc.pid)
        elapsed = time.monotonic() - started
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None or _group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)  # never leave them behind (the assertion below fails)
        proc.wait(10)
    assert not left, f"{sorted(left)} of tcplab serve still there {elapsed:.2f} s after {stop.name}"
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""

"""`tcplab serve`'s page: nothing is fetched from outside the machine, and --font-size sets the
terminal's font size (what makes it readable on a projector) unless the address asks otherwise."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("textual_serve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_page_uses_local_fonts_and_the_font_size_option() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "serve",
            "hotspot",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--font-size",
            "26",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        page = _get(f"http://127.0.0.1:{port}/")
        assert 'data-font-size="26"' in page
        assert 'data-font-size="30"' in _get(f"http://127.0.0.1:{port}/?fontsize=30")
        urls = re.findall(r'(?:href|src|url)\s*[=(]\s*"([^"]+)"', page)
        assert urls, page[:500]
        for url in urls:  # every resource the page names is served from here
            assert url.startswith((f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/", "/")) or "://" not in url, (
                url
            )
        assert "fonts.googleapis.com" not in page
        font = [u for u in urls if u.endswith(".ttf")][0]
        with urllib.request.urlopen(font if "://" in font else f"http://127.0.0.1:{port}{font}", timeout=10) as r:
            assert r.status == 200 and len(r.read()) > 10_000
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_font_size_out_of_range_is_refused_in_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", "serve", "--font-size", "200", "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "font size must be 6..64" in out.stderr and "Traceback" not in out.stderr

"""Headless Chromium driven over the DevTools protocol (aiohttp's WebSocket client): load a page,
wait in real time, take a screenshot; and a small PNG reader to check what the screenshot holds."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


async def screenshot(
    url: str,
    out: Path,
    *,
    wait_s: float = 6.0,
    width: int = 1200,
    height: int = 800,
    ready: Callable[[bytes], bool] | None = None,
) -> bytes:
    """Open ``url`` in headless Chromium and write a PNG of it to ``out``: after ``wait_s``
    seconds of wall time, or with ``ready``, as soon as a screenshot satisfies it (taken
    every half second; the last one after at most ``wait_s`` seconds).

    Raises RuntimeError when Chromium does not start or the page cannot be captured.
    """
    import aiohttp

    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("no chromium binary")
    profile = tempfile.mkdtemp(prefix="tcplab-chromium-")
    proc = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = await asyncio.wait_for(asyncio.to_thread(_devtools_port, proc), 30)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{endpoint}/json/list") as resp:
                targets = await resp.json(content_type=None)
            page = next(t for t in targets if t.get("type") == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 << 20) as ws:
                counter = 0

                async def call(method: str, **params: object) -> dict:
                    nonlocal counter
                    counter += 1
                    await ws.send_str(json.dumps({"id": counter, "method": method, "params": params}))
                    while True:
                        msg = json.loads((await ws.receive()).data)
                        if msg.get("id") == counter:
                            if "error" in msg:
                                raise RuntimeError(f"{method}: {msg['error']}")
                            return msg.get("result", {})

                await call("Page.enable")
                await call(
                    "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
                )
                await call("Page.navigate", url=url)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + wait_s
                while True:
                    await asyncio.sleep(0.5 if ready is not None else wait_s)
                    shot = await call("Page.captureScreenshot", format="png")
                    data = base64.b64decode(shot["data"])
                    if ready is None or ready(data) or loop.time() >= deadline:
                        break
        out.write_bytes(data)
        return data
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(proc: subprocess.Popen) -> int:
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if match:
            return int(match.group(1))
    raise RuntimeError("chromium exited before opening its DevTools port")


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack("!I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack("!IIBB", body[:10])
            if depth != 8 or colour not in (2, 6) or body[12] != 0:
                raise ValueError("only 8-bit RGB/RGBA non-interlaced PNGs")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    i = 0
    for _ in range(height):
        f = raw[i]
        line = bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if f == 1:
                line[x] = (line[x] + a) & 0xFF
            elif f == 2:
                line[x] = (line[x] + b) & 0xFF
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows

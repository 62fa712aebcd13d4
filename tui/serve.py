"""The server behind ``tcplab serve``: textual-serve's, made to stop promptly.

textual-serve ends on Ctrl+C or SIGTERM only once every page has gone: it asks
each app process to quit over its pipe and waits for it, and aiohttp waits up
to a minute for open websockets. A client that opened the websocket and then
never read (a half-open browser tab, a stalled proxy) leaves its app blocked
on a full pipe, deaf to the request, and the server waits for it for ever.

:class:`LabServer` stops on the first signal within ``STOP_S`` seconds, pages
open or not: it sends SIGTERM to every process it started (its descendants),
SIGKILL to those still there after ``TERM_GRACE_S``, then gives aiohttp a short
while to close the connections; a watchdog thread ends the server outright
should any of that hang. A second Ctrl+C ends it at once (after the SIGKILLs).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from textual_serve.server import Server

STOP_S = 3.0  # the promise: the server and every app process it started are gone within this
TERM_GRACE_S = 0.5  # how long an app gets to quit on SIGTERM before SIGKILL
SHUTDOWN_TIMEOUT_S = 0.5  # what aiohttp gives open connections once the apps are gone


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (children, their children...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if fields and fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class LabServer(Server):
    """textual-serve's Server that stops within ``STOP_S`` on SIGINT or SIGTERM, with its apps."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._stopping: float | None = None  # monotonic time of the first stop signal
        self._stop_requested: asyncio.Event | None = None
        self.stopped_by: str | None = None

    def serve(self, debug: bool = False) -> None:
        """Serve until SIGINT or SIGTERM. Raises OSError when the address cannot be bound."""
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            self._end_apps(signal.SIGKILL)  # whatever way the server ends, no app outlives it
            pending = asyncio.all_tasks(loop)  # handlers of connections that never finished
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=SHUTDOWN_TIMEOUT_S))
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop_requested = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop_signal, signum)
        runner = web.AppRunner(await self._make_app(), handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            await self._stop_requested.wait()
            # the apps first: once they are gone, every page's handler has nothing left to wait for
            deadline = time.monotonic() + TERM_GRACE_S
            while descendants(os.getpid()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self._end_apps(signal.SIGKILL)
        finally:
            try:
                await asyncio.wait_for(runner.cleanup(), timeout=SHUTDOWN_TIMEOUT_S)
            except (TimeoutError, asyncio.TimeoutError):
                pass  # connections that would not close: the process ends with them open

    def _stop_signal(self, signum: int) -> None:
        if self._stopping is not None:  # a second Ctrl+C: at once
            self._end_apps(signal.SIGKILL)
            os._exit(130)
        self._stopping = time.monotonic()
        self.stopped_by = signal.Signals(signum).name
        print(f"tcplab: {self.stopped_by}: stopping the server and its apps", file=sys.stderr)
        threading.Thread(target=self._watchdog, name="serve-watchdog", daemon=True).start()
        self._end_apps(signal.SIGTERM)
        if self._stop_requested is not None:
            self._stop_requested.set()

    def request_exit(self) -> None:
        self._stop_signal(signal.SIGTERM)

    def _watchdog(self) -> None:
        """Should the orderly stop hang (a handler that will not end), end the server anyway."""
        assert self._stopping is not None
        time.sleep(max(0.0, self._stopping + STOP_S - 0.4 - time.monotonic()))
        self._end_apps(signal.SIGKILL)
        print("tcplab: the server did not stop in time; ended it", file=sys.stderr)
        os._exit(130)

    def _end_apps(self, signum: int) -> None:
        _signal_all(descendants(os.getpid()), signum)

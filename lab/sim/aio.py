"""asyncio for live runs: the simulator paced to the wall clock, applications as coroutines.

::

    async def main():
        net = SimNetwork.build(spec, seed=1)
        async with LiveNetwork(net, speed=1.0) as live:
            server = await live.start_server("h2", 7, echo)
            stream = await live.open_connection("h1", "10.0.2.2", 7)
            stream.write(b"hello")
            assert await stream.readexactly(5) == b"hello"
            await stream.close()

The simulator advances in the same event loop (``SimNetwork.run_paced``), so
coroutines run between simulation steps and never race the endpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from lab.errors import LocalProtocolError
from lab.sim.network import SimNetwork
from lab.stack.host import Stream, StreamHandler


class AsyncStream(StreamHandler):
    """A TCP connection with awaitable reads (the asyncio StreamReader/Writer shape)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None
        self.stream: Stream | None = None
        self.reset = False

    # StreamHandler callbacks (called from the simulator inside the loop)
    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        if not self._connected.done():
            self._connected.set_result(None)

    def data_received(self, stream: Stream, data: bytes) -> None:
        self._buffer += data
        self._wake()

    def eof_received(self, stream: Stream) -> None:
        self._eof = True
        self._wake()

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        self.reset = reset
        self._eof = True
        if not self._connected.done():
            self._connected.set_exception(ConnectionRefusedError(reason))
        if not self._closed.done():
            self._closed.set_result(reason)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # the application side
    async def wait_connected(self) -> None:
        """Raises ConnectionRefusedError when the handshake fails."""
        await self._connected

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered with -1); b"" at end of stream."""
        while not self._buffer and not self._eof:
            await self._wait()
        if n < 0 or n >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        """Raises asyncio.IncompleteReadError when the stream ends first."""
        while len(self._buffer) < n:
            if self._eof:
                raise asyncio.IncompleteReadError(bytes(self._buffer), n)
            await self._wait()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def write(self, data: bytes) -> None:
        """Raises LocalProtocolError before the connection is up or after close()."""
        if self.stream is None:
            raise LocalProtocolError("not connected yet")
        self.stream.send(data)

    async def close(self) -> str:
        """Close our direction and wait until the peer has closed its own (or the
        connection is gone); returns "closed" or the reason it ended. TIME-WAIT
        goes on in the background, as with a kernel socket."""
        if self.stream is not None and not self.stream.closed:
            self.stream.close()
        while not self._eof:
            await self._wait()
        return self._closed.result() if self._closed.done() else "closed"


class LiveNetwork:
    """Runs a SimNetwork paced to the wall clock inside the running event loop."""

    def __init__(self, net: SimNetwork, *, speed: float = 1.0) -> None:
        self.net = net
        self.speed = speed
        self._task: asyncio.Task | None = None
        self._stop = False

    async def __aenter__(self) -> LiveNetwork:
        self._task = asyncio.get_running_loop().create_task(self._drive())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop = True
        if self._task is not None:
            await self._task

    async def _drive(self, tick_s: float = 0.01) -> None:
        await self.net.run_paced(speed=self.speed, stop=lambda: self._stop, tick_s=tick_s, keep_running=True)

    async def open_connection(self, host: str, remote_addr: str, port: int) -> AsyncStream:
        handler = AsyncStream()
        self.net.host(host).connect(remote_addr, port, handler)
        await handler.wait_connected()
        return handler

    async def start_server(
        self, host: str, port: int, client_connected: Callable[[AsyncStream], Awaitable[None]]
    ) -> None:
        """Accept connections on ``port``; each runs ``client_connected(stream)`` as a task."""
        loop = asyncio.get_running_loop()

        def factory() -> StreamHandler:
            handler = AsyncStream()

            async def serve() -> None:
                await handler.wait_connected()
                await client_connected(handler)

            loop.create_task(serve())
            return handler

        self.net.host(host).listen(port, factory)

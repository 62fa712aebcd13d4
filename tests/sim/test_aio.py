"""The asyncio application API over the simulator paced to the wall clock."""

from __future__ import annotations

import asyncio
import time

from lab.sim import SimNetwork
from lab.sim.aio import AsyncStream, LiveNetwork
from lab.topology import build_topology
from topologies import TOPOLOGIES


def _net() -> SimNetwork:
    spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=10, bw_mbps=50)
    return SimNetwork.build(spec, seed=4)


def test_echo_over_a_live_network_paced_to_the_clock() -> None:
    async def main() -> tuple[bytes, float, float]:
        net = _net()

        async def echo(stream: AsyncStream) -> None:
            while data := await stream.read():
                stream.write(data)
            await stream.close()

        async with LiveNetwork(net, speed=1.0) as live:
            await live.start_server("h2", 7, echo)
            wall0, virt0 = time.monotonic(), net.now
            stream = await live.open_connection("h1", "10.0.2.2", 7)
            payload = bytes(range(256)) * 40
            stream.write(payload)
            got = await stream.readexactly(len(payload))
            reason = await stream.close()
            assert reason == "closed" or "closed" in reason
            return got, time.monotonic() - wall0, net.now - virt0

    got, wall, virtual = asyncio.run(main())
    assert got == bytes(range(256)) * 40
    # handshake plus echo take a few 20 ms round trips; paced runs track the wall clock
    assert virtual > 0.04
    assert abs(wall - virtual) < 0.5


def test_connection_refused_raises() -> None:
    async def main() -> None:
        async with LiveNetwork(_net(), speed=50.0) as live:
            try:
                await live.open_connection("h1", "10.0.2.2", 9)
            except ConnectionRefusedError as exc:
                assert "refused" in str(exc)
            else:
                raise AssertionError("connect to a closed port succeeded")

    asyncio.run(main())

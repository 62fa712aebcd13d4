"""Running a HostStack on real packets in real time: a TUN interface and asyncio.

The kernel routes packets for the stack's address into a TUN device; the stack
reads them there and writes its own packets back, so the user-space TCP meets
the kernel's TCP (or anything else reachable) on real IP packets. Linux only;
opening a TUN device needs CAP_NET_ADMIN.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import time
from collections.abc import Callable

from lab.stack.host import HostStack
from lab.tcp import TcpConfig
from lab.trace import NULL_TRACER, Tracer

TUNSETIFF = 0x400454CA  # linux/if_tun.h
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535


class TunDevice:
    """An IP-level TUN device (no packet information header)."""

    def __init__(self, name: str) -> None:
        """Raises OSError (EPERM without CAP_NET_ADMIN, ENOENT without /dev/net/tun)."""
        if not name or len(name) > 15:
            raise ValueError(f"interface name must be 1..15 characters, got {name!r}")
        self.name = name
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(self.fd)
            raise

    def read(self) -> bytes | None:
        try:
            return os.read(self.fd, MAX_PACKET)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> None:
        os.write(self.fd, packet)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AsyncioScheduler:
    """The HostStack Scheduler on an asyncio loop; ``now`` is monotonic seconds since start."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._origin = time.monotonic()
        self._loop_origin = loop.time()

    @property
    def now(self) -> float:
        return time.monotonic() - self._origin

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        self._loop.call_at(self._loop_origin + when, callback)


class TunHost:
    """A HostStack whose interfaces are TUN devices, driven by the running asyncio loop.

    ``address`` is the stack's own address on ``tun`` (the kernel side of the
    TUN device has another address on the same subnet); ``more`` adds further
    (device, address) pairs, so a multihomed stack (MPTCP) has one TUN device
    per path.
    """

    def __init__(
        self,
        tun: TunDevice,
        address: str,
        *,
        more: tuple[tuple[TunDevice, str], ...] = (),
        tracer: Tracer = NULL_TRACER,
        tcp_config: TcpConfig | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.tun = tun
        self.tuns = {tun.name: tun, **{t.name: t for t, _ in more}}
        self.scheduler = AsyncioScheduler(loop)
        self.stack = HostStack(
            "tun",
            interfaces={tun.name: [address], **{t.name: [a] for t, a in more}},
            transmit=lambda ifname, packet: self.tuns[ifname].write(packet),
            scheduler=self.scheduler,
            tracer=tracer,
            tcp_config=tcp_config,
        )
        for t in self.tuns.values():
            loop.add_reader(t.fd, self._readable, t)
        self._loop = loop

    def _readable(self, tun: TunDevice) -> None:
        for _ in range(256):
            packet = tun.read()
            if packet is None:
                return
            self.stack.input_packet(packet)

    def close(self) -> None:
        for t in self.tuns.values():
            self._loop.remove_reader(t.fd)
            t.close()

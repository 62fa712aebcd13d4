"""Kernel-socket bulk transfers between Mininet hosts (tests, baselines).

Run inside a host with ``node.popen([sys.executable, "-m", "lab.mininet.apps", ...])``:

* ``receive --listen ADDR --port P`` prints ``{"event": "listening", ...}``
  once it listens, then accepts one connection, reads to EOF and prints
  ``{"event": "received", "bytes": ..., "sha256": ..., "elapsed_s": ...}``
  (``elapsed_s`` runs from accept to EOF).
* ``send --connect ADDR --port P --bytes N --seed S [--bind ADDR]`` sends the
  N bytes of ``random.Random(S).randbytes`` (see :func:`payload_chunks`),
  closes its sending side, waits for the receiver to close and prints
  ``{"event": "sent", "bytes": ..., "sha256": ..., "elapsed_s": ...}``.

Every line is one JSON object; a failure prints ``{"event": "error", ...}``
and exits 1. Both sides give up after ``--timeout`` seconds. ``--mptcp``
makes either side use a Linux MPTCP socket (``IPPROTO_MPTCP``, 262).

:class:`KernelStack` is the same idea inside an endpoint process
(:mod:`lab.mininet.endpoint`): the kernel's TCP or MPTCP behind the
application API of :class:`lab.stack.host.HostStack` (``listen``/``connect`` with a
:class:`lab.stack.host.StreamHandler`), so a scenario's workload runs unchanged on
either stack (``Transfer(src_stack="kernel")``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import ipaddress
import json
import random
import select
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from lab.errors import ConfigError, LocalProtocolError
from lab.stack.host import WRITE_LOW_WATER, StreamHandler
from lab.tcp.addresses import FourTuple
from lab.trace import NULL_TRACER, Tracer

CHUNK_BYTES = 1 << 16  # a multiple of 4, so chunked randbytes equal one randbytes call
IPPROTO_MPTCP = 262  # Linux, include/uapi/linux/in.h


def payload_chunks(size_bytes: int, seed: int, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The first ``size_bytes`` of ``random.Random(seed).randbytes(size_bytes)``, in chunks."""
    rng = random.Random(seed)
    left = size_bytes
    while left > 0:
        n = min(chunk_bytes, left)
        yield rng.randbytes(n)
        left -= n


def payload_sha256(size_bytes: int, seed: int) -> str:
    """SHA-256 (hex) of the payload a sender with ``size_bytes`` and ``seed`` sends."""
    digest = hashlib.sha256()
    for chunk in payload_chunks(size_bytes, seed):
        digest.update(chunk)
    return digest.hexdigest()


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _proto(mptcp: bool) -> int:
    return IPPROTO_MPTCP if mptcp else 0


def receive(listen: str, port: int, *, timeout_s: float, mptcp: bool = False) -> dict[str, Any]:
    """Accept one connection on ``listen``:``port`` and read it to EOF. Raises OSError."""
    with socket.socket(_family(listen), socket.SOCK_STREAM, _proto(mptcp)) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((listen, port))
        server.listen(1)
        server.settimeout(timeout_s)
        _emit({"event": "listening", "address": listen, "port": server.getsockname()[1]})
        conn, peer = server.accept()
    deadline = time.monotonic() + timeout_s
    with conn:
        started = time.monotonic()
        digest = hashlib.sha256()
        received = 0
        while True:
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            data = conn.recv(1 << 18)
            if not data:
                break
            digest.update(data)
            received += len(data)
        elapsed = time.monotonic() - started
        local = conn.getsockname()
    return {
        "event": "received",
        "bytes": received,
        "sha256": digest.hexdigest(),
        "elapsed_s": elapsed,
        "local": [local[0], local[1]],
        "peer": [peer[0], peer[1]],
    }


def send(
    connect: str,
    port: int,
    *,
    size_bytes: int,
    seed: int,
    bind: str | None = None,
    timeout_s: float,
    mptcp: bool = False,
) -> dict[str, Any]:
    """Connect (from ``bind`` if given), send the payload, wait for the peer to close. Raises OSError."""
    deadline = time.monotonic() + timeout_s
    with socket.socket(_family(connect), socket.SOCK_STREAM, _proto(mptcp)) as sock:
        if bind is not None:
            sock.bind((bind, 0))
        sock.settimeout(timeout_s)
        started = time.monotonic()
        sock.connect((connect, port))
        digest = hashlib.sha256()
        for chunk in payload_chunks(size_bytes, seed):
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(chunk)
            digest.update(chunk)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        while sock.recv(4096):
            pass
        elapsed = time.monotonic() - started
        local = sock.getsockname()
    return {
        "event": "sent",
        "bytes": size_bytes,
        "sha256": digest.hexdigest(),
        "elapsed_s": elapsed,
        "local": [local[0], local[1]],
        "peer": [connect, port],
    }


# --- the kernel's TCP/MPTCP behind the HostStack application API


class Poller(Protocol):
    """What a KernelStack needs from its event loop (``lab.mininet.endpoint.EventLoop``)."""

    @property
    def now(self) -> float: ...

    def add_reader(self, fd: int, callback: Callable[[int], None], events: int = select.EPOLLIN) -> None: ...

    def modify(self, fd: int, events: int) -> None: ...

    def remove(self, fd: int) -> None: ...


_TCP_INFO_FIELDS = {  # byte offsets in struct tcp_info (include/uapi/linux/tcp.h)
    "rto_us": 8,
    "snd_mss": 16,
    "rtt_us": 68,
    "rttvar_us": 72,
    "snd_ssthresh": 76,
    "snd_cwnd": 80,
    "total_retrans": 100,
}


def tcp_info(sock: socket.socket) -> dict[str, int]:
    """A few fields of the kernel's TCP_INFO for ``sock`` (empty when the kernel gives none)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return {}
    if len(raw) < 104:
        return {}
    return {name: int.from_bytes(raw[off : off + 4], "little") for name, off in _TCP_INFO_FIELDS.items()}


SOL_MPTCP = 284  # Linux, include/linux/socket.h
MPTCP_INFO = 1  # include/uapi/linux/mptcp.h
TCP_IS_MPTCP = 43  # include/uapi/linux/tcp.h
MPTCP_INFO_FLAG_FALLBACK = 0x1
MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED = 0x2


def mptcp_info(sock: socket.socket) -> dict[str, Any]:
    """What the kernel tells of an MPTCP socket (``struct mptcp_info``): ``is_mptcp``
    (TCP_IS_MPTCP: 0 after a fallback), ``subflows`` (MP_JOIN subflows),
    ``add_addr_signal``/``add_addr_accepted``, ``token`` (the kernel's own token),
    ``csum_enabled``, ``fallback`` and ``remote_key_received``. Empty for a closed
    socket or a kernel without MPTCP; never raises."""
    out: dict[str, Any] = {}
    try:
        out["is_mptcp"] = sock.getsockopt(socket.IPPROTO_TCP, TCP_IS_MPTCP)
        raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
    except OSError:
        return out
    if len(raw) >= 43:
        flags = int.from_bytes(raw[8:12], sys.byteorder)
        out |= {
            "subflows": raw[0],
            "add_addr_signal": raw[1],
            "add_addr_accepted": raw[2],
            "token": int.from_bytes(raw[12:16], sys.byteorder),
            "csum_enabled": raw[42],
            "fallback": bool(flags & MPTCP_INFO_FLAG_FALLBACK),
            "remote_key_received": bool(flags & MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED),
        }
    return out


def mptcp_counters() -> dict[str, int]:
    """This network namespace's ``MPTcpExt`` counters from /proc/net/netstat (empty without MPTCP)."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("MPTcpExt:"):
            return {k: int(v) for k, v in zip(names.split()[1:], values.split()[1:], strict=False) if int(v)}
    return {}


def configure_mptcp(
    interfaces: list[tuple[str, str]],
    *,
    flags: str,
    checksum: bool = False,
    subflows: int = 4,
    add_addr_accepted: int = 4,
    timeout_s: float = 10.0,
) -> None:
    """Configure Linux MPTCP in the current network namespace: ``net.mptcp.enabled``,
    ``net.mptcp.checksum_enabled``, ``ip mptcp limits`` and one ``ip mptcp endpoint``
    with ``flags`` (``subflow``, ``signal``) per address after the first of
    ``interfaces`` ((ifname, address) pairs); ``subflow`` endpoints are not bound to
    their device. Raises ConfigError when a command fails."""
    commands = [
        ["sysctl", "-q", "-w", "net.mptcp.enabled=1", f"net.mptcp.checksum_enabled={int(checksum)}"],
        ["ip", "mptcp", "limits", "set", "subflow", str(subflows), "add_addr_accepted", str(add_addr_accepted)],
        ["ip", "mptcp", "endpoint", "flush"],
    ]
    for ifname, address in interfaces[1:]:
        # a subflow bound to its device (``dev``) refuses a SYN/ACK that comes back over the
        # other path (two-paths routes the reply to the peer's first address that way)
        device = [] if "subflow" in flags.split() else ["dev", ifname]
        commands.append(["ip", "mptcp", "endpoint", "add", address, *device, *flags.split()])
    for argv in commands:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"MPTCP setup: {' '.join(argv)}: {exc}") from None
        if proc.returncode != 0:
            raise ConfigError(f"MPTCP setup: {' '.join(argv)} failed: {proc.stderr.strip()[-200:]}")


def _plain(address: str) -> str:
    return address[7:] if address.startswith("::ffff:") and "." in address else address


class KernelStream:
    """A kernel socket as a :class:`lab.stack.host.Stream`: ``send``, ``close``, ``abort``,
    ``send_buffered``, ``host``, ``addr``; its handler gets the same callbacks."""

    def kernel_facts(self) -> dict[str, Any]:
        """What the kernel tells of this socket's Multipath TCP (see :func:`mptcp_info`); never raises."""
        return mptcp_info(self.sock)

    def __init__(
        self, stack: KernelStack, sock: socket.socket, handler: StreamHandler, addr: FourTuple, *, connecting: bool
    ) -> None:
        self.host = stack
        self.sock = sock
        self.fd = sock.fileno()
        self.handler = handler
        self.addr = addr
        self.closed = False
        self.wants_writable = type(handler).writable is not StreamHandler.writable
        self._out: deque[memoryview] = deque()
        self._buffered = 0
        self._connecting = connecting
        self._closing = False
        self._shut_wr = False
        self._eof = False
        self._reading = True
        self._events = 0
        stack.loop.add_reader(self.fd, self._on_event, self._wanted())
        self._events = self._wanted()

    @property
    def send_buffered(self) -> int:
        """Bytes handed to ``send`` that the kernel has not taken yet."""
        return self._buffered

    def send(self, data: bytes | memoryview) -> None:
        """Raises LocalProtocolError after close() or once the connection ended."""
        if self._closing or self.closed:
            raise LocalProtocolError("cannot send after close()")
        if not len(data):
            return
        view = data if isinstance(data, memoryview) else memoryview(data)
        self._out.append(view)
        self._buffered += len(view)
        if not self._connecting:
            self._flush()

    def close(self) -> None:
        """Close the sending direction once everything queued is sent."""
        if self.closed or self._closing:
            return
        self._closing = True
        if not self._connecting:
            self._flush()

    def abort(self, reason: str = "aborted by application") -> None:
        """Reset the connection (SO_LINGER 0)."""
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self._finish(reason, reset=True)

    def pause_reading(self) -> None:
        self._reading = False
        self._update_events()

    def resume_reading(self) -> None:
        self._reading = True
        self._update_events()

    # --- internals

    def _wanted(self) -> int:
        events = 0
        if self._reading and not self._eof:
            events |= select.EPOLLIN
        if self._connecting or self._buffered or (self._closing and not self._shut_wr):
            events |= select.EPOLLOUT
        return events

    def _update_events(self) -> None:
        if self.closed:
            return
        wanted = self._wanted()
        if wanted != self._events:
            self._events = wanted
            self.host.loop.modify(self.fd, wanted)

    def _on_event(self, events: int) -> None:
        if self.closed:
            return
        if self._connecting:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(OSError(err, errno.errorcode.get(err, str(err))))
                return
            if not events & (select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP):
                return
            self._connecting = False
            local = self.sock.getsockname()
            self.addr = FourTuple(_plain(local[0]), local[1], self.addr.remote_addr, self.addr.remote_port)
            self.host._established(self)
            self.handler.connection_made(self)
            if self.closed:
                return
            self._flush()
            return
        if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP) and self._reading and not self._eof:
            self._read()
        if self.closed:
            return
        if events & (select.EPOLLOUT | select.EPOLLERR):
            self._flush()
        self._update_events()

    def _read(self) -> None:
        recv = self.sock.recv
        for _ in range(16):
            try:
                data = recv(1 << 18)
            except BlockingIOError:
                return
            except OSError as exc:
                self._fail(exc)
                return
            if not data:
                self._eof = True
                self.handler.eof_received(self)
                self._maybe_done()
                return
            self.handler.data_received(self, data)
            if self.closed or not self._reading:
                return

    def _flush(self) -> None:
        out = self._out
        send = self.sock.send
        while out:
            view = out[0]
            try:
                n = send(view)
            except BlockingIOError:
                break
            except OSError as exc:
                self._fail(exc)
                return
            self._buffered -= n
            if n == len(view):
                out.popleft()
            else:
                out[0] = view[n:]
                break
        if not out and self._closing and not self._shut_wr:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                self._fail(exc)
                return
            self._shut_wr = True
            self._maybe_done()
            if self.closed:
                return
        if self.wants_writable and not self._closing and self._buffered < WRITE_LOW_WATER:
            self.handler.writable(self)
            if self.closed:
                return
        self._update_events()

    def _maybe_done(self) -> None:
        if self._eof and self._shut_wr and not self.closed:
            self._finish("closed", reset=False)

    def _fail(self, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        reset = exc.errno in (errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE)
        self._finish(reason, reset=reset)

    def _finish(self, reason: str, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.host._ended(self, reason, reset)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.host.loop.remove(self.fd)
        self.sock.close()
        self.handler.connection_lost(self, reason, reset)


class KernelStack:
    """The kernel's TCP (or Linux MPTCP with ``mptcp=True``) with HostStack's application API.

    ``interfaces`` are the host's (ifname, IPv4 address) pairs, first the one
    that unbound sockets leave by. With MPTCP, the namespace is configured on
    first use (:func:`configure_mptcp`): a listener announces the other
    addresses (``signal``), a client opens subflows from them (``subflow``).
    Records go to ``tracer`` (layer ``kernel``: ``state_updated`` with ``conn``,
    ``stack``, ``event`` established/closed and the socket's TCP_INFO figures).
    """

    def __init__(
        self,
        name: str,
        *,
        loop: Poller,
        interfaces: list[tuple[str, str]],
        tracer: Tracer = NULL_TRACER,
        mptcp: bool = False,
        mptcp_checksum: bool = False,
    ) -> None:
        self.name = name
        self.loop = loop
        self.tracer = tracer
        self.interfaces = interfaces
        self.addresses = [addr for _ifname, addr in interfaces]
        self.mptcp = mptcp
        self.mptcp_checksum = mptcp_checksum
        self.stack_name = "kernel-mptcp" if mptcp else "kernel"
        self.listen_ports: list[int] = []
        self._listeners: list[socket.socket] = []
        self._streams: list[KernelStream] = []
        self._mptcp_flags: set[str] = set()

    @property
    def now(self) -> float:
        return self.loop.now

    def _socket(self, family: int) -> socket.socket:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM, _proto(self.mptcp))
        except OSError as exc:
            what = "an MPTCP socket (is CONFIG_MPTCP set and net.mptcp.enabled=1?)" if self.mptcp else "a socket"
            raise ConfigError(f"{self.name}: cannot open {what}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        return sock

    def _configure(self, flag: str) -> None:
        if not self.mptcp or flag in self._mptcp_flags:
            return
        self._mptcp_flags.add(flag)
        configure_mptcp(self.interfaces, flags=" ".join(sorted(self._mptcp_flags)), checksum=self.mptcp_checksum)

    def listen(self, port: int, handler_factory: Callable[[], StreamHandler], **_options: Any) -> None:
        """Accept kernel connections on ``port`` (IPv4 and IPv6, any local address).
        Raises ConfigError when the port is taken or out of range."""
        if not 0 < port < 65536:
            raise ConfigError(f"port must be 1..65535, got {port}")
        self._configure("signal")
        for family, any_addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            sock = self._socket(family)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((any_addr, port))
                sock.listen(64)
            except OSError as exc:
                sock.close()
                raise ConfigError(f"{self.name}: cannot listen on port {port}: {exc.strerror or exc}") from None
            self._listeners.append(sock)
            self.loop.add_reader(sock.fileno(), lambda _ev, s=sock, f=handler_factory: self._accept(s, f))
        self.listen_ports.append(port)

    def _accept(self, server: socket.socket, factory: Callable[[], StreamHandler]) -> None:
        for _ in range(64):
            try:
                sock, peer = server.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self.tracer.record(self.now, "kernel", "error", {"reason": f"accept: {exc.strerror or exc}"})
                return
            sock.setblocking(False)
            local = sock.getsockname()
            addr = FourTuple(_plain(local[0]), local[1], _plain(peer[0]), peer[1])
            stream = KernelStream(self, sock, factory(), addr, connecting=False)
            self._established(stream)
            stream.handler.connection_made(stream)
            if not stream.closed:
                stream._update_events()

    def connect(
        self,
        remote_addr: str,
        remote_port: int,
        handler: StreamHandler,
        *,
        local_addr: str | None = None,
        local_port: int | None = None,
        **_options: Any,
    ) -> KernelStream:
        """Start a kernel connection; ``handler.connection_made`` follows once it is up.
        Raises ConfigError for an address this host cannot use."""
        self._configure("subflow")
        family = _family(remote_addr)
        sock = self._socket(family)
        try:
            if local_addr is not None or local_port is not None:
                sock.bind((local_addr or ("::" if family == socket.AF_INET6 else "0.0.0.0"), local_port or 0))
            err = sock.connect_ex((remote_addr, remote_port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"{self.name}: cannot connect to {remote_addr}:{remote_port}: {exc}") from None
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise ConfigError(f"{self.name}: connect to {remote_addr}:{remote_port}: {errno.errorcode.get(err, err)}")
        addr = FourTuple(local_addr or "", local_port or 0, remote_addr, remote_port)
        return KernelStream(self, sock, handler, addr, connecting=True)

    def connections(self) -> list[KernelStream]:
        return list(self._streams)

    def _established(self, stream: KernelStream) -> None:
        self._streams.append(stream)
        if self.tracer.enabled:
            data = {"conn": str(stream.addr), "stack": self.stack_name, "event": "established"}
            self.tracer.record(self.now, "kernel", "state_updated", data)

    def _ended(self, stream: KernelStream, reason: str, reset: bool) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        if self.tracer.enabled:
            data = {"conn": str(stream.addr), "stack": self.stack_name, "event": "closed", "reason": reason}
            data |= {"reset": reset, **tcp_info(stream.sock)}
            self.tracer.record(self.now, "kernel", "state_updated", data)

    def close(self) -> None:
        """Close every listener and abort every connection still open."""
        for stream in list(self._streams):
            stream.abort("endpoint stopped")
        for sock in self._listeners:
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.loop.remove(sock.fileno())
            sock.close()
        self._listeners.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.mininet.apps", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("receive", help="accept one connection, print its byte count and SHA-256")
    r.add_argument("--listen", required=True)
    r.add_argument("--port", type=int, default=5001)
    r.add_argument("--timeout", type=float, default=60.0)
    r.add_argument("--mptcp", action="store_true", help="a Linux MPTCP socket")
    s = sub.add_parser("send", help="send seeded pseudo-random bytes, print their SHA-256")
    s.add_argument("--connect", required=True)
    s.add_argument("--port", type=int, default=5001)
    s.add_argument("--bytes", type=int, required=True, dest="size_bytes")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--bind")
    s.add_argument("--timeout", type=float, default=60.0)
    s.add_argument("--mptcp", action="store_true", help="a Linux MPTCP socket")
    args = parser.parse_args(argv)
    try:
        if args.command == "receive":
            result = receive(args.listen, args.port, timeout_s=args.timeout, mptcp=args.mptcp)
        else:
            result = send(
                args.connect,
                args.port,
                size_bytes=args.size_bytes,
                seed=args.seed,
                bind=args.bind,
                timeout_s=args.timeout,
                mptcp=args.mptcp,
            )
    except (OSError, ValueError) as exc:
        _emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

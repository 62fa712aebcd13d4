"""A user-space link emulator: one-way delay and random loss on a veth link, without sch_netem.

The Mininet backend realises a link's ``delay_ms`` and ``loss_pct`` here when
the kernel has no sch_netem. On the emulated end of the link (a router where
there is one), the spec's interface (``r1-eth0``, addresses, HTB) becomes one
end of an inner veth pair whose other end is ``li<k>``; the link's real veth
end, towards the peer, is ``lw<k>``. This process, inside that node's
namespace, forwards every frame between ``lw<k>`` and ``li<k>`` through
AF_PACKET sockets, holding each one ``delay_ms`` (from the kernel's receive
timestamp) plus, with ``jitter_ms``, a wait drawn uniformly from [0, jitter_ms]
that never lets a frame overtake the one before it, and dropping it with probability ``loss_pct`` / 100 (a seeded
``random.Random`` per direction; ARP is never dropped). Both directions of the
link are delayed, in one process::

    h1-eth0 ══ lw0 ─[linkemu: delay, loss]─ li0 ══ r1-eth0 (addresses, HTB)

The kernel itself never handles a frame on ``lw<k>`` or ``li<k>``: they carry
no address, IPv6 is off on them and an nftables netdev ingress rule drops what
arrives (AF_PACKET taps see frames before that hook). The rate limit stays
HTB on the egress of both spec interfaces, so a frame is first shaped, then
delayed, as with netem as HTB's leaf.

Run as ``python -m lab.mininet.linkemu --wire lw0 --inner li0 --delay-ms 10
--loss-pct 1 --seed 7 --limit-packets 1100``: it prints
``{"event": "ready", ...}`` once both sockets are bound, and on SIGTERM,
SIGINT or SIGHUP one ``{"event": "stopped", ...}`` line with its counters
(forwarded, lost, queue drops, how late frames left: p50/p99/max in
microseconds) before exiting 0; SIGUSR1 prints the same counters as
``{"event": "stats", ...}`` and goes on.

:func:`start_emulators` starts the emulators of a plan in a running
:class:`~lab.mininet.backend.MininetBackend`; :func:`emulator_stats` asks one
for its counters.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
SO_TIMESTAMPNS = 35  # asm-generic/socket.h; also SCM_TIMESTAMPNS
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h: our own transmissions are not read back
SOL_PACKET = 263
PR_SET_TIMERSLACK = 29  # linux/prctl.h
RCVBUF_BYTES = 8 << 20
SO_RCVBUFFORCE = 33
MAX_FRAME_BYTES = 65536
IDLE_WAKEUP_S = 0.25
REALTIME_PRIORITY = 1
CMSG_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")
LATENESS_BUCKETS_US = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)


@dataclass(slots=True)
class Direction:
    """Frames read on ``src`` and sent, ``delay_s`` later, on ``dst``."""

    name: str
    src: socket.socket
    dst: socket.socket
    delay_s: float
    loss: float
    limit: int
    rng: random.Random
    jitter_s: float = 0.0
    last_due: float = 0.0
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    forwarded: int = 0
    forwarded_bytes: int = 0
    lost: int = 0
    queue_drops: int = 0
    send_errors: int = 0
    lateness_hist: list[int] = field(default_factory=lambda: [0] * (len(LATENESS_BUCKETS_US) + 1))
    lateness_max_s: float = 0.0

    def stats(self) -> dict[str, Any]:
        return {
            "forwarded": self.forwarded,
            "forwarded_bytes": self.forwarded_bytes,
            "lost": self.lost,
            "queue_drops": self.queue_drops,
            "send_errors": self.send_errors,
            "late_p50_us": _percentile(self.lateness_hist, 0.50, self.lateness_max_s),
            "late_p99_us": _percentile(self.lateness_hist, 0.99, self.lateness_max_s),
            "late_max_us": round(self.lateness_max_s * 1e6, 1),
        }


def _percentile(hist: list[int], q: float, max_s: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile ``q``, at most the
    largest value seen (None: no frames)."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bound, count in zip((*LATENESS_BUCKETS_US, float("inf")), hist):
        seen += count
        if seen >= rank:
            return min(bound, round(max_s * 1e6, 1))
    return round(max_s * 1e6, 1)


def open_packet_socket(ifname: str) -> socket.socket:
    """An AF_PACKET socket bound to ``ifname``: every frame it receives, with kernel
    receive timestamps, not our own transmissions. Raises OSError."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _set_timer_slack_ns(ns: int) -> None:
    """Ask for precise wake-ups (the default slack is 50 us); best effort."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _set_realtime() -> None:
    """Run at a low real-time priority (SCHED_FIFO 1), so that frames leave on time on a
    busy machine; best effort (the kernel's real-time throttling still caps a busy loop)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (OSError, AttributeError):
        pass


class LinkEmulator:
    """Both directions of one link between AF_PACKET sockets ``wire`` and ``inner``."""

    def __init__(
        self,
        wire: socket.socket,
        inner: socket.socket,
        *,
        delay_ms: float,
        loss_pct: float,
        seed: int,
        limit_packets: int,
        jitter_ms: float = 0.0,
    ) -> None:
        delay_s = delay_ms / 1000.0
        loss = loss_pct / 100.0
        jitter_s = jitter_ms / 1000.0
        self.directions = [
            Direction("wire->inner", wire, inner, delay_s, loss, limit_packets, random.Random(f"{seed}/in"), jitter_s),
            Direction("inner->wire", inner, wire, delay_s, loss, limit_packets, random.Random(f"{seed}/out"), jitter_s),
        ]
        self._by_socket = {d.src: d for d in self.directions}
        self.running = True

    def _drain(self, d: Direction, offset: float) -> None:
        """Read every frame waiting on ``d.src``; queue it with its due time (monotonic)."""
        recvmsg = d.src.recvmsg
        queue = d.queue
        append = queue.append
        delay = d.delay_s
        loss = d.loss
        random_ = d.rng.random
        limit = d.limit
        jitter = d.jitter_s
        unpack = _TIMESPEC.unpack_from
        while True:
            try:
                frame, ancdata, _flags, _addr = recvmsg(MAX_FRAME_BYTES, CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            if loss and random_() < loss and frame[12:14] != b"\x08\x06":
                d.lost += 1
                continue
            if len(queue) >= limit:
                d.queue_drops += 1
                continue
            if ancdata:
                sec, nsec = unpack(ancdata[0][2])
                due = sec + nsec * 1e-9 - offset + delay
            else:
                due = time.monotonic() + delay
            if jitter:
                due += jitter * random_()
                if due < d.last_due:
                    due = d.last_due  # order kept: the queue stays sorted by due time
                d.last_due = due
            append((due, frame))

    def _send_due(self, d: Direction, now: float) -> None:
        queue = d.queue
        send = d.dst.send
        hist = d.lateness_hist
        buckets = LATENESS_BUCKETS_US
        while queue and queue[0][0] <= now:
            due, frame = queue.popleft()
            try:
                send(frame)
            except OSError:
                d.send_errors += 1
                continue
            d.forwarded += 1
            d.forwarded_bytes += len(frame)
            late = now - due
            if late > d.lateness_max_s:
                d.lateness_max_s = late
            late_us = late * 1e6
            for i, bound in enumerate(buckets):
                if late_us <= bound:
                    hist[i] += 1
                    break
            else:
                hist[-1] += 1

    def run(self) -> None:
        """Forward until :attr:`running` turns False (a signal handler does that)."""
        sockets = [d.src for d in self.directions]
        by_socket = self._by_socket
        directions = self.directions
        monotonic = time.monotonic
        while self.running:
            heads = [d.queue[0][0] for d in directions if d.queue]
            # bounded, so that a stop signal (after which select is retried) ends the loop soon
            timeout = IDLE_WAKEUP_S if not heads else min(IDLE_WAKEUP_S, max(0.0, min(heads) - monotonic()))
            try:
                readable, _, _ = select.select(sockets, [], [], timeout)
            except InterruptedError:
                continue
            if readable:
                offset = time.time() - monotonic()
                for sock in readable:
                    self._drain(by_socket[sock], offset)
            now = monotonic()
            for d in directions:
                if d.queue and d.queue[0][0] <= now:
                    self._send_due(d, now)

    def stats(self) -> dict[str, Any]:
        return {d.name: d.stats() for d in self.directions}


READY_TIMEOUT_S = 15.0


def _read_line(proc: subprocess.Popen[str], *, timeout: float, what: str) -> dict[str, Any]:
    """The next JSON line ``proc`` prints. Raises MininetCommandError when it exits or
    stays silent for ``timeout`` seconds."""
    from lab.mininet.topo import MininetCommandError

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        err = ""
        if proc.poll() is not None and proc.stderr is not None:
            err = proc.stderr.read()[-500:].strip()
        state = f"exited with {proc.returncode}" if proc.returncode is not None else f"silent for {timeout:g} s"
        raise MininetCommandError(f"{what} {state}: {err}")
    try:
        return json.loads(line)
    except ValueError:
        raise MininetCommandError(f"{what} printed {line.strip()[:200]!r}") from None


def start_emulators(net: Any, plans: dict[str, Any], *, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """Start the user-space emulator of every planned link inside its node (tracked
    by ``net``, so stopped with it) and wait until each forwards. Returns the
    processes by link name. Raises MininetCommandError when one does not start."""
    procs: dict[str, subprocess.Popen[str]] = {}
    for name, plan in plans.items():
        emulator = plan.emulator
        if emulator is None:
            continue
        proc = net.popen(
            emulator.node,
            emulator.argv(sys.executable),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs[name] = proc
    for name, proc in procs.items():
        line = _read_line(proc, timeout=timeout, what=f"the link emulator of {name}")
        if line.get("event") != "ready":
            from lab.mininet.topo import MininetCommandError

            raise MininetCommandError(f"the link emulator of {name} failed: {line.get('error', line)}")
    return procs


def emulator_stats(proc: subprocess.Popen[str], *, timeout: float = 5.0) -> dict[str, Any]:
    """The counters of a running emulator (SIGUSR1, then its ``stats`` line).
    Raises MininetCommandError when it does not answer."""
    proc.send_signal(signal.SIGUSR1)
    line = _read_line(proc, timeout=timeout, what="the link emulator")
    return {k: v for k, v in line.items() if k != "event"}


def record_stats(net: Any) -> None:
    """Record each running emulator's counters of the run (``link metrics_updated`` on
    node ``net``, field ``emulator``); one that has died is recorded as a ``link
    error``. Never raises: it runs while the backend stops."""
    for name, proc in net.link_emulators.items():
        if proc.poll() is not None:
            reason = f"the link emulator of {name} exited early with status {proc.returncode}"
            net.tracer.record_node(net.now(), "net", "link", "error", {"link": name, "reason": reason})
            continue
        try:
            stats = emulator_stats(proc)
        except Exception as exc:  # noqa: BLE001
            net.tracer.record_node(net.now(), "net", "link", "error", {"link": name, "reason": str(exc)})
            continue
        net.tracer.record_node(net.now(), "net", "link", "metrics_updated", {"link": name, "emulator": stats})


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.mininet.linkemu", description=__doc__.splitlines()[0])
    parser.add_argument("--wire", required=True, help="the link's veth end (towards the peer)")
    parser.add_argument("--inner", required=True, help="the inner veth end (towards the spec interface)")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loss-pct", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit-packets", type=int, default=10_000)
    args = parser.parse_args(argv)
    if (
        not 0 <= args.delay_ms <= 10_000
        or not 0 <= args.jitter_ms <= 10_000
        or not 0 <= args.loss_pct <= 100
        or args.limit_packets < 1
    ):
        _emit(
            {
                "event": "error",
                "error": "delay_ms and jitter_ms must be in [0, 10000], loss_pct in [0, 100], limit >= 1",
            }
        )
        return 2
    try:
        wire = open_packet_socket(args.wire)
        inner = open_packet_socket(args.inner)
    except OSError as exc:
        _emit({"event": "error", "error": f"cannot open AF_PACKET sockets on {args.wire}/{args.inner}: {exc}"})
        return 1
    _set_timer_slack_ns(1000)
    _set_realtime()
    emulator = LinkEmulator(
        wire,
        inner,
        delay_ms=args.delay_ms,
        loss_pct=args.loss_pct,
        seed=args.seed,
        limit_packets=args.limit_packets,
        jitter_ms=args.jitter_ms,
    )

    def stop(_signum: int, _frame: Any) -> None:
        emulator.running = False

    def report(_signum: int, _frame: Any) -> None:
        _emit({"event": "stats", **emulator.stats()})

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(signal.SIGUSR1, report)
    _emit(
        {"event": "ready", "wire": args.wire, "inner": args.inner, "delay_ms": args.delay_ms, "loss_pct": args.loss_pct}
    )
    emulator.run()
    _emit({"event": "stopped", **emulator.stats()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

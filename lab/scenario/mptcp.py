"""MptcpTransfer: a bulk transfer over Multipath TCP, as a scenario workload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.errors import ConfigError
from lab.mptcp.config import MptcpConfig
from lab.scenario import Transfer, Workload, runs_here
from lab.stack.apps import BulkSender, BulkSink, TransferResult

if TYPE_CHECKING:
    from lab.scenario import ScenarioRun
    from lab.stack.host import Stream

KERNEL_MPTCP_SETTINGS = frozenset({"checksum"})  # what a kernel-mptcp end takes from client/server
CLOSE_GRACE_S = 0.25  # with wait_for_close: how long the receiver lingers after the close
CLOSE_POLL_S = 0.01
CLOSE_WAIT_S = 5.0  # with wait_for_close: how long our receiver waits for the data-level close


def data_level_closed(conn: Any) -> bool:
    """Whether our MptcpConnection has finished closing at the data level: its DATA_FIN
    acknowledged and the peer's DATA_FIN received (RFC 8684 §3.3.3; subflows may still
    sit in TIME-WAIT), after a fallback the TCP close done, or the connection ended."""
    if conn.terminated:
        return True
    if conn.fallback is not None:
        return conn.state.name in ("TIME_WAIT", "CLOSED")
    return bool(getattr(conn, "_fin_acked", False) and getattr(conn, "_peer_fin_seen", False))


def end_facts(stream: Any, stack: str) -> dict[str, Any]:
    """What one end knows about its connection: for our MptcpConnection its tokens,
    DSS checksum use, fallback and DATA_FIN progress; for a kernel-mptcp socket the
    kernel's MPTCP_INFO (``lab.mininet.apps.mptcp_info``). Never raises."""
    facts: dict[str, Any] = {"stack": stack}
    conn = getattr(stream, "conn", None)
    if stack == "user" and conn is not None and hasattr(conn, "local_token"):
        facts |= {
            "mptcp": conn.fallback is None,
            "local_token": conn.local_token,
            "remote_token": conn.remote_token,
            "checksum": conn.checksum,
            "fallback": conn.fallback,
            "data_fin_acked": bool(getattr(conn, "_fin_acked", False)),
            "data_fin_received": bool(getattr(conn, "_peer_fin_seen", False)),
            "data_level_closed": data_level_closed(conn),
            "subflows": len(conn.subflows),
        }
    elif stack == "user":
        facts["mptcp"] = False
    kernel_facts = getattr(stream, "kernel_facts", None)  # a live backend's kernel socket
    if stack.startswith("kernel") and kernel_facts is not None:
        facts |= kernel_facts()
    return facts


class _End:
    """One end's facts in the result's ``extra`` (key ``client`` or ``server``); only on
    live backends, so the simulator's results stay as they were."""

    def __init__(self, result: TransferResult, role: str, stack: str, *, live: bool) -> None:
        self.result = result
        self.role = role
        self.stack = stack
        self.live = live

    def note(self, stream: Any, **more: Any) -> None:
        """Take the end's facts now (a closed kernel socket keeps what was noted before)."""
        if not self.live:
            return
        previous = self.result.extra.get(self.role) or {}
        facts = end_facts(stream, self.stack)
        if self.stack != "user" and previous and len(facts) <= 1:
            facts = previous
        self.result.extra = {**self.result.extra, self.role: {**previous, **facts, **more}}

    def note_when_closed(self, stream: Any, call_at: Callable[..., None], then: Callable[[bool], None] | None) -> None:
        """For our end: poll until the data-level close is done (at most CLOSE_WAIT_S),
        note the facts, then call ``then`` with whether it was done."""
        if not self.live and then is None:
            return
        conn = getattr(stream, "conn", None)
        deadline = stream.host.now + CLOSE_WAIT_S

        def poll() -> None:
            closed = conn is None or data_level_closed(conn)
            if closed or stream.host.now >= deadline:
                self.note(stream)
                if then is not None:
                    then(closed)
            else:
                call_at(stream.host.now + CLOSE_POLL_S, poll)

        poll()


class MptcpSender(BulkSender):
    """A BulkSender that notes its end's facts when the peer closes and when the connection ends."""

    def __init__(self, result: TransferResult, data: bytes, end: _End, call_at: Callable[..., None]) -> None:
        super().__init__(result, data)
        self._end = end
        self._call_at = call_at

    def eof_received(self, stream: Stream) -> None:
        self._end.note(stream, peer_closed=True)
        super().eof_received(stream)
        if self._end.stack == "user":
            self._end.note_when_closed(stream, self._call_at, None)

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        self._end.note(stream, closed=reason, reset=reset)
        super().connection_lost(stream, reason, reset)


class MptcpSink(BulkSink):
    """A BulkSink that notes its end's facts. With ``wait_for_close`` the result
    completes (at the time the stream ended) only once the connection has closed
    cleanly (our end: at the data level, see :func:`data_level_closed`; a kernel
    socket: once closed) and ``CLOSE_GRACE_S`` more have passed, so that a live run
    lasts until both ends have seen the close; a reset instead is the result's error."""

    def __init__(
        self, result: TransferResult, end: _End, *, wait_for_close: bool, call_at: Callable[..., None]
    ) -> None:
        super().__init__(result)
        self._end = end
        self._wait = wait_for_close
        self._call_at = call_at
        self._ended_at: float | None = None
        self._holding = False

    def eof_received(self, stream: Stream) -> None:
        self._end.note(stream, peer_closed=True)
        if not self._wait:
            super().eof_received(stream)
            return
        self._holding = True
        super().eof_received(stream)  # hashes, records, closes (a kernel socket ends right here)
        if self.result.completed_at is not None:
            self._ended_at, self.result.completed_at = self.result.completed_at, None
        if self._end.stack == "user" and self._holding:
            self._end.note_when_closed(stream, self._call_at, lambda closed: self._complete_later(stream, closed))

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        self._end.note(stream, closed=reason, reset=reset)
        if not self._holding:
            super().connection_lost(stream, reason, reset)
            return
        if self._ended_at is None and self.result.completed_at is not None:
            self._ended_at, self.result.completed_at = self.result.completed_at, None
        if reset:
            self._holding = False
            self.result.error = f"receiver: {reason} (reset while closing)"
        elif self._end.stack != "user":
            self._complete_later(stream, True)

    def _complete_later(self, stream: Stream, closed: bool) -> None:
        if not self._holding:
            return
        self._holding = False
        if not closed:
            self.result.error = f"receiver: the close did not finish within {CLOSE_WAIT_S:g} s"
            return
        ended = self._ended_at

        def complete() -> None:
            if self.result.error is None:
                self.result.completed_at = ended

        self._call_at(stream.host.now + CLOSE_GRACE_S, complete)


@dataclass(frozen=True, kw_only=True)
class MptcpTransfer(Transfer):
    """A bulk transfer from ``src`` (the client) to ``dst`` (the server) over MPTCP.

    ``client``/``server`` are MptcpConfig keyword arguments for each end;
    ``None`` for an end makes it a plain TCP host (to show fallback).
    ``src_stack``/``dst_stack`` pick who runs each end, as for
    :class:`lab.scenario.Transfer`: ``"user"`` is our MptcpConnection on the
    host's HostStack; on a live backend ``"kernel-mptcp"`` is Linux MPTCP, which
    takes only ``checksum`` from its settings (``net.mptcp.checksum_enabled``),
    and ``"kernel"`` the kernel's plain TCP (its settings must be empty).
    Each end notes what it knows into the result's ``extra`` under ``client``
    and ``server`` (:func:`end_facts`, plus ``peer_closed``, ``closed`` and
    ``reset``). ``wait_for_close`` ends the result only after the receiver's
    connection closed cleanly (DATA_FIN both ways), not at the end of the data.
    ``kernel_announce_port`` (a kernel-mptcp server only) makes Linux announce
    its other addresses with that port (``ip mptcp endpoint add ADDR dev IF
    port P signal``, RFC 8684 §3.4.1), where the kernel then takes the joins.
    ``kernel_backup`` (a kernel-mptcp server only) makes Linux announce its other
    addresses as backup endpoints (``ip mptcp endpoint add ADDR dev IF signal
    backup``): it sets the B flag in its MP_JOIN SYN/ACK on joins to them (RFC
    8684 §3.2), asking the client to send there only when no other path works.
    ``ipv6`` connects to the server's IPv6 address instead of its IPv4 one.

    Raises ConfigError for settings that do not fit.
    """

    client: dict[str, Any] | None = field(default_factory=dict)
    server: dict[str, Any] | None = field(default_factory=dict)
    wait_for_close: bool = False
    kernel_announce_port: int | None = None
    kernel_backup: bool = False
    ipv6: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for role, side, stack in (("client", self.client, self.src_stack), ("server", self.server, self.dst_stack)):
            if side is None:
                continue
            if stack == "kernel-mptcp" and not set(side) <= KERNEL_MPTCP_SETTINGS:
                extra = ", ".join(sorted(set(side) - KERNEL_MPTCP_SETTINGS))
                raise ConfigError(f"transfer {self.name}: a kernel-mptcp {role} takes only checksum, not {extra}")
            if stack == "kernel" and side:
                raise ConfigError(f"transfer {self.name}: a kernel (plain TCP) {role} takes no MPTCP settings")
            try:
                MptcpConfig(**side)
            except TypeError as exc:
                raise ConfigError(f"transfer {self.name}: bad MPTCP setting: {exc}") from None
        if self.kernel_announce_port is not None:
            if self.dst_stack != "kernel-mptcp":
                raise ConfigError(f"transfer {self.name}: kernel_announce_port needs a kernel-mptcp server")
            port = self.kernel_announce_port
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536 or port == self.port:
                raise ConfigError(
                    f"transfer {self.name}: kernel_announce_port must be a port 1..65535 other than {self.port}"
                )
        if self.kernel_backup and self.dst_stack != "kernel-mptcp":
            raise ConfigError(f"transfer {self.name}: kernel_backup needs a kernel-mptcp server")

    def _end(self, run: ScenarioRun, name: str, stack: str, side: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        """The application API for one end and the keyword arguments its connect/listen take."""
        if stack == "user":
            return run.net.host(name), {"group": None if side is None else MptcpConfig(**side)}
        kernel_host = getattr(run.net, "kernel_host", None)
        if kernel_host is None:
            raise ConfigError(
                f"transfer {self.name}: a {stack} stack on {name} needs a live backend (--backend mininet)"
            )
        if stack == "kernel":
            return kernel_host(name, mptcp=False), {}
        return kernel_host(name, mptcp=True, mptcp_checksum=bool((side or {}).get("checksum", False))), {}

    def schedule(self, run: ScenarioRun) -> None:
        dst_ifaces = run.spec.interfaces_of(self.dst)
        if self.dst not in run.spec.hosts() or not dst_ifaces:
            raise ConfigError(f"transfer {self.name}: no host {self.dst!r}")
        if self.dst_interface >= len(dst_ifaces):
            raise ConfigError(f"transfer {self.name}: {self.dst} has {len(dst_ifaces)} interfaces")
        data = run.payload(self.size_bytes)
        result = run.add_result(self.name, data)
        iface = dst_ifaces[self.dst_interface]
        remote = iface.ipv6 if self.ipv6 else iface.ipv4
        live = getattr(run.net, "is_local", None) is not None
        if runs_here(run, self.dst):
            dst, listen_kw = self._end(run, self.dst, self.dst_stack, self.server)
            end = _End(result, "server", self.dst_stack, live=live)
            wait = self.wait_for_close
            dst.listen(
                self.port,
                lambda: MptcpSink(result, end, wait_for_close=wait, call_at=run.net.call_at),
                **listen_kw,
            )
            if self.kernel_announce_port is not None or self.kernel_backup:
                others = [i for i in dst_ifaces if i is not iface]
                announce_with_port(others, self.kernel_announce_port, backup=self.kernel_backup)
        if runs_here(run, self.src):
            src, connect_kw = self._end(run, self.src, self.src_stack, self.client)
            sender = MptcpSender(result, data, _End(result, "client", self.src_stack, live=live), run.net.call_at)
            run.net.call_at(self.start_s, lambda: sender.start(src, remote, self.port, **connect_kw))


def announce_with_port(
    interfaces: list[Any], port: int | None, *, backup: bool = False, timeout_s: float = 10.0
) -> None:
    """In this (a live host's) network namespace: replace Linux's MPTCP endpoints by one
    ``signal`` endpoint per interface (its IPv4 address), with ``port`` unless None and
    the ``backup`` flag if asked. Raises ConfigError when a command fails."""
    import subprocess

    commands = [["ip", "mptcp", "endpoint", "flush"]]
    for iface in interfaces:
        with_port = [] if port is None else ["port", str(port)]
        flags = ["signal", "backup"] if backup else ["signal"]
        commands.append(["ip", "mptcp", "endpoint", "add", iface.ipv4, "dev", iface.name, *with_port, *flags])
    for argv in commands:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"MPTCP setup: {' '.join(argv)}: {exc}") from None
        if proc.returncode != 0:
            raise ConfigError(f"MPTCP setup: {' '.join(argv)} failed: {proc.stderr.strip()[-200:]}")


class _ChainedSender(MptcpSender):
    """An MptcpSender that calls ``on_done`` once, when the receiver has closed its side
    or the connection ended otherwise."""

    def __init__(
        self, result: TransferResult, data: bytes, end: _End, call_at: Callable[..., None], on_done: Callable[[], None]
    ) -> None:
        super().__init__(result, data, end, call_at)
        self._on_done: Callable[[], None] | None = on_done

    def _done(self) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()

    def eof_received(self, stream: Stream) -> None:
        super().eof_received(stream)
        self._done()

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        super().connection_lost(stream, reason, reset)
        self._done()


@dataclass(frozen=True, kw_only=True)
class MptcpBackToBack(Workload):
    """``transfers`` (MptcpTransfers, all from one ``src``) one after the other: each
    starts ``gap_s`` after the previous one's receiver closed its side, so they never
    share the paths (their own ``start_s`` is ignored). Listeners are all set up at the
    start. Raises ConfigError for transfers that do not fit."""

    name: str = "mptcp-back-to-back"
    transfers: tuple[MptcpTransfer, ...] = ()
    gap_s: float = 0.5

    def __post_init__(self) -> None:
        if len({t.src for t in self.transfers}) > 1:
            raise ConfigError(f"{self.name}: every transfer must start from the same host")
        if len({t.port for t in self.transfers}) != len(self.transfers):
            raise ConfigError(f"{self.name}: every transfer needs a port of its own")

    def schedule(self, run: ScenarioRun) -> None:
        live = getattr(run.net, "is_local", None) is not None
        steps: list[tuple[Any, dict[str, Any], TransferResult, bytes, _End, str, int]] = []
        for t in self.transfers:
            dst_ifaces = run.spec.interfaces_of(t.dst)
            if t.dst not in run.spec.hosts() or len(dst_ifaces) <= t.dst_interface:
                raise ConfigError(f"transfer {t.name}: no interface {t.dst_interface} on host {t.dst!r}")
            data = run.payload(t.size_bytes)
            result = run.add_result(t.name, data)
            if runs_here(run, t.dst):
                dst, listen_kw = t._end(run, t.dst, t.dst_stack, t.server)
                end = _End(result, "server", t.dst_stack, live=live)
                sink = lambda r=result, e=end, w=t.wait_for_close: MptcpSink(  # noqa: E731
                    r, e, wait_for_close=w, call_at=run.net.call_at
                )
                dst.listen(t.port, sink, **listen_kw)
            if runs_here(run, t.src):
                src, connect_kw = t._end(run, t.src, t.src_stack, t.client)
                end = _End(result, "client", t.src_stack, live=live)
                steps.append((src, connect_kw, result, data, end, dst_ifaces[t.dst_interface].ipv4, t.port))

        def start(i: int) -> None:
            if i < len(steps):
                src, connect_kw, result, data, end, remote, port = steps[i]
                then = lambda: run.net.call_at(run.net.now + self.gap_s, lambda: start(i + 1))  # noqa: E731
                _ChainedSender(result, data, end, run.net.call_at, then).start(src, remote, port, **connect_kw)

        if steps:
            run.net.call_at(0.0, lambda: start(0))

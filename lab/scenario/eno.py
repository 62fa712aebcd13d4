"""Scenario workloads for TCP-ENO and tcpcrypt: a bulk transfer with ENO settings per side.

:class:`EncryptedTransfer` runs like :class:`lab.scenario.Transfer` (seeded
payload, SHA-256 checked at the receiver) with an :class:`EnoConfig` for the
client and one for the server (``None``: that side does not speak ENO). It
also states what the negotiation must come to (``expect``):

* ``encrypted``: both ends encrypted with the same session ID;
* ``fallback``: both ends went on as plain TCP;
* ``refused``: a mandatory end reset the connection; nothing may arrive, so
  the checked byte stream is empty;
* ``aborted``: the TEP reset the connection (forged or corrupted frame); what
  arrived before must be an exact prefix of what was sent, and the transfer
  itself cannot complete;
* ``any``: whatever the negotiation comes to (a transfer started from the TUI
  into a network the user changed); only corrupted delivered bytes are wrong.

A different outcome is reported as the transfer's error. Extra figures go to
the summary: outcome and reason per side, TEP (``tep`` as the client
negotiated it, ``server_tep``), session IDs, and ``corrupted_bytes_delivered``
(bytes that differ from what was sent: always 0 unless something is badly
wrong).

On a live backend each endpoint process builds only its own host's objects
(:func:`lab.scenario.runs_here`): the client's process the client's
extension and sender, the server's the listener and sink. Each end writes its
facts under its own keys (``client_*``/``tep`` and
``server_*``/``corrupted_bytes_delivered``), kept current on every ENO state
change, and checks only its own outcome; the controller merges the halves,
and :func:`verdict` over the merged facts is the cross-end check (same
outcome, same session ID on both ends) that the simulator makes at once.
Both ends also record their session ID in the ``tcpcrypt key_updated``
trace record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.eno.extension import EnoConfig, EnoExtension, EnoState
from lab.errors import ConfigError
from lab.scenario import Workload, runs_here
from lab.stack.apps import CHUNK_BYTES, TransferResult, record_aborted
from lab.stack.host import HostStack, Stream, StreamHandler
from lab.tcp.state import TcpState

if TYPE_CHECKING:
    from lab.scenario import ScenarioRun

EXPECTATIONS = ("encrypted", "fallback", "refused", "aborted", "any")
_OUTCOME = {
    EnoState.ENCRYPTED: "encrypted",
    EnoState.FALLBACK: "fallback",
    EnoState.REFUSED: "refused",
    EnoState.ABORTED: "aborted",
}


def outcome_of(ext: EnoExtension | None) -> str:
    """``plain`` (no ENO at all), ``encrypted``, ``fallback``, ``refused``, ``aborted``, ``reset``
    (the connection ended before ENO decided, e.g. refused by the peer) or ``pending``."""
    if ext is None:
        return "plain"
    outcome = _OUTCOME.get(ext.state)
    if outcome is not None:
        return outcome
    conn = getattr(ext, "conn", None)
    return "reset" if conn is not None and conn.state is TcpState.CLOSED else "pending"


def verdict(expect: str, facts: dict[str, Any]) -> str | None:
    """Why the facts both ends reported (a transfer's ``extra``, merged from both
    halves on a live backend) differ from ``expect``, or None."""
    corrupted = facts.get("corrupted_bytes_delivered") or 0
    if corrupted:
        return f"{corrupted} delivered bytes differ from what was sent"
    client, server = facts.get("client_outcome"), facts.get("server_outcome")
    outcomes = {client, server}
    if expect == "any":
        return None
    if expect == "encrypted":
        if outcomes != {"encrypted"}:
            return f"expected encryption, got client {client}, server {server}"
        if facts.get("client_session_id") != facts.get("server_session_id"):
            return "session IDs differ"
    elif expect == "fallback":
        if not outcomes <= {"fallback", "plain"}:
            return f"expected plain TCP, got client {client}, server {server}"
    elif expect not in outcomes:
        return f"expected {expect}, got client {client}, server {server}"
    return None


# what one end may come to when only its own half is known (the other end runs elsewhere)
_LOCAL_OUTCOMES = {
    "encrypted": {"encrypted"},
    "fallback": {"fallback", "plain"},
    "refused": {"refused", "reset", "fallback", "plain", "pending", "no connection"},  # the peer may refuse
    "aborted": {"aborted", "reset", "encrypted"},  # the peer may abort: this end sees its reset
    "any": {"encrypted", "fallback", "plain", "refused", "aborted", "reset", "pending", "no connection"},
}


@dataclass
class _Watch:
    """What the ends of one transfer saw; decides whether the transfer met its expectation.

    ``client_here``/``server_here`` say which ends run in this process (both in
    the simulator; one per endpoint process on a live backend). Each end's
    facts go to the result's ``extra`` under its own keys, so the halves merge
    without clashing; with both ends here :func:`verdict` compares them, with
    one only that end's own outcome is checked (the cross-end comparison,
    e.g. of the session IDs, is :func:`verdict` over the merged facts)."""

    result: TransferResult
    expect: str
    data: bytes
    client_here: bool = True
    server_here: bool = True
    client: EnoExtension | None = None
    servers: list[EnoExtension | None] = field(default_factory=list)
    corrupted: int = 0

    @property
    def server(self) -> EnoExtension | None:
        return self.servers[-1] if self.servers else None

    def watch(self, ext: EnoExtension | None) -> EnoExtension | None:
        """Keep the facts current whenever ``ext`` changes state (so an end that never
        sees the application's callbacks, e.g. a server refusing the SYN, still reports)."""
        if ext is not None:
            ext.on_state_updated = lambda _ext: self.note()
        return ext

    def note(self) -> None:
        facts: dict[str, Any] = {"expect": self.expect}
        if self.client_here:
            client = self.client
            facts["client_outcome"] = outcome_of(client)
            facts["client_reason"] = client.fallback_reason if client else None
            facts["tep"] = f"0x{client.negotiated_tep:02x}" if client and client.negotiated_tep else None
            facts["client_session_id"] = client.session_id.hex() if client and client.session_id else None
        if self.server_here:
            server = self.server
            facts["server_outcome"] = outcome_of(server) if self.servers else "no connection"
            facts["server_reason"] = server.fallback_reason if server else None
            facts["server_tep"] = f"0x{server.negotiated_tep:02x}" if server and server.negotiated_tep else None
            facts["server_session_id"] = server.session_id.hex() if server and server.session_id else None
            facts["corrupted_bytes_delivered"] = self.corrupted
        self.result.extra.update(facts)

    def mismatch(self) -> str | None:
        """Why the outcome differs from ``expect`` (as far as the ends here can tell), or None."""
        self.note()
        extra = self.result.extra
        if self.client_here and self.server_here:
            return verdict(self.expect, extra)
        if self.corrupted:
            return f"{self.corrupted} delivered bytes differ from what was sent"
        side = "client" if self.client_here else "server"
        outcome = extra[f"{side}_outcome"]
        if outcome not in _LOCAL_OUTCOMES[self.expect]:
            return f"expected {self.expect}, got {side} {outcome}"
        return None


class _Sender(StreamHandler):
    def __init__(self, watch: _Watch) -> None:
        self.watch = watch
        self._view = memoryview(watch.data)
        self._pos = 0
        self._closed = False

    def connection_made(self, stream: Stream) -> None:
        self.writable(stream)

    def writable(self, stream: Stream) -> None:
        while self._pos < len(self._view) and stream.send_buffered < 2 * CHUNK_BYTES and not stream.closed:
            chunk = self._view[self._pos : self._pos + CHUNK_BYTES]
            self._pos += len(chunk)
            stream.send(chunk)
        if self._pos >= len(self._view) and not self._closed and not stream.closed:
            self._closed = True
            self.watch.result.sender_done = True
            stream.close()

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        watch = self.watch
        result = watch.result
        watch.note()  # the sender's view may have changed (a refusal's RST arriving)
        if result.complete:
            return
        if watch.expect == "refused" and reset:
            _finish(watch, stream.host, b"")
        elif reset and watch.expect != "aborted":
            result.error = f"sender: {reason}"
            _record_aborted(watch, stream.host, result.error)


class _Sink(StreamHandler):
    def __init__(self, watch: _Watch) -> None:
        self.watch = watch
        self._hash = hashlib.sha256()
        self._pos = 0

    def data_received(self, stream: Stream, data: bytes) -> None:
        watch = self.watch
        result = watch.result
        if result.first_byte_at is None:
            result.first_byte_at = stream.host.now
        expected = watch.data[self._pos : self._pos + len(data)]
        if expected != data:  # count what differs: corrupted (or surplus) bytes reached the application
            same = sum(1 for x, y in zip(expected, data) if x == y)
            watch.corrupted += len(data) - same
        self._pos += len(data)
        self._hash.update(data)
        result.bytes_received += len(data)

    def eof_received(self, stream: Stream) -> None:
        watch = self.watch
        _finish(watch, stream.host, None, sha256=self._hash.hexdigest(), conn=str(stream.addr))
        stream.close()

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        watch = self.watch
        result = watch.result
        if result.complete:
            return
        if watch.expect == "refused":
            _finish(watch, stream.host, b"")
            return
        watch.note()
        mismatch = watch.mismatch()
        result.error = f"receiver: {reason}" + (f" ({mismatch})" if mismatch else "")
        _record_aborted(watch, stream.host, result.error)


def _record_aborted(watch: _Watch, host: HostStack, reason: str) -> None:
    extra = watch.result.extra
    record_aborted(
        host, watch.result, reason, outcome=extra.get("server_outcome"), client_outcome=extra.get("client_outcome")
    )


def _finish(watch: _Watch, host: HostStack, data: bytes | None, *, sha256: str | None = None, conn: str = "") -> None:
    result = watch.result
    if result.complete:
        return
    result.sha256_received = hashlib.sha256(data).hexdigest() if data is not None else sha256
    result.completed_at = host.now
    mismatch = watch.mismatch()
    if mismatch:
        result.error = mismatch
    if host.tracer.enabled:
        host.tracer.record(
            host.now,
            "app",
            "state_updated",
            {
                "transfer": result.name,
                "event": "received",
                "bytes": result.bytes_received,
                "sha256": result.sha256_received,
                "sha256_match": result.ok,
                "conn": conn,
                "outcome": watch.result.extra.get("server_outcome"),
                "client_outcome": watch.result.extra.get("client_outcome"),
            },
        )


@dataclass(frozen=True, kw_only=True)
class EncryptedTransfer(Workload):
    """A bulk transfer from ``src`` to ``dst`` with TCP-ENO settings per side (None: no ENO on that side).

    Raises ConfigError (from ``schedule``) for hosts the topology lacks or an unknown ``expect``.
    """

    name: str = "encrypted"
    src: str = "h1"
    dst: str = "h2"
    dst_interface: int = 0
    port: int = 5001
    size_bytes: int = 1024 * 1024
    start_s: float = 0.0
    client: EnoConfig | None = field(default_factory=EnoConfig)
    server: EnoConfig | None = field(default_factory=EnoConfig)
    expect: str = "encrypted"
    local_port: int | None = None

    def __post_init__(self) -> None:
        if self.expect not in EXPECTATIONS:
            raise ConfigError(f"transfer {self.name}: expect must be one of {', '.join(EXPECTATIONS)}")
        if not isinstance(self.size_bytes, int) or not 0 <= self.size_bytes <= 1 << 31:
            raise ConfigError(f"transfer {self.name}: size_bytes must be 0..2**31, got {self.size_bytes!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"transfer {self.name}: port must be 1..65535, got {self.port}")
        if self.start_s < 0:
            raise ConfigError(f"transfer {self.name}: start_s must not be negative")

    def schedule(self, run: ScenarioRun) -> None:
        dst_ifaces = run.spec.interfaces_of(self.dst)
        if self.dst not in run.spec.hosts() or not dst_ifaces:
            raise ConfigError(f"transfer {self.name}: no host {self.dst!r}")
        if self.dst_interface >= len(dst_ifaces):
            raise ConfigError(f"transfer {self.name}: {self.dst} has {len(dst_ifaces)} interfaces")
        src = run.net.host(self.src)
        dst = run.net.host(self.dst)
        data = run.payload(self.size_bytes)
        result = run.add_result(self.name, b"" if self.expect == "refused" else data)
        client_here, server_here = runs_here(run, self.src), runs_here(run, self.dst)
        watch = _Watch(result, self.expect, data, client_here=client_here, server_here=server_here)
        server_config = self.server

        def server_extension() -> EnoExtension | None:
            ext = watch.watch(EnoExtension(server_config) if server_config is not None else None)
            watch.servers.append(ext)
            return ext

        if server_here:
            dst.listen(self.port, lambda: _Sink(watch), extension_factory=server_extension)
        remote = dst_ifaces[self.dst_interface].ipv4

        def start() -> None:
            result.started_at = src.now
            ext = watch.watch(EnoExtension(self.client) if self.client is not None else None)
            watch.client = ext
            watch.note()  # a client without ENO has no state changes to report
            src.connect(remote, self.port, _Sender(watch), extension=ext, local_port=self.local_port)

        if client_here:
            if self.local_port is not None:
                src.reserve_port(self.local_port)
            run.net.call_at(self.start_s, start)

    def check_merged(self, result: TransferResult) -> str | None:
        """Both ends' facts, merged by a live backend's controller, compared (:func:`verdict`)."""
        return verdict(self.expect, result.extra)


@dataclass(frozen=True, kw_only=True)
class SimultaneousOpenTransfer(Workload):
    """Both hosts connect() to each other at once (RFC 9293 §3.5 simultaneous open) and ``src`` sends.

    With ENO, exactly one side must set ``passive_role`` (the b bit) in its
    :class:`EnoConfig` to play role B (RFC 8547 §4.3); with the same b bit on
    both sides ENO falls back to plain TCP.
    """

    name: str = "simultaneous"
    src: str = "h1"
    dst: str = "h2"
    src_port: int = 6001
    dst_port: int = 6002
    size_bytes: int = 256 * 1024
    start_s: float = 0.0
    client: EnoConfig | None = field(default_factory=EnoConfig)  # the sender's side
    server: EnoConfig | None = field(default_factory=lambda: EnoConfig(passive_role=True))
    expect: str = "encrypted"

    def __post_init__(self) -> None:
        if self.expect not in EXPECTATIONS:
            raise ConfigError(f"transfer {self.name}: expect must be one of {', '.join(EXPECTATIONS)}")
        for port in (self.src_port, self.dst_port):
            if not 0 < port < 65536:
                raise ConfigError(f"transfer {self.name}: ports must be 1..65535, got {port}")

    def schedule(self, run: ScenarioRun) -> None:
        for host in (self.src, self.dst):
            if host not in run.spec.hosts() or not run.spec.interfaces_of(host):
                raise ConfigError(f"transfer {self.name}: no host {host!r}")
        src = run.net.host(self.src)
        dst = run.net.host(self.dst)
        src_addr = run.spec.interfaces_of(self.src)[0].ipv4
        dst_addr = run.spec.interfaces_of(self.dst)[0].ipv4
        data = run.payload(self.size_bytes)
        result = run.add_result(self.name, b"" if self.expect == "refused" else data)
        client_here, server_here = runs_here(run, self.src), runs_here(run, self.dst)
        if client_here:
            src.reserve_port(self.src_port)
        if server_here:
            dst.reserve_port(self.dst_port)
        watch = _Watch(result, self.expect, data, client_here=client_here, server_here=server_here)

        def start() -> None:
            if client_here:
                result.started_at = src.now
                watch.client = watch.watch(EnoExtension(self.client) if self.client is not None else None)
            if server_here:
                server = watch.watch(EnoExtension(self.server) if self.server is not None else None)
                watch.servers.append(server)
            watch.note()
            if client_here:
                src.connect(dst_addr, self.dst_port, _Sender(watch), local_port=self.src_port, extension=watch.client)
            if server_here:
                dst.connect(src_addr, self.src_port, _Sink(watch), local_port=self.dst_port, extension=server)

        run.net.call_at(self.start_s, start)

    def check_merged(self, result: TransferResult) -> str | None:
        """Both ends' facts, merged by a live backend's controller, compared (:func:`verdict`)."""
        return verdict(self.expect, result.extra)


class _ChainedSender(_Sender):
    """A _Sender that calls ``on_done`` once, when the receiver has closed its side
    (it had everything) or the connection ended otherwise."""

    def __init__(self, watch: _Watch, on_done: Callable[[], None]) -> None:
        super().__init__(watch)
        self._on_done: Callable[[], None] | None = on_done

    def _done(self) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()

    def eof_received(self, stream: Stream) -> None:
        self._done()

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        super().connection_lost(stream, reason, reset)
        self._done()


@dataclass(frozen=True, kw_only=True)
class AlternatingTransfers(Workload):
    """Bulk transfers from ``src`` to ``dst`` one after the other, each encrypted (TCP-ENO
    with ``config`` on both ends, expecting ``encrypted``) or plain (no ENO at all),
    as ``encrypted`` lists them; each starts ``gap_s`` after the previous one's
    receiver closed its side, so they never share the path. Transfer ``i`` is named
    ``tcpcrypt-<i+1>`` or ``plain-<i+1>`` and uses port ``port + i``.

    Raises ConfigError (from ``schedule``) for hosts the topology lacks, or at
    construction for bad sizes, ports or gaps.
    """

    name: str = "alternating"
    src: str = "h1"
    dst: str = "h2"
    port: int = 5001
    size_bytes: int = 16 * 1024 * 1024
    encrypted: tuple[bool, ...] = (False, True, False, True)
    config: EnoConfig = field(default_factory=EnoConfig)
    gap_s: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.size_bytes, int) or not 0 <= self.size_bytes <= 1 << 31:
            raise ConfigError(f"transfer {self.name}: size_bytes must be 0..2**31, got {self.size_bytes!r}")
        if not self.encrypted or not 0 < self.port or self.port + len(self.encrypted) > 65536:
            raise ConfigError(f"transfer {self.name}: ports {self.port}.. must be 1..65535, one per transfer")
        if self.gap_s < 0:
            raise ConfigError(f"transfer {self.name}: gap_s must not be negative")

    def schedule(self, run: ScenarioRun) -> None:
        for host in (self.src, self.dst):
            if host not in run.spec.hosts() or not run.spec.interfaces_of(host):
                raise ConfigError(f"transfer {self.name}: no host {host!r}")
        src, dst = run.net.host(self.src), run.net.host(self.dst)
        client_here, server_here = runs_here(run, self.src), runs_here(run, self.dst)
        remote = run.spec.interfaces_of(self.dst)[0].ipv4
        steps: list[tuple[_Watch, EnoConfig | None, int]] = []
        for i, enc in enumerate(self.encrypted):
            data = run.payload(self.size_bytes)
            result = run.add_result(f"{'tcpcrypt' if enc else 'plain'}-{i + 1}", data)
            watch = _Watch(
                result, "encrypted" if enc else "fallback", data, client_here=client_here, server_here=server_here
            )
            config = self.config if enc else None
            port = self.port + i

            def server_extension(watch: _Watch = watch, config: EnoConfig | None = config) -> EnoExtension | None:
                ext = watch.watch(EnoExtension(config) if config is not None else None)
                watch.servers.append(ext)
                return ext

            if server_here:
                dst.listen(port, lambda watch=watch: _Sink(watch), extension_factory=server_extension)
            steps.append((watch, config, port))

        def start(i: int) -> None:
            if i >= len(steps):
                return
            watch, config, port = steps[i]
            watch.result.started_at = src.now
            watch.client = watch.watch(EnoExtension(config) if config is not None else None)
            watch.note()
            then = lambda: run.net.call_at(run.net.now + self.gap_s, lambda: start(i + 1))  # noqa: E731
            src.connect(remote, port, _ChainedSender(watch, then), extension=watch.client)

        if client_here:
            run.net.call_at(0.0, lambda: start(0))

"""A sans-I/O Multipath TCP connection (RFC 8684, and RFC 6824 v0).

An :class:`MptcpConnection` owns several subflows, each a plain
:class:`~lab.tcp.TcpConnection` carrying an :class:`MptcpSubflow` extension
that adds and reads the kind-30 options and hands the subflow's byte stream
to the connection. The connection level holds the data-sequence space:

* **send side** — the application's bytes wait in one buffer; the scheduler
  cuts them into *mappings* (data sequence number, subflow sequence number,
  length) queued on the subflow with room; every segment carries the DSS of
  the mapping it lies in (the subflow never lets a segment straddle two); the
  peer's Data ACK frees the buffer. When a subflow dies, its unacknowledged
  mappings are reinjected on the others.
* **receive side** — subflow bytes are placed by their mapping into one
  reassembly queue; in-order bytes go to the application and advance the Data
  ACK every outgoing segment carries.
* **checksum failure** (RFC 8684 §3.7) — with DSS checksums, a mapping whose
  checksum fails is never delivered. With other subflows its subflow is reset
  (MP_FAIL, MP_TCPRST); on the only subflow the receiver sends MP_FAIL and
  drops the subflow's bytes until the sender's infinite mapping, which starts
  the data from the receiver's Data ACK on again after everything the subflow
  already held: plain TCP from there, byte-exact. A peer that cannot follow
  that (it keeps the altered bytes, or never sends them again) gets a reset.

Time comes in as ``now``; keys and nonces come from the injected ``rng``.
Everything the TUI and graders need goes to the tracer (layer ``mptcp``):
options sent and received (decoded), subflow states, keys, fallback,
reinjection and per-subflow metrics.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections import deque
from collections.abc import Callable

from lab.errors import DecodeError, LocalProtocolError
from lab.mptcp import crypto
from lab.mptcp import events as ev
from lab.mptcp.config import MAX_MAPPING_BYTES, MptcpConfig
from lab.mptcp.options import (
    ADD_ADDR_RETRIES,
    DSS_ACK_BYTES,
    DSS_MAPPING_EXTRA,
    MOD64,
    MP_FAIL_CLOSED,
    MP_FAIL_FALLBACK,
    MP_FAIL_NO_MAPPING,
    MP_FAIL_WAIT_S,
    OptionBuilder,
    _whole_segments,
    option_record,
)
from lab.mptcp.state import TRANSITIONS as SUBFLOW_TRANSITIONS
from lab.mptcp.state import Role, SubflowInput, SubflowState
from lab.mptcp.strategies import (
    COUPLED_CONGESTION,
    PATH_MANAGERS,
    SCHEDULERS,
    CoupledGroup,
)
from lab.tcp import TcpConfig, TcpConnection
from lab.tcp import events as tcp_events
from lab.tcp.addresses import FourTuple, Outgoing
from lab.tcp.extension import TcpExtension
from lab.tcp.group import ConnectionGroup
from lab.tcp.state import TcpState
from lab.trace import NULL_TRACER, Tracer
from lab.wire import mptcp as w
from lab.wire.tcp import TcpSegment, UnknownOption


# the tail of the data is sent again on another subflow only when the one holding it is this much slower
TAIL_REINJECT_RTT_RATIO = 2.0


class Subflow:
    """One subflow: its TCP connection and the MPTCP bookkeeping that goes with it."""

    def __init__(self, mp: MptcpConnection, addr: FourTuple, *, initial: bool, local_id: int, backup: bool) -> None:
        self.mp = mp
        self.addr = addr
        self.initial = initial
        self.local_id = local_id
        self.remote_id: int | None = 0 if initial else None
        self.backup = backup
        self.peer_backup = False
        self.state = SubflowState.SYN
        self.local_nonce = mp._rng.getrandbits(32)
        self.remote_nonce = 0
        # send mappings: parallel lists sorted by subflow offset
        self.map_sub: list[int] = []  # subflow stream offset of each mapping
        self.map_len: list[int] = []
        self.map_data: list[int] = []  # connection-level data offset
        self.map_csum: list[int | None] = []
        # receive mappings: subflow offset -> (length, dsn64), checked in order
        self.rmaps: deque[list] = deque()  # [sub_off, length, data_off, checksum, collected bytearray|None]
        self.got_dss = False  # a DSS (or MPC with data) has arrived on this subflow
        self.join_ack_at: float | None = None
        self.join_ack_tries = 0
        self.stall_handled = False  # its data was reinjected when the RTO fired
        self.reset_reason: int | None = None
        self.doomed = False  # a reset is on its way
        self.prio_pending = False  # an MP_PRIO with our backup flag waits for an ACK
        self.ack_owed = False  # a signal went alone on a pure ACK: the Data ACK follows on another
        self.fail_dsn: int | None = None  # the mapping whose DSS checksum failed (MP_FAIL on our RST)
        # single subflow, RFC 8684 §3.7: MP_FAIL sent on ACKs, subflow bytes from the failed mapping on
        # are discarded until the peer's infinite mapping says where the data stream resumes
        self.fail_sub_off: int | None = None  # subflow offset of the failed mapping
        self.discarded_to = 0  # subflow offset just past the bytes discarded since
        self.plain_from: int | None = None  # ... and where the first segment without MPTCP options starts
        self.redundant_next = 0  # the redundant scheduler's cursor in the data stream
        self.close_reason = ""
        self.bytes_scheduled = 0
        self.bytes_received = 0
        self.last_acked = 0
        self.rate_bps = 0.0
        self.rate_at = 0.0
        self.ext = MptcpSubflow(self)
        self.conn: TcpConnection  # set by the connection right after

    # SubflowView for schedulers
    @property
    def srtt(self) -> float | None:
        return self.conn.srtt

    @property
    def cwnd(self) -> int:
        return self.conn.congestion.cwnd

    @property
    def send_room(self) -> int:
        conn = self.conn  # in loss recovery new data may go out as RFC 6675's pipe allows
        return conn.congestion.cwnd - conn.pipe_bytes - conn.unsent_bytes

    @property
    def stalled(self) -> bool:
        """An RTO fired and nothing was acknowledged since (the path may be dead)."""
        return self.conn.rto_backoff > 0

    @property
    def usable(self) -> bool:
        return self.state == SubflowState.ESTABLISHED and self.conn.state is TcpState.ESTABLISHED

    def mapping_at(self, sub_off: int) -> int:
        """Index of the send mapping containing ``sub_off`` (-1 when none)."""
        i = bisect.bisect_right(self.map_sub, sub_off) - 1
        if i >= 0 and sub_off < self.map_sub[i] + self.map_len[i]:
            return i
        return -1


class MptcpSubflow(TcpExtension):
    """The TCP extension on each subflow: hands every hook to the MPTCP connection."""

    name = "mptcp"
    owns_stream = True
    data_option_bytes = DSS_ACK_BYTES

    def __init__(self, subflow: Subflow) -> None:
        self.subflow = subflow

    def options_to_send(self, role, *, stream_offset, length, now):
        return self.subflow.mp._options_for(self.subflow, role, stream_offset, length, now)

    def options_received(self, role, segment, *, stream_offset, now):
        self.subflow.mp._on_options(self.subflow, role, segment, stream_offset, now)

    def state_changed(self, old, new, *, now):
        self.subflow.mp._on_tcp_state(self.subflow, old, new, now)

    def app_send(self, data):  # the application writes to the MptcpConnection, never to a subflow
        raise LocalProtocolError("write to the MPTCP connection, not to a subflow")

    def stream_received(self, data, *, stream_offset, now):
        self.subflow.mp._on_subflow_data(self.subflow, data, stream_offset, now)

    def segment_limit(self, stream_offset):
        return self.subflow.mp._segment_limit(self.subflow, stream_offset)

    def receive_window(self):
        return self.subflow.mp._receive_window()

    def rst_options(self):
        sf = self.subflow
        mp = sf.mp
        if mp.fallback is not None or mp.remote_key is None:
            return ()
        opts: list[w.MptcpOption] = []
        if mp.terminated or mp._fastclosing:
            opts.append(w.MpFastclose(receiver_key=mp.remote_key))
        if sf.fail_dsn is not None:
            opts.append(w.MpFail(data_seq=sf.fail_dsn))  # RFC 8684 §3.7, as Linux sends it
        if sf.reset_reason is not None and mp.version == 1:
            opts.append(w.MpTcpRst(reason=sf.reset_reason))
        return [w.to_tcp_option(o) for o in opts]

    def rst_received(self, segment, *, now):
        self.subflow.mp._on_rst(self.subflow, segment, now)


class MptcpConnection(OptionBuilder, ConnectionGroup):
    """One MPTCP connection: subflows, data-sequence space, scheduler and path manager.

    Commands raise LocalProtocolError when called in the wrong state; a
    misbehaving peer never makes ``receive_segment`` raise.
    """

    layer = "mptcp"

    def __init__(
        self,
        *,
        config: MptcpConfig,
        role: str,
        local_addresses: list[str],
        tcp_config: TcpConfig | None = None,
        tracer: Tracer = NULL_TRACER,
        rng: random.Random | None = None,
        allocate_port: Callable[[], int] | None = None,
        token_in_use: Callable[[int], bool] | None = None,
        version_cache: dict[str, int] | None = None,
    ) -> None:
        """``version_cache`` (shared by a host's connections) maps a server's address to the
        MPTCP version a client offers it next (see ``MptcpConfig.versions``)."""
        self.config = config
        self.role = role
        self.version = config.version
        self._token_in_use = token_in_use
        self._version_cache = version_cache
        self.local_addresses = list(local_addresses)
        self.tcp_config = tcp_config or TcpConfig()
        self._tracer = tracer
        self._trace_on = tracer.enabled
        self._rng = rng or random.Random(0)
        self._allocate_port = allocate_port or (lambda: 40000 + self._rng.randrange(20000))
        # keys: redraw on a token collision with another connection of this host (RFC 8684 §3.1)
        while True:
            self.local_key = self._rng.getrandbits(64)
            self.local_token = crypto.key_token(self.local_key, version=self.version)
            if token_in_use is None or not token_in_use(self.local_token):
                break
        self.local_idsn = crypto.key_idsn(self.local_key, version=self.version)
        self.remote_key: int | None = None
        self.remote_token: int | None = None
        self.remote_idsn = 0
        self.checksum = config.checksum
        self.fallback: str | None = None
        self.established = False  # MP_CAPABLE handshake done (or fallen back)
        self.fully_established = False  # client: the server showed it has our keys
        self.terminated = False
        self._events: deque[ev.MptcpEvent | tcp_events.TcpEvent] = deque()
        self.subflows: list[Subflow] = []
        self._by_addr: dict[FourTuple, Subflow] = {}
        self._new_conns: list[TcpConnection] = []
        self._closed_conns: list[TcpConnection] = []
        self._scheduler = SCHEDULERS[config.scheduler]()
        self._path_manager = PATH_MANAGERS[config.path_manager]()
        cc_cls = COUPLED_CONGESTION[config.congestion]
        self._cc_cls = cc_cls
        self._cc_group = CoupledGroup() if cc_cls is not None else None
        self._next_local_id = 1
        self.remote_addresses: list[tuple[str, int]] = []  # (address, port) the peer announced
        self._remote_ids: dict[tuple[str, int], int] = {}
        self._announce: list[list] = []  # [address_id, address, retries_left, next_at]
        self._echo: list[w.AddAddr] = []
        self._announced = False
        self._failed_pairs: set[tuple[str, str, int]] = set()
        self._initial_pair: tuple[str, str, int] | None = None
        # send side (offsets count from the first data byte, DSN = IDSN + 1 + offset)
        self._sbuf = bytearray()
        self._sbuf_off = 0
        self._snd_nxt = 0  # next new offset to schedule
        self._data_una = 0  # the peer's Data ACK (offset)
        self._data_una_at = 0.0  # when it last moved
        self._reinject: list[tuple[int, int]] = []  # (offset, length) to send again
        self._peer_window = 65535
        self._fin_queued = False
        self._fin_off: int | None = None
        self._fin_acked = False
        self._fin_retx_at: float | None = None
        self._fin_tries = 0
        # receive side
        self._rcv_nxt = 0
        self._rcv_heap: list[tuple[int, bytes]] = []
        self._rcv_heap_bytes = 0
        self._peer_fin_off: int | None = None
        self._peer_fin_seen = False
        self._reading = True
        self._held = bytearray()
        self.bytes_reinjected = 0
        self._close_called = False
        self._metrics_at = 0.0
        self._fastclosed_by_peer = False
        self._dead: list[Subflow] = []  # subflows gone since the last output (a RST may still wait)
        self._pending_resets: list[tuple[Subflow, str, int]] = []
        self._pending_abort: str | None = None
        self._fastclosing = False
        self._opportunistic_una = -1
        self._hole_filled = False
        self._signals: list[w.MptcpOption] = []  # REMOVE_ADDR waiting for an ACK to ride on
        self._backup_addresses = set(config.backup_addresses)
        self._down: set[str] = set()  # local addresses whose interface has no carrier
        # data-level retransmission: data acknowledged by a subflow but not by a Data ACK
        self._data_rtx_at: float | None = None
        self._data_rtx_backoff = 0
        # checksum failure on the only subflow (RFC 8684 §3.7): MP_FAIL, then an infinite mapping.
        # Our subflow stream must still be our data stream for that: no other subflow was ever
        # opened and no data went out twice (the peer reads our stream as plain TCP afterwards).
        self._infinite_ok = True
        self._mpfail_deadline: float | None = None  # MP_FAIL sent: the peer's infinite mapping is due
        # MP_FAIL received: [subflow offset, DSN, Data ACK] of the infinite mapping we send
        self._infinite_map: list[int] | None = None
        self._fail_watch_off: int | None = None  # data offset the peer's Data ACK must not pass
        self._fallback_skip = 0  # after fallback: subflow bytes before this offset are not data

    # --- the host's view ------------------------------------------------------------------

    @property
    def addr(self) -> FourTuple:
        return self.subflows[0].addr if self.subflows else FourTuple("0.0.0.0", 0, "0.0.0.0", 0)

    @property
    def state(self) -> TcpState:
        if self.terminated:
            return TcpState.CLOSED
        return TcpState.ESTABLISHED if self.established else TcpState.SYN_SENT

    @property
    def send_buffered(self) -> int:
        """Bytes written but not yet handed to a subflow (what an application keeps topped up);
        data on subflows waits for its Data ACK in the connection's buffer as well."""
        if self.fallback is not None and self.subflows:
            return self.subflows[0].conn.send_buffered
        return self._sbuf_off + len(self._sbuf) - self._snd_nxt + sum(n for _, n in self._reinject)

    @property
    def writable(self) -> bool:
        return self.established and not self._fin_queued and not self.terminated

    def take_new_subflows(self) -> list[TcpConnection]:
        out, self._new_conns = self._new_conns, []
        return out

    def take_closed_subflows(self) -> list[TcpConnection]:
        out, self._closed_conns = self._closed_conns, []
        return out

    def subflow_for(self, addr: FourTuple) -> TcpConnection | None:
        sf = self._by_addr.get(addr)
        return sf.conn if sf is not None else None

    # --- commands ------------------------------------------------------------------------------

    def connect(self, addr: FourTuple, *, now: float) -> None:
        """Active open of the initial subflow. Raises LocalProtocolError unless new."""
        if self.subflows or self.role != Role.CLIENT:
            raise LocalProtocolError("connect() is for a new client connection")
        self._initial_pair = (addr.local_addr, addr.remote_addr, addr.remote_port)
        cached = None if self._version_cache is None else self._version_cache.get(addr.remote_addr)
        if cached is not None and cached != self.version and cached in self.config.supported_versions:
            self._set_version(cached, now, offered=cached, why=f"remembered for this server: v{cached}")
        sf = self._add_subflow(addr, initial=True, local_id=0, backup=False, now=now)
        sf.conn.connect(now=now)
        self._trace_keys(now)

    def accept(self, addr: FourTuple, segment: bytes, *, now: float) -> None:
        """Passive open: ``segment`` is the SYN (with or without MP_CAPABLE) that reached a listener."""
        if self.subflows or self.role != Role.SERVER:
            raise LocalProtocolError("accept() is for a new server connection")
        self._initial_pair = (addr.local_addr, addr.remote_addr, addr.remote_port)
        sf = self._add_subflow(addr, initial=True, local_id=0, backup=False, now=now)
        sf.conn.listen(now=now)
        sf.conn.receive_segment(segment, now=now)

    def accept_join(self, addr: FourTuple, segment: bytes, *, now: float) -> None:
        """A SYN with MP_JOIN carrying this connection's token reached a listener of this host."""
        if not self.established or self.fallback is not None or self.terminated:
            return  # not ready for joins: the host answers with a RST
        if len(self.subflows) >= self.config.max_subflows:
            self._trace(now, "segment_dropped", {"token": self.local_token, "subflow": str(addr), "reason": "max_subflows"})
            return
        sf = self._add_subflow(
            addr, initial=False, local_id=self._local_id_of(addr.local_addr), backup=self._is_backup(addr), now=now
        )
        sf.conn.listen(now=now)
        sf.conn.receive_segment(segment, now=now)

    def open_subflow(self, addr: FourTuple, *, now: float, backup: bool | None = None) -> None:
        """Open an MP_JOIN subflow on ``addr``. Raises LocalProtocolError before MPTCP is established."""
        if not self.established or self.fallback is not None or self.terminated or self.remote_key is None:
            raise LocalProtocolError("MP_JOIN needs an established MPTCP connection")
        if addr in self._by_addr:
            raise LocalProtocolError(f"subflow {addr} exists")
        backup = self._is_backup(addr) if backup is None else backup
        sf = self._add_subflow(addr, initial=False, local_id=self._local_id_of(addr.local_addr), backup=backup, now=now)
        sf.conn.connect(now=now)

    def set_backup(self, address: str, backup: bool, *, now: float) -> None:
        """Change the priority of the subflows on local ``address`` and tell the peer with MP_PRIO
        (RFC 8684 §3.3.8). Raises LocalProtocolError before MPTCP is established."""
        if not self.established or self.fallback is not None:
            raise LocalProtocolError("MP_PRIO needs an established MPTCP connection")
        if backup:
            self._backup_addresses.add(address)
        else:
            self._backup_addresses.discard(address)
        for sf in self.subflows:
            if sf.addr.local_addr == address and sf.backup != backup:
                sf.backup = backup
                sf.prio_pending = True
                sf.conn.request_ack()
                self._trace(
                    now, "state_updated", {"token": self.local_token, "subflow": str(sf.addr), "backup": backup}
                )

    def address_changed(self, address: str, up: bool, *, now: float) -> None:
        """Our interface with ``address`` lost or regained its carrier (path manager, RFC 8684 §3.4).

        Down: its subflows are closed (their data goes to the others) and the peer gets a
        REMOVE_ADDR for it. Up: the address is announced again and subflows reopened.
        """
        if address not in self.local_addresses or self.fallback is not None or self.terminated:
            return
        self._trace(now, "state_updated", {"token": self.local_token, "address": address, "up": up})
        if not up:
            self._down.add(address)
            address_id = self._local_id_of(address) if self.subflows else 0
            self._announce = [e for e in self._announce if e[1] != address]
            for sf in list(self.subflows):
                if sf.addr.local_addr == address and sf.conn.state is not TcpState.CLOSED:
                    sf.close_reason = "local address went down"
                    sf.conn.abort("local address went down", now=now)
            if self.established and self.remote_key is not None and address_id != 0:
                self._signals.append(w.RemoveAddr(address_ids=(address_id,)))
                fast = self._pick_for_signal()
                if fast is not None:
                    fast.conn.request_ack()
            return
        if address not in self._down:
            return
        self._down.discard(address)
        self._failed_pairs = {p for p in self._failed_pairs if p[0] != address}
        if self.established and self.subflows and self._announces():
            first_local = self.subflows[0].addr.local_addr
            same_family = (":" in address) == (":" in first_local)
            if address != first_local and same_family and not any(e[1] == address for e in self._announce):
                self._announce.append(
                    [self._local_id_of(address), address, ADD_ADDR_RETRIES, now, False, self.config.announce_port]
                )
                self._resend_announcements(now)
        self._open_planned_subflows(now)

    def send(self, data: bytes) -> None:
        """Queue application bytes. Raises LocalProtocolError after close() or termination."""
        if self._fin_queued or self.terminated:
            raise LocalProtocolError("cannot send after close")
        if self.fallback is not None:
            self.subflows[0].conn.send_stream(bytes(data))
            return
        self._sbuf += data

    def close(self, *, now: float) -> None:
        """Send DATA_FIN after queued data (or FIN, after fallback). Raises LocalProtocolError when closing."""
        if self._fin_queued or self.terminated:
            raise LocalProtocolError("already closing")
        self._fin_queued = True
        self._close_called = True
        if self.fallback is not None or not self.established:
            for sf in list(self.subflows):
                self._close_subflow(sf, now, "connection closed")
            return
        self._fin_off = self._sbuf_off + len(self._sbuf)
        for sf in self.subflows:
            sf.conn.push_tail = True  # the data's short tail goes out now, not after an RTT (Nagle)

    def abort(self, reason: str = "aborted", *, now: float) -> None:
        """MP_FASTCLOSE (RFC 8684 §3.5): RST with MP_FASTCLOSE on every subflow."""
        if self.terminated:
            return
        self._fastclosing = True
        for sf in list(self.subflows):
            sf.reset_reason = w.MPTCP_RST_UNSPECIFIED
            sf.conn.abort(reason, now=now)
        self._terminate(reason, now, reset=True)

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self, *, now: float) -> None:
        self._reading = True
        if self._held:
            data, self._held = bytes(self._held), bytearray()
            self._events.append(ev.DataReceived(data=data))
        for sf in self.subflows:
            sf.conn.request_ack()

    # --- input, output, timers -----------------------------------------------------------------

    def receive_segment(self, segment: bytes, *, addr: FourTuple, now: float) -> None:
        """A segment for one of our subflows (by its four-tuple); unknown tuples are recorded and dropped."""
        sf = self._by_addr.get(addr)
        if sf is None:
            self._trace(now, "segment_dropped", {"subflow": str(addr), "reason": "no such subflow"})
            return
        sf.conn.receive_segment(segment, now=now)

    def segments_to_send(self, *, now: float) -> list[Outgoing]:
        self._drain_subflow_events(now)
        if self.fallback is None and self.established and not self.terminated:
            for sf in self.subflows:
                if sf.stalled:
                    if not sf.stall_handled:
                        sf.stall_handled = True
                        self._reinject_from(sf, now, "retransmission timeout")
                elif sf.stall_handled:
                    sf.stall_handled = False
                if (
                    sf.initial
                    and self.role == Role.CLIENT
                    and not self.fully_established
                    and not sf.got_dss
                    and sf.conn.stream_offset_acked > 0
                ):
                    # RFC 8684 §3.7: our data is acknowledged, but never with a DSS: the peer is not MPTCP
                    self._fall_back("data acknowledged without a Data ACK", now)
                    return self.segments_to_send(now=now)
            self._schedule(now)
            if self._data_una < self._snd_nxt and self._data_rtx_at is None:
                self._arm_data_rtx(now)
            if self._fin_off is not None and not self._fin_acked and self._snd_nxt >= self._fin_off:
                if self._fin_retx_at is None:
                    self._send_data_fin(now)
            self._maybe_close_subflows(now)
        out: list[Outgoing] = []
        if self._hole_filled:
            # a hole in the data sequence was just filled: the jump of the Data ACK goes out on the
            # lowest-RTT subflow too, not only on the (possibly slow) one that filled it
            self._hole_filled = False
            fast = self._pick_for_signal()
            if fast is not None:
                fast.conn.request_ack()
        if self._pending_resets:
            pending, self._pending_resets = self._pending_resets, []
            for sf, reason, code in pending:
                if sf in self.subflows:
                    self._reset_subflow(sf, reason, code, now)
        if self._pending_abort is not None and not self.terminated:
            self.abort(self._pending_abort, now=now)
        for sf in self.subflows:
            if sf.conn.state is TcpState.CLOSE_WAIT and sf.state == SubflowState.ESTABLISHED and self.fallback is None:
                # the peer closed this subflow (a subflow FIN is not a DATA_FIN): close our side too
                if sf.fail_sub_off is not None:  # before the infinite mapping our MP_FAIL waits for
                    self._trace(now, "error", {"token": self.local_token, "reason": MP_FAIL_CLOSED})
                    self.abort(MP_FAIL_CLOSED, now=now)
                    break
                self._close_subflow(sf, now, "peer closed the subflow")
        out: list[Outgoing] = []
        for sf in self.subflows:
            segs = sf.conn.segments_to_send(now=now)
            if sf.ack_owed or (segs and self._signal_waits(sf)):
                # an address signal rides on a pure ACK: one that data segments left behind (their ACK
                # went with the data, their mapping left no room) goes on a pure ACK of its own now
                sf.ack_owed = False
                sf.conn.request_ack()
                segs = [*segs, *sf.conn.segments_to_send(now=now)]
            if segs:
                out.extend(segs)
        self._drain_subflow_events(now)
        if self._dead:
            for sf in self._dead:
                segs = sf.conn.segments_to_send(now=now)
                if segs:
                    out.extend(segs)
            self._dead.clear()
        return out

    def next_event(self) -> ev.MptcpEvent | tcp_events.TcpEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        best = None
        for sf in self.subflows:
            t = sf.conn.get_timer()
            if t is not None and (best is None or t < best):
                best = t
            if sf.join_ack_at is not None and (best is None or sf.join_ack_at < best):
                best = sf.join_ack_at
        for t in (self._fin_retx_at, self._data_rtx_at, min(e[3] for e in self._announce) if self._announce else None):
            if t is not None and (best is None or t < best):
                best = t
        if self._mpfail_deadline is not None and (best is None or self._mpfail_deadline < best):
            best = self._mpfail_deadline
        return best

    def handle_timer(self, *, now: float) -> None:
        for sf in list(self.subflows):
            t = sf.conn.get_timer()
            if t is not None and t <= now:
                sf.conn.handle_timer(now=now)
            if sf.join_ack_at is not None and sf.join_ack_at <= now:
                self._resend_join_ack(sf, now)
        if self._data_rtx_at is not None and self._data_rtx_at <= now:
            self._on_data_rtx(now)
        if self._mpfail_deadline is not None and self._mpfail_deadline <= now:
            self._mpfail_deadline = None
            self._abort_after_fail("no infinite mapping came after our MP_FAIL", now)
        if self._fin_retx_at is not None and self._fin_retx_at <= now and not self._fin_acked:
            self._fin_retx_at = None
            self._send_data_fin(now)
        if self._announce and min(e[3] for e in self._announce) <= now:
            self._resend_announcements(now)
        self._drain_subflow_events(now)

    def metrics(self) -> list[dict]:
        """Per-subflow figures for ``metrics_updated`` (the TUI's subflow table)."""
        out = []
        for sf in self.subflows:
            conn = sf.conn
            acked = conn.stream_offset_acked
            out.append(
                {
                    "token": self.local_token,
                    "subflow": str(sf.addr),
                    "address_id": sf.local_id,
                    "state": sf.state,
                    "backup": sf.backup or sf.peer_backup,
                    "srtt_ms": None if conn.srtt is None else round(conn.srtt * 1000, 3),
                    "cwnd": conn.congestion.cwnd,
                    "bytes_sent": sf.bytes_scheduled,
                    "bytes_acked": acked,
                    "bytes_sacked": conn.sacked_bytes,
                    "bytes_received": sf.bytes_received,
                    "rate_bps": round(sf.rate_bps),
                }
            )
        return out

    def sample_rates(self, now: float) -> None:
        """Update each subflow's acknowledged-bytes rate (called by the metrics sampler)."""
        for sf in self.subflows:
            acked = sf.conn.stream_offset_acked
            if now > sf.rate_at:
                sf.rate_bps = (acked - sf.last_acked) * 8 / (now - sf.rate_at) if sf.rate_at else 0.0
            sf.last_acked = acked
            sf.rate_at = now

    # --- subflow management ----------------------------------------------------------------------

    def _add_subflow(self, addr: FourTuple, *, initial: bool, local_id: int, backup: bool, now: float) -> Subflow:
        sf = Subflow(self, addr, initial=initial, local_id=local_id, backup=backup)
        if not initial:
            self._infinite_ok = False  # our data may now take several subflows: no MP_FAIL fallback
        congestion = None
        if self._cc_cls is not None:
            congestion = self._cc_cls(
                mss=536,
                initial_window_segments=self.tcp_config.initial_window_segments,
                group=self._cc_group,
                base=self.tcp_config.congestion_control,
            )
        sf.conn = TcpConnection(
            addr=addr,
            config=self.tcp_config,
            tracer=self._tracer,
            rng=random.Random(self._rng.getrandbits(64)),
            extension=sf.ext,
            congestion=congestion,
        )
        self.subflows.append(sf)
        self._by_addr[addr] = sf
        self._new_conns.append(sf.conn)
        self._trace(
            now,
            "state_updated",
            {
                "token": self.local_token,
                "subflow": str(addr),
                "address_id": local_id,
                "from": None,
                "to": SubflowState.SYN,
                "backup": backup,
                "initial": initial,
            },
        )
        return sf

    def _set_subflow_state(self, sf: Subflow, inp: SubflowInput, now: float, **extra) -> None:
        """The one place a subflow's state changes: ``inp`` looked up in lab.mptcp.state's table
        (a pair not in it changes nothing), recorded as ``state_updated``."""
        old = sf.state
        new = SUBFLOW_TRANSITIONS.get((old, inp))
        if new is None or new is old:
            return
        sf.state = new
        self._trace(
            now,
            "state_updated",
            {
                "token": self.local_token,
                "subflow": str(sf.addr),
                "address_id": sf.local_id,
                "from": old,
                "to": new,
                "backup": sf.backup or sf.peer_backup,
                **extra,
            },
        )

    def _local_id_of(self, address: str) -> int:
        if self.subflows and address == self.subflows[0].addr.local_addr:
            return 0
        try:
            return 1 + [a for a in self.local_addresses if a != self.subflows[0].addr.local_addr].index(address)
        except (ValueError, IndexError):
            return 0

    def _is_backup(self, addr: FourTuple) -> bool:
        return addr.local_addr in self._backup_addresses

    def _drain_subflow_events(self, now: float) -> None:
        for sf in list(self.subflows):
            conn = sf.conn
            while (e := conn.next_event()) is not None:
                t = type(e)
                if t is tcp_events.ConnectionEstablished:
                    self._on_subflow_established(sf, now)
                elif t is tcp_events.DataReceived:  # only after fallback: TCP delivers directly
                    self._deliver(e.data)
                elif t is tcp_events.StreamEnded:
                    # (a DATA_FIN seen before a fallback on MP_FAIL already ended the stream)
                    if self.fallback is not None and sf.initial and not self._peer_fin_seen:
                        self._events.append(ev.StreamEnded())
                elif t is tcp_events.ConnectionTerminated:
                    self._on_subflow_gone(sf, e.reason, e.reset, now)

    def _on_subflow_established(self, sf: Subflow, now: float) -> None:
        if sf.initial:
            if self.fallback is None and not self.established:
                # the handshake completed without the MP_CAPABLE exchange finishing
                self._fall_back("MP_CAPABLE handshake incomplete", now)
            if not self.established:
                self.established = True
            self._events.append(ev.ConnectionEstablished())
            if self.fallback is None:
                self._set_subflow_state(sf, SubflowInput.HANDSHAKE_COMPLETED, now)
                self._events.append(ev.SubflowEstablished(addr=sf.addr, address_id=sf.local_id))
                self._after_established(now)
            return
        if sf.state == SubflowState.SYN and self.role == Role.SERVER:
            # passive join: the third ACK carried a valid HMAC (checked in _on_options)
            pass

    def _announces(self) -> bool:
        """Whether we send ADD_ADDR for our other addresses: the server does, as its path manager says.
        A client opens its subflows from those addresses itself, and the port an ADD_ADDR without a port
        names (RFC 8684 §3.4.1: the initial subflow's) takes no MP_JOIN on a client: an announcement would
        only invite a join it refuses. Linux as server does connect back to an address a client announces
        (when its add_addr_accepted limit allows) unless it already has a subflow there, and got a RST."""
        return self.config.announce and self._path_manager.announces and self.role == Role.SERVER

    def _after_established(self, now: float) -> None:
        """Path manager: announce our other addresses and open subflows."""
        if self._announced or self.fallback is not None:
            return
        self._announced = True
        if self._announces():
            first_local = self.subflows[0].addr.local_addr
            for address in self.local_addresses:
                if address != first_local and (":" in address) == (":" in first_local):
                    # [address_id, address, tries left, next try at, due now, port (None: none sent)]
                    self._announce.append(
                        [self._local_id_of(address), address, ADD_ADDR_RETRIES, now, False, self.config.announce_port]
                    )
            if self._announce:
                self._resend_announcements(now)
        self._open_planned_subflows(now)

    def _open_planned_subflows(self, now: float) -> None:
        if self.role != Role.CLIENT or not self.config.join or self.fallback is not None or self._fin_acked:
            return
        if self._initial_pair is None or self.remote_key is None or not self.established:
            return
        if not self.fully_established:
            # an MP_JOIN SYN sent beside our third ACK can reach the server first, by another path,
            # before it knows the token: refused with a RST, and that subflow was never tried again
            # (Linux's path manager too opens subflows once the connection is fully established)
            return
        in_use = {(s.addr.local_addr, s.addr.remote_addr, s.addr.remote_port) for s in self.subflows}
        in_use |= self._failed_pairs
        remote = [(self._initial_pair[1], self._initial_pair[2]), *self.remote_addresses]
        usable_locals = [a for a in self.local_addresses if a not in self._down]
        for local, raddr, rport in self._path_manager.subflows_to_open(
            local_addresses=usable_locals, remote_addresses=remote, in_use=in_use, initial=self._initial_pair
        ):
            if len(self.subflows) >= self.config.max_subflows:
                break
            addr = FourTuple(local, self._allocate_port(), raddr, rport)
            self.open_subflow(addr, now=now)

    def _on_subflow_gone(self, sf: Subflow, reason: str, reset: bool, now: float) -> None:
        if sf not in self.subflows:
            return
        self.subflows.remove(sf)
        self._by_addr.pop(sf.addr, None)
        self._closed_conns.append(sf.conn)
        self._dead.append(sf)
        if hasattr(sf.conn.congestion, "active"):
            sf.conn.congestion.active = False
        reason = sf.close_reason or reason
        was = sf.state
        self._set_subflow_state(
            sf,
            SubflowInput.TERMINATED,
            now,
            reason=reason,
            reset=reset,
            bytes_sent=sf.bytes_scheduled,
            bytes_received=sf.bytes_received,
        )
        self._events.append(ev.SubflowClosed(addr=sf.addr, reason=reason))
        if was == SubflowState.SYN and not sf.initial and not self._close_called:
            self._failed_pairs.add((sf.addr.local_addr, sf.addr.remote_addr, sf.addr.remote_port))
        # reinject what the peer has not acknowledged at connection level
        if self.fallback is None and not sf.stall_handled:
            self._reinject_from(sf, now, "subflow closed")
        if not self.subflows and not self.terminated:
            done = self._fin_acked and (self._peer_fin_seen or self.fallback is not None)
            if self.fallback is not None:
                done = not reset
            self._terminate("closed" if done else reason, now, reset=reset and not done)

    def _reinject_from(self, sf: Subflow, now: float, why: str) -> None:
        """Queue the data of ``sf``'s mappings that the peer has not Data-ACKed for other subflows."""
        if self._mpfail_deadline is not None:
            return  # the peer may read our subflow as plain TCP any moment: nothing goes out twice
        for length, data in zip(sf.map_len, sf.map_data, strict=True):
            end = data + length
            if end > self._data_una:
                self._infinite_ok = False
                start = max(data, self._data_una)
                self._reinject.append((start, end - start))
                self.bytes_reinjected += end - start
                self._trace(
                    now,
                    "state_updated",
                    {
                        "token": self.local_token,
                        "reinjected": {
                            "data_seq": (self.local_idsn + 1 + start) % MOD64,
                            "len": end - start,
                            "from_subflow": str(sf.addr),
                            "why": why,
                        },
                    },
                )

    def _take_back_unsent(self, now: float) -> None:
        """Mappings queued on a subflow and not sent yet, whose data the peer has meanwhile Data-ACKed
        (a reinjection whose original arrived after all), are taken back from the subflow: sent, they
        would be new subflow bytes that nobody needs, and once the peer has closed its subflows at the
        end of the connection, new data on one is what a closed TCP socket answers with RST (Linux
        does). The other unsent mappings behind them go back to be scheduled again, first."""
        if self._scheduler.redundant:
            return  # each subflow's cursor walks the whole stream
        una = self._data_una
        for sf in self.subflows:
            conn = sf.conn
            unsent = conn.unsent_bytes
            if not unsent or not sf.map_sub:
                continue
            first_unsent = conn.stream_offset_queued - unsent
            maps = sf.map_sub
            i = len(maps)
            while i > 0 and maps[i - 1] >= first_unsent:
                i -= 1
            if i == len(maps) or all(d + n > una for d, n in zip(sf.map_data[i:], sf.map_len[i:], strict=True)):
                continue
            taken = conn.unsend_stream(maps[i])
            if not taken:
                continue
            again = [(max(d, una), d + n - max(d, una)) for d, n in zip(sf.map_data[i:], sf.map_len[i:], strict=True) if d + n > una]
            del sf.map_sub[i:], sf.map_len[i:], sf.map_data[i:], sf.map_csum[i:]
            sf.bytes_scheduled -= taken
            self._reinject[:0] = again
            self._trace(
                now,
                "state_updated",
                {"token": self.local_token, "subflow": str(sf.addr), "taken_back": taken, "rescheduled": sum(n for _, n in again)},
            )

    def _arm_data_rtx(self, now: float) -> None:
        rtos = [s.conn.rto for s in self.subflows if s.usable]
        base = max(rtos) if rtos else 1.0
        self._data_rtx_at = now + min(max(base, 0.2) * 2 * (1 << min(self._data_rtx_backoff, 6)), 60.0)

    def _on_data_rtx(self, now: float) -> None:
        """No Data ACK progress for two subflow RTOs although subflows carried the data (RFC 8684
        §3.3.6): send the head of the outstanding data again, on the best subflow."""
        self._data_rtx_at = None
        if self._data_una >= self._snd_nxt or self.fallback is not None or self.terminated:
            return
        if self._mpfail_deadline is not None:
            return  # see _reinject_from
        self._infinite_ok = False
        head = min(self._snd_nxt - self._data_una, self.config.mapping_bytes)
        self._reinject.insert(0, (self._data_una, head))
        self.bytes_reinjected += head
        self._data_rtx_backoff += 1
        self._trace(
            now,
            "state_updated",
            {
                "token": self.local_token,
                "reinjected": {
                    "data_seq": (self.local_idsn + 1 + self._data_una) % MOD64,
                    "len": head,
                    "why": "no Data ACK progress",
                },
            },
        )
        self._arm_data_rtx(now)

    def _close_subflow(self, sf: Subflow, now: float, reason: str) -> None:
        sf.close_reason = sf.close_reason or reason
        if sf.conn.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.SYN_RECEIVED):
            self._set_subflow_state(sf, SubflowInput.CLOSE, now)
            sf.conn.close(now=now)
        elif sf.conn.state in (TcpState.SYN_SENT, TcpState.LISTEN):
            sf.conn.close(now=now)

    def _reset_subflow(self, sf: Subflow, reason: str, code: int, now: float, *, defer: bool = False) -> None:
        """Close one subflow with RST + MP_TCPRST (RFC 8684 §3.6); the connection lives on.

        ``defer`` while the subflow is delivering data: the reset goes out with the next output.
        """
        if defer:
            sf.doomed = True
            self._pending_resets.append((sf, reason, code))
            return
        self._trace(now, "error", {"token": self.local_token, "subflow": str(sf.addr), "reason": reason})
        sf.reset_reason = code
        sf.close_reason = reason
        conn = sf.conn
        if conn.state is TcpState.SYN_SENT and conn._rcv_nxt:
            # refusing the SYN/ACK being read (a join with a wrong HMAC): TCP's abort sends nothing
            # before the handshake, but the peer holds a half-open subflow: RST + MP_TCPRST at
            # SEQ = SEG.ACK (RFC 8684 §3.2, RFC 9293 §3.10.7.3)
            conn._emit_rst(1, now)
        conn.abort(reason, now=now)

    def _terminate(self, reason: str, now: float, *, reset: bool) -> None:
        if self.terminated:
            return
        self.terminated = True
        self._mpfail_deadline = None
        self._trace(now, "state_updated", {"token": self.local_token, "terminated": reason, "reset": reset})
        self._events.append(ev.ConnectionTerminated(reason=reason, reset=reset))

    def _fall_back(self, reason: str, now: float) -> None:
        if self.fallback is not None:
            return
        self.fallback = reason
        self._trace(now, "state_updated", {"token": self.local_token, "fallback": reason})
        self._events.append(ev.FallbackToTcp(reason=reason))
        sf = self.subflows[0] if self.subflows else None
        if sf is not None:
            # whatever was queued at connection level continues as the plain TCP stream
            unsent = bytes(self._sbuf[self._snd_nxt - self._sbuf_off :])
            if unsent:
                sf.conn.send_stream(unsent)
            self._sbuf.clear()
            self._sbuf_off = self._snd_nxt = self._snd_nxt + len(unsent)
            for rm in sf.rmaps:
                if rm[4]:
                    self._deliver(bytes(rm[4]))
            sf.rmaps.clear()
            if self._fin_queued and sf.conn.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
                sf.conn.close(now=now)

    # --- options out --------------------------------------------------------------------------------

    def _resend_announcements(self, now: float) -> None:
        sf = self._pick_for_signal()
        for entry in self._announce:
            if entry[3] <= now:
                entry[4] = True
                entry[3] = now + 1.0  # looked at again if no ACK could carry it
        if sf is not None and sf.usable:
            sf.conn.request_ack()

    def _resend_join_ack(self, sf: Subflow, now: float) -> None:
        sf.join_ack_tries += 1
        if sf.join_ack_tries > 5:
            sf.join_ack_at = None
            self._reset_subflow(sf, "MP_JOIN third ACK never acknowledged", w.MPTCP_RST_MIDDLEBOX_INTERFERENCE, now)
            return
        sf.join_ack_at = now + max(0.2, (sf.conn.srtt or 0.5) * 2) * sf.join_ack_tries
        sf.conn.request_ack()

    def _send_data_fin(self, now: float) -> None:
        sf = self._pick_for_signal()
        if sf is None:
            return
        sf.conn.request_ack()
        if not self._fin_tries and sf.conn.unsent_bytes:
            # the data segments about to go would take the ACK we asked for, and a DATA_FIN rides
            # on a segment without a mapping: a pure ACK follows them at once (not after a timeout)
            sf.ack_owed = True
        if self._fin_tries:  # a retransmission: on every usable subflow, one of them may be dead
            for other in self.subflows:
                if other.usable:
                    other.conn.request_ack()
        self._fin_tries += 1
        rto = max(0.2, 2 * (sf.conn.srtt or 0.5))
        self._fin_retx_at = now + min(rto * (1 << min(self._fin_tries - 1, 6)), 60.0)

    def _pick_for_signal(self) -> Subflow | None:
        usable = [s for s in self.subflows if s.usable]
        if not usable:
            return None
        live = [s for s in usable if not s.stalled] or usable
        active = [s for s in live if not (s.backup or s.peer_backup)] or live
        return min(active, key=lambda s: s.srtt if s.srtt is not None else 1e9)

    # --- the scheduler ----------------------------------------------------------------------------------

    def _receive_window(self) -> int | None:
        if self.fallback is not None:
            return None
        return max(0, self.config.receive_buffer_bytes - self._rcv_heap_bytes - len(self._held))

    def _segment_limit(self, sf: Subflow, stream_offset: int) -> int:
        i = sf.mapping_at(stream_offset)
        if i < 0:
            return 1 << 62
        remaining = sf.map_sub[i] + sf.map_len[i] - stream_offset
        if stream_offset == sf.map_sub[i]:  # room for the mapping's 16 extra option bytes
            return min(remaining, sf.conn.mss - DSS_ACK_BYTES - DSS_MAPPING_EXTRA)
        if i == 0 and sf.initial and self.role == Role.CLIENT and not self.fully_established:
            # every segment of the first mapping carries MP_CAPABLE with data (22 or 24 bytes)
            return min(remaining, sf.conn.mss - DSS_ACK_BYTES - DSS_MAPPING_EXTRA)
        return remaining

    def _schedule(self, now: float) -> None:
        usable = [s for s in self.subflows if s.usable]
        if not usable:
            return
        active = [s for s in usable if not (s.backup or s.peer_backup)]
        if getattr(self._scheduler, "avoid_stalled", True):
            active = [s for s in active if not s.stalled]
            pool = active or [s for s in usable if not s.stalled] or usable
        else:
            pool = active or usable
        window_end = self._data_una + self._peer_window
        chunk_max = self.config.mapping_bytes
        if self._scheduler.redundant:
            self._schedule_redundant(pool, window_end)
            return
        for _ in range(10000):
            if self._reinject:
                start, length = self._reinject[0]
                if start + length <= self._data_una:
                    self._reinject.pop(0)
                    continue
                if start < self._data_una:
                    length -= self._data_una - start
                    start = self._data_una
                reinject = True
            else:
                start = self._snd_nxt
                length = min(self._sbuf_off + len(self._sbuf), window_end) - start
                reinject = False
                if length <= 0:
                    # nothing new may go out: when the peer's window is what stops us (or only the
                    # tail is left), and the oldest unacknowledged data sits on a slow subflow,
                    # send it again on a fast one
                    window_limited = window_end <= start < self._sbuf_off + len(self._sbuf)
                    tail = self._fin_queued and start >= self._sbuf_off + len(self._sbuf)
                    if (
                        self.config.opportunistic_retransmission
                        and (window_limited or tail)
                        and self._data_una < self._snd_nxt
                        and len(pool) > 1
                    ):
                        self._opportunistic(pool, now, penalise=window_limited)
                    return
            candidates = [s for s in pool if s.send_room >= min(length, s.conn.mss)]
            if not candidates:
                return
            chosen = self._scheduler.pick(candidates)
            if chosen is None:
                return
            if self.config.slow_path_check and self._wait_for_faster(chosen, pool, candidates, length):
                return
            n = max(1, min(length, chunk_max, chosen.send_room))
            if n < length:
                n = _whole_segments(n, chosen.conn.mss)  # no runt segment at the end of each mapping
            self._queue_mapping(chosen, start, n)
            if reinject:
                self._reinject[0] = (start + n, length - n)
                if length - n <= 0:
                    self._reinject.pop(0)
            else:
                self._snd_nxt = start + n

    def _schedule_redundant(self, pool: list[Subflow], window_end: int) -> None:
        """Every subflow sends all the data, each from its own cursor: the first copy to arrive wins."""
        self._reinject.clear()  # every subflow carries everything anyway
        end = min(self._sbuf_off + len(self._sbuf), window_end)
        for sf in pool:
            start = max(sf.redundant_next, self._data_una)
            while start < end and sf.send_room >= min(end - start, sf.conn.mss):
                n = max(1, min(end - start, self.config.mapping_bytes, sf.send_room))
                if n < end - start:
                    n = _whole_segments(n, sf.conn.mss)
                self._queue_mapping(sf, start, n)
                start += n
            sf.redundant_next = start
            if start > self._snd_nxt:
                self._snd_nxt = start

    def _wait_for_faster(self, chosen: Subflow, pool: list[Subflow], candidates: list[Subflow], waiting: int) -> bool:
        """ECF (Lim et al., CoNEXT 2017): leave ``waiting`` bytes for the fastest subflow, which has no
        room now, when it would deliver them all sooner than ``chosen`` delivers its first byte."""
        fast = min(pool, key=lambda s: s.srtt if s.srtt is not None else 1e9)
        if fast is chosen or fast in candidates or fast.srtt is None or chosen.srtt is None or fast.stalled:
            return False
        if chosen.srtt < 2 * fast.srtt:
            return False  # paths of similar RTT (queueing noise): using both is what pays
        rounds = 1 + waiting / max(fast.cwnd, fast.conn.mss)
        return rounds * fast.srtt < chosen.srtt

    def _opportunistic(self, pool: list[Subflow], now: float, *, penalise: bool = True) -> None:
        """The window is full and held by data outstanding on a slow subflow: send that data again on a
        fast subflow with room (opportunistic retransmission), and halve the slow one's window
        (penalisation) — Raiciu et al., NSDI 2012; Linux does the same."""
        una = self._data_una
        if una == self._opportunistic_una:
            return  # once per stuck Data ACK
        holder = None
        end = una
        for sf in pool:
            for d, n in zip(sf.map_data, sf.map_len, strict=True):
                if d <= una < d + n:
                    holder, end = sf, d + n
                    break
            if holder is not None:
                break
        if holder is None:
            return
        fast = [s for s in pool if s is not holder and s.send_room >= s.conn.mss]
        if not fast:
            return
        best = min(fast, key=lambda s: s.srtt if s.srtt is not None else 1e9)
        if holder.srtt is not None and best.srtt is not None and best.srtt >= holder.srtt:
            return
        if not penalise and (
            now - self._data_una_at < (best.srtt or 0.0)
            or (holder.srtt is not None and best.srtt is not None and holder.srtt < TAIL_REINJECT_RTT_RATIO * best.srtt)
        ):
            # the tail, still arriving (the Data ACK moved within the fast subflow's RTT), or held by a
            # subflow of similar RTT (queueing noise): a copy would be new subflow bytes nobody needs,
            # sent with every Data ACK step of the last window, and once the peer has closed that
            # subflow at the end of the connection, answered with RST (Linux does)
            return
        self._opportunistic_una = una
        n = min(end - una, best.send_room, self.config.mapping_bytes)
        if n <= 0:
            return
        self._queue_mapping(best, una, n)
        self.bytes_reinjected += n
        self._trace(
            now,
            "state_updated",
            {
                "token": self.local_token,
                "reinjected": {
                    "data_seq": (self.local_idsn + 1 + una) % MOD64,
                    "len": n,
                    "from_subflow": str(holder.addr),
                    "to_subflow": str(best.addr),
                    "why": "opportunistic",
                },
            },
        )
        if self.config.penalisation and penalise:
            cc = holder.conn.congestion
            if getattr(holder, "_penalised_at", -1.0) + (holder.srtt or 0.1) <= now:
                holder._penalised_at = now
                cc.cwnd = max(cc.cwnd // 2, 2 * cc.mss)
                cc.ssthresh = max(cc.cwnd, 2 * cc.mss)

    def _queue_mapping(self, sf: Subflow, data_off: int, n: int) -> None:
        a = data_off - self._sbuf_off
        chunk = bytes(self._sbuf[a : a + n])
        sub = sf.conn.stream_offset_queued
        # prune mappings the subflow has fully acknowledged
        acked = sf.conn.stream_offset_acked
        drop = 0
        while drop < len(sf.map_sub) and sf.map_sub[drop] + sf.map_len[drop] <= acked:
            drop += 1
        if drop:
            del sf.map_sub[:drop], sf.map_len[:drop], sf.map_data[:drop], sf.map_csum[:drop]
        sf.map_sub.append(sub)
        sf.map_len.append(n)
        sf.map_data.append(data_off)
        sf.map_csum.append(
            crypto.dss_checksum((self.local_idsn + 1 + data_off) % MOD64, sub + 1, n, chunk) if self.checksum else None
        )
        sf.bytes_scheduled += n
        if self._fin_queued:
            sf.conn.push_tail = True
        sf.conn.send_stream(chunk)

    # --- options in -----------------------------------------------------------------------------------------

    def _on_rst(self, sf: Subflow, seg: TcpSegment, now: float) -> None:
        """An acceptable RST ends ``sf``: what its MPTCP options say (RFC 8684 §3.6 MP_TCPRST's
        reason becomes the subflow's close reason; §3.5 MP_FASTCLOSE with our key ends the
        connection, its other subflows too)."""
        opts: list[w.MptcpOption] = []
        for o in seg.options:
            if type(o) is UnknownOption and o.kind == w.MPTCP_KIND:
                try:
                    opts.append(w.from_tcp_option(o, version=self.version, syn=False, ack=True))
                except DecodeError as exc:
                    self._trace(
                        now,
                        "segment_dropped",
                        {
                            "token": self.local_token,
                            "subflow": str(sf.addr),
                            "reason": f"bad MPTCP option on a RST: {exc}",
                        },
                    )
        if not opts:
            return
        if self._trace_on:
            self._trace(
                now,
                "segment_received",
                {
                    "token": self.local_token,
                    "subflow": str(sf.addr),
                    "flags": "R",
                    "mptcp": [option_record(o) for o in opts],
                },
            )
        for o in opts:
            t = type(o)
            if t is w.MpTcpRst and sf.close_reason != "MP_FASTCLOSE from peer":
                name = w.MPTCP_RST_REASONS.get(o.reason, f"reason {o.reason}")
                sf.close_reason = f"MP_TCPRST from peer: {name}" + (" (transient)" if o.transient else "")
            elif t is w.MpFastclose and o.receiver_key == self.local_key:
                sf.close_reason = "MP_FASTCLOSE from peer"
                if self._fastclosed_by_peer:
                    continue  # its RST on another subflow came first
                self._fastclosed_by_peer = True
                self._trace(now, "state_updated", {"token": self.local_token, "fastclose": True})
                for other in list(self.subflows):
                    if other is not sf:
                        other.conn.abort("MP_FASTCLOSE from peer", now=now)

    def _set_version(self, version: int, now: float, *, offered: int, why: str) -> None:
        """Speak MPTCP ``version`` (RFC 8684 §3.1): token and IDSN follow the version's hash. Our key
        has not been sent yet (a v1 SYN carries none; the server's goes in its SYN/ACK), so a
        token collision with another connection of this host still redraws it."""
        if version != self.version:
            self.version = version
            while True:
                self.local_token = crypto.key_token(self.local_key, version=version)
                if self._token_in_use is None or not self._token_in_use(self.local_token):
                    break
                self.local_key = self._rng.getrandbits(64)
            self.local_idsn = crypto.key_idsn(self.local_key, version=version)
        self._trace(
            now,
            "state_updated",
            {
                "token": self.local_token,
                "version_negotiated": {
                    "offered": offered,
                    "chosen": version,
                    "supported": list(self.config.supported_versions),
                    "why": why,
                },
            },
        )

    def _trace_version_fallback(self, now: float, next_version: int) -> None:
        self._trace(
            now,
            "state_updated",
            {
                "token": self.local_token,
                "version_negotiated": {
                    "offered": self.version,
                    "chosen": None,
                    "supported": list(self.config.supported_versions),
                    "why": f"no MP_CAPABLE in the SYN/ACK: plain TCP now; the next connection offers v{next_version}",
                },
            },
        )

    def _remember_version(self, version: int | None) -> None:
        """The version a client offers this server next time (None: its highest again)."""
        if self._version_cache is None or self._initial_pair is None:
            return
        key = self._initial_pair[1]
        if version is None or version == self.config.version:
            self._version_cache.pop(key, None)
        elif len(self._version_cache) < 4096 or key in self._version_cache:
            self._version_cache[key] = version

    def _set_remote_key(self, key: int, now: float) -> None:
        self.remote_key = key
        self.remote_token = crypto.key_token(key, version=self.version)
        self.remote_idsn = crypto.key_idsn(key, version=self.version)
        self._trace_keys(now)

    def _trace_keys(self, now: float) -> None:
        self._trace(
            now,
            "key_updated",
            {
                "token": self.local_token,
                "version": self.version,
                "local_key": f"{self.local_key:016x}",
                "local_token": self.local_token,
                "local_idsn": f"{self.local_idsn:016x}",
                "remote_key": None if self.remote_key is None else f"{self.remote_key:016x}",
                "remote_token": self.remote_token,
                "remote_idsn": None if self.remote_key is None else f"{self.remote_idsn:016x}",
                "checksum": self.checksum,
            },
        )

    def _on_add_addr(self, sf: Subflow, opt, now: float) -> None:
        if isinstance(opt, w.AddAddr):
            if opt.echo:  # the echo repeats Address ID, address and port (RFC 8684 §3.4.1)
                self._announce = [
                    e for e in self._announce if (e[0], e[1], e[5]) != (opt.address_id, opt.address, opt.port)
                ]
                return
            expected = crypto.add_addr_hmac(self.remote_key or 0, self.local_key, opt.address_id, opt.address, opt.port)
            if opt.truncated_hmac != expected:
                self._trace(
                    now,
                    "error",
                    {"token": self.local_token, "reason": f"ADD_ADDR for {opt.address} with a wrong HMAC: ignored"},
                )
                return
            self._echo.append(w.AddAddr(address_id=opt.address_id, address=opt.address, port=opt.port))
            sf.conn.request_ack()
            if self.role == Role.CLIENT and not self.fully_established:
                # its HMAC is keyed with our key too: the server holds it, as a DSS would show
                # (Linux drops the DSS from a pure ACK that carries an ADD_ADDR)
                self._now_fully_established(sf, now)
        # RFC 8684 §3.4.1: without a port, joins go to the port of the subflow the ADD_ADDR came on
        port = opt.port if opt.port is not None else sf.addr.remote_port
        key = (opt.address, port)
        if key not in self._remote_ids and len(self.remote_addresses) < 16:
            self._remote_ids[key] = opt.address_id
            self.remote_addresses.append(key)
            self._events.append(ev.AddressAnnounced(address_id=opt.address_id, address=opt.address, port=opt.port))
            self._trace(
                now,
                "state_updated",
                {"token": self.local_token, "address_added": opt.address, "address_id": opt.address_id},
            )
            self._open_planned_subflows(now)

    def _on_remove_addr(self, opt: w.RemoveAddr, now: float) -> None:
        gone = {k for k, v in self._remote_ids.items() if v in opt.address_ids}
        self.remote_addresses = [a for a in self.remote_addresses if a not in gone]
        for k in gone:
            self._remote_ids.pop(k, None)
        for sf in list(self.subflows):
            if sf.remote_id in opt.address_ids and not sf.initial:
                self._close_subflow(sf, now, "REMOVE_ADDR from peer")
        self._trace(now, "state_updated", {"token": self.local_token, "address_removed": list(opt.address_ids)})

    def _now_fully_established(self, sf: Subflow, now: float) -> None:
        """Client: the server's first DSS shows it holds our keys (RFC 8684 §3.1); MP_CAPABLE
        stops riding on our ACKs, so address signals held back from beside it go on an ACK now,
        and the other subflows may be opened (the server knows the token only from our third ACK)."""
        self.fully_established = True
        if self._echo or self._announce or self._signals:
            sf.ack_owed = True
        self._open_planned_subflows(now)

    def _on_dss(self, sf: Subflow, dss: w.Dss, seg: TcpSegment, stream_offset: int, now: float) -> None:
        sf.got_dss = True
        if self.role == Role.CLIENT and not self.fully_established:
            self._now_fully_established(sf, now)
        if dss.data_ack is not None:
            self._on_data_ack(sf, dss.data_ack, dss.data_ack_64, seg, now)
        if dss.data_seq is not None:
            if dss.data_level_length == 0:
                self._on_infinite_mapping(sf, dss, now)
                return
            dsn = dss.data_seq
            if not dss.data_seq_64:
                dsn = self._expand32(dsn, (self.remote_idsn + 1 + self._rcv_nxt) % MOD64)
            data_off = (dsn - self.remote_idsn - 1) % MOD64
            if data_off >= MOD64 // 2:
                data_off -= MOD64
            length = dss.data_level_length
            if dss.data_fin:
                fin_off = data_off + length - 1
                if self._peer_fin_off is None:
                    self._peer_fin_off = fin_off
                    self._trace(now, "state_updated", {"token": self.local_token, "data_fin_received": fin_off})
                length -= 1
                if dss.subflow_seq == 0:
                    self._check_peer_fin(now)
                    sf.conn.request_ack()
                    return
            if length > 0:
                self._add_recv_mapping(
                    sf, dss.subflow_seq - 1, length, data_off, dss.checksum, now, data_fin=dss.data_fin
                )

    def _expand32(self, value: int, near: int) -> int:
        base = near & ~0xFFFFFFFF
        cand = base | value
        if cand - near > 1 << 31:
            cand -= 1 << 32
        elif near - cand > 1 << 31:
            cand += 1 << 32
        return cand % MOD64

    def _on_data_ack(self, sf: Subflow, value: int, is64: bool, seg: TcpSegment, now: float) -> None:
        una_dsn = (self.local_idsn + 1 + self._data_una) % MOD64
        if not is64:
            value = self._expand32(value, una_dsn)
        off = (value - self.local_idsn - 1) % MOD64
        limit = self._snd_nxt + (1 if self._fin_off is not None else 0)
        if off > limit or off < self._data_una:
            if off > limit:
                self._trace(
                    now, "segment_dropped", {"token": self.local_token, "reason": "Data ACK for data never sent"}
                )
            return
        # the window is relative to the Data ACK (RFC 8684 §3.3.4); the subflow has scaled it
        self._peer_window = max(seg.window << sf.conn.window_shift_peer if not seg.flags & 0x02 else seg.window, 1)
        if off > self._data_una:
            acked_data = min(off, self._sbuf_off + len(self._sbuf)) - self._sbuf_off
            if acked_data > 0:
                del self._sbuf[:acked_data]
                self._sbuf_off += acked_data
            self._data_una = off
            self._data_una_at = now
            self._data_rtx_at = None
            self._data_rtx_backoff = 0
            self._take_back_unsent(now)
        if self._fin_off is not None and off == self._fin_off + 1 and not self._fin_acked:
            self._fin_acked = True
            self._fin_retx_at = None
            self._trace(now, "state_updated", {"token": self.local_token, "data_fin_acked": True})

    def _add_recv_mapping(
        self, sf: Subflow, sub_off: int, length: int, data_off: int, checksum: int | None, now: float, *, data_fin: bool
    ) -> None:
        if sub_off < 0 or length > MAX_MAPPING_BYTES:
            self._trace(now, "segment_dropped", {"token": self.local_token, "reason": "malformed DSS mapping"})
            return
        if (
            data_off + length < self._rcv_nxt - MOD64 // 4
            or data_off > self._rcv_nxt + self.config.receive_buffer_bytes * 2
        ):
            self._trace(
                now,
                "segment_dropped",
                {"token": self.local_token, "subflow": str(sf.addr), "reason": "mapping outside the receive window"},
            )
            return
        for rm in sf.rmaps:
            if rm[0] == sub_off:
                if rm[1] != length or rm[2] != data_off:
                    self._trace(
                        now,
                        "error",
                        {"token": self.local_token, "reason": "mapping changed for the same subflow bytes"},
                    )
                return  # a repeated mapping (one per segment of a multi-segment mapping)
        collected = bytearray() if self.checksum else None
        # [subflow offset, data bytes, data offset, checksum, bytes held for the checksum, Data-Level Length]
        sf.rmaps.append([sub_off, length, data_off, checksum, collected, length + (1 if data_fin else 0)])

    def _on_subflow_data(self, sf: Subflow, data: bytes, stream_offset: int, now: float) -> None:
        if self.fallback is not None:
            if sf.initial and not sf.doomed and self._pending_abort is None:
                if stream_offset < self._fallback_skip:  # bytes before the infinite mapping: not data
                    data = data[self._fallback_skip - stream_offset :]
                self._deliver(data)
            return
        if sf.doomed or self.terminated:
            if sf.fail_sub_off is not None:
                sf.discarded_to = stream_offset + len(data)
                if sf.plain_from is not None and sf.discarded_to > sf.plain_from:
                    sf.fail_sub_off = None
                    self._abort_after_fail(MP_FAIL_NO_MAPPING, now)
            return
        sf.bytes_received += len(data)
        pos = 0
        n = len(data)
        while pos < n:
            off = stream_offset + pos
            rm = None
            while sf.rmaps:
                first = sf.rmaps[0]
                if first[0] + first[1] <= off and (first[4] is None or len(first[4]) >= first[1]):
                    sf.rmaps.popleft()
                    continue
                break
            for cand in sf.rmaps:
                if cand[0] <= off < cand[0] + cand[1]:
                    rm = cand
                    break
            if rm is None:
                # data that no mapping covers (RFC 8684 §3.7)
                if sf.initial and not sf.got_dss and len(self.subflows) == 1:
                    self._fall_back("data without a DSS mapping", now)
                    self._deliver(data[pos:])
                    return
                self._reset_subflow(
                    sf, "data without a DSS mapping", w.MPTCP_RST_MIDDLEBOX_INTERFERENCE, now, defer=True
                )
                return
            take = min(n - pos, rm[0] + rm[1] - off)
            piece = data[pos : pos + take]
            if rm[4] is not None:  # checksummed: hold until the whole mapping is here
                rm[4] += piece
                if len(rm[4]) >= rm[1]:
                    payload = bytes(rm[4])
                    dsn = (self.remote_idsn + 1 + rm[2]) % MOD64
                    if rm[3] is None or not crypto.dss_checksum_ok(dsn, rm[0] + 1, rm[5], payload, rm[3]):
                        self._checksum_failed(sf, dsn, now, rm=rm, seen_to=stream_offset + n)
                        return
                    self._place(rm[2], payload, now)
                    sf.rmaps.remove(rm)
            else:
                self._place(rm[2] + off - rm[0], piece, now)
            pos += take

    def _checksum_failed(self, sf: Subflow, dsn: int, now: float, *, rm: list, seen_to: int) -> None:
        """RFC 8684 §3.7: the bad mapping is never delivered. With other subflows this one is reset
        (RST with MP_FAIL and MP_TCPRST) and its data reinjected on the others. On the only subflow,
        MP_FAIL naming the mapping rides on our ACKs and every subflow byte from the mapping on is
        discarded until the peer's infinite mapping says where our data stream resumes; from there the
        connection is plain TCP. When that cannot stay byte-exact the connection ends (MP_FASTCLOSE)
        and the record says why."""
        self._trace(
            now,
            "error",
            {"token": self.local_token, "subflow": str(sf.addr), "reason": "DSS checksum failed", "data_seq": dsn},
        )
        sf.fail_dsn = dsn
        if len(self.subflows) > 1:
            self._reset_subflow(sf, "DSS checksum failed", w.MPTCP_RST_MIDDLEBOX_INTERFERENCE, now, defer=True)
            return
        sf.doomed = True  # from here on the subflow's bytes are discarded
        why = None
        if not self._infinite_ok:
            why = "our data has used other subflows or gone out twice, so the peer could not read our subflow as plain TCP"
        elif not sf.initial:
            why = "only the initial subflow can fall back to TCP"
        elif rm[2] != self._rcv_nxt:
            why = (
                "data before the failed mapping is missing"
                if rm[2] > self._rcv_nxt
                else "the failed mapping repeats delivered data"
            )
        if why is not None:
            self._abort_after_fail(f"DSS checksum failed on the only subflow; no fallback: {why}", now)
            return
        sf.fail_sub_off = rm[0]
        sf.discarded_to = seen_to
        sf.rmaps.clear()
        self._rcv_heap.clear()  # the peer sends everything from our Data ACK on again
        self._rcv_heap_bytes = 0
        self._mpfail_deadline = now + max(MP_FAIL_WAIT_S, 4 * sf.conn.rto)
        self._trace(
            now,
            "state_updated",
            {"token": self.local_token, "subflow": str(sf.addr), "mp_fail": dsn, "direction": "sent"},
        )
        sf.conn.request_ack()

    def _on_infinite_mapping(self, sf: Subflow, dss: w.Dss, now: float) -> None:
        """A DSS with Data-Level Length 0: from its subflow sequence number on, the subflow stream is
        the data stream, starting at its DSN (RFC 8684 §3.7). After our MP_FAIL it must resume exactly
        where our Data ACK stands, on subflow bytes we have not discarded yet."""
        dsn = dss.data_seq
        if not dss.data_seq_64:
            dsn = self._expand32(dsn, (self.remote_idsn + 1 + self._rcv_nxt) % MOD64)
        self._trace(
            now,
            "state_updated",
            {
                "token": self.local_token,
                "subflow": str(sf.addr),
                "infinite_mapping": "received",
                "data_seq": dsn,
                "subflow_seq": dss.subflow_seq,
            },
        )
        if sf.fail_sub_off is None:
            self._unsolicited_infinite_mapping(sf, dss, dsn, now)
            return
        data_off = (dsn - self.remote_idsn - 1) % MOD64
        if data_off >= MOD64 // 2:
            data_off -= MOD64
        sub_off = dss.subflow_seq - 1
        self._mpfail_deadline = None
        if data_off != self._rcv_nxt:
            skipped = data_off - self._rcv_nxt
            self._abort_after_fail(
                f"the peer's infinite mapping resumes {skipped:+d} bytes from our Data ACK"
                + (" (it skips the discarded bytes instead of sending them again)" if skipped > 0 else ""),
                now,
            )
            return
        if sub_off < sf.discarded_to:
            self._abort_after_fail("the peer's infinite mapping starts on subflow bytes already discarded", now)
            return
        sf.fail_sub_off = None
        sf.fail_dsn = None
        sf.doomed = False
        sf.rmaps.clear()
        self._fallback_skip = sub_off
        self._fall_back(MP_FAIL_FALLBACK, now)

    def _unsolicited_infinite_mapping(self, sf: Subflow, dss: w.Dss, dsn: int, now: float) -> None:
        """An infinite mapping we did not ask for with MP_FAIL (RFC 8684 §3.7). It is only valid on
        the one subflow a connection ever had: with other subflows (open, or opened before) the
        subflow stream is not the data stream, so this subflow is reset (MP_TCPRST middlebox
        interference) and its data comes again on the others, or, on the last one, the connection
        ends. With DSS checksums, an infinite mapping that no MP_FAIL of ours asked for is a mapping
        that does not check: MP_FAIL, and the peer's own infinite mapping from our Data ACK on.
        Without checksums, on the only subflow, the peer's word is all there is: fall back."""
        why = None
        if len(self.subflows) > 1:
            why = "infinite mapping while several subflows are open"
        elif not sf.initial or not self._infinite_ok:
            why = "infinite mapping on a connection that has used other subflows"
        if why is not None:
            self._trace(now, "error", {"token": self.local_token, "subflow": str(sf.addr), "reason": why})
            if len(self.subflows) > 1:
                self._reset_subflow(sf, why, w.MPTCP_RST_MIDDLEBOX_INTERFERENCE, now, defer=True)
            else:
                self._abort_after_fail(why, now)
            return
        if self.checksum:
            self._trace(
                now,
                "error",
                {"token": self.local_token, "subflow": str(sf.addr), "reason": "infinite mapping without our MP_FAIL"},
            )
            sub_off = dss.subflow_seq - 1  # its bytes, when they come, are discarded like the rest
            rm = [sub_off, 0, self._rcv_nxt, None, None, 0]
            self._checksum_failed(sf, (self.remote_idsn + 1 + self._rcv_nxt) % MOD64, now, rm=rm, seen_to=sub_off)
            return
        self._fall_back("infinite mapping from peer", now)

    def _on_mp_fail(self, sf: Subflow, dsn: int, now: float) -> None:
        """The peer's DSS checksum failed on our only subflow (RFC 8684 §3.7): send an infinite mapping
        and continue as plain TCP. The peer discarded everything from the failed mapping on, so the
        data from its Data ACK on is sent again after what the subflow already holds, and the
        infinite mapping (on the first of those bytes) says so."""
        fail_off = (dsn - self.local_idsn - 1) % MOD64
        if fail_off >= MOD64 // 2:
            fail_off -= MOD64
        why = None
        if not sf.initial:
            why = "it came on a subflow other than the initial one"
        elif fail_off < self._data_una:
            why = "it names data the peer has already acknowledged"
        elif fail_off > self._snd_nxt:
            why = "it names data never sent"
        if why is not None:
            self._abort_after_fail(f"cannot fall back after the peer's MP_FAIL: {why}", now)
            return
        restart = self._data_una
        sub_off = sf.conn.stream_offset_queued
        self._snd_nxt = restart  # _fall_back moves everything from here on to the subflow
        self._reinject.clear()
        self._data_rtx_at = None
        self._fin_retx_at = None
        # a mapping without end from sub_off on: the segment there leaves room for the infinite mapping
        sf.map_sub.append(sub_off)
        sf.map_len.append(1 << 62)
        sf.map_data.append(restart)
        sf.map_csum.append(None)
        data_seq = (self.local_idsn + 1 + restart) % MOD64
        self._infinite_map = [sub_off, data_seq, self._data_ack_value()]
        self._fail_watch_off = restart
        self._trace(
            now,
            "state_updated",
            {
                "token": self.local_token,
                "subflow": str(sf.addr),
                "infinite_mapping": "sent",
                "data_seq": data_seq,
                "subflow_seq": sub_off + 1,
            },
        )
        self._fall_back(MP_FAIL_FALLBACK, now)

    def _watch_after_mp_fail(self, opts: list[w.MptcpOption], now: float) -> None:
        """Until the peer falls back too (its segments carry no MPTCP option), its Data ACK must not
        pass the data we send again: one that does shows the peer kept the failed mapping's bytes,
        which a middlebox altered, so nothing we send can make its stream byte-exact."""
        if not opts:
            self._fail_watch_off = None
            return
        watch = self._fail_watch_off
        for o in opts:
            if type(o) is w.Dss and o.data_ack is not None:
                value = o.data_ack
                if not o.data_ack_64:
                    value = self._expand32(value, (self.local_idsn + 1 + watch) % MOD64)
                off = (value - self.local_idsn - 1) % MOD64
                if watch < off < MOD64 // 2:
                    self._fail_watch_off = None
                    self._abort_after_fail(
                        "the peer acknowledged data of the mapping it failed: it kept bytes a middlebox altered", now
                    )
                    return

    def _abort_after_fail(self, reason: str, now: float) -> None:
        """End the connection (MP_FASTCLOSE, or RST after fallback) with the next output: the
        checksum failure cannot be recovered byte-exact."""
        if self.terminated:
            return
        self._trace(now, "error", {"token": self.local_token, "reason": reason})
        for s in self.subflows:
            s.doomed = True
        self._pending_abort = reason

    def _place(self, data_off: int, data: bytes, now: float) -> None:
        end = data_off + len(data)
        if end <= self._rcv_nxt:
            return  # a duplicate (reinjection or a redundant scheduler)
        if data_off < self._rcv_nxt:
            data = data[self._rcv_nxt - data_off :]
            data_off = self._rcv_nxt
        if data_off == self._rcv_nxt:
            self._rcv_nxt = end
            self._deliver(data)
            heap = self._rcv_heap
            if heap and heap[0][0] <= self._rcv_nxt:
                self._hole_filled = True  # tell the sender at once, on the fastest subflow
            while heap and heap[0][0] <= self._rcv_nxt:
                off, chunk = heapq.heappop(heap)
                self._rcv_heap_bytes -= len(chunk)
                cend = off + len(chunk)
                if cend > self._rcv_nxt:
                    self._deliver(chunk[self._rcv_nxt - off :])
                    self._rcv_nxt = cend
            self._check_peer_fin(now)
        else:
            if self._rcv_heap_bytes + len(data) > self.config.receive_buffer_bytes * 2:
                self._trace(now, "segment_dropped", {"token": self.local_token, "reason": "reassembly buffer full"})
                return
            heapq.heappush(self._rcv_heap, (data_off, data))
            self._rcv_heap_bytes += len(data)

    def _check_peer_fin(self, now: float) -> None:
        if self._peer_fin_off is not None and not self._peer_fin_seen and self._rcv_nxt >= self._peer_fin_off:
            self._peer_fin_seen = True
            self._events.append(ev.StreamEnded())
            for sf in self.subflows:
                if sf.usable:
                    sf.conn.request_ack()
                    break

    def _deliver(self, data: bytes) -> None:
        if not data:
            return
        if self._reading:
            self._events.append(ev.DataReceived(data=bytes(data)))
        else:
            self._held += data

    def _maybe_close_subflows(self, now: float) -> None:
        if self._fin_acked and self._peer_fin_seen:
            for sf in list(self.subflows):
                if sf.state not in (SubflowState.CLOSING, SubflowState.CLOSED):
                    self._close_subflow(sf, now, "connection closed")

    def _on_tcp_state(self, sf: Subflow, old: TcpState, new: TcpState, now: float) -> None:
        """Subflow TCP transitions are recorded by the TCP layer; nothing to do inline here."""

    # --- tracing -----------------------------------------------------------------------------------------

    def _trace(self, now: float, name: str, data: dict) -> None:
        if self._trace_on:
            self._tracer.record(now, "mptcp", name, data)

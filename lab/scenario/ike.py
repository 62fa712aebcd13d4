"""The IKE scenario workload: an IKE session between two hosts carrying a tunnelled inner stream each way.

Timeline: the initiator connects at ``start_s`` (UDP, TCP or fallback as
configured); once its Child SA is up it sends ``data_bytes`` through the
tunnel; the responder answers with ``data_bytes`` of its own once it has
received the initiator's. With ``rekey`` the initiator rekeys the Child SA
(CREATE_CHILD_SA) halfway and sends the second half on the new SA. When the
responder's bytes are all in, the initiator runs a liveness check and
deletes the IKE SA; the ``r->i`` result completes only when that Delete
was answered, so the run checks the whole session, not just the bytes.
"""

from __future__ import annotations

import random
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.errors import ConfigError, LabError
from lab.ike.config import IkeConfig
from lab.ike.endpoint import IkeEndpoint
from lab.ike.events import ChildSaEstablished, IkeEvent, IkeSaDeleted, IkeSaEstablished, LivenessChecked, PacketReceived
from lab.ike.tunnel import TUNNEL_INITIATOR, TUNNEL_RESPONDER, TunnelReceiver, inner_packets
from lab.scenario import Workload, runs_here
from lab.scenario.ike_driver import SimIkeDriver
from lab.stack.apps import TransferResult, record_aborted
from lab.stack.host import HostStack

if TYPE_CHECKING:
    from lab.scenario import ScenarioRun

RESPONDER_ID = b"responder.lab"


@dataclass(frozen=True, kw_only=True)
class IkeSession(Workload):
    """One IKE session from ``initiator`` to ``responder`` (its interface ``responder_interface``).

    ``initiator_config`` / ``responder_config`` override :class:`IkeConfig`
    fields (e.g. ``{"fallback": "racing"}``); both ends share ``psk``.
    """

    name: str = "ike"
    initiator: str = "h1"
    responder: str = "h2"
    responder_interface: int = 0
    initiator_config: dict[str, Any] = field(default_factory=dict)
    responder_config: dict[str, Any] = field(default_factory=dict)
    data_bytes: int = 32 * 1024
    start_s: float = 0.0
    rekey: bool = False
    export_keys: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.data_bytes, int) or not 0 <= self.data_bytes <= 1 << 24:
            raise ConfigError(f"IKE session {self.name}: data_bytes must be 0..16 MiB, got {self.data_bytes!r}")
        if self.start_s < 0:
            raise ConfigError(f"IKE session {self.name}: start_s must not be negative")
        self.configs()  # validate now

    @property
    def initiator_id(self) -> bytes:
        """IDi (ID_FQDN): tells the responder's SAs of different sessions apart."""
        return f"{self.name}.initiator.lab".encode()

    def configs(self) -> tuple[IkeConfig, IkeConfig]:
        """(initiator, responder) settings. Raises ConfigError for an unknown or bad field."""
        try:
            initiator = IkeConfig(
                local_id=self.initiator_id,
                remote_id=RESPONDER_ID,
                export_keys=self.export_keys,
                **self.initiator_config,
            )
            responder_ports = {"tcp_ports": initiator.tcp_ports}
            responder = IkeConfig(
                local_id=RESPONDER_ID,
                remote_id=None,  # one responder serves every session's initiator (each has its own IDi)
                export_keys=self.export_keys,
                **(responder_ports | self.responder_config),
            )
        except TypeError as exc:
            raise ConfigError(f"IKE session {self.name}: {exc}") from None
        return initiator, responder

    def schedule(self, run: ScenarioRun) -> None:
        hosts = run.spec.hosts()
        for host in (self.initiator, self.responder):
            if host not in hosts:
                raise ConfigError(f"IKE session {self.name}: no host {host!r}")
        ifaces = run.spec.interfaces_of(self.responder)
        if self.responder_interface >= len(ifaces):
            raise ConfigError(f"IKE session {self.name}: {self.responder} has {len(ifaces)} interfaces")
        config_i, config_r = self.configs()
        session = _Session(self, run, config_i, config_r, ifaces[self.responder_interface].ipv4)
        run.net.call_at(self.start_s, session.start)


class _Responder:
    def __init__(self, driver: SimIkeDriver) -> None:
        self.driver = driver
        self.sessions: list[_Session] = []
        driver.on_event = self.on_event

    def on_event(self, event: IkeEvent) -> None:
        for session in list(self.sessions):
            session.on_responder_event(event)


_RESPONDERS: weakref.WeakKeyDictionary[HostStack, _Responder] = weakref.WeakKeyDictionary()


def shared_responder(host: HostStack, config: IkeConfig, *, local_addr: str, seed: int) -> _Responder:
    """The one IKE responder of ``host`` (built on first use with ``config``), which
    serves every session to that host: each session appends itself to ``sessions``
    and gets every responder event in ``on_responder_event(event)``.

    Raises ConfigError when the responder cannot listen on its TCP ports.
    """
    shared = _RESPONDERS.get(host)
    if shared is None:
        endpoint = IkeEndpoint(
            config=config, initiator=False, local_addr=local_addr, rng=random.Random(seed), tracer=host.tracer
        )
        shared = _Responder(SimIkeDriver(host, endpoint))
        _RESPONDERS[host] = shared
    return shared


def _record_received(host: HostStack, result: TransferResult) -> None:
    """The data sent through the tunnel arrived whole: an ``app`` record like a TCP transfer's end."""
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
                "sha256_match": result.sha256_received == result.sha256_expected
                and result.bytes_received == result.bytes_expected,
                "conn": "ESP tunnel",
            },
        )


class _Session:
    def __init__(
        self, workload: IkeSession, run: ScenarioRun, config_i: IkeConfig, config_r: IkeConfig, responder_addr: str
    ) -> None:
        self.w = workload
        self.run = run
        seed = run.seed * 7919 + len(run.results)
        host_i, host_r = run.net.host(workload.initiator), run.net.host(workload.responder)
        self.host_i = host_i
        self.data_i = run.payload(workload.data_bytes)
        self.result_i = run.add_result(f"{workload.name} i->r", self.data_i)
        self.data_r = run.payload(workload.data_bytes)
        self.result_r = run.add_result(f"{workload.name} r->i", self.data_r)
        # on a live backend each host's endpoint process builds only its own end
        self.here_i, self.here_r = runs_here(run, workload.initiator), runs_here(run, workload.responder)
        self.initiator: IkeEndpoint | None = None
        self.responder: IkeEndpoint | None = None
        if self.here_i:
            local_i = next(a for a in host_i.addresses if ":" not in a)
            self.initiator = IkeEndpoint(
                config=config_i,
                initiator=True,
                local_addr=local_i,
                remote_addr=responder_addr,
                rng=random.Random(seed),
                tracer=host_i.tracer,
                name=workload.name,
            )
            self.driver_i = SimIkeDriver(host_i, self.initiator, on_event=self.on_initiator_event)
        if self.here_r:
            # one responder per host serves every session to it
            shared = shared_responder(host_r, config_r, local_addr=responder_addr, seed=seed + 1)
            self.driver_r = shared.driver
            self.responder = shared.driver.endpoint
            shared.sessions.append(self)
        self.rx_i = TunnelReceiver()  # at the responder: the initiator's stream
        self.rx_r = TunnelReceiver()
        self.responder_sent = False
        self.sent_halves = 0
        self.rekeyed = False
        self.rtt_s = run.spec.base_rtt_s(workload.initiator, workload.responder)

    def start(self) -> None:
        if self.initiator is None:
            return
        now = self.host_i.now
        self.result_i.started_at = now
        self.result_r.started_at = now
        try:
            self.driver_i.connect()
        except LabError as exc:
            self._fail(f"initiator: {exc}")

    def _fail(self, reason: str) -> None:
        host = self.host_i if self.here_i else self.driver_r.host
        for result in (self.result_i, self.result_r):
            if not result.complete:
                result.error = reason
                if result.sha256_received is None:  # what arrived whole was recorded as received
                    record_aborted(host, result, reason)

    def _send_half(self, which: int) -> None:
        packets = inner_packets(self.data_i, src=TUNNEL_INITIATOR, dst=TUNNEL_RESPONDER)
        half = (len(packets) + 1) // 2
        chunk = packets[:half] if which == 0 else packets[half:]
        now = self.host_i.now
        for packet in chunk:
            self.initiator.send_packet(packet, now=now)
        self.sent_halves += 1
        self.driver_i.pump()

    def on_initiator_event(self, event: IkeEvent) -> None:
        now = self.host_i.now
        try:
            if isinstance(event, IkeSaEstablished):
                for result in (self.result_i, self.result_r):
                    result.extra |= {
                        "transport": event.transport,
                        "port": event.port,
                        "ike_established_s": round(now, 6),
                        "nat_detected": event.nat_detected,
                    }
                    if event.esp_transport:  # separate transports: ESP does not run where IKE does
                        result.extra["esp_transport"] = event.esp_transport
                    if self.rtt_s:  # the time from the session's start in round trips of the path (propagation)
                        rtts = round((now - self.w.start_s) / self.rtt_s, 2)
                        for result in (self.result_i, self.result_r):
                            result.extra["ike_established_rtts"] = rtts
            elif isinstance(event, ChildSaEstablished):
                if event.rekeyed_spi_in is None and self.sent_halves == 0:
                    self._send_half(0)
                    if self.w.rekey:
                        self.initiator.rekey_child(now=now)
                        self.driver_i.pump()
                    else:
                        self._send_half(1)
                elif event.rekeyed_spi_in is not None and self.sent_halves == 1:
                    self.rekeyed = True
                    self.result_i.extra["rekeyed"] = True
                    self._send_half(1)
            elif isinstance(event, PacketReceived):
                self.rx_r.feed(event.data)
                if self.rx_r.complete and self.result_r.bytes_received == 0:
                    self.result_r.bytes_received = self.rx_r.received
                    self.result_r.sha256_received = self.rx_r.sha256()
                    self.result_r.first_byte_at = now
                    _record_received(self.host_i, self.result_r)
                    self.initiator.check_liveness(now=now)
                    self.driver_i.pump()
            elif isinstance(event, LivenessChecked):
                self.initiator.close(now=now)
                self.driver_i.pump()
            elif isinstance(event, IkeSaDeleted):
                if event.reason == "closed" and self.result_r.sha256_received is not None:
                    self.result_r.completed_at = now
                    self.result_r.extra["closed"] = True
                else:
                    self._fail(f"IKE SA ended: {event.reason}")
        except LabError as exc:
            self._fail(f"initiator: {exc}")

    def on_responder_event(self, event: IkeEvent) -> None:
        now = self.driver_r.host.now
        if isinstance(event, PacketReceived):
            sa = next((s for s in self.responder.sas() if event.spi in s.children), None)
            if sa is None or sa.peer_id != self.w.initiator_id or not self.rx_i.feed(event.data):
                return
            if self.rx_i.complete and not self.responder_sent:
                self.responder_sent = True
                result: TransferResult = self.result_i
                result.bytes_received = self.rx_i.received
                result.sha256_received = self.rx_i.sha256()
                result.completed_at = now
                _record_received(self.driver_r.host, result)
                try:
                    for packet in inner_packets(self.data_r, src=TUNNEL_RESPONDER, dst=TUNNEL_INITIATOR):
                        self.responder.send_packet(packet, now=now, sa=sa)
                except LabError as exc:
                    self._fail(f"responder: {exc}")
                self.driver_r.pump()

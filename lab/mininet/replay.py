"""Mininet's replay for graders: a scenario with a fixed seed on real packets, actions at wall
times while the network keeps going, live captures and packet senders inside the hosts (see
lab.scenario.backend.Replay)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.mininet.inject import MininetInjector
from lab.mininet.run import run_mininet_scenario
from lab.pcap import live_ip_packets
from lab.scenario.backend import ReplayResult, RunContext
from lab.scenario.inject import LAYER, packet_bytes, summary
from lab.trace import read_jsonl


class MininetReplay:
    """A scenario run on Mininet (root only) with the grader's fixed seed: our endpoints on real
    packets, one endpoint process per host (:func:`lab.mininet.run.run_mininet_scenario`).

    ``finish()`` returns the same ReplayResult as the simulator's (``extra`` also has
    ``backend: "mininet"`` and the run's ``errors``); with ``pcap_dir`` the captures of every
    interface land there as ``<interface>.pcap``, as in the simulator (Ethernet frames, not raw
    IP: read them with ``ip_packets``). Timings are wall-clock seconds since the run's start:
    checks on them need slack (see ``timing_slack_s``). A real network cannot stand still while
    the grader asks the attendee's code something, so ``run_until`` raises ConfigError; ``at``
    acts at a wall time while the network keeps going (see :class:`RunContext`).
    ``finish`` raises ConfigError (not root, Mininet missing, a scenario that does not fit) or
    LabError (the network or an endpoint failed to start).
    """

    backend = "mininet"

    def __init__(self, scenario: Any, *, seed: int, pcap_dir: Path | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.pcap_dir = pcap_dir
        self.injected: list[dict[str, Any]] = []
        self._actions: list[tuple[float, int, Callable[[RunContext], None]]] = []

    def at(self, t: float, fn: Callable[[RunContext], None]) -> None:
        """Call ``fn(ctx)`` once the run's wall clock reaches ``t`` s, on the controller's thread
        (the network keeps running meanwhile: the packets ``fn`` injects go out at their own
        times, checked every poll). What ``fn`` raises stops the run and comes out of ``finish``."""
        self._actions.append((t, len(self._actions), fn))

    def run_until(self, t: float) -> None:
        raise ConfigError(
            f"scenario {self.scenario.name}: a Mininet run cannot pause at {t:g} s for the grader "
            "(real packets keep flowing); this step needs the simulator"
        )

    def finish(self) -> ReplayResult:
        with tempfile.TemporaryDirectory(prefix="tcplab-grade-mininet-") as tmp:
            out = Path(tmp)
            ctx = MininetContext(self, out / "pcaps")
            try:
                result = run_mininet_scenario(
                    self.scenario,
                    seed=self.seed,
                    out_dir=out,
                    pcaps=self.pcap_dir is not None or bool(self._actions),
                    progress=ctx.progress if self._actions else None,
                    before_start=ctx.attach,
                    stop=ctx.stop,
                )
            finally:
                ctx.close()
            if ctx.failure is not None:
                raise ctx.failure
            records = list(read_jsonl(out / "trace.jsonl"))
            if self.pcap_dir is not None:
                self.pcap_dir.mkdir(parents=True, exist_ok=True)
                for pcap in (out / "pcaps").glob("*.pcap"):
                    shutil.move(str(pcap), self.pcap_dir / pcap.name)
        return ReplayResult(
            records,
            {
                "results": {r.name: r.to_dict() for r in result.transfers},
                "timed_out": result.timed_out,
                "end_s": result.run_time_s,
                "seed": self.seed,
                "backend": "mininet",
                "errors": list(result.errors),
                "injected": list(self.injected),
            },
        )


class MininetContext(RunContext):
    """The :class:`RunContext` of a Mininet run: live captures (tcpdump -U) and packet senders
    kept running inside the hosts (:class:`lab.mininet.inject.MininetInjector`)."""

    backend = "mininet"
    wall_clock = True

    def __init__(self, replay: MininetReplay, pcap_dir: Path) -> None:
        self.replay = replay
        self.pcap_dir = pcap_dir
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self._backend: Any = None
        self._t0: float | None = None
        self._injectors: dict[str, Any] = {}
        self._pending: list[tuple[float, int, str, bytes, str | None]] = []
        self._macs: dict[str, str | None] = {}

    def attach(self, backend: Any) -> None:
        self._backend = backend

    @property
    def now(self) -> float:
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def captured(self, interface: str) -> list[bytes]:
        if self._backend is not None and interface not in self._backend.spec.interfaces:
            raise ConfigError(f"no interface {interface!r} in this topology")
        return live_ip_packets(self.pcap_dir / f"{interface}.pcap")

    def inject(self, node: str, packet: Any, *, at: float | None = None, interface: str | None = None) -> float:
        raw = packet_bytes(packet)
        spec = self._backend.spec
        if node not in spec.nodes:
            raise ConfigError(f"no node named {node!r}; nodes: {', '.join(spec.nodes)}")
        if interface is not None and getattr(spec.interfaces.get(interface), "node", None) != node:
            raise ConfigError(f"{node} has no interface {interface!r}")
        iface = interface or self._interface_of(node, raw)
        if node not in self._injectors:  # starts now, while the packet waits for its time
            self._injectors[node] = MininetInjector(self._backend, node)
        self._peer_mac(iface)  # known before the packet is due: no neighbour to ask at that moment
        when = self.now if at is None or at < self.now else at
        self._pending.append((when, len(self._pending) + len(self.replay.injected), node, raw, iface))
        self._pending.sort(key=lambda item: item[:2])
        return when

    def _interface_of(self, node: str, raw: bytes) -> str:
        """The interface the simulator would send ``raw`` from (see :func:`lab.sim.inject.inject`):
        a router's route for the destination, a host's interface owning the source address
        (else its only one). Raises ConfigError when there is none."""
        spec = self._backend.spec
        info = summary(raw)
        if spec.nodes[node].kind == "router":
            routes = [r for r in spec.routes if r.node == node and r.dst == info["dst"]]
            route = next((r for r in routes if r.src == info["src"]), None) or next(
                (r for r in routes if r.src is None), None
            )
            if route is None:
                raise ConfigError(f"router {node} has no route to {info['dst']}")
            return route.interface
        mine = [i for i in spec.interfaces.values() if i.node == node]
        owner = next((i.name for i in mine if info["src"] in (i.ipv4, i.ipv6)), None)
        if owner is None and len(mine) != 1:
            raise ConfigError(f"{node} has several interfaces and none owns {info['src']}: name one")
        return owner or mine[0].name

    def _peer_mac(self, iface: str) -> str | None:
        """The MAC address of the interface at the other end of ``iface``'s link (None when the
        network cannot say: then the sender asks the neighbour, with retries)."""
        if iface in self._macs:
            return self._macs[iface]
        spec = self._backend.spec
        mine = spec.interfaces[iface]
        peer = next((i for i in spec.interfaces.values() if i.link == mine.link and i.name != iface), None)
        mac = None
        if peer is not None:
            try:
                mac = self._backend.host(peer.node).intf(peer.name).MAC() or None
            except Exception:  # noqa: BLE001 - the sender resolves it itself then
                mac = None
        self._macs[iface] = mac
        return mac

    def _send_due(self) -> None:
        while self._pending and self._pending[0][0] <= self.now:
            _when, _seq, node, raw, iface = self._pending.pop(0)
            spec = self._backend.spec.interfaces[iface]
            next_hop = spec.peer_ipv4 if raw[0] >> 4 == 4 else spec.peer_ipv6  # the link's other end, as in the sim
            t = self.now
            self._backend.tracer.record_node(t, node, LAYER, "segment_sent", {"iface": iface, **summary(raw)})
            self._injectors[node].send(
                raw,
                interface=iface,
                next_hop=next_hop or None,
                next_hop_mac=self._peer_mac(iface) if next_hop else None,
            )
            self.replay.injected.append({"node": node, "at": t, "iface": iface, **summary(raw)})

    def progress(self, view: Any) -> None:
        """The run's progress callback: due actions, then due packets; a failure stops the run."""
        if self.failure is not None:
            return
        if self._t0 is None:
            self._t0 = view.t0
        actions = self.replay._actions
        try:
            while actions:
                actions.sort(key=lambda item: item[:2])
                if actions[0][0] > self.now:
                    break
                _t, _seq, fn = actions.pop(0)
                fn(self)
            self._send_due()
        except Exception as exc:  # noqa: BLE001 - re-raised by finish once the network is down
            self.failure = exc
            self.stop.set()

    def close(self) -> None:
        for injector in self._injectors.values():
            injector.close()
        self._injectors.clear()

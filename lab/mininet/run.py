"""``tcplab run SCENARIO --backend mininet``: a scenario on real packets, and its run bundle.

The controller (this module, in the root namespace):

1. builds the scenario's topology with :class:`lab.mininet.MininetBackend`
   (captures on, offloads off, receive checksum offload off too so that each
   kernel verifies what our stack sends), installs the scenario's middleboxes
   with ``backend.add_middlebox`` where the backend has it;
2. starts one endpoint process (:mod:`lab.mininet.endpoint`) per host, each
   given the scenario (without its middlebox factories), the spec and the
   seed in a private pickle file; each schedules every workload for its own
   host and answers ``ready`` with the ports its user-space stack owns;
3. fences those ports off each host's kernel (:mod:`lab.mininet.fence`),
   then sends every endpoint the same start time (``time.monotonic()``), so
   ``t`` is wall seconds since that start everywhere;
4. merges the halves of each result the endpoints report (the sender knows
   when it started, the receiver what arrived), applies the link events
   (``ip link set down|up``) on time, and ends when every result is complete,
   at the time limit, or when endpoints fail (a crashed endpoint becomes an
   ``error`` record and fails the results still open: it never hangs the run);
5. stops the endpoints, removes the fences, reads the interface and qdisc
   counters, stops the network (always, also on errors and Ctrl-C), and
   writes the bundle: ``topology.json``, ``trace.jsonl`` (the endpoints'
   records, streamed over their stdout pipes and spooled, merged with the
   controller's in ``t`` order), ``pcaps/<interface>.pcap`` for every
   interface of every node, and ``summary.json`` with ``backend: "mininet"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import os
import pickle
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, LabError
from lab.mininet.backend import STATE_DIR, MininetBackend, check_prerequisites
from lab.mininet.fence import Fence, PortSet
from lab.mininet.topo import MininetCommandError
from lab.scenario import Scenario, build_scenario_topology, bundle
from lab.stack.apps import TransferResult
from lab.tcp import TcpConfig
from lab.trace import SCHEMA_VERSION, Tracer, TraceRecord

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
TRACE_PREFIX = b'{"v":' + str(SCHEMA_VERSION).encode()
# what tcpdump writes first on an Ethernet interface: classic pcap, microseconds, snaplen 262144, LINKTYPE_ETHERNET
EMPTY_ETHERNET_PCAP = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)


class ControllerTracer(Tracer):
    """Records made in the controller, stamped with ``time.monotonic()`` when made
    (the backend's own clock starts earlier); rebased on the run's start when written."""

    def __init__(self) -> None:
        self.records: list[tuple[float, str, str, str, dict[str, Any]]] = []

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        self.records.append((time.monotonic(), node, layer, name, data))

    def lines(self, t0: float | None) -> Iterator[tuple[float, bytes]]:
        for mono, node, layer, name, data in self.records:
            t = 0.0 if t0 is None else max(0.0, mono - t0)
            yield t, TraceRecord(t, node, layer, name, data).to_json().encode() + b"\n"


@dataclass
class EndpointProcess:
    """One endpoint process as the controller sees it."""

    host: str
    proc: subprocess.Popen[bytes]
    spool_path: Path
    stderr_path: Path
    ready: dict[str, Any] | None = None
    stopped: dict[str, Any] | None = None
    states: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_status: int | None = None
    eof: bool = False
    reader: threading.Thread | None = None

    def stderr_tail(self, lines: int = 6) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def send(self, command: dict[str, Any]) -> None:
        if self.proc.stdin is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            self.proc.stdin.flush()


def _read_endpoint(
    ep: EndpointProcess,
    messages: queue.Queue[tuple[str, dict[str, Any]]],
    on_records: Callable[[list[TraceRecord]], None] | None = None,
) -> None:
    """Thread: spool trace lines (and hand them to ``on_records`` in batches, parsed),
    queue messages, report the end of the stream."""
    assert ep.proc.stdout is not None
    fd = ep.proc.stdout.fileno()
    rest = b""
    with open(ep.spool_path, "ab") as spool:
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            batch: list[TraceRecord] = []
            for line in data[:cut].splitlines(keepends=True):
                if line.startswith(TRACE_PREFIX):
                    spool.write(line)
                    if on_records is not None:
                        with contextlib.suppress(ValueError):
                            batch.append(TraceRecord.from_dict(json.loads(line)))
                elif line.strip():
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        msg = {"msg": "error", "reason": f"unreadable line from the endpoint: {line[:120]!r}"}
                    if isinstance(msg, dict):
                        messages.put((ep.host, msg))
            if batch and on_records is not None:
                on_records(batch)
    messages.put((ep.host, {"msg": "_eof"}))


def merge_result(result: TransferResult, halves: list[dict[str, Any]]) -> None:
    """Fold the endpoints' halves of one result into ``result``."""
    if not halves:
        return

    def values(key: str) -> list[Any]:
        return [h[key] for h in halves if h.get(key) is not None]

    result.bytes_received = max([0, *values("bytes_received")])
    result.sha256_received = next(iter(values("sha256_received")), None)
    for key in ("started_at", "first_byte_at", "completed_at"):
        found = values(key)
        setattr(result, key, min(found) if found else None)
    finished_cleanly = any(h.get("completed_at") is not None and h.get("error") is None for h in halves)
    errors = values("error")
    if result.error is None or not result.error.startswith("endpoint "):
        result.error = None if finished_cleanly or not errors else errors[0]
    result.sender_done = any(h.get("sender_done") for h in halves)
    extra: dict[str, Any] = {}
    for h in halves:
        extra.update(h.get("extra") or {})
    result.extra = extra


@dataclass
class MininetRunResult:
    """What a Mininet run produced; ``summary()`` is summary.json."""

    scenario: str
    seed: int
    run_time_s: float
    wall_time_s: float
    transfers: list[TransferResult]
    out_dir: Path | None
    timed_out: bool
    links: list[dict[str, Any]] = field(default_factory=list)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    link_realisation: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.timed_out and not self.errors and all(t.ok for t in self.transfers)

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "backend": "mininet",
            "ok": self.ok,
            "timed_out": self.timed_out,
            "sim_time_s": round(self.run_time_s, 6),
            "run_time_s": round(self.run_time_s, 6),
            "wall_time_s": round(self.wall_time_s, 3),
            "speedup": None,
            "transfers": [t.to_dict() for t in self.transfers],
            "links": self.links,
            "link_realisation": self.link_realisation,
            "endpoints": self.endpoints,
            "errors": self.errors,
            "files": self.files,
        }


class RunView:
    """What a progress callback sees while a Mininet run is under way."""

    def __init__(self, results: list[TransferResult], clock: Callable[[], float]) -> None:
        self.results = results
        self._clock = clock
        self.t0: float | None = None  # the run's start, time.monotonic()

    @property
    def now(self) -> float:
        return self._clock()

    def bytes_received(self) -> int:
        return sum(r.bytes_received for r in self.results)

    def bytes_expected(self) -> int:
        return sum(r.bytes_expected for r in self.results)

    def done(self) -> bool:
        return all(r.complete for r in self.results)


def _link_counters(backend: MininetBackend) -> list[dict[str, Any]]:
    """Per link direction: packets and bytes sent by the interface, and its qdisc's drops."""
    spec = backend.spec
    counters: dict[str, dict[str, int]] = {}
    drops: dict[str, int] = {}
    for node in spec.nodes:
        with contextlib.suppress(LabError, ValueError, IndexError):
            counters.update(backend.interface_counters(node))
        with contextlib.suppress(LabError, ValueError):
            for q in json.loads(backend.cmd(node, ["tc", "-s", "-j", "qdisc", "show"]) or "[]"):
                if q.get("root") and q.get("dev") in spec.interfaces:
                    drops[q["dev"]] = drops.get(q["dev"], 0) + int(q.get("drops", 0))
    out = []
    for name in spec.links:
        ends = [i for i in spec.interfaces.values() if i.link == name]
        for src, dst in ((ends[0], ends[1]), (ends[1], ends[0])):
            c = counters.get(src.name, {})
            out.append(
                {
                    "link": name,
                    "from": src.name,
                    "to": dst.name,
                    "packets": c.get("tx_packets"),
                    "bytes": c.get("tx_bytes"),
                    "dropped": drops.get(src.name, 0),
                }
            )
    return out


def _merge_trace(out: Path, sources: list[Iterator[tuple[float, bytes]]]) -> int:
    count = 0
    with open(out, "wb") as fh:
        for _t, line in heapq.merge(*sources, key=lambda item: item[0]):
            fh.write(line)
            count += 1
    return count


def _spooled(path: Path) -> Iterator[tuple[float, bytes]]:
    """(t, line) of a spool file; ``t`` read from the fixed ``{"v":1,"t":`` prefix."""
    start = len(TRACE_PREFIX) + len(b',"t":')
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed when the generator finishes
    except OSError:
        return
    with fh:
        for line in fh:
            end = line.find(b",", start)
            try:
                t = float(line[start:end])
            except ValueError:
                continue
            yield t, line if line.endswith(b"\n") else line + b"\n"


def run_mininet_scenario(
    scenario: Scenario,
    *,
    seed: int = 1,
    out_dir: Path | None = None,
    pcaps: bool = True,
    pcap_interfaces: list[str] | None = None,
    trace: bool = True,
    progress: Callable[[RunView], None] | None = None,
    time_limit_s: float | None = None,
    state_dir: str | os.PathLike[str] = STATE_DIR,
    python: str = sys.executable,
    on_records: Callable[[list[TraceRecord]], None] | None = None,
    before_start: Callable[[MininetBackend], None] | None = None,
    stop: threading.Event | None = None,
    hold: bool = False,
    gro: bool = True,
) -> MininetRunResult:
    """Run ``scenario`` on Mininet; writes a bundle when ``out_dir`` is given
    (pcaps of ``pcap_interfaces``, default every interface, when ``pcaps``).
    ``on_records`` sees the endpoints' records as they arrive, in batches, on
    the threads that read the endpoints (a live view; the bundle's trace is
    the merged, ordered one). ``before_start`` is called with the running
    backend once the endpoints are ready, just before the start (to attach
    observers); ``progress`` runs on the controller's thread, so controls it
    applies never race the controller. Setting ``stop`` ends the run early
    (results still open fail with ``stopped before completion``). With
    ``hold`` (and ``stop``) the network stays up once the transfers are done,
    links and middleboxes still switchable, until ``stop`` is set: the live
    lab keeps it until the viewer quits. With ``gro`` (the default) the endpoints move TCP
    segments in bulk where the kernel can do it for them, on the hosts' links with nothing to
    emulate (no rate, delay, jitter or loss): runs of segments leave in one send that the kernel
    cuts up (GSO), and received segments are coalesced (GRO) where no capture watches. What crosses the links, and every
    capture, stays the MTU-sized segments the stack produced (:mod:`lab.mininet.endpoint`).

    Raises ConfigError (not root, Mininet missing, a scenario that does not
    fit, reported by an endpoint), MininetCommandError (building or
    configuring failed) or LabError (an endpoint failed before the start);
    the network is stopped in every case.
    """
    wall0 = time.monotonic()
    check_prerequisites(pcaps=pcaps and out_dir is not None)
    spec = build_scenario_topology(scenario)
    try:
        TcpConfig(**scenario.tcp)
    except TypeError as exc:
        raise ConfigError(f"scenario {scenario.name}: bad TCP setting: {exc}") from None
    for ev in scenario.link_events:
        if ev.link not in spec.links:
            raise ConfigError(f"scenario {scenario.name}: link event on unknown link {ev.link!r}")
    limit = scenario.time_limit_s if time_limit_s is None else time_limit_s
    created = False
    if out_dir is not None:
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        bundle.begin(out_dir, {"scenario": scenario.name, "seed": seed, "backend": "mininet"})
        (out_dir / "topology.json").write_text(json.dumps(spec.to_dict() | {"diagram": spec.diagram}, indent=2))
    pcap_dir = out_dir / "pcaps" if (out_dir is not None and pcaps) else None
    interrupted = False
    ctl = ControllerTracer()
    endpoints: dict[str, EndpointProcess] = {}
    fences: list[Fence] = []
    results: list[TransferResult] = []
    errors: list[str] = []
    timed_out = False
    t0: float | None = None
    finished_at: float | None = None
    links: list[dict[str, Any]] = []
    fence_drops: dict[str, dict[str, int]] = {}
    cut_short: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="tcplab-mininet-") as tmp_name:
        tmp = Path(tmp_name)
        backend = MininetBackend(
            spec, tracer=ctl, pcap_dir=pcap_dir, pcap_interfaces=pcap_interfaces, state_dir=state_dir
        )
        try:
            with backend:
                for iface in spec.interfaces.values():  # the kernels verify our checksums
                    backend.cmd(iface.node, ["ethtool", "-K", iface.name, "rx", "off"], check=False)
                gro_on = _enable_gro(backend, spec) if gro else {}
                gso_on = _gso_interfaces(spec) if gro else {}
                for router, factory in scenario.middleboxes:
                    add = getattr(backend, "add_middlebox", None)
                    if add is None:
                        raise ConfigError(f"scenario {scenario.name}: middleboxes are not available on Mininet yet")
                    add(router, factory())
                messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
                portable = replace(scenario, middleboxes=())
                try:
                    for host in spec.hosts():
                        endpoints[host] = _start_endpoint(
                            backend,
                            host,
                            portable,
                            spec,
                            seed,
                            trace,
                            tmp,
                            messages,
                            python=python,
                            on_records=on_records,
                            gro=gro_on.get(host, ()),
                            gso=gso_on.get(host, ()),
                        )
                    _wait_ready(endpoints, messages, scenario.name)
                    results = _result_slots(endpoints)
                    for ep in endpoints.values():
                        assert ep.ready is not None
                        if ep.ready.get("ports"):
                            ports = PortSet.from_dict(ep.ready["ports"])
                            fence = Fence(backend, ep.host, ports)
                            fences.append(fence)
                            fence.install()
                            ctl.record_node(0.0, ep.host, "endpoint", "state_updated", {"fence": ports.to_dict()})
                    if before_start is not None:
                        before_start(backend)
                    t0 = time.monotonic()
                    for ep in endpoints.values():
                        ep.send({"cmd": "start", "t0": t0})
                    ctl.record_node(
                        0.0, "net", "endpoint", "state_updated", {"state": "started", "hosts": list(endpoints)}
                    )
                    events = sorted(scenario.link_events, key=lambda ev: ev.at_s)
                    view = RunView(results, lambda: time.monotonic() - t0)
                    view.t0 = t0
                    held = False  # with hold: the transfers are done, the network stays up
                    while True:
                        now = time.monotonic() - t0
                        while events and events[0].at_s <= now:
                            ev = events.pop(0)
                            backend.set_link_up(ev.link, ev.up)
                        _drain(endpoints, messages, ctl, results, timeout=POLL_S)
                        if progress is not None:
                            progress(view)
                        if results and all(r.complete for r in results):
                            if not (hold and stop is not None):
                                break
                            if not held:
                                held = True
                                ctl.record_node(0.0, "net", "endpoint", "state_updated", {"state": "held"})
                        if not results and all(ep.eof or ep.error for ep in endpoints.values()):
                            break
                        if all(ep.eof for ep in endpoints.values()):
                            break
                        if not held and time.monotonic() - t0 >= limit:
                            timed_out = True
                            break
                        if stop is not None and stop.is_set():
                            # what the stop cuts short: errors the endpoints report from here on
                            # (a peer's MP_FASTCLOSE as it stops) are the stop's doing
                            cut_short = {r.name for r in results if not r.complete and r.error is None}
                            break
                    done = [r.completed_at for r in results if r.completed_at is not None]
                    finished_at = max(done) if done and all(r.complete for r in results) else time.monotonic() - t0
                    # every result complete: the endpoints first let their kernel sockets take
                    # what is still on its way (a peer's reset), so that both ends' facts are in
                    settle = bool(results) and all(r.complete for r in results) and not held
                    _stop_endpoints(endpoints, messages, ctl, results, settle=settle)
                    for fence in fences:
                        with contextlib.suppress(LabError):
                            fence_drops[fence.node] = fence.dropped()
                    links = _link_counters(backend)
                finally:
                    for ep in endpoints.values():
                        ep.send({"cmd": "stop"})
                    for fence in fences:
                        with contextlib.suppress(LabError):
                            fence.remove()
                    if fences:
                        ctl.record_node(0.0, "net", "endpoint", "state_updated", {"fences": "removed"})
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the network is stopped; the bundle is still written
            interrupted = True
        except BaseException:
            if out_dir is not None and t0 is None:
                bundle.discard(out_dir, created=created)  # failed before the start: no bundle
            raise
        for ep in endpoints.values():
            if ep.reader is not None:
                ep.reader.join(timeout=STOP_TIMEOUT_S)
            ep.exit_status = ep.proc.returncode
        stopped = stop is not None and stop.is_set() and not timed_out
        for r in results:
            if not r.complete:
                why = "stopped before completion" if stopped else "did not complete before the time limit"
                why = "interrupted" if interrupted else why
                r.error = why if stopped and r.name in cut_short else (r.error or why)
        by_name = {r.name: r for r in results}
        for workload in scenario.transfers:
            merged = by_name.get(workload.name)
            if merged is not None and merged.error is None:
                why = workload.check_merged(merged)
                if why is not None:
                    merged.error = why
                    ctl.record_node(0.0, "net", "endpoint", "error", {"reason": f"{merged.name}: {why}"})
        errors = [f"{ep.host}: {ep.error}" for ep in endpoints.values() if ep.error]
        result = MininetRunResult(
            scenario=scenario.name,
            seed=seed,
            run_time_s=finished_at or 0.0,
            wall_time_s=time.monotonic() - wall0,
            transfers=results,
            out_dir=out_dir,
            timed_out=timed_out,
            links=links,
            link_realisation=backend.link_realisation,
            errors=errors,
        )
        for ep in endpoints.values():
            info: dict[str, Any] = {"exit_status": ep.exit_status, "error": ep.error}
            if ep.ready is not None:
                info |= {"user_stack": ep.ready.get("user_stack"), "fence": ep.ready.get("ports")}
                info["kernel_ports"] = ep.ready.get("kernel_ports")
            if ep.stopped is not None:
                info["stats"] = ep.stopped.get("stats")
            if ep.host in fence_drops:
                info["fence_dropped"] = fence_drops[ep.host]
            result.endpoints[ep.host] = info
        if out_dir is not None:
            _write_bundle(out_dir, spec, result, ctl, t0, endpoints, pcaps, interrupted=interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return result


def _enable_gro(backend: MininetBackend, spec: Any) -> dict[str, list[str]]:
    """Switch GRO on for the host interfaces of links with nothing to emulate (as for GSO) that no
    capture watches; returns them by host. GRO merges received segments before the packet sockets
    (and tcpdump) see them, so a captured interface keeps it off and its pcap shows each segment as
    it crossed the link. A shaped link delivers its packets spaced, one per poll, and there is
    nothing to merge; there the kernel's NAPI path only changed the timing (our MPTCP over two
    20 Mbit/s paths lost a few percent). Only hosts: a router forwards what it receives, and the
    links past it carry MTU-sized packets."""
    captured = set(backend.pcap_interfaces) if backend.pcap_dir is not None else set()
    unshaped = _gso_interfaces(spec)
    out: dict[str, list[str]] = {}
    for host in spec.hosts():
        for iface in spec.interfaces_of(host):
            if iface.name in captured or iface.name not in unshaped.get(host, ()):
                continue
            try:
                backend.cmd(host, ["ethtool", "-K", iface.name, "gro", "on"])
            except MininetCommandError:
                continue  # a kernel whose veth has no GRO: that interface's reader takes plain packets
            out.setdefault(host, []).append(iface.name)
    return out


def _gso_interfaces(spec: Any) -> dict[str, list[str]]:
    """The host interfaces whose endpoint may send runs of segments as one GSO frame, by host: those
    of links with no rate, delay, jitter or loss. The kernel cuts a GSO frame into its segments only
    after the interface's qdisc, which would count it as one packet: on an emulated link the queue
    (``queue_packets``) would hold many times what it should."""
    out: dict[str, list[str]] = {}
    for host in spec.hosts():
        for iface in spec.interfaces_of(host):
            link = spec.links[iface.link]
            if link.bw_mbps is None and not (link.delay_ms or link.jitter_ms or link.loss_pct):
                out.setdefault(host, []).append(iface.name)
    return out


def _start_endpoint(
    backend: MininetBackend,
    host: str,
    scenario: Scenario,
    spec: Any,
    seed: int,
    trace: bool,
    tmp: Path,
    messages: queue.Queue[tuple[str, dict[str, Any]]],
    *,
    python: str,
    on_records: Callable[[list[TraceRecord]], None] | None = None,
    gro: Sequence[str] = (),
    gso: Sequence[str] = (),
) -> EndpointProcess:
    config_path = tmp / f"{host}.pickle"
    try:
        # the hosts run the workloads; the moments (predicates over records) are the viewer's business
        shipped = dataclasses.replace(scenario, moments=()) if getattr(scenario, "moments", ()) else scenario
        config = {"host": host, "scenario": shipped, "spec": spec, "seed": seed, "trace": trace, "gro": list(gro), "gso": list(gso)}
        payload = pickle.dumps(config)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"scenario {scenario.name}: its workloads cannot be sent to the Mininet hosts ({exc}); "
            "define workload classes at module level"
        ) from None
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)
    stderr_path = tmp / f"{host}.stderr"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    with open(stderr_path, "wb") as err:
        proc = backend.popen(
            host,
            [python, "-m", "lab.mininet.endpoint", "--config", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=str(ROOT),
            env=env,
        )
    ep = EndpointProcess(host, proc, tmp / f"{host}.trace", stderr_path)
    ep.reader = threading.Thread(
        target=_read_endpoint, args=(ep, messages, on_records), name=f"endpoint-{host}", daemon=True
    )
    ep.reader.start()
    return ep


def _wait_ready(
    endpoints: dict[str, EndpointProcess], messages: queue.Queue[tuple[str, dict[str, Any]]], name: str
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while any(ep.ready is None for ep in endpoints.values()):
        left = deadline - time.monotonic()
        if left <= 0:
            late = ", ".join(h for h, ep in endpoints.items() if ep.ready is None)
            raise LabError(f"scenario {name}: the endpoints on {late} were not ready within {READY_TIMEOUT_S:g} s")
        try:
            host, msg = messages.get(timeout=left)
        except queue.Empty:
            continue
        ep = endpoints[host]
        kind = msg.get("msg")
        if kind == "ready":
            ep.ready = msg
        elif kind == "error":
            ep.error = str(msg.get("reason"))
            if msg.get("traceback"):
                raise LabError(f"{host}: endpoint failed: {ep.error} ({' / '.join(msg['traceback'][-3:])})")
            raise ConfigError(f"{host}: {ep.error}")
        elif kind == "_eof":
            ep.eof = True
            status = ep.proc.wait(timeout=STOP_TIMEOUT_S)
            raise LabError(f"{host}: the endpoint process exited ({status}) before it was ready: {ep.stderr_tail()}")


def _result_slots(endpoints: dict[str, EndpointProcess]) -> list[TransferResult]:
    """The run's results, from the slots every endpoint announced (they must agree)."""
    layouts = {
        host: [(s["name"], s["bytes_expected"], s["sha256_expected"]) for s in ep.ready["results"]]  # type: ignore[index]
        for host, ep in endpoints.items()
    }
    first = next(iter(layouts.values()), [])
    for host, layout in layouts.items():
        if layout != first:
            raise LabError(
                f"{host}: its workloads registered other results than the other hosts' ({layout} != {first})"
            )
    return [TransferResult(name, size, sha) for name, size, sha in first]


def _drain(
    endpoints: dict[str, EndpointProcess],
    messages: queue.Queue[tuple[str, dict[str, Any]]],
    ctl: ControllerTracer,
    results: list[TransferResult],
    *,
    timeout: float,
) -> None:
    """Handle the messages that arrive within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    changed = False
    while True:
        left = deadline - time.monotonic()
        try:
            host, msg = messages.get(timeout=max(left, 0.0)) if left > 0 else messages.get_nowait()
        except queue.Empty:
            break
        ep = endpoints[host]
        kind = msg.get("msg")
        if kind == "results":
            ep.states = list(msg.get("results") or [])
            changed = True
        elif kind == "stopped":
            ep.stopped = msg
        elif kind == "error":
            _endpoint_failed(ep, str(msg.get("reason")), ctl, results, detail=msg.get("traceback"))
            changed = True
        elif kind == "_eof":
            ep.eof = True
            if ep.stopped is None and ep.error is None:
                try:
                    status = ep.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    status = None
                _endpoint_failed(ep, f"the endpoint process exited ({status})", ctl, results, detail=ep.stderr_tail())
            changed = True
    if changed:
        for i, r in enumerate(results):
            merge_result(r, [ep.states[i] for ep in endpoints.values() if i < len(ep.states)])


def _endpoint_failed(
    ep: EndpointProcess, reason: str, ctl: ControllerTracer, results: list[TransferResult], *, detail: Any = None
) -> None:
    if ep.error is not None:
        return
    ep.error = reason
    data: dict[str, Any] = {"reason": reason}
    if detail:
        data["detail"] = detail
    ctl.record_node(0.0, ep.host, "endpoint", "error", data)
    for r in results:
        if not r.complete:
            r.error = f"endpoint {ep.host} failed: {reason}"


def _stop_endpoints(
    endpoints: dict[str, EndpointProcess],
    messages: queue.Queue[tuple[str, dict[str, Any]]],
    ctl: ControllerTracer,
    results: list[TransferResult],
    *,
    settle: bool = False,
) -> None:
    for ep in endpoints.values():
        ep.send({"cmd": "stop", "settle": settle})
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and not all(ep.eof for ep in endpoints.values()):
        _drain(endpoints, messages, ctl, results, timeout=POLL_S)
    for ep in endpoints.values():
        if ep.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                ep.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            ep.proc.wait(timeout=max(0.1, deadline - time.monotonic()))


def _write_bundle(
    out_dir: Path,
    spec: Any,
    result: MininetRunResult,
    ctl: ControllerTracer,
    t0: float | None,
    endpoints: dict[str, EndpointProcess],
    pcaps: bool,
    *,
    interrupted: bool = False,
) -> None:
    (out_dir / "topology.json").write_text(json.dumps(spec.to_dict() | {"diagram": spec.diagram}, indent=2))
    sources = [ctl.lines(t0), *(_spooled(ep.spool_path) for ep in endpoints.values())]
    _merge_trace(out_dir / "trace.jsonl", sources)
    for pcap in (out_dir / "pcaps").glob("*.pcap"):
        if pcap.stat().st_size == 0:  # tcpdump stopped before it wrote anything: an empty capture, not no file
            pcap.write_bytes(EMPTY_ETHERNET_PCAP)
    result.files = {
        "trace": "trace.jsonl",
        "topology": "topology.json",
        "pcaps": sorted(f"pcaps/{p.name}" for p in (out_dir / "pcaps").glob("*.pcap")) if pcaps else [],
    }
    bundle.finalise(out_dir, result.summary(), interrupted=interrupted)

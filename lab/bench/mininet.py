"""Benchmarks of this package (entry point tcplab.benchmarks, name mininet)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.bench import Benchmark
from lab.mininet.apps import payload_sha256
from lab.scenario import Scenario, Transfer, Workload, stack_host
from lab.stack.apps import BulkSender, BulkSink, TransferResult
from lab.topology import build_topology

SHAPING_RATE_MBPS = 20.0
SHAPING_ONE_WAY_MS = 20.0  # end to end: 10 ms on each of the two links
SHAPING_BYTES = 8 * 1024 * 1024
EMULATOR_BYTES = 64 * 1024 * 1024


def _kernel_transfer(net: Any, *, size_bytes: int, seed: int, port: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """A kernel TCP bulk transfer h1 -> h2 (10.0.2.2) with :mod:`lab.mininet.apps`; the
    receiver's result plus ``sha256_match``. Raises MininetCommandError."""
    from lab.mininet.linkemu import _read_line
    from lab.mininet.topo import MininetCommandError

    app = [sys.executable, "-m", "lab.mininet.apps"]
    popen: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
    }
    receiver = net.popen(
        "h2", [*app, "receive", "--listen", "10.0.2.2", "--port", str(port), "--timeout", str(timeout_s)], **popen
    )
    if _read_line(receiver, timeout=30, what="the receiver").get("event") != "listening":
        raise MininetCommandError("the receiver did not listen")
    argv = [*app, "send", "--connect", "10.0.2.2", "--port", str(port), "--bytes", str(size_bytes)]
    sender = net.popen("h1", [*argv, "--seed", str(seed), "--timeout", str(timeout_s)], **popen)
    sent = _read_line(sender, timeout=timeout_s + 10, what="the sender")
    received = _read_line(receiver, timeout=timeout_s + 10, what="the receiver")
    if received.get("event") != "received" or sent.get("event") != "sent":
        raise MininetCommandError(f"transfer failed: {sent} / {received}")
    return {**received, "sha256_match": received["sha256"] == sent["sha256"] == payload_sha256(size_bytes, seed)}


def _ping_rtts_ms(net: Any, count: int) -> list[float]:
    net.cmd("h1", ["ping", "-n", "-c", "2", "-i", "0.1", "10.0.2.2"], check=False)  # neighbours resolved
    out = net.cmd("h1", ["ping", "-n", "-c", str(count), "-i", "0.1", "-W", "2", "10.0.2.2"], check=False)
    return [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]


def bench_shaping() -> dict[str, Any]:
    """Kernel TCP over h1 - r1 - h2 at 20 Mbit/s with 20 ms one way (delay by netem, or
    without it by the user-space emulator): goodput against the rate and the ping RTT
    against the configured one, side by side; then the emulator's own limits on an
    unshaped 1 ms path (its highest forwarding rate and how late frames leave).

    Raises ConfigError when the Mininet backend cannot run here (not root, ...).
    """
    from lab.mininet import MininetBackend
    from lab.mininet.linkemu import emulator_stats
    from lab.scenario import registry

    single_path = registry.topologies()["single-path"]
    shaped_spec = build_topology("single-path", single_path, delay_ms=SHAPING_ONE_WAY_MS, bw_mbps=SHAPING_RATE_MBPS)
    with tempfile.TemporaryDirectory() as state, MininetBackend(shaped_spec, state_dir=state) as net:
        realised = {name: plan["delay"] for name, plan in net.link_realisation.items()}
        rtts = _ping_rtts_ms(net, 20)
        shaped = _kernel_transfer(net, size_bytes=SHAPING_BYTES, seed=1, port=5401)
        late = {name: emulator_stats(proc) for name, proc in net.link_emulators.items()}
    unshaped = build_topology("single-path", single_path, delay_ms=2.0, bw_mbps=None)
    with tempfile.TemporaryDirectory() as state, MininetBackend(unshaped, state_dir=state) as net:
        fastest = _kernel_transfer(net, size_bytes=EMULATOR_BYTES, seed=2, port=5402)
        fast_late = {name: emulator_stats(proc) for name, proc in net.link_emulators.items()}
    goodput = shaped["bytes"] * 8 / shaped["elapsed_s"] / 1e6
    expected_rtt = 2 * SHAPING_ONE_WAY_MS
    rtt = statistics.median(rtts) if rtts else float("nan")
    goodput_ratio = goodput / SHAPING_RATE_MBPS
    rtt_ratio = rtt / expected_rtt
    within_2ms = sum(1 for r in rtts if abs(r - expected_rtt) <= 2.0)

    def lateness(stats: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {d: {k: v[k] for k in ("late_p50_us", "late_p99_us", "late_max_us")} for d, v in s.items()}
            for name, s in stats.items()
        }

    fastest_mbps = fastest["bytes"] * 8 / fastest["elapsed_s"] / 1e6
    frames = [d["forwarded"] for s in fast_late.values() for d in s.values()]
    return {
        "bench": "mininet-shaping",
        "metric": "goodput / rate and median RTT / configured RTT (shaped path, user-space delay without netem)",
        "value": round(goodput_ratio, 4),
        "unit": "ratio",
        "target": "goodput/rate >= 0.90, RTT/configured in [0.95, 1.10], byte-exact",
        "passed": goodput_ratio >= 0.90 and 0.95 <= rtt_ratio <= 1.10 and shaped["sha256_match"],
        "goodput_mbps": round(goodput, 3),
        "rate_mbps": SHAPING_RATE_MBPS,
        "goodput_over_rate": round(goodput_ratio, 4),
        "rtt_ms_median": round(rtt, 3),
        "rtt_ms_configured": expected_rtt,
        "rtt_over_configured": round(rtt_ratio, 4),
        "pings_within_2ms": f"{within_2ms}/{len(rtts)}",
        "delay_realised_by": realised,
        "sha256_match": shaped["sha256_match"],
        "emulator_lateness_shaped_us": lateness(late),
        "emulator_max_goodput_mbps": round(fastest_mbps, 1),
        "emulator_max_frames_per_s": round(max(frames) / fastest["elapsed_s"]) if frames else None,
        "emulator_lateness_at_max_rate_us": lateness(fast_late),
        "emulator_max_sha256_match": fastest["sha256_match"],
    }


# --- mininet-tcp-user-vs-kernel

USER_VS_KERNEL_RATE_MBPS = 20.0
USER_VS_KERNEL_BYTES = 8 * 1024 * 1024
USER_VS_KERNEL_ROUNDS = 2


class _ChainedSender(BulkSender):
    """A BulkSender that calls ``on_done`` once, when the receiver has closed its side
    (it had everything) or the connection ended otherwise."""

    def __init__(self, result: TransferResult, data: bytes, on_done: Callable[[], None]) -> None:
        super().__init__(result, data)
        self._on_done: Callable[[], None] | None = on_done

    def _done(self) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()

    def eof_received(self, stream: Any) -> None:
        super().eof_received(stream)
        self._done()

    def connection_lost(self, stream: Any, reason: str, reset: bool) -> None:
        super().connection_lost(stream, reason, reset)
        self._done()


@dataclass(frozen=True, kw_only=True)
class BackToBack(Workload):
    """``transfers`` one after the other: each starts ``gap_s`` after the previous
    one's receiver closed its side (so they never share the path). Every
    transfer must have the same ``src``; listeners are all set up at the start."""

    name: str = "back-to-back"
    transfers: tuple[Transfer, ...] = ()
    gap_s: float = 0.5

    def schedule(self, run: Any) -> None:
        steps = []
        for t in self.transfers:
            src = stack_host(run, t.src, t.src_stack, what=f"transfer {t.name}")
            dst = stack_host(run, t.dst, t.dst_stack, what=f"transfer {t.name}")
            data = run.payload(t.size_bytes)
            result = run.add_result(t.name, data)
            dst.listen(t.port, lambda r=result: BulkSink(r))
            remote = run.spec.interfaces_of(t.dst)[t.dst_interface].ipv4
            steps.append((src, result, data, remote, t.port))

        def start(i: int) -> None:
            if i < len(steps):
                src, result, data, remote, port = steps[i]
                then = lambda: run.net.call_at(run.net.now + self.gap_s, lambda: start(i + 1))  # noqa: E731
                _ChainedSender(result, data, then).start(src, remote, port)

        run.net.call_at(0.0, lambda: start(0))


def bench_user_vs_kernel() -> dict[str, Any]:
    """Goodput of our user-space TCP (both ends) against the kernel's TCP (both ends)
    over path A of two-paths shaped to 20 Mbit/s (5 ms one way), in one Mininet run:
    8 MiB transfers alternating user, kernel, user, kernel, never overlapping.

    Raises ConfigError when the Mininet backend cannot run here (not root, ...).
    """
    from lab.scenario.backend import get_backend

    transfers = []
    for round_ in range(USER_VS_KERNEL_ROUNDS):
        for k, stack in enumerate(("user", "kernel")):
            transfers.append(
                Transfer(
                    name=f"{stack}-{round_ + 1}",
                    size_bytes=USER_VS_KERNEL_BYTES,
                    port=5001 + 2 * round_ + k,
                    src_stack=stack,
                    dst_stack=stack,
                )
            )
    scenario = Scenario(
        name="bench-user-vs-kernel",
        description="user-space TCP and kernel TCP back to back on path A",
        topology="two-paths",
        topology_params={"bw_mbps": (USER_VS_KERNEL_RATE_MBPS, 5.0)},
        transfers=(BackToBack(transfers=tuple(transfers)),),
        time_limit_s=300.0,
    )
    with tempfile.TemporaryDirectory() as state:
        result = get_backend("mininet").run(scenario, out_dir=None, pcaps=False, trace=False, state_dir=state)
    goodput = {t.name: t.goodput_mbps or 0.0 for t in result.transfers}
    user = statistics.mean(v for k, v in goodput.items() if k.startswith("user"))
    kernel = statistics.mean(v for k, v in goodput.items() if k.startswith("kernel"))
    exact = all(t.ok for t in result.transfers)
    value = user / kernel if kernel > 0 else 0.0
    return {
        "bench": "mininet-tcp-user-vs-kernel",
        "metric": "goodput of our user-space TCP / goodput of the kernel's TCP (same path, one run)",
        "value": round(value, 4),
        "unit": "ratio",
        "target": ">= 0.90 and byte-exact",
        "passed": value >= 0.90 and exact and result.ok,
        "user_goodput_mbps": round(user, 3),
        "kernel_goodput_mbps": round(kernel, 3),
        "rate_mbps": USER_VS_KERNEL_RATE_MBPS,
        "user_over_rate": round(user / USER_VS_KERNEL_RATE_MBPS, 4),
        "kernel_over_rate": round(kernel / USER_VS_KERNEL_RATE_MBPS, 4),
        "transfers_mbps": {k: round(v, 3) for k, v in goodput.items()},
        "bytes_each": USER_VS_KERNEL_BYTES,
        "sha256_match": exact,
        "errors": result.errors,
    }


# --- mininet-tcp-unshaped

UNSHAPED_BYTES = 64 * 1024 * 1024
UNSHAPED_ROUNDS = 2
UNSHAPED_TARGET_MBPS = 1000.0


def bench_tcp_unshaped() -> dict[str, Any]:
    """Goodput of plain TCP between our user-space endpoints on h1 - r1 - h2 unshaped (no
    rate, no delay: what the packet path costs bounds it), beside the kernel's TCP on the
    same path, in one Mininet run: 64 MiB transfers alternating user, kernel, user, kernel,
    never overlapping. The value is ours in Mbit/s; the kernel's figure is the path's own.

    Raises ConfigError when the Mininet backend cannot run here (not root, ...).
    """
    from lab.scenario.backend import get_backend

    transfers = []
    for round_ in range(UNSHAPED_ROUNDS):
        for k, stack in enumerate(("user", "kernel")):
            transfers.append(
                Transfer(
                    name=f"{stack}-{round_ + 1}",
                    size_bytes=UNSHAPED_BYTES,
                    port=5001 + 2 * round_ + k,
                    src_stack=stack,
                    dst_stack=stack,
                )
            )
    scenario = Scenario(
        name="bench-tcp-unshaped",
        description="user-space TCP and kernel TCP back to back on an unshaped path",
        topology="single-path",
        topology_params={"delay_ms": 0.0, "bw_mbps": None},
        transfers=(BackToBack(transfers=tuple(transfers)),),
        time_limit_s=300.0,
    )
    with tempfile.TemporaryDirectory() as state:
        result = get_backend("mininet").run(scenario, out_dir=None, pcaps=False, trace=False, state_dir=state)
    goodput = {t.name: t.goodput_mbps or 0.0 for t in result.transfers}
    user = [v for k, v in goodput.items() if k.startswith("user")]
    kernel = [v for k, v in goodput.items() if k.startswith("kernel")]
    user_mbps = statistics.mean(user) if user else 0.0
    kernel_mbps = statistics.mean(kernel) if kernel else 0.0
    exact = bool(result.transfers) and all(t.ok for t in result.transfers)
    stats = {host: info.get("stats") for host, info in result.endpoints.items()}
    return {
        "bench": "mininet-tcp-unshaped",
        "metric": "goodput of plain TCP between our user-space endpoints, unshaped Mininet path, one run",
        "value": round(user_mbps, 3),
        "unit": "Mbit/s",
        "target": f">= {UNSHAPED_TARGET_MBPS:g} and byte-exact",
        "passed": user_mbps >= UNSHAPED_TARGET_MBPS and exact and result.ok,
        "kernel_goodput_mbps": round(kernel_mbps, 3),
        "user_over_kernel": round(user_mbps / kernel_mbps, 4) if kernel_mbps > 0 else 0.0,
        "transfers_mbps": {k: round(v, 3) for k, v in goodput.items()},
        "bytes_each": UNSHAPED_BYTES,
        "endpoint_stats": stats,
        "sha256_match": exact,
        "errors": result.errors + [f"{t.name}: {t.error}" for t in result.transfers if t.error],
    }


# --- mininet-esp-tcp-vs-udp

ESP_RATE_MBPS = 20.0
ESP_ONE_WAY_MS = 10.0
ESP_LOSS_PCT = 1.0
ESP_BYTES = 4 * 1024 * 1024
ESP_ORDER = ("udp", "tcp", "udp", "tcp")  # alternating, so drift in the machine's load hits both alike
ESP_INNER_TCP = {"min_rto_s": 0.2}  # the inner TCP as a Linux client's (200 ms minimum RTO); the outer is the lab's


def _esp_run(loss_pct: float) -> dict[str, Any]:
    """One Mininet run of the tunnelled bulk sessions in ESP_ORDER on the shaped path."""
    from lab.bench.ike import TunnelledBulk
    from lab.scenario.backend import get_backend

    scenario = Scenario(
        name=f"bench-esp-loss-{loss_pct:g}",
        description="an inner TCP stream through ESP in UDP and through ESP in TCP (RFC 9329), back to back",
        topology="single-path",
        topology_params={"delay_ms": ESP_ONE_WAY_MS, "bw_mbps": ESP_RATE_MBPS, "loss_pct": loss_pct},
        transfers=(
            TunnelledBulk(size_bytes=ESP_BYTES, transports=ESP_ORDER, inner_tcp=ESP_INNER_TCP, export_keys=False),
        ),
        time_limit_s=240.0,
    )
    with tempfile.TemporaryDirectory() as state:
        result = get_backend("mininet").run(scenario, out_dir=None, pcaps=False, trace=False, state_dir=state)
    by_transport: dict[str, list[float]] = {"udp": [], "tcp": []}
    duplicates = {"udp": 0, "tcp": 0}
    for t in result.transfers:
        transport = t.name.rsplit(" ", 1)[1].split("-")[0]
        by_transport[transport].append(t.goodput_mbps or 0.0)
        duplicates[transport] += int(t.extra.get("inner_duplicate_bytes", 0))
    return {
        "udp_mbps": statistics.mean(by_transport["udp"]),
        "tcp_mbps": statistics.mean(by_transport["tcp"]),
        "sessions_mbps": {t.name: round(t.goodput_mbps or 0.0, 3) for t in result.transfers},
        "inner_duplicate_bytes": duplicates,
        "sha256_match": bool(result.transfers) and all(t.ok for t in result.transfers),
        "ok": result.ok,
        "errors": result.errors + [f"{t.name}: {t.error}" for t in result.transfers if t.error],
        "transports_seen": sorted({str(t.extra.get("transport")) for t in result.transfers}),
    }


def bench_esp_tcp_vs_udp() -> dict[str, Any]:
    """ESP goodput of an inner TCP bulk stream through the tunnel, ESP in TCP (RFC 9329)
    against ESP in UDP 4500, on h1 - r1 - h2 shaped to 20 Mbit/s with 10 ms one way:
    one Mininet run without loss and one with 1 % loss end to end, each running
    4 MiB sessions udp, tcp, udp, tcp back to back (never sharing the path).
    The value is TCP/UDP without loss; the issue sets no target (reported), the
    runs must be byte-exact. Under loss the outer TCP's recovery stalls the
    inner TCP (TCP in TCP); ``inner_duplicate_bytes`` counts inner payload that
    reached the responder more than once (over TCP only spurious inner
    retransmissions can do that).

    Raises ConfigError when the Mininet backend cannot run here (not root, ...).
    """
    clean = _esp_run(0.0)
    lossy = _esp_run(ESP_LOSS_PCT)

    def ratio(run: dict[str, Any]) -> float:
        return run["tcp_mbps"] / run["udp_mbps"] if run["udp_mbps"] > 0 else 0.0

    value = ratio(clean)
    exact = clean["sha256_match"] and lossy["sha256_match"]
    return {
        "bench": "mininet-esp-tcp-vs-udp",
        "metric": "ESP goodput of a tunnelled inner TCP stream: over TCP (RFC 9329) / over UDP 4500, no loss",
        "value": round(value, 4),
        "unit": "ratio",
        "target": "none (reported); byte-exact in every session",
        "passed": exact and clean["ok"] and lossy["ok"],
        "udp_mbps": round(clean["udp_mbps"], 3),
        "tcp_mbps": round(clean["tcp_mbps"], 3),
        "tcp_over_udp": round(value, 4),
        "udp_lossy_mbps": round(lossy["udp_mbps"], 3),
        "tcp_lossy_mbps": round(lossy["tcp_mbps"], 3),
        "tcp_over_udp_lossy": round(ratio(lossy), 4),
        "lossy_over_clean": {
            "udp": round(lossy["udp_mbps"] / clean["udp_mbps"], 4) if clean["udp_mbps"] else None,
            "tcp": round(lossy["tcp_mbps"] / clean["tcp_mbps"], 4) if clean["tcp_mbps"] else None,
        },
        "rate_mbps": ESP_RATE_MBPS,
        "one_way_ms": ESP_ONE_WAY_MS,
        "loss_pct": ESP_LOSS_PCT,
        "bytes_each": ESP_BYTES,
        "order": list(ESP_ORDER),
        "inner_tcp": ESP_INNER_TCP,
        "sessions_mbps": {"no_loss": clean["sessions_mbps"], "loss": lossy["sessions_mbps"]},
        "inner_duplicate_bytes": {"no_loss": clean["inner_duplicate_bytes"], "loss": lossy["inner_duplicate_bytes"]},
        "transports_seen": sorted(set(clean["transports_seen"]) | set(lossy["transports_seen"])),
        "sha256_match": exact,
        "errors": clean["errors"] + lossy["errors"],
    }


# --- mininet-tcpcrypt-overhead

TCPCRYPT_BYTES = 16 * 1024 * 1024
TCPCRYPT_ORDER = (False, True) * 3  # plain, tcpcrypt, ...: drift in the machine's load hits both alike


def bench_tcpcrypt_overhead() -> dict[str, Any]:
    """Goodput of tcpcrypt (TCP-ENO, X25519, AES-128-GCM) over that of plain TCP, both
    between our user-space endpoints on h1 - r1 - h2 unshaped (no rate, no delay:
    CPU-bound), in one Mininet run: 16 MiB transfers plain, tcpcrypt, plain,
    tcpcrypt, ... (three of each), back to back. No target is set (reported);
    every transfer must be byte-exact and every encrypted one encrypted at both
    ends with one session ID.

    Raises ConfigError when the Mininet backend cannot run here (not root, ...).
    """
    from lab.scenario.backend import get_backend
    from lab.scenario.eno import AlternatingTransfers, verdict

    scenario = Scenario(
        name="bench-tcpcrypt-overhead",
        description="plain TCP and tcpcrypt back to back between user-space endpoints, unshaped path",
        topology="single-path",
        topology_params={"delay_ms": 0.0, "bw_mbps": None},
        transfers=(AlternatingTransfers(size_bytes=TCPCRYPT_BYTES, encrypted=TCPCRYPT_ORDER),),
        time_limit_s=300.0,
    )
    with tempfile.TemporaryDirectory() as state:
        result = get_backend("mininet").run(scenario, out_dir=None, pcaps=False, trace=False, state_dir=state)
    goodput = {t.name: t.goodput_mbps or 0.0 for t in result.transfers}
    plain = [v for k, v in goodput.items() if k.startswith("plain")]
    crypt = [v for k, v in goodput.items() if k.startswith("tcpcrypt")]
    plain_mbps = statistics.mean(plain) if plain else 0.0
    crypt_mbps = statistics.mean(crypt) if crypt else 0.0
    value = crypt_mbps / plain_mbps if plain_mbps > 0 else 0.0
    exact = bool(result.transfers) and all(t.ok for t in result.transfers)
    problems = {t.name: why for t in result.transfers if (why := verdict(t.extra.get("expect", ""), t.extra))}
    stats = {host: info.get("stats") for host, info in result.endpoints.items()}
    return {
        "bench": "mininet-tcpcrypt-overhead",
        "metric": "tcpcrypt goodput / plain TCP goodput, user-space endpoints, unshaped Mininet path, one run",
        "value": round(value, 4),
        "unit": "ratio",
        "target": "none (reported); byte-exact, encrypted transfers encrypted with one session ID",
        "passed": exact and result.ok and not problems,
        "tcpcrypt_goodput_mbps": round(crypt_mbps, 3),
        "plain_goodput_mbps": round(plain_mbps, 3),
        "transfers_mbps": {k: round(v, 3) for k, v in goodput.items()},
        "order": [t.name for t in result.transfers],
        "bytes_each": TCPCRYPT_BYTES,
        "tep": sorted({str(t.extra.get("tep")) for t in result.transfers if t.name.startswith("tcpcrypt")}),
        "aead": "AEAD_AES_128_GCM",
        "outcome_problems": problems,
        "endpoint_stats": stats,
        "sha256_match": exact,
        "errors": result.errors + [f"{t.name}: {t.error}" for t in result.transfers if t.error],
    }


# --- mininet-mptcp-vs-kernel

MPTCP_RATE_MBPS = 20.0  # each path
MPTCP_ONE_WAY_MS = 5.0  # each path
MPTCP_BYTES = 16 * 1024 * 1024
MPTCP_ROUNDS = 2
# one subflow per path, otherwise our defaults (the ECF check only acts on paths whose RTTs
# differ by 2x or more; before that limit it kept nearly all data off the second path)
MPTCP_USER = {"path_manager": "paired"}


def bench_mptcp_vs_kernel() -> dict[str, Any]:
    """Goodput of our MPTCP (client and server) against Linux MPTCP (client and server)
    over both paths of two-paths, each shaped to 20 Mbit/s with 5 ms one way, in one
    Mininet run: 16 MiB transfers alternating ours, kernel's, ours, kernel's, never
    overlapping. The kernel's client opens a subflow from h1's path-B address and
    follows h2's ADD_ADDR (``subflow``/``signal`` endpoints); ours uses the paired path
    manager (one subflow per path) and announces h2's second address likewise.

    Raises ConfigError when the Mininet backend cannot run here (not root, ...).
    """
    return _mptcp_vs_kernel("mininet-mptcp-vs-kernel", "two-paths", 2)


def bench_mptcp_3paths_vs_kernel() -> dict[str, Any]:
    """:func:`bench_mptcp_vs_kernel` over the three 20 Mbit/s paths of three-paths (5 ms one
    way each): one subflow per path for both stacks (Linux's from h1's two other addresses
    and h2's announcements, ours paired).

    Raises ConfigError when the Mininet backend cannot run here (not root, ...).
    """
    return _mptcp_vs_kernel("mininet-mptcp-3paths-vs-kernel", "three-paths", 3)


def _mptcp_vs_kernel(bench: str, topology: str, paths: int) -> dict[str, Any]:
    from lab.scenario.backend import get_backend
    from lab.scenario.mptcp import MptcpBackToBack, MptcpTransfer

    transfers = []
    for round_ in range(MPTCP_ROUNDS):
        for k, stack in enumerate(("user", "kernel-mptcp")):
            side = MPTCP_USER if stack == "user" else {}
            transfers.append(
                MptcpTransfer(
                    name=f"{'ours' if stack == 'user' else 'kernel'}-{round_ + 1}",
                    size_bytes=MPTCP_BYTES,
                    port=5001 + 2 * round_ + k,
                    src_stack=stack,
                    dst_stack=stack,
                    client=side,
                    server=side,
                )
            )
    scenario = Scenario(
        name=f"bench-{bench.removeprefix('mininet-')}",
        description=f"our MPTCP and Linux MPTCP back to back over every path of {topology}",
        topology=topology,
        topology_params={"delay_ms": (MPTCP_ONE_WAY_MS,) * paths, "bw_mbps": (MPTCP_RATE_MBPS,) * paths},
        transfers=(MptcpBackToBack(transfers=tuple(transfers)),),
        time_limit_s=300.0,
    )
    with tempfile.TemporaryDirectory() as state:
        result = get_backend("mininet").run(scenario, out_dir=None, pcaps=False, trace=False, state_dir=state)
    goodput = {t.name: t.goodput_mbps or 0.0 for t in result.transfers}
    ours = [v for k, v in goodput.items() if k.startswith("ours")]
    kernel = [v for k, v in goodput.items() if k.startswith("kernel")]
    ours_mbps = statistics.mean(ours) if ours else 0.0
    kernel_mbps = statistics.mean(kernel) if kernel else 0.0
    exact = bool(result.transfers) and all(t.ok for t in result.transfers)
    value = ours_mbps / kernel_mbps if kernel_mbps > 0 else 0.0
    aggregate = paths * MPTCP_RATE_MBPS
    ends = {t.name: {side: t.extra.get(side, {}) for side in ("client", "server")} for t in result.transfers}
    return {
        "bench": bench,
        "metric": f"goodput of our MPTCP / goodput of Linux MPTCP (both ends each, {paths} 20 Mbit/s paths, one run)",
        "value": round(value, 4),
        "unit": "ratio",
        "target": ">= 0.95 and byte-exact",
        "passed": value >= 0.95 and exact and result.ok,
        "ours_goodput_mbps": round(ours_mbps, 3),
        "kernel_goodput_mbps": round(kernel_mbps, 3),
        "paths_mbps": [MPTCP_RATE_MBPS] * paths,
        "ours_over_paths": round(ours_mbps / aggregate, 4),
        "kernel_over_paths": round(kernel_mbps / aggregate, 4),
        "transfers_mbps": {k: round(v, 3) for k, v in goodput.items()},
        "bytes_each": MPTCP_BYTES,
        "one_way_ms": MPTCP_ONE_WAY_MS,
        "mptcp_in_use": {name: bool(e["client"].get("mptcp", e["client"].get("is_mptcp"))) for name, e in ends.items()},
        "subflows": {name: e["client"].get("subflows") for name, e in ends.items()},
        "sha256_match": exact,
        "errors": result.errors + [f"{t.name}: {t.error}" for t in result.transfers if t.error],
    }


BENCHMARKS: dict[str, Benchmark] = {
    "mininet-shaping": Benchmark(
        "mininet-shaping",
        "Mininet link shaping: goodput/rate and RTT/configured RTT with user-space delay; emulator max rate, jitter",
        ">= 0.90 / 0.95-1.10",
        bench_shaping,
        root=True,
    ),
    "mininet-tcp-user-vs-kernel": Benchmark(
        "mininet-tcp-user-vs-kernel",
        "Mininet: goodput of our user-space TCP vs the kernel's TCP, back to back on a 20 Mbit/s path",
        ">= 0.90",
        bench_user_vs_kernel,
        root=True,
    ),
    "mininet-tcp-unshaped": Benchmark(
        "mininet-tcp-unshaped",
        "Mininet: goodput of plain TCP between our user-space endpoints on an unshaped path (the kernel's beside it)",
        ">= 1000 Mbit/s",
        bench_tcp_unshaped,
        root=True,
    ),
    "mininet-esp-tcp-vs-udp": Benchmark(
        "mininet-esp-tcp-vs-udp",
        "Mininet: ESP goodput of a tunnelled TCP stream over TCP (RFC 9329) vs UDP 4500, with and without 1 % loss",
        "report",
        bench_esp_tcp_vs_udp,
        root=True,
    ),
    "mininet-tcpcrypt-overhead": Benchmark(
        "mininet-tcpcrypt-overhead",
        "Mininet: tcpcrypt goodput vs plain TCP between user-space endpoints, back to back on an unshaped path",
        "report",
        bench_tcpcrypt_overhead,
        root=True,
    ),
    "mininet-mptcp-vs-kernel": Benchmark(
        "mininet-mptcp-vs-kernel",
        "Mininet: goodput of our MPTCP vs Linux MPTCP, back to back over two 20 Mbit/s paths",
        ">= 0.95",
        bench_mptcp_vs_kernel,
        root=True,
    ),
    "mininet-mptcp-3paths-vs-kernel": Benchmark(
        "mininet-mptcp-3paths-vs-kernel",
        "Mininet: goodput of our MPTCP vs Linux MPTCP, back to back over three 20 Mbit/s paths",
        ">= 0.95",
        bench_mptcp_3paths_vs_kernel,
        root=True,
    ),
}

"""Benchmarks of this package (entry point tcplab.benchmarks, name tcpcrypt).

Both compare tcpcrypt (negotiated by TCP-ENO) with plain TCP on the same
simulated path as ``sim-tcp-goodput``: one 20 Mbit/s router path, 20 ms one
way, seed 1.
"""

from __future__ import annotations

from typing import Any

from lab.bench import LINK_MBPS, MIB, ONE_WAY_MS, Benchmark, _transfer
from lab.scenario import Scenario, ScenarioRun, Transfer
from lab.scenario.eno import EncryptedTransfer
from lab.trace import NULL_TRACER


def _scenario(workload: EncryptedTransfer | Transfer) -> Scenario:
    return Scenario(
        name="bench-tcpcrypt",
        description="benchmark path",
        topology="single-path",
        topology_params={"delay_ms": ONE_WAY_MS, "bw_mbps": LINK_MBPS},
        transfers=(workload,),
        time_limit_s=3600.0,
    )


def bench_overhead(size_bytes: int = 16 * MIB) -> dict[str, Any]:
    """Goodput of a tcpcrypt transfer over that of plain TCP, same path, same seed."""
    plain = _transfer(_scenario(Transfer(size_bytes=size_bytes)))
    crypt = _transfer(_scenario(EncryptedTransfer(size_bytes=size_bytes)))
    value = crypt["goodput_mbps"] / plain["goodput_mbps"] if plain["goodput_mbps"] else 0.0
    exact = plain["sha256_match"] and crypt["sha256_match"]
    return {
        "bench": "sim-tcpcrypt-overhead",
        "metric": "tcpcrypt goodput / plain TCP goodput (16 MiB, sim-tcp-goodput path)",
        "value": round(value, 4),
        "unit": "ratio",
        "target": ">= 0.90 and byte-exact",
        "passed": value >= 0.90 and exact,
        "tcpcrypt_goodput_mbps": round(crypt["goodput_mbps"], 3),
        "plain_goodput_mbps": round(plain["goodput_mbps"], 3),
        "tcpcrypt_duration_s": round(crypt["duration_s"], 4),
        "plain_duration_s": round(plain["duration_s"], 4),
        "tcpcrypt_wall_s": round(crypt["wall_s"], 3),
        "plain_wall_s": round(plain["wall_s"], 3),
        "link_mbps": LINK_MBPS,
        "one_way_delay_ms": ONE_WAY_MS,
        "bytes": crypt["bytes"],
        "sha256_match": exact,
        "tep": "TCPCRYPT_ECDHE_Curve25519",
        "aead": "AEAD_AES_128_GCM",
    }


def _first_byte(workload: EncryptedTransfer | Transfer) -> tuple[float, float, bool]:
    """(seconds from connect() to the first application byte at the receiver, min RTT, byte-exact)."""
    scenario = _scenario(workload)
    run = ScenarioRun(scenario, seed=1, tracer=NULL_TRACER)
    run.net.run(until=scenario.time_limit_s, stop=run.done)
    result = run.results[0]
    conns = run.net.host("h1").connections()
    rtt = conns[0]._rtt_min if conns and conns[0]._rtt_min else 2 * ONE_WAY_MS / 1000
    first = (result.first_byte_at or run.net.now) - (result.started_at or 0.0)
    return first, rtt, result.ok


def bench_first_byte() -> dict[str, Any]:
    """Time to the first application byte, client to server, in RTTs: tcpcrypt adds Init1/Init2.

    Plain TCP: the data follows the third ACK and arrives 1.5 RTT after
    connect(). tcpcrypt: Init1 goes with the third ACK, Init2 comes back, then
    host A may send: one RTT more (RFC 8548 §3.3: host B's data would not wait).
    """
    size = 1000
    plain_s, plain_rtt, plain_ok = _first_byte(Transfer(size_bytes=size))
    crypt_s, crypt_rtt, crypt_ok = _first_byte(EncryptedTransfer(size_bytes=size))
    rtt = min(plain_rtt, crypt_rtt)
    plain_rtts = plain_s / rtt
    crypt_rtts = crypt_s / rtt
    extra = crypt_rtts - plain_rtts
    return {
        "bench": "tcpcrypt-first-byte",
        "metric": "time to the first application byte with tcpcrypt, in RTTs (client to server)",
        "value": round(crypt_rtts, 3),
        "unit": "RTT",
        "target": "<= plain TCP + 1.1 RTT (one extra round trip for Init1/Init2)",
        "passed": extra <= 1.1 and plain_ok and crypt_ok,
        "plain_rtts": round(plain_rtts, 3),
        "extra_rtts": round(extra, 3),
        "tcpcrypt_first_byte_ms": round(crypt_s * 1000, 3),
        "plain_first_byte_ms": round(plain_s * 1000, 3),
        "rtt_ms": round(rtt * 1000, 3),
        "sha256_match": plain_ok and crypt_ok,
    }


def bench_stream_throughput(size_bytes: int = 64 * MIB) -> dict[str, Any]:
    """Wall-clock speed of the per-byte path: seal at host A, open at host B in 1448-byte TCP chunks.

    No network: two TcpcryptStreams after their key exchange, once per AEAD.
    The slowest AEAD is the figure compared with the target.
    """
    import random
    import time

    from lab.eno.rules import Role
    from lab.tcpcrypt.stream import TcpcryptConfig, TcpcryptStream
    from lab.wire.tcpcrypt import AEADS

    chunk = random.Random(1).randbytes(256 * 1024)
    rounds = max(1, size_bytes // len(chunk))
    rates: dict[str, float] = {}
    exact = True
    for aead, params in AEADS.items():
        a = TcpcryptStream(role=Role.A, tep=0x23, eno_transcript=b"bench", config=TcpcryptConfig(aeads=(aead,)))
        b = TcpcryptStream(role=Role.B, tep=0x23, eno_transcript=b"bench")
        a.start(now=0.0)
        b.start(now=0.0)
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        while a.next_event() is not None or b.next_event() is not None:
            pass
        received = 0
        start = time.perf_counter()
        for _ in range(rounds):
            a.send(chunk)
            wire = a.data_to_send()
            for pos in range(0, len(wire), 1448):
                b.receive_data(wire[pos : pos + 1448])
            while (event := b.next_event()) is not None:
                data = getattr(event, "data", b"")
                exact = exact and data == chunk[received % len(chunk) : received % len(chunk) + len(data)]
                received += len(data)
        wall = time.perf_counter() - start
        exact = exact and received == rounds * len(chunk)
        rates[params.name] = received / wall / 1e6
    slowest = min(rates.values())
    return {
        "bench": "tcpcrypt-stream-throughput",
        "metric": "MB/s through seal + open (slowest AEAD), 1448-byte TCP chunks, wall clock",
        "value": round(slowest, 1),
        "unit": "MB/s",
        "target": ">= 100 and byte-exact",
        "passed": slowest >= 100 and exact,
        "per_aead_mb_s": {name: round(rate, 1) for name, rate in rates.items()},
        "bytes_per_aead": rounds * len(chunk),
        "byte_exact": exact,
    }


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "sim-tcpcrypt-overhead",
            "tcpcrypt goodput / plain TCP goodput, 16 MiB on the sim-tcp-goodput path",
            ">= 0.90",
            bench_overhead,
        ),
        Benchmark(
            "tcpcrypt-first-byte",
            "time to the first application byte with tcpcrypt vs plain TCP, in RTTs",
            "<= plain + 1.1 RTT",
            bench_first_byte,
        ),
        Benchmark(
            "tcpcrypt-stream-throughput",
            "wall-clock MB/s of the per-byte path (seal and open, every AEAD), no network",
            ">= 100 MB/s",
            bench_stream_throughput,
        ),
    )
}

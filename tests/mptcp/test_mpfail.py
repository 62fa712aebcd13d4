"""A DSS checksum failure (RFC 8684 §3.7): MP_FAIL, the infinite mapping and the fallback to TCP.

On the only subflow the receiver discards the failed mapping and everything after it, names it
in MP_FAIL on its ACKs, and the sender answers with an infinite mapping on the data it sends
again: the connection goes on as plain TCP, byte-exact. When that cannot stay byte-exact (the
peer skips the discarded bytes, or keeps them) the connection ends instead, and the trace says
why. With several subflows only the failing one is reset.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import pytest

from lab.mptcp.config import MptcpConfig
from lab.mptcp.events import ConnectionTerminated, FallbackToTcp, StreamEnded, SubflowClosed
from lab.mptcp.options import MP_FAIL_CLOSED, MP_FAIL_FALLBACK, MP_FAIL_NO_MAPPING
from lab.tcp import TcpConfig
from lab.tcp.addresses import FourTuple
from lab.wire import mptcp as w
from lab.wire.checksum import pack_address
from lab.wire.tcp import decode_segment, encode_segment
from tests.mptcp.pair import PATH_B, MptcpPair, rewrite_mptcp

CSUM = MptcpConfig(path_manager="none", announce=False, checksum=True)


def payload(n: int, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Flipper:
    """Flip one payload byte of the ``nth`` data segment going ``direction`` (TCP checksum fixed)."""

    def __init__(self, direction: str, nth: int, *, offset: int = 7) -> None:
        self.direction = direction
        self.nth = nth
        self.offset = offset
        self.seen = 0
        self.flipped: list[int] = []  # TCP sequence numbers of the segments changed

    def __call__(self, direction: str, addr: FourTuple, segment: bytes) -> bytes:
        if direction != self.direction:
            return segment
        src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
        seg = decode_segment(segment, src, dst)
        if not seg.payload:
            return segment
        self.seen += 1
        if self.seen != self.nth:
            return segment
        body = bytearray(seg.payload)
        body[min(self.offset, len(body) - 1)] ^= 0xFF
        self.flipped.append(seg.seq)
        return encode_segment(replace(seg, payload=bytes(body)), src, dst)


def options(pair: MptcpPair, who: str, name: str) -> list[dict]:
    return [o for r in pair.records(who, name) for o in r.data["mptcp"]]


def transfer(pair: MptcpPair, data: bytes, *, until: float = 20.0, reply: bytes = b"") -> None:
    pair.client.send(data)
    pair.client.close(now=0.0)
    if reply:
        pair.server.send(reply)
        pair.server.close(now=0.0)
    pair.run(now=0.0, until=until)


def test_a_flipped_byte_on_the_only_subflow_ends_in_a_byte_exact_fallback() -> None:
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=20)
    pair.tamper = flip
    data = payload(400_000)
    transfer(pair, data)
    assert flip.flipped, "the middlebox never changed a segment"
    got = bytes(pair.received["server"])
    assert sha(got) == sha(data)
    assert pair.of("server", StreamEnded)
    assert pair.of("client", FallbackToTcp) == [FallbackToTcp(reason=MP_FAIL_FALLBACK)]
    assert pair.of("server", FallbackToTcp) == [FallbackToTcp(reason=MP_FAIL_FALLBACK)]
    assert not [e for e in pair.events["server"] if isinstance(e, ConnectionTerminated) and e.reset]
    # the receiver's MP_FAIL names the failed mapping; the sender's infinite mapping resumes at the
    # receiver's Data ACK, on subflow bytes after everything the subflow carried before
    fail = [o for o in options(pair, "server", "segment_sent") if o["subtype"] == "MP_FAIL"]
    assert fail and {o["data_seq"] for o in fail} == {fail[0]["data_seq"]}
    err = [r.data for r in pair.records("server", "error")]
    assert [e["data_seq"] for e in err if e["reason"] == "DSS checksum failed"] == [fail[0]["data_seq"]]
    assert fail[0] in [o for o in options(pair, "client", "segment_received") if o["subtype"] == "MP_FAIL"]
    inf = [
        o
        for o in options(pair, "client", "segment_sent")
        if o["subtype"] == "DSS" and o["data_seq"] is not None and o["data_level_length"] == 0
    ]
    assert inf and inf[0]["checksum"] == 0
    assert inf[0]["data_seq"] == fail[0]["data_seq"]
    got_inf = [r.data for r in pair.records("server", "state_updated") if r.data.get("infinite_mapping")]
    assert [d["infinite_mapping"] for d in got_inf] == ["received"]
    assert got_inf[0]["data_seq"] == inf[0]["data_seq"] and got_inf[0]["subflow_seq"] == inf[0]["subflow_seq"]
    fallbacks = {
        r.data["fallback"]
        for who in ("client", "server")
        for r in pair.records(who, "state_updated")
        if "fallback" in r.data
    }
    assert fallbacks == {MP_FAIL_FALLBACK}


@pytest.mark.parametrize("direction", ["s2c", "c2s"])
@pytest.mark.parametrize("other_bytes", [300_000, 20_000], ids=["other-busy", "other-done-first"])
def test_both_directions_stay_byte_exact_when_one_is_hit(direction: str, other_bytes: int) -> None:
    # the other direction goes on alongside, or has ended with its DATA_FIN before the fallback
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper(direction, nth=60)
    pair.tamper = flip
    hit = payload(400_000, seed=1)
    up, down = (hit, payload(other_bytes, seed=2)) if direction == "c2s" else (payload(other_bytes, seed=2), hit)
    transfer(pair, up, reply=down)
    assert flip.flipped
    assert sha(bytes(pair.received["server"])) == sha(up)
    assert sha(bytes(pair.received["client"])) == sha(down)
    assert (
        pair.of("client", FallbackToTcp) == pair.of("server", FallbackToTcp) == [FallbackToTcp(reason=MP_FAIL_FALLBACK)]
    )
    receiver = "client" if direction == "s2c" else "server"
    assert [o["subtype"] for o in options(pair, receiver, "segment_sent") if o["subtype"] == "MP_FAIL"]
    assert len(pair.of("client", StreamEnded)) == len(pair.of("server", StreamEnded)) == 1


def test_lost_mp_fail_and_lost_infinite_mapping_are_sent_again() -> None:
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=10)
    dropped: list[str] = []

    def lossy(direction: str, addr: FourTuple, segment: bytes) -> bytes | None:
        segment = flip(direction, addr, segment)
        src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
        seg = decode_segment(segment, src, dst)
        kinds = [o for o in seg.options if getattr(o, "kind", None) == w.MPTCP_KIND]
        subs = [w.from_tcp_option(o, syn=False, ack=True) for o in kinds]
        if "mp_fail" not in dropped and any(isinstance(o, w.MpFail) for o in subs):
            dropped.append("mp_fail")
            return None
        if "infinite" not in dropped and any(
            isinstance(o, w.Dss) and o.data_seq is not None and o.data_level_length == 0 for o in subs
        ):
            dropped.append("infinite")
            return None
        return segment

    pair.tamper = lossy
    data = payload(300_000)
    transfer(pair, data)
    assert dropped == ["mp_fail", "infinite"]
    assert sha(bytes(pair.received["server"])) == sha(data)
    assert pair.of("server", FallbackToTcp) == [FallbackToTcp(reason=MP_FAIL_FALLBACK)]
    sent_inf = [
        o
        for o in options(pair, "client", "segment_sent")
        if o["subtype"] == "DSS" and o["data_seq"] is not None and o["data_level_length"] == 0
    ]
    assert len(sent_inf) >= 2 and all(o == sent_inf[0] for o in sent_inf)  # the retransmission carries it again


def _rewrite_infinite_mapping(pair: MptcpPair, flip: Flipper, change) -> None:
    def tamper(direction: str, addr: FourTuple, segment: bytes) -> bytes:
        segment = flip(direction, addr, segment)
        if direction != "c2s":
            return segment

        def edit(o):
            if isinstance(o, w.Dss) and o.data_seq is not None and o.data_level_length == 0:
                return change(o)
            return o

        return rewrite_mptcp(segment, addr, edit)

    pair.tamper = tamper


def test_an_infinite_mapping_that_skips_the_discarded_bytes_resets_and_delivers_nothing_corrupted() -> None:
    # what Linux sends: its infinite mapping starts after the failed mapping, whose bytes it never sends again
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=10)
    _rewrite_infinite_mapping(pair, flip, lambda o: replace(o, data_seq=(o.data_seq + 2000) % (1 << 64)))
    data = payload(300_000)
    transfer(pair, data)
    got = bytes(pair.received["server"])
    assert data.startswith(got) and len(got) < len(data)
    reasons = [r.data["reason"] for r in pair.records("server", "error")]
    assert (
        "the peer's infinite mapping resumes +2000 bytes from our Data ACK (it skips the discarded bytes instead of sending them again)"
        in reasons
    )
    assert not pair.of("server", FallbackToTcp)
    assert pair.of("server", ConnectionTerminated)[0].reset
    assert pair.of("client", ConnectionTerminated)[0].reset
    assert (
        pair.of("client", ConnectionTerminated)[0].reason == "MP_FASTCLOSE from peer"
    )  # read off the RST (RFC 8684 §3.5)


def test_an_infinite_mapping_on_bytes_already_discarded_resets() -> None:
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=10)
    _rewrite_infinite_mapping(pair, flip, lambda o: replace(o, subflow_seq=o.subflow_seq - 1000))
    data = payload(300_000)
    transfer(pair, data)
    got = bytes(pair.received["server"])
    assert data.startswith(got) and len(got) < len(data)
    reasons = [r.data["reason"] for r in pair.records("server", "error")]
    assert "the peer's infinite mapping starts on subflow bytes already discarded" in reasons
    assert pair.of("server", ConnectionTerminated)[0].reset


@pytest.mark.parametrize("nagle", [True, False], ids=["nagle", "no-nagle"])
@pytest.mark.parametrize("nth", [1, 5, 10])
def test_a_peer_going_plain_without_an_infinite_mapping_resets(nth: int, nagle: bool) -> None:
    # what Linux 6.x sends after our MP_FAIL: an MP_FAIL echo, then segments without any MPTCP option.
    # Without Nagle the plain segments come back to back: the ones after the abort is decided must
    # not be taken for a fallback to TCP (they were delivered from data offset 1420 on, as offset 0)
    pair = MptcpPair(CSUM, CSUM, tcp=TcpConfig(nagle=nagle))
    pair.handshake()
    flip = Flipper("c2s", nth=nth)
    _rewrite_infinite_mapping(pair, flip, lambda o: None)  # (here a middlebox strips it)
    data = payload(300_000)
    pair.client.send(data)
    pair.run(now=0.0, until=3.0)
    got = bytes(pair.received["server"])
    assert data.startswith(got) and len(got) < len(data)
    assert pair.of("server", ConnectionTerminated) == [ConnectionTerminated(reason=MP_FAIL_NO_MAPPING, reset=True)]
    assert MP_FAIL_NO_MAPPING in [r.data["reason"] for r in pair.records("server", "error")]


def _silence_after_mp_fail(pair: MptcpPair, flip: Flipper) -> dict[str, bool]:
    """Everything the client sends after the server's first MP_FAIL is lost."""
    seen = {"fail": False}

    def tamper(direction: str, addr: FourTuple, segment: bytes) -> bytes | None:
        if direction == "c2s" and seen["fail"]:
            return None
        segment = flip(direction, addr, segment)
        if direction == "s2c":

            def look(o):
                if isinstance(o, w.MpFail):
                    seen["fail"] = True
                return o

            rewrite_mptcp(segment, addr, look)
        return segment

    pair.tamper = tamper
    return seen


def test_no_infinite_mapping_after_mp_fail_ends_the_connection_after_a_while() -> None:
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    seen = _silence_after_mp_fail(pair, Flipper("c2s", nth=10))
    data = payload(300_000)
    pair.client.send(data)  # and the client keeps its side open
    pair.run(now=0.0, until=30.0)
    assert seen["fail"]
    got = bytes(pair.received["server"])
    assert data.startswith(got) and len(got) < len(data)
    failed_at = next(r.t for r in pair.records("server", "state_updated") if r.data.get("mp_fail") is not None)
    gave_up = [
        r for r in pair.records("server", "error") if r.data["reason"] == "no infinite mapping came after our MP_FAIL"
    ]
    assert gave_up and gave_up[0].t - failed_at >= 5.0
    assert pair.of("server", ConnectionTerminated)[0] == ConnectionTerminated(
        reason="no infinite mapping came after our MP_FAIL", reset=True
    )


def test_the_peer_closing_the_subflow_before_its_infinite_mapping_resets() -> None:
    # the client never hears the MP_FAIL (stripped) and then closes its subflow at TCP level
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=3)

    def tamper(direction: str, addr: FourTuple, segment: bytes) -> bytes:
        segment = flip(direction, addr, segment)
        if direction == "s2c":
            segment = rewrite_mptcp(segment, addr, lambda o: None if isinstance(o, w.MpFail) else o)
        return segment

    pair.tamper = tamper
    data = payload(20_000)
    pair.client.send(data)
    now = pair.run(now=0.0, until=0.5)
    assert [r for r in pair.records("server", "state_updated") if r.data.get("mp_fail") is not None]
    pair.client.subflows[0].conn.close(now=now)
    pair.run(now=now, until=now + 3.0)
    got = bytes(pair.received["server"])
    assert data.startswith(got) and len(got) < len(data)
    assert pair.of("server", ConnectionTerminated) == [ConnectionTerminated(reason=MP_FAIL_CLOSED, reset=True)]


def test_a_peer_that_keeps_the_failed_bytes_makes_the_sender_reset() -> None:
    # Linux as receiver: it sends MP_FAIL, yet delivers the altered bytes and acknowledges them.
    # Our sender sees its Data ACK pass the MP_FAIL point and ends the connection: the peer's
    # stream cannot be made byte-exact any more.
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=10)
    state: dict[str, int] = {}

    def tamper(direction: str, addr: FourTuple, segment: bytes) -> bytes | None:
        segment = flip(direction, addr, segment)

        def edit(o):
            if isinstance(o, w.MpFail):
                state["fail"] = o.data_seq
            elif isinstance(o, w.Dss) and o.data_seq is not None and o.data_level_length == 0:
                state["infinite_seen"] = 1
                return w.Dss(data_ack=o.data_ack, data_ack_64=True)  # held back: the server stays in MPTCP mode
            return o

        kinds = []
        segment = rewrite_mptcp(segment, addr, lambda o: kinds.append(o) or edit(o))
        if direction == "c2s" and state.get("infinite_seen") and not kinds:
            return None  # plain TCP after the (held back) infinite mapping: lost
        if direction == "s2c" and "fail" in state and state.get("infinite_seen"):
            segment = rewrite_mptcp(
                segment,
                addr,
                lambda o: (
                    replace(o, data_ack=(state["fail"] + 3000) % (1 << 64), data_ack_64=True)
                    if isinstance(o, w.Dss) and o.data_ack is not None
                    else o
                ),
            )
        return segment

    pair.tamper = tamper
    data = payload(300_000)
    transfer(pair, data)
    reasons = [r.data["reason"] for r in pair.records("client", "error")]
    assert "the peer acknowledged data of the mapping it failed: it kept bytes a middlebox altered" in reasons
    assert pair.of("client", FallbackToTcp) == [FallbackToTcp(reason=MP_FAIL_FALLBACK)]
    assert pair.of("client", ConnectionTerminated)[0].reset
    got = bytes(pair.received["server"])
    assert data.startswith(got) and len(got) < len(data)


def test_mp_fail_with_a_data_ack_past_it_resets_at_once() -> None:
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=10)

    def tamper(direction: str, addr: FourTuple, segment: bytes) -> bytes | None:
        segment = flip(direction, addr, segment)
        if direction != "s2c":
            return segment
        seg = decode_segment(segment, pack_address(addr.local_addr), pack_address(addr.remote_addr))
        subs = [
            w.from_tcp_option(o, syn=False, ack=True) for o in seg.options if getattr(o, "kind", None) == w.MPTCP_KIND
        ]
        fail = next((o for o in subs if isinstance(o, w.MpFail)), None)
        if fail is None:
            return segment
        return rewrite_mptcp(
            segment,
            addr,
            lambda o: replace(o, data_ack=(fail.data_seq + 100) % (1 << 64)) if isinstance(o, w.Dss) else o,
        )

    pair.tamper = tamper
    data = payload(300_000)
    transfer(pair, data)
    reasons = [r.data["reason"] for r in pair.records("client", "error")]
    assert "cannot fall back after the peer's MP_FAIL: it names data the peer has already acknowledged" in reasons
    assert not pair.of("client", FallbackToTcp)
    assert pair.of("client", ConnectionTerminated)[0].reset


class PathFlipper(Flipper):
    """A Flipper for one subflow only."""

    def __init__(self, direction: str, nth: int, addr: FourTuple) -> None:
        super().__init__(direction, nth)
        self.addr = addr

    def __call__(self, direction: str, addr: FourTuple, segment: bytes) -> bytes:
        return super().__call__(direction, addr, segment) if addr == self.addr else segment


def test_with_two_subflows_only_the_failing_one_is_reset() -> None:
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    pair.client.open_subflow(PATH_B, now=0.0)
    pair.exchange(now=0.0)
    flip = PathFlipper("c2s", 5, PATH_B)
    pair.tamper = flip
    data = payload(600_000)
    transfer(pair, data)
    assert flip.flipped
    assert sha(bytes(pair.received["server"])) == sha(data)
    assert not pair.of("client", FallbackToTcp) and not pair.of("server", FallbackToTcp)
    closed = pair.of("client", SubflowClosed)
    assert [c.addr for c in closed][:1] == [PATH_B]
    assert closed[0].reason == "MP_TCPRST from peer: middlebox interference"  # its reason, off the RST
    assert [c.reason for c in pair.of("server", SubflowClosed)][:1] == ["DSS checksum failed"]
    reinjected = [r.data["reinjected"] for r in pair.records("client", "state_updated") if "reinjected" in r.data]
    assert any(x["from_subflow"] == str(PATH_B) for x in reinjected)
    assert not [r for r in pair.records("client", "state_updated") if r.data.get("infinite_mapping")]


def test_after_a_second_subflow_the_only_one_left_resets_instead() -> None:
    # our data has used two subflows: the peer could not read the one left as our plain stream
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    pair.client.open_subflow(PATH_B, now=0.0)
    pair.exchange(now=0.0)
    pair.server.send(payload(50_000, seed=9))  # data from the server on both subflows
    pair.run(now=0.0, until=0.5)
    pair.client.address_changed(PATH_B.local_addr, False, now=0.5)
    pair.run(now=0.5, until=1.0)
    assert len(pair.server.subflows) == 1
    pair.tamper = Flipper("c2s", 5)
    data = payload(300_000)
    pair.client.send(data)
    pair.run(now=1.0, until=5.0)
    got = bytes(pair.received["server"])
    assert data.startswith(got) and len(got) < len(data)
    reasons = [r.data["reason"] for r in pair.records("server", "error")]
    assert (
        "DSS checksum failed on the only subflow; no fallback: our data has used other subflows or gone out"
        " twice, so the peer could not read our subflow as plain TCP" in reasons
    )
    assert pair.of("server", ConnectionTerminated)[0].reset
    assert not pair.of("server", FallbackToTcp)


# --- the simulator: one routed path, a middlebox that flips one byte ---------------------------


def _scenario_run(name: str, size: int):
    from lab.scenario import get_scenario, run_scenario
    from lab.trace import MemoryTracer

    sc = get_scenario(name)
    sc = replace(sc, transfers=tuple(replace(t, size_bytes=size) for t in sc.transfers), time_limit_s=60.0)
    result = run_scenario(sc, seed=1, pcaps=False)
    assert isinstance(result.network.tracer, MemoryTracer)
    return result, result.network.tracer.records


def test_scenario_mpfail_fallback_is_byte_exact_and_traced() -> None:
    result, records = _scenario_run("mptcp-mpfail-fallback", 4 * 1024 * 1024)
    t = result.transfers[0]
    assert result.ok and t.sha256_received == t.sha256_expected and t.bytes_received == t.bytes_expected, t.to_dict()
    flips = [r for r in records if r.layer == "middlebox" and r.data.get("action") == "rewritten"]
    assert len(flips) == 1
    mp = [r for r in records if r.layer == "mptcp"]
    h1 = [r for r in mp if r.node == "h1"]
    h2 = [r for r in mp if r.node == "h2"]
    assert [r.data["data_seq"] for r in h2 if r.name == "error"] == [
        r.data["mp_fail"] for r in h2 if r.data.get("direction") == "sent"
    ]
    fail_dsn = next(r.data["mp_fail"] for r in h2 if r.data.get("direction") == "sent")
    sent = [o for r in h2 if r.name == "segment_sent" for o in r.data["mptcp"]]
    assert {o["data_seq"] for o in sent if o["subtype"] == "MP_FAIL"} == {fail_dsn}
    got = [o for r in h1 if r.name == "segment_received" for o in r.data["mptcp"] if o["subtype"] == "MP_FAIL"]
    assert got and got[0]["data_seq"] == fail_dsn
    inf = [
        o
        for r in h1
        if r.name == "segment_sent"
        for o in r.data["mptcp"]
        if o["subtype"] == "DSS" and o["data_seq"] is not None and o["data_level_length"] == 0
    ]
    assert inf and inf[0]["data_seq"] == fail_dsn and inf[0]["checksum"] == 0
    assert [r.data["fallback"] for r in mp if "fallback" in r.data] == [MP_FAIL_FALLBACK, MP_FAIL_FALLBACK]
    # the fallback comes after MP_FAIL on each end, and no MPTCP option follows the peer's fallback
    h1_fb = next(r.t for r in h1 if "fallback" in r.data)
    h2_fb = next(r.t for r in h2 if "fallback" in r.data)
    assert max(r.t for r in h1 if r.name == "segment_received") <= h2_fb + 0.1  # in flight: 20 ms one way
    assert not [r for r in h2 if r.name == "segment_sent" and r.t > h2_fb]
    assert h1_fb >= next(r.t for r in h1 if r.data.get("mp_fail") is not None)


def test_scenario_checksum_tamper_with_two_subflows_closes_only_the_failing_one() -> None:
    result, records = _scenario_run("mptcp-checksum-tamper", 4 * 1024 * 1024)
    t = result.transfers[0]
    assert result.ok and t.sha256_received == t.sha256_expected, t.to_dict()
    mp = [r for r in records if r.layer == "mptcp"]
    assert not [r for r in mp if "fallback" in r.data or r.data.get("infinite_mapping")]
    closed = [r.data for r in mp if r.node == "h2" and r.data.get("to") == "CLOSED" and r.data.get("reset")]
    assert [c["reason"] for c in closed] == ["DSS checksum failed"]
    assert closed[0]["subflow"].endswith("10.0.3.1:" + closed[0]["subflow"].rsplit(":", 1)[1])


def test_scenario_mpfail_packets_fit_the_mtu_and_tshark_reads_mp_fail_and_the_infinite_mapping(tmp_path) -> None:
    import shutil
    import subprocess

    from lab.pcap import read_pcap
    from lab.scenario import get_scenario, run_scenario

    sc = get_scenario("mptcp-mpfail-fallback")
    sc = replace(sc, transfers=tuple(replace(t, size_bytes=2 * 1024 * 1024) for t in sc.transfers))
    result = run_scenario(sc, seed=4, out_dir=tmp_path)
    assert result.ok, result.transfers[0].to_dict()
    pcaps = sorted((tmp_path / "pcaps").glob("*.pcap"))
    sizes = [len(pkt) for pcap in pcaps for _t, pkt in read_pcap(pcap)]
    assert sizes and max(sizes) <= 1500  # the segment with the 28-byte infinite mapping too
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    pcap = next(p for p in pcaps if p.name.startswith("h1"))
    fields = ["tcp.options.mptcp.subtype", "tcp.options.mptcp.dseqnpresent.flag", "tcp.options.mptcp.rawdataseqno"]
    fields += ["tcp.options.mptcp.datalvllen", "tcp.options.mptcp.checksum", "tcp.len"]
    argv = ["tshark", "-n", "-r", str(pcap), "-d", "tcp.port==5001,data", "-T", "fields", "-E", "occurrence=a"]
    for f in fields:
        argv += ["-e", f]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-500:]
    fail_dsn, infinite = None, []
    for line in proc.stdout.splitlines():
        subtypes, mapping, dsn, dll, csum, length = (line.split("\t") + [""] * 6)[:6]
        subs = subtypes.split(",")
        if "6" in subs and fail_dsn is None:
            fail_dsn = int(dsn.split(",")[-1])  # MP_FAIL's DSN (after the DSS's, when it has one)
        if "1" in mapping.split(",") and dll.split(",")[0] == "0" and int(length or 0) > 0:
            infinite.append((int(dsn.split(",")[0]), csum))
    assert fail_dsn is not None and infinite
    assert infinite[0][0] == fail_dsn  # (tshark shows no checksum field for an infinite mapping)


@pytest.mark.parametrize("lost", ["after-the-flip", "after-mp-fail"])
def test_a_segment_lost_around_the_infinite_mapping_is_sent_again_and_lands_right(lost: str) -> None:
    # after-the-flip: the segment behind the altered one is lost, and its retransmission (bytes from
    # before the fallback point, which the receiver drops) comes after the infinite mapping;
    # after-mp-fail: the first data segment after the MP_FAIL other than the infinite mapping's is lost
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=10)
    state = {"fail": False, "dropped": None}

    def tamper(direction: str, addr: FourTuple, segment: bytes) -> bytes | None:
        segment = flip(direction, addr, segment)
        src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
        seg = decode_segment(segment, src, dst)
        subs = [
            w.from_tcp_option(o, syn=False, ack=True) for o in seg.options if getattr(o, "kind", None) == w.MPTCP_KIND
        ]
        if direction == "s2c" and any(isinstance(o, w.MpFail) for o in subs):
            state["fail"] = True
        infinite = any(isinstance(o, w.Dss) and o.data_seq is not None and o.data_level_length == 0 for o in subs)
        if direction == "c2s" and seg.payload and state["dropped"] is None:
            if (lost == "after-the-flip" and flip.seen == 11) or (
                lost == "after-mp-fail" and state["fail"] and not infinite
            ):
                state["dropped"] = seg.seq
                return None
        return segment

    pair.tamper = tamper
    data = payload(400_000)
    transfer(pair, data)
    assert state["dropped"] is not None
    assert sha(bytes(pair.received["server"])) == sha(data)
    assert pair.of("server", FallbackToTcp) == [FallbackToTcp(reason=MP_FAIL_FALLBACK)]


def test_an_mp_fail_echo_while_we_wait_for_the_infinite_mapping_changes_nothing() -> None:
    # Linux answers an MP_FAIL with an MP_FAIL of its own on a pure ACK: here the client's first
    # pure ACK after it fell back carries one (the server is sending too, so there are pure ACKs),
    # and the first copy of the infinite mapping is lost, so that the echo comes first
    pair = MptcpPair(CSUM, CSUM)
    pair.handshake()
    flip = Flipper("c2s", nth=30)
    state = {"fail": None, "echoed": False, "lost": False}

    def tamper(direction: str, addr: FourTuple, segment: bytes) -> bytes:
        segment = flip(direction, addr, segment)
        src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
        seg = decode_segment(segment, src, dst)
        if direction == "s2c" and state["fail"] is None:
            for o in seg.options:
                if getattr(o, "kind", None) == w.MPTCP_KIND:
                    opt = w.from_tcp_option(o, syn=False, ack=True)
                    if isinstance(opt, w.MpFail):
                        state["fail"] = opt.data_seq
        if direction == "c2s" and not state["lost"]:
            subs = [w.from_tcp_option(o, syn=False, ack=True) for o in seg.options if getattr(o, "kind", None) == 30]
            if any(isinstance(o, w.Dss) and o.data_seq is not None and o.data_level_length == 0 for o in subs):
                state["lost"] = True
                return None
        if direction == "c2s" and state["fail"] is not None and not state["echoed"] and not seg.payload:
            if not any(getattr(o, "kind", None) == w.MPTCP_KIND for o in seg.options) and not seg.flags & 0x05:
                state["echoed"] = True
                echo = w.to_tcp_option(w.MpFail(data_seq=(state["fail"] + 77) % (1 << 64)))
                return encode_segment(replace(seg, options=(*seg.options, echo)), src, dst)
        return segment

    pair.tamper = tamper
    up, down = payload(400_000, seed=1), payload(400_000, seed=2)
    transfer(pair, up, reply=down)
    assert state["echoed"]
    assert sha(bytes(pair.received["server"])) == sha(up) and sha(bytes(pair.received["client"])) == sha(down)
    got = [
        (r.data["direction"], r.data["mp_fail"]) for r in pair.records("server", "state_updated") if "mp_fail" in r.data
    ]
    assert got == [("sent", state["fail"]), ("received", (state["fail"] + 77) % (1 << 64))]
    assert pair.of("server", FallbackToTcp) == [FallbackToTcp(reason=MP_FAIL_FALLBACK)]

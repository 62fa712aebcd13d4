"""Session resumption (RFC 8548 §3.5): later connections skip Init1/Init2, each secret serves once."""

from __future__ import annotations

from lab.eno.extension import EnoConfig, EnoState
from lab.scenario import Scenario, run_scenario
from lab.scenario.eno import EncryptedTransfer
from lab.tcpcrypt.keys import next_session_secret
from lab.tcpcrypt.session_cache import CachedSession, SessionCache
from lab.wire.eno import eno_options, from_tcp_option
from lab.wire.tcp import ACK, SYN, UnknownOption, decode_segment
from tests.eno.pair import EnoPair, replace_syn_eno
from tests.eno.test_extension import DATA, run_transfer


def tap_into(wire: list[tuple[int, bytes, list]]):  # noqa: ANN201
    def fault(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        seg = decode_segment(data)
        wire.append((seg.flags, seg.payload, eno_options(seg.options)))
        return [data]

    return fault


def test_second_connection_resumes_without_init_messages() -> None:
    cache_a, cache_b = SessionCache(), SessionCache()
    first = EnoPair(EnoConfig(session_cache=cache_a), EnoConfig(session_cache=cache_b), seed=1)
    run_transfer(first)
    assert not first.client_ext.resumed and first.data(first.server) == DATA
    assert len(cache_a) == len(cache_b) == 1
    ss1 = next_session_secret(first.client_ext.tep_stream._ss)

    wire: list[tuple[int, bytes, list]] = []
    second = EnoPair(EnoConfig(session_cache=cache_a), EnoConfig(session_cache=cache_b), seed=2, fault=tap_into(wire))
    run_transfer(second)
    assert second.data(second.server) == DATA
    assert second.client_ext.resumed and second.server_ext.resumed
    assert second.client_ext.session_id == second.server_ext.session_id
    assert second.client_ext.session_id[0] == 0xA3  # B's TEP byte with the v bit
    assert second.client_ext.session_id != first.client_ext.session_id
    assert second.client_ext.tep_stream._ss == ss1  # ss[1] of the first session
    syn = from_tcp_option(wire[0][2][0])
    [offer] = [t for t in syn.teps if t.v]
    assert offer.tep_id == 0x23 and len(offer.data) == 9 + 4  # half of resume[1] and a nonce
    synack = from_tcp_option(wire[1][2][0])
    assert synack.teps[0].v and synack.teps[0].data[:9] != offer.data[:9]  # the other half
    payloads = b"".join(p for _, p, _ in wire)
    assert bytes.fromhex("15101a0e") not in payloads and bytes.fromhex("097105e0") not in payloads
    assert len(cache_a) == len(cache_b) == 1  # ss[1] used up, ss[2] cached

    third = EnoPair(EnoConfig(session_cache=cache_a), EnoConfig(session_cache=cache_b), seed=3)
    run_transfer(third)
    assert third.client_ext.resumed and third.client_ext.session_id not in (
        first.client_ext.session_id,
        second.client_ext.session_id,
    )


def test_peer_without_the_secret_gets_a_fresh_exchange() -> None:
    cache_a = SessionCache()
    cache_a.store("10.0.0.2", CachedSession(ss=bytes(32), tep=0x23, aead=1, original_role_a=True))
    pair = EnoPair(EnoConfig(session_cache=cache_a), EnoConfig(session_cache=SessionCache()))
    run_transfer(pair)
    assert pair.data(pair.server) == DATA
    assert pair.client_ext.encrypted and not pair.client_ext.resumed
    assert pair.client_ext.session_id[0] == 0x23
    assert len(cache_a) == 1  # the stale secret is gone; the new session's ss[1] took its place


def test_wrong_resumption_answer_falls_back() -> None:
    cache_a, cache_b = SessionCache(), SessionCache()
    run_transfer(EnoPair(EnoConfig(session_cache=cache_a), EnoConfig(session_cache=cache_b)))
    forged = UnknownOption(69, bytes.fromhex("01a3") + bytes(13))  # b = 1, X25519 v = 1, a made-up half
    pair = EnoPair(
        EnoConfig(session_cache=cache_a),
        EnoConfig(session_cache=cache_b),
        fault=replace_syn_eno(forged, flags=SYN | ACK),
    )
    run_transfer(pair)
    assert pair.client_ext.state is EnoState.FALLBACK
    assert pair.client_ext.fallback_reason == "bad_resumption"


def test_roles_swap_between_sessions_over_the_simulator() -> None:
    """h1 is host A first; then h2 opens the connection and resumes: keys still follow the original roles."""
    h1_cache, h2_cache = SessionCache(), SessionCache()
    scenario = Scenario(
        name="resume",
        description="",
        topology="single-path",
        transfers=(
            EncryptedTransfer(
                name="first",
                port=5001,
                size_bytes=100_000,
                client=EnoConfig(session_cache=h1_cache),
                server=EnoConfig(session_cache=h2_cache),
            ),
            EncryptedTransfer(
                name="reverse",
                src="h2",
                dst="h1",
                port=5002,
                size_bytes=100_000,
                start_s=2.0,
                client=EnoConfig(session_cache=h2_cache),
                server=EnoConfig(session_cache=h1_cache),
            ),
        ),
    )
    result = run_scenario(scenario, seed=1)
    first, reverse = result.transfers
    assert first.ok and reverse.ok, (first.to_dict(), reverse.to_dict())
    assert reverse.extra["client_session_id"].startswith("a3")
    assert reverse.extra["client_session_id"] == reverse.extra["server_session_id"]

"""Post-quantum IKE with certificates on Mininet: real packets through a kernel router whose nftables rule
drops IP fragments (``DropIpFragments``), as root.

* ``ike-pq-rfc7383``: classic and hybrid (X25519 + ML-KEM-768) sessions establish over UDP with IKE
  fragments; no IP fragment is on the wire at all.
* ``ike-pq-tcp``: both over TCP from the start.
* The IP-fragment case with a short retransmission schedule: h1's user-space stack sends IKE_AUTH as
  real IPv4 fragments, r1's rule drops every one (none reaches r1's far side), the initiator gives UDP
  up and establishes over TCP.

Every tunnelled stream is checked by SHA-256 (the run result) and each run leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lab.pcap import read_pcap_linktype
from lab.scenario.ike_pq import pq_scenario
from lab.wire.ip import decode_ipv4
from lab.wire.udp import UDP_PROTOCOL
from tests.mininet.conftest import mininet_skip_reason
from tests.mininet.test_ike_mininet import Bundle, _run
from topologies.ike_scenarios import SCENARIOS

_SKIP = mininet_skip_reason()

pytestmark = [
    pytest.mark.mininet,
    pytest.mark.xdist_group("mininet"),
    pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""),
]


def _udp_fragments(path: Path) -> list[tuple[int, bool]]:
    """(offset, more fragments) of every IPv4 UDP fragment in an Ethernet capture."""
    linktype, records = read_pcap_linktype(path)
    assert linktype == 1, linktype
    out = []
    for _t, frame in records:
        if frame[12:14] != b"\x08\x00":
            continue
        ip = decode_ipv4(frame[14:])
        if ip.protocol == UDP_PROTOCOL and (ip.flags & 1 or ip.fragment_offset):
            out.append((ip.fragment_offset * 8, bool(ip.flags & 1)))
    return out


def _ike_state(bundle: Bundle, node: str, **fields: object) -> list[dict]:
    return [r.data for r in bundle.ike(node, "state_updated") if all(r.data.get(k) == v for k, v in fields.items())]


def _transports(bundle: Bundle) -> dict[str, str]:
    return {t["name"]: t.get("transport") for t in bundle.result.summary()["transfers"]}


def test_rfc7383_gets_both_proposals_through_without_one_ip_fragment(tmp_path: Path) -> None:
    bundle = _run(SCENARIOS["ike-pq-rfc7383"], tmp_path / "run")
    assert bundle.result.ok, bundle.result.summary()
    assert set(_transports(bundle).values()) == {"udp"}
    for node in ("h1", "h2"):
        reassembled = _ike_state(bundle, node, event="reassembled", exchange="IKE_AUTH")
        assert len(reassembled) == 2 and all(d["fragments"] >= 2 for d in reassembled)
        assert [d["additional_ke"] for d in _ike_state(bundle, node, exchange="IKE_INTERMEDIATE", result="ok")] == [36]
    assert _udp_fragments(bundle.pcap("h1-eth0")) == []
    assert _udp_fragments(bundle.pcap("h2-eth0")) == []


def test_tcp_from_the_start_gets_both_proposals_through(tmp_path: Path) -> None:
    bundle = _run(SCENARIOS["ike-pq-tcp"], tmp_path / "run")
    assert bundle.result.ok, bundle.result.summary()
    assert set(_transports(bundle).values()) == {"tcp"}
    assert len(_ike_state(bundle, "h1", exchange="IKE_AUTH", result="ok")) == 2


def test_real_ip_fragments_die_at_the_router_and_ike_moves_to_tcp(tmp_path: Path) -> None:
    base = pq_scenario("ip-fragments", proposals=("hybrid",))
    (session,) = base.transfers
    quick = replace(session, initiator_config={**session.initiator_config, "retransmit_s": 0.1, "retransmit_tries": 2})
    bundle = _run(replace(base, name="ike-pq-ip-fragments-quick", transfers=(quick,)), tmp_path / "run")
    assert bundle.result.ok, bundle.result.summary()
    assert set(_transports(bundle).values()) == {"tcp"}
    left_h1 = _udp_fragments(bundle.pcap("h1-eth0"))
    assert left_h1 and (0, True) in left_h1  # IKE_AUTH left h1 as IPv4 fragments, three times
    assert _udp_fragments(bundle.pcap("r1-eth1")) == []  # not one passed r1's nftables rule
    assert _udp_fragments(bundle.pcap("h2-eth0")) == []
    assert _ike_state(bundle, "h1", event="ip_fragments", exchange="IKE_AUTH")
    assert _ike_state(bundle, "h1", event="unanswered", transport="udp")


@pytest.mark.parametrize("mode", ["rfc7383", "tcp"])
def test_p256_with_ml_kem_1024_and_certificates(mode: str, tmp_path: Path) -> None:
    """The second hybrid: its 1,568-byte ML-KEM-1024 share puts IKE_INTERMEDIATE itself into IKE fragments
    over UDP; over TCP it goes whole."""
    base = pq_scenario(mode, proposals=("classic",))
    (session,) = base.transfers
    session = replace(  # the name stays: IDi and the certificate's dNSName are classic.initiator.lab
        session, initiator_config={**session.initiator_config, "dh_groups": (19,), "additional_key_exchanges": (37,)}
    )
    bundle = _run(replace(base, name=f"ike-pq-p256-mlkem1024-{mode}", transfers=(session,)), tmp_path / "run")
    assert bundle.result.ok, bundle.result.summary()
    assert set(_transports(bundle).values()) == {"udp" if mode == "rfc7383" else "tcp"}
    for node in ("h1", "h2"):
        assert [d["additional_ke"] for d in _ike_state(bundle, node, exchange="IKE_INTERMEDIATE", result="ok")] == [37]
        reassembled = {d["exchange"] for d in _ike_state(bundle, node, event="reassembled")}
        assert reassembled == ({"IKE_INTERMEDIATE", "IKE_AUTH"} if mode == "rfc7383" else set())
    assert _udp_fragments(bundle.pcap("h1-eth0")) == []


def _udp_4500(path: Path) -> tuple[int, int]:
    """(IKE messages, ESP packets) in IPv4 UDP datagrams on port 4500 in an Ethernet capture: IKE
    behind the four-zero non-ESP marker, ESP with a non-zero SPI (RFC 3948 §2.2); NAT keepalives
    (one 0xff byte) are neither."""
    linktype, records = read_pcap_linktype(path)
    assert linktype == 1, linktype
    ike = esp = 0
    for _t, frame in records:
        if frame[12:14] != b"\x08\x00":
            continue
        ip = decode_ipv4(frame[14:])
        if ip.protocol != UDP_PROTOCOL or ip.flags & 1 or ip.fragment_offset:
            continue
        udp = bytes(ip.payload)
        if 4500 not in (int.from_bytes(udp[0:2], "big"), int.from_bytes(udp[2:4], "big")) or len(udp) < 12:
            continue
        if udp[8:12] == b"\x00\x00\x00\x00":
            ike += 1
        else:
            esp += 1
    return ike, esp


def test_separate_transports_ike_over_tcp_esp_over_udp(tmp_path: Path) -> None:
    """draft-ietf-ipsecme-ikev2-reliable-transport on real packets: IKE_SA_INIT over UDP 4500 with
    SEPARATE_TRANSPORTS both ways, then IKE_INTERMEDIATE and IKE_AUTH over TCP 4500 (RFC 9329) through
    the fragment-dropping router, the tunnelled streams as ESP in UDP 4500."""
    bundle = _run(SCENARIOS["ike-pq-separate-transports"], tmp_path / "run")
    assert bundle.result.ok, bundle.result.summary()
    assert set(_transports(bundle).values()) == {"tcp"}  # IKE's transport at the end
    for node in ("h1", "h2"):
        switched = _ike_state(bundle, node, event="transport_switched")
        assert len(switched) == 2 and {(d["ike_transport"], d["esp_transport"]) for d in switched} == {("tcp", "udp")}
    ike_udp, esp_udp = _udp_4500(bundle.pcap("h2-eth0"))
    assert ike_udp == 4  # IKE_SA_INIT request and response of each session, nothing else of IKE on UDP
    assert esp_udp > 0  # the tunnelled streams reached h2 as ESP in UDP
    assert _udp_fragments(bundle.pcap("h1-eth0")) == []

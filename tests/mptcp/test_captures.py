"""Real Linux 6.18 MPTCP v1 captures through our codecs and crypto.

The pcaps in ``tests/mptcp/captures/`` are copies of the shared spec captures
(``spec/captures/mptcp_v1_*.pcap``, documented in ``spec/captures/README.md``;
keys and expected values in ``spec/vectors.md`` §1): two network namespaces,
Linux ``IPPROTO_MPTCP`` sockets, captured with ``tcpdump -i any`` (Linux
cooked capture v2). Every TCP segment is decoded with ``lab.wire.ip`` and
``lab.wire.tcp``, every kind-30 option with ``lab.wire.mptcp`` and encoded back
to the same bytes; tokens, HMACs and DSS checksums are recomputed from the
keys the MP_CAPABLE handshake shows; tshark, when installed, cross-checks the
decoded fields.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from lab.mptcp.crypto import (
    add_addr_hmac,
    dss_checksum_ok,
    key_idsn,
    key_token,
    mp_join_ack_hmac,
    mp_join_synack_hmac,
)
from lab.pcap import read_pcap
from lab.wire.checksum import pack_address
from lab.wire.ip import decode_ip, ip_protocol
from lab.wire.mptcp import (
    MPTCP_KIND,
    AddAddr,
    Dss,
    MpCapableAck,
    MpCapableAckData,
    MpCapableSyn,
    MpCapableSynAck,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MptcpOption,
    MpTcpRst,
    RemoveAddr,
    from_tcp_option,
    to_tcp_option,
)
from lab.wire.tcp import ACK, RST, SYN, TCP_PROTOCOL, TcpSegment, UnknownOption, decode_segment, encode_segment

CAPTURES = Path(__file__).parent / "captures"
TSHARK = shutil.which("tshark")

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113  # 16-byte header, protocol at offset 14
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276  # 20-byte header, protocol at offset 0
ETHERTYPES_IP = (0x0800, 0x86DD)
ETHERTYPE_VLAN = 0x8100


@dataclass(frozen=True)
class Keys:
    """vectors.md §1.1: the keys each capture shows and what they hash to."""

    client: int
    server: int
    client_token: int
    server_token: int
    client_idsn: int
    server_idsn: int


KEYS = {
    "mptcp_v1_join_prio_rmaddr_fastclose.pcap": Keys(
        0xC8D9A211A0CE4F1B, 0x2601956E3097781E, 0x26B52C2C, 0xFE500976, 0x673028E4D9813309, 0xD8A04B3ED9106FA4
    ),
    "mptcp_v1_checksum_mpc_data.pcap": Keys(
        0x293ADEAA07668BFD, 0xFEA1649A0D90C21D, 0x51A631FC, 0xBAA351AB, 0xBDCC8F2E011E9F4E, 0xD56D2C4E7BB69D0C
    ),
    "mptcp_v1_addaddr_port.pcap": Keys(
        0x3675CD1E9A0940CE, 0x302000432282F4D2, 0xA9D5CB90, 0x98FA1645, 0x6851A20B896E4A78, 0x219A837B57E0D367
    ),
    "mptcp_v1_ipv6_addaddr.pcap": Keys(
        0x22930682E2F4AE46, 0x4D4A8216CBE70704, 0xB22B5F56, 0x317F96CE, 0xB7BB3F88B810EAFE, 0x50A69B55CF22B343
    ),
    "mptcp_v1_mpfail_infinite_mapping.pcap": Keys(
        0x6908C3E28C0C87F5, 0x4A31F1F7A0D8D3D6, 0x92EC53C6, 0x708FF305, 0xA5C0586689D6FCE0, 0xA97994F0FF5705BC
    ),
}

HANDSHAKE = {MpCapableSyn, MpCapableSynAck, MpCapableAck}
JOIN = {MpJoinSyn, MpJoinSynAck, MpJoinAck}
# What each capture shows (spec/captures/README.md), as option classes
FORMS = {
    "mptcp_v1_join_prio_rmaddr_fastclose.pcap": HANDSHAKE
    | JOIN
    | {Dss, AddAddr, MpPrio, RemoveAddr, MpFastclose, MpTcpRst},
    "mptcp_v1_checksum_mpc_data.pcap": HANDSHAKE | {MpCapableAckData, Dss},
    "mptcp_v1_addaddr_port.pcap": HANDSHAKE | JOIN | {Dss, AddAddr},
    "mptcp_v1_ipv6_addaddr.pcap": HANDSHAKE | JOIN | {Dss, AddAddr},
    "mptcp_v1_mpfail_infinite_mapping.pcap": HANDSHAKE | {MpCapableAckData, Dss, MpFail},
}
FILES = sorted(KEYS)

Endpoint = tuple[str, int]  # address, port


@dataclass
class Frame:
    number: int  # 1-based, as tshark counts
    src: Endpoint
    dst: Endpoint
    segment: TcpSegment
    tcp_bytes: bytes
    mptcp: list[tuple[UnknownOption, MptcpOption]]


@dataclass
class Capture:
    name: str
    frames: list[Frame]
    keys: Keys
    role: dict[Endpoint, str] = field(default_factory=dict)  # "client" / "server" per subflow end
    isn: dict[Endpoint, int] = field(default_factory=dict)  # initial sequence number of each sender

    def key(self, endpoint: Endpoint) -> int:
        return self.keys.client if self.role[endpoint] == "client" else self.keys.server

    def idsn(self, endpoint: Endpoint) -> int:
        return self.keys.client_idsn if self.role[endpoint] == "client" else self.keys.server_idsn

    def relative_seq(self, frame: Frame) -> int:
        return (frame.segment.seq - self.isn[frame.src]) & 0xFFFF_FFFF

    def options(self, cls: type) -> Iterator[tuple[Frame, MptcpOption]]:
        for frame in self.frames:
            for _raw, opt in frame.mptcp:
                if type(opt) is cls:
                    yield frame, opt


def link_type(data: bytes) -> int:
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    return struct.unpack_from(order + "I", data, 20)[0]


def ip_packet(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a captured frame, None when it carries something else."""
    if linktype == LINKTYPE_LINUX_SLL2:
        protocol, start = struct.unpack_from("!H", frame, 0)[0], 20
    elif linktype == LINKTYPE_LINUX_SLL:
        protocol, start = struct.unpack_from("!H", frame, 14)[0], 16
    elif linktype == LINKTYPE_ETHERNET:
        protocol, start = struct.unpack_from("!H", frame, 12)[0], 14
        if protocol == ETHERTYPE_VLAN:
            protocol, start = struct.unpack_from("!H", frame, 16)[0], 18
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return frame
    else:
        pytest.skip(f"link type {linktype} is not parsed here")
    return frame[start:] if protocol in ETHERTYPES_IP else None


@cache
def load(name: str) -> Capture:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"{path} is missing (the captures are copied from spec/captures)")
    linktype = link_type(path.read_bytes())
    frames = []
    for number, (_now, raw) in enumerate(read_pcap(path), 1):
        packet = ip_packet(linktype, raw)
        if packet is None:
            continue
        ip = decode_ip(packet)
        if ip_protocol(ip) != TCP_PROTOCOL:
            continue
        # no checksum check: the capture was taken where the kernel offloads it (CHECKSUM_PARTIAL)
        segment = decode_segment(ip.payload)
        syn, ack = bool(segment.flags & SYN), bool(segment.flags & ACK)
        mptcp = [
            (opt, from_tcp_option(opt, version=1, syn=syn, ack=ack))
            for opt in segment.options
            if isinstance(opt, UnknownOption) and opt.kind == MPTCP_KIND
        ]
        frames.append(Frame(number, (ip.src, segment.src_port), (ip.dst, segment.dst_port), segment, ip.payload, mptcp))
    capture = Capture(name, frames, KEYS[name])
    for frame in frames:  # who is who: the MP_CAPABLE SYN, and the token each MP_JOIN SYN names
        if frame.segment.flags & SYN:
            capture.isn[frame.src] = frame.segment.seq
        for _raw, opt in frame.mptcp:
            if isinstance(opt, MpCapableSyn) or (isinstance(opt, MpJoinSyn) and opt.token == capture.keys.server_token):
                capture.role[frame.src], capture.role[frame.dst] = "client", "server"
            elif isinstance(opt, MpJoinSyn) and opt.token == capture.keys.client_token:
                capture.role[frame.src], capture.role[frame.dst] = "server", "client"
    return capture


def expand(value: int, is_64: bool, near: int) -> int:
    """A DSN or Data ACK sent as 32 bits, made 64 bits again next to ``near``."""
    if is_64:
        return value
    candidate = (near & ~0xFFFF_FFFF) | value
    return min((candidate - (1 << 32), candidate, candidate + (1 << 32)), key=lambda c: abs(c - near))


# --- the codecs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_every_mptcp_option_re_encodes_to_the_captured_bytes(name: str) -> None:
    capture = load(name)
    seen = set()
    for frame in capture.frames:
        for raw, opt in frame.mptcp:
            assert to_tcp_option(opt) == raw, (frame.number, opt)
            seen.add(type(opt))
        # and the whole segment: identical except the checksum the capture point did not fill in
        ip_src, ip_dst = pack_address(frame.src[0]), pack_address(frame.dst[0])
        again = encode_segment(frame.segment, ip_src, ip_dst)
        assert again[:16] + again[18:] == frame.tcp_bytes[:16] + frame.tcp_bytes[18:], frame.number
    assert seen == FORMS[name]


@pytest.mark.parametrize("name", FILES)
def test_handshake_keys_give_the_known_tokens_and_idsns(name: str) -> None:
    capture = load(name)
    keys = capture.keys
    ((_, synack),) = capture.options(MpCapableSynAck)
    acks = [opt for _, opt in capture.options(MpCapableAck)]
    assert synack.sender_key == keys.server
    assert acks and all((a.sender_key, a.receiver_key) == (keys.client, keys.server) for a in acks)
    for _, data in capture.options(MpCapableAckData):  # repeats the keys until a DSS arrives
        assert (data.sender_key, data.receiver_key) == (keys.client, keys.server)
    assert (key_token(keys.client), key_token(keys.server)) == (keys.client_token, keys.server_token)
    assert (key_idsn(keys.client), key_idsn(keys.server)) == (keys.client_idsn, keys.server_idsn)
    ((_, syn),) = capture.options(MpCapableSyn)
    assert syn.version == synack.version == 1 and syn.hmac_flag and syn.sender_key is None
    assert syn.checksum_required == ("checksum" in name or "mpfail" in name)


JOIN_FILES = {  # capture -> number of MP_JOIN handshakes in it
    "mptcp_v1_join_prio_rmaddr_fastclose.pcap": 2,
    "mptcp_v1_addaddr_port.pcap": 1,
    "mptcp_v1_ipv6_addaddr.pcap": 1,
}


@pytest.mark.parametrize("name", sorted(JOIN_FILES))
def test_mp_join_tokens_and_hmacs(name: str) -> None:
    capture = load(name)
    (initial_syn,) = [f for f, _ in capture.options(MpCapableSyn)]
    verified = 0
    for syn_frame, syn in capture.options(MpJoinSyn):
        initiator, responder = syn_frame.src, syn_frame.dst
        assert syn.token == key_token(capture.key(responder))  # the receiver's token
        ((synack_frame, synack),) = [(f, o) for f, o in capture.options(MpJoinSynAck) if f.src == responder]
        assert synack_frame.dst == initiator
        ((_, ack),) = [(f, o) for f, o in capture.options(MpJoinAck) if f.src == initiator]
        key_i, key_r = capture.key(initiator), capture.key(responder)
        assert synack.truncated_hmac == mp_join_synack_hmac(key_r, key_i, synack.nonce, syn.nonce)
        assert ack.hmac == mp_join_ack_hmac(key_i, key_r, syn.nonce, synack.nonce)
        # a join to the server's initial address is answered with Address ID 0
        assert (synack.address_id == 0) == (responder[0] == initial_syn.dst[0])
        verified += 1
    assert verified == JOIN_FILES[name]


@pytest.mark.parametrize("name", sorted(JOIN_FILES))
def test_add_addr_hmacs_echoes_and_joins(name: str) -> None:
    capture = load(name)
    announced = []
    for frame, opt in capture.options(AddAddr):
        assert isinstance(opt, AddAddr)
        if opt.truncated_hmac is not None:
            sender, receiver = capture.key(frame.src), capture.key(frame.dst)
            assert opt.truncated_hmac == add_addr_hmac(sender, receiver, opt.address_id, opt.address, opt.port)
            announced.append((frame, opt))
        else:  # the echo repeats an announcement from the other side
            assert any(
                (a.address_id, a.address, a.port) == (opt.address_id, opt.address, opt.port) and f.src == frame.dst
                for f, a in announced
            )
    assert announced
    # a join goes to the announced address, on its port or else the port of the subflow that carried it
    targets = {(a.address, a.port if a.port is not None else f.src[1]) for f, a in announced}
    assert any(f.dst in targets for f, _ in capture.options(MpJoinSyn))


CHECKSUM_FILES = {  # capture -> mappings whose checksum covers bytes in one segment
    "mptcp_v1_checksum_mpc_data.pcap": 8,
    "mptcp_v1_mpfail_infinite_mapping.pcap": 4,
}


@pytest.mark.parametrize("name", sorted(CHECKSUM_FILES))
def test_dss_checksums_verify(name: str) -> None:
    capture = load(name)
    verified = infinite = 0
    for frame in capture.frames:
        payload = frame.segment.payload
        for _raw, opt in frame.mptcp:
            if isinstance(opt, MpCapableAckData):  # implicit mapping: DSN = IDSN + 1, SSN 1
                assert opt.checksum is not None and capture.relative_seq(frame) == 1
                assert opt.data_level_length == len(payload)
                assert dss_checksum_ok(capture.idsn(frame.src) + 1, 1, len(payload), payload, opt.checksum)
                verified += 1
            elif isinstance(opt, Dss) and opt.data_seq is not None:
                assert opt.checksum is not None, "checksums were negotiated: every mapping carries one"
                if opt.is_infinite_mapping:
                    assert opt.checksum == 0
                    infinite += 1
                    continue
                data_seq = expand(opt.data_seq, opt.data_seq_64, capture.idsn(frame.src) + 1)
                if not payload:  # a DATA_FIN on its own: SSN 0, Data-Level Length 1
                    assert opt.data_fin and (opt.subflow_seq, opt.data_level_length) == (0, 1)
                else:
                    assert opt.subflow_seq == capture.relative_seq(frame)
                    assert opt.data_level_length == len(payload) + opt.data_fin
                assert dss_checksum_ok(data_seq, opt.subflow_seq, opt.data_level_length, payload, opt.checksum)
                verified += 1
    assert verified == CHECKSUM_FILES[name]
    assert infinite == ("mpfail" in name)


@pytest.mark.parametrize("name", FILES)
def test_data_sequence_space_starts_at_idsn_plus_one(name: str) -> None:
    capture = load(name)
    first: dict[str, int] = {}
    for frame in capture.frames:
        for _raw, opt in frame.mptcp:
            role, start = capture.role[frame.src], capture.idsn(frame.src) + 1
            if isinstance(opt, MpCapableAckData):
                data_seq = start
            elif isinstance(opt, Dss) and opt.data_seq is not None:
                data_seq = expand(opt.data_seq, opt.data_seq_64, start)
            else:
                continue
            first[role] = min(first.get(role, data_seq), data_seq)
    assert first == {"client": capture.keys.client_idsn + 1, "server": capture.keys.server_idsn + 1}


DATA_FIN_FILES = ["mptcp_v1_addaddr_port.pcap", "mptcp_v1_checksum_mpc_data.pcap", "mptcp_v1_ipv6_addaddr.pcap"]


@pytest.mark.parametrize("name", DATA_FIN_FILES)
def test_data_fin_is_acknowledged_with_its_dsn_plus_one(name: str) -> None:
    capture = load(name)
    data_acks: dict[str, set[int]] = {"client": set(), "server": set()}
    fins = []
    for frame, opt in capture.options(Dss):
        assert isinstance(opt, Dss)
        peer_start = capture.idsn(frame.dst) + 1
        if opt.data_ack is not None:
            data_acks[capture.role[frame.src]].add(expand(opt.data_ack, opt.data_ack_64, peer_start))
        if opt.data_fin:
            assert opt.data_seq is not None
            data_seq = expand(opt.data_seq, opt.data_seq_64, capture.idsn(frame.src) + 1)
            fins.append((capture.role[frame.dst], data_seq + opt.data_level_length - 1))
    assert {role for role, _ in fins} == {"client", "server"}
    for acker, fin_dsn in fins:
        assert fin_dsn + 1 in data_acks[acker]


def test_fastclose_carries_the_receivers_key_on_every_subflow() -> None:
    capture = load("mptcp_v1_join_prio_rmaddr_fastclose.pcap")
    closes = list(capture.options(MpFastclose))
    assert len(closes) == 2  # both subflows
    for frame, opt in closes:
        assert isinstance(opt, MpFastclose)
        assert frame.segment.flags & RST
        assert opt.receiver_key == capture.key(frame.dst)
        assert [type(o) for _, o in frame.mptcp] == [MpFastclose, MpTcpRst]


def test_mp_fail_names_a_peer_mapping_and_fallback_follows() -> None:
    capture = load("mptcp_v1_mpfail_infinite_mapping.pcap")
    starts: dict[Endpoint, set[int]] = {}
    for frame, opt in capture.options(Dss):
        assert isinstance(opt, Dss)
        if opt.data_seq is not None:
            starts.setdefault(frame.src, set()).add(expand(opt.data_seq, opt.data_seq_64, capture.idsn(frame.src) + 1))
    fails = list(capture.options(MpFail))
    assert len(fails) == 2  # the server's, then the client's answer
    for frame, opt in fails:
        assert isinstance(opt, MpFail)
        assert opt.data_seq in starts[frame.dst]
    ((infinite_frame, _),) = [(f, o) for f, o in capture.options(Dss) if isinstance(o, Dss) and o.is_infinite_mapping]
    assert infinite_frame.number > max(f.number for f, _ in fails)
    later = [f for f in capture.frames if f.number > infinite_frame.number]
    assert later and not any(f.mptcp for f in later)  # plain TCP from then on


# --- tshark as an independent dissector -------------------------------------------------------------

TSHARK_FIELDS = [
    "frame.number",
    "tcp.options.mptcp.subtype",
    "tcp.options.mptcp.version",
    "tcp.options.mptcp.sendkey",
    "tcp.options.mptcp.recvkey",
    "mptcp.expected_token",
    "tcp.options.mptcp.recvtok",
    "tcp.options.mptcp.sendrand",
    "tcp.options.mptcp.sendtrunchmac",
    "tcp.options.mptcp.sendhmac",
    "tcp.options.mptcp.addrid",
    "tcp.options.mptcp.echo",
    "tcp.options.mptcp.ipv4",
    "tcp.options.mptcp.ipv6",
    "tcp.options.mptcp.port",
    "tcp.options.mptcp.addaddrtrunchmac",
    "tcp.options.mptcp.rawdataack",
    "tcp.options.mptcp.rawdataseqno",
    "tcp.options.mptcp.subflowseqno",
    "tcp.options.mptcp.datalvllen",
    "tcp.options.mptcp.checksum",
    "tcp.options.mptcp.rst_reason",
]


def our_fields(frame: Frame) -> dict[str, list[str]]:
    """What tshark should print for ``frame``, field by field, in option order (as normalised text)."""
    out: dict[str, list[str]] = {name: [] for name in TSHARK_FIELDS[1:]}

    def put(name: str, value: object) -> None:
        out["tcp.options.mptcp." + name if not name.startswith("mptcp.") else name].append(str(value))

    for _raw, opt in frame.mptcp:
        put("subtype", opt.subtype)
        if isinstance(opt, MpCapableSyn | MpCapableSynAck | MpCapableAck | MpCapableAckData):
            put("version", opt.version)
        if isinstance(opt, MpCapableSynAck | MpCapableAck | MpCapableAckData):
            put("sendkey", opt.sender_key)
            put("mptcp.expected_token", key_token(opt.sender_key))
        if isinstance(opt, MpCapableAck | MpCapableAckData):
            put("recvkey", opt.receiver_key)
        if isinstance(opt, MpCapableAckData):
            put("datalvllen", opt.data_level_length)
            if opt.checksum is not None:
                put("checksum", opt.checksum)
        if isinstance(opt, MpJoinSyn):
            put("addrid", opt.address_id)
            put("recvtok", opt.token)
            put("sendrand", opt.nonce)
        if isinstance(opt, MpJoinSynAck):
            put("addrid", opt.address_id)
            put("sendtrunchmac", int.from_bytes(opt.truncated_hmac, "big"))
            put("sendrand", opt.nonce)
        if isinstance(opt, MpJoinAck):
            put("sendhmac", opt.hmac.hex())
        if isinstance(opt, AddAddr):
            put("addrid", opt.address_id)
            put("echo", int(opt.echo))
            put("ipv6" if ":" in opt.address else "ipv4", opt.address)
            if opt.port is not None:
                put("port", opt.port)
            if opt.truncated_hmac is not None:
                put("addaddrtrunchmac", int.from_bytes(opt.truncated_hmac, "big"))
        if isinstance(opt, RemoveAddr):
            for address_id in opt.address_ids:
                put("addrid", address_id)
        if isinstance(opt, Dss):
            if opt.data_ack is not None:
                put("rawdataack", opt.data_ack)
            if opt.data_seq is not None:  # tshark widens a 32-bit DSN: compare what was sent
                put("rawdataseqno", opt.data_seq if opt.data_seq_64 else f"low32:{opt.data_seq}")
                put("subflowseqno", opt.subflow_seq)
                put("datalvllen", opt.data_level_length)
        if isinstance(opt, MpFail):
            put("rawdataseqno", opt.data_seq)
        if isinstance(opt, MpFastclose):
            put("recvkey", opt.receiver_key)
        if isinstance(opt, MpTcpRst):
            put("rst_reason", opt.reason)
    return out


def normalise(name: str, text: str, ours: str) -> str:
    if name.endswith(("ipv4", "ipv6", "sendhmac")):
        return text.lower()
    value = int(text, 0)
    if ours.startswith("low32:"):
        return f"low32:{value & 0xFFFF_FFFF}"
    return str(value)


@cache
def tshark_rows(name: str) -> dict[int, dict[str, list[str]]]:
    assert TSHARK is not None
    command = [TSHARK, "-n", "-r", str(CAPTURES / name), "-o", "mptcp.analyze_mptcp:TRUE", "-T", "fields"]
    command += ["-E", "separator=|", "-E", "aggregator=;", "-E", "occurrence=a"]
    for name_ in TSHARK_FIELDS:
        command += ["-e", name_]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    rows = {}
    for line in result.stdout.splitlines():
        cells = line.split("|")
        rows[int(cells[0])] = {f: c.split(";") if c else [] for f, c in zip(TSHARK_FIELDS[1:], cells[1:], strict=True)}
    return rows


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", FILES)
def test_tshark_dissects_the_same_fields(name: str) -> None:
    capture = load(name)
    rows = tshark_rows(name)
    compared = 0
    for frame in capture.frames:
        ours = our_fields(frame)
        theirs = rows[frame.number]
        for field_name, our_values in ours.items():
            if field_name == "tcp.options.mptcp.checksum" and not our_values:
                continue  # tshark 4.0 prints the DSS checksum field only for MP_CAPABLE with data
            their_values = theirs[field_name]
            assert len(their_values) == len(our_values), (frame.number, field_name, their_values, our_values)
            normalised = [normalise(field_name, t, o) for t, o in zip(their_values, our_values, strict=True)]
            assert normalised == our_values, (frame.number, field_name)
            compared += len(our_values)
    assert compared > 0

"""The Lua dissectors against our own codecs, on the simulator's captures.

Every ENO option tshark decodes must match what lab.wire.eno reads from the same
packet; tcpcrypt messages must follow each other with lengths that add up to the
reassembled stream; every IKE message and ESP packet of an IKETCP stream must
decode, every ESP packet decrypt with the run's exported keys; nothing malformed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from lab.cli import main
from lab.dissectors import DIRECTORY, SCRIPTS
from lab.ike.keylog import key_tables
from lab.ike.pcap import iketcp_to_udp
from lab.pcap import PcapWriter, frame_ip, read_pcap_linktype
from lab.trace import read_jsonl
from lab.wire.buffer import Buffer
from lab.wire.eno import (
    GlobalSuboption,
    SynEnoOption,
    TepSuboption,
    eno_options,
    from_tcp_option,
    to_tcp_option,
)
from lab.wire.ip import Ipv4Packet, decode_ip, encode_ip
from lab.wire.tcp import ACK, SYN, TCP_PROTOCOL, TcpSegment, UnknownOption, decode_segment, encode_segment
from lab.wire.tcpcrypt import INIT1_MAGIC, INIT2_MAGIC, pull_frame, pull_init1, pull_init2
from tests.dissectors.conftest import Bundles, tshark_count, tshark_fields, tshark_or_skip

pytestmark = pytest.mark.xdist_group("dissectors")  # one worker builds the bundles once

ENO_FIELDS = ["frame.number", "eno.kind", "eno.exid", "eno.syn_form", "eno.tep", "eno.v", "eno.b", "eno.tep_data"]
MALFORMED = "_ws.malformed || _ws.expert.severity >= error || eno.malformed || tcpcrypt.malformed || iketcp.malformed"


def _segments(pcap: Path):
    """(frame number, IP packet, TCP segment) for every TCP packet of a capture, read by our codecs."""
    linktype, frames = read_pcap_linktype(pcap)
    for number, (_time, frame) in enumerate(frames, start=1):
        raw = frame_ip(linktype, frame)
        if raw is None:
            continue
        ip = decode_ip(raw)
        if getattr(ip, "protocol", getattr(ip, "next_header", None)) != TCP_PROTOCOL:
            continue
        yield number, ip, decode_segment(ip.payload)


def _codec_eno(pcap: Path) -> dict[int, dict]:
    """What lab.wire.eno reads from every ENO option of a capture, by frame number."""
    out = {}
    for number, _ip, seg in _segments(pcap):
        found = eno_options(seg.options)
        if not found:
            continue
        (option,) = found
        entry = {"kind": option.kind, "syn": bool(seg.flags & SYN)}
        if seg.flags & SYN:
            syn = from_tcp_option(option)
            entry |= {
                "teps": [t.tep_id for t in syn.teps],
                "v": [t.v for t in syn.teps],
                "data": [t.data.hex() for t in syn.teps if t.data],
                "b": syn.global_suboption.passive_role,
                "experimental": syn.experimental,
            }
        out[number] = entry
    return out


def _tshark_eno(pcap: Path) -> dict[int, dict]:
    out = {}
    for number, kind, exid, syn_form, teps, v, b, data in tshark_fields(pcap, ENO_FIELDS, display_filter="eno"):
        entry = {"kind": int(kind[0]), "syn": syn_form == ["1"]}
        if entry["syn"]:
            entry |= {
                "teps": [int(t, 16) for t in teps],
                "v": [x == "1" for x in v],
                "data": [d.replace(":", "") for d in data],
                "b": bool(b) and b[0] == "1",  # the first global suboption; none is an implicit 0x00
                "experimental": exid == ["0x454e"],
            }
        out[int(number[0])] = entry
    return out


@pytest.mark.parametrize(
    "scenario", ["eno-basic", "eno-mismatch", "eno-stripped", "eno-simultaneous-open", "eno-basic-experimental"]
)
def test_every_eno_option_decodes_as_our_codec_reads_it(bundles: Bundles, scenario: str) -> None:
    options = 0
    for pcap in sorted((bundles[scenario] / "pcaps").glob("*.pcap")):
        expected = _codec_eno(pcap)  # (eno-stripped: h2's side never sees one)
        options += len(expected)
        assert _tshark_eno(pcap) == expected, pcap.name
    assert options >= 3


def test_experimental_encoding_is_decoded_as_eno(bundles: Bundles) -> None:
    pcap = bundles["eno-basic-experimental"] / "pcaps" / "h1-eth0.pcap"
    rows = tshark_fields(pcap, ["eno.kind", "eno.exid"], display_filter="eno")
    assert rows and all(kind == ["253"] and exid == ["0x454e"] for kind, exid in rows)
    assert tshark_count(pcap, "tcpcrypt.type == 1") == 1  # Init1 follows, as with kind 69


@pytest.mark.parametrize(
    ("scenario", "negotiated", "failed"),
    [
        ("eno-basic", ["0x23"], 0),
        ("eno-mismatch", ["0x24"], 1),  # overlap agrees on X448, disjoint falls back
        ("eno-simultaneous-open", ["0x23"], 0),
        ("eno-stripped", [], 0),  # the SYN-ACKs carry no ENO at all: nothing to compare
    ],
)
def test_negotiation_outcome(bundles: Bundles, scenario: str, negotiated: list[str], failed: int) -> None:
    pcap = bundles[scenario] / "pcaps" / "h1-eth0.pcap"
    rows = tshark_fields(pcap, ["eno.negotiated_tep", "eno.outcome"], display_filter="eno.outcome")
    assert sorted({tep for row in rows for tep in row[0]}) == negotiated
    assert sum(1 for row in rows if row[1] and row[1][0].startswith("failed")) == failed


def test_crafted_options_with_data_and_length_byte(tmp_path: Path) -> None:
    """TEP data behind a length byte, data running to the end, the b bit, a non-ENO kind 253."""
    options = [
        SynEnoOption(
            (
                GlobalSuboption(passive_role=True, application_aware=True),
                TepSuboption(0x20, v=True, data=bytes(range(9))),
                TepSuboption(0x23),
                TepSuboption(0x21, v=True, data=b"\xaa\xbb"),
            )
        ),
        SynEnoOption((TepSuboption(0x22, v=True, data=bytes(32)), TepSuboption(0x24)), experimental=True),
    ]
    pcap = tmp_path / "crafted.pcap"
    src, dst = "10.0.0.1", "10.0.0.2"
    with PcapWriter(pcap) as writer:
        for i, option in enumerate(options):
            seg = TcpSegment(
                src_port=40000 + i,
                dst_port=5001,
                seq=1000,
                ack=0,
                flags=SYN,
                window=65535,
                options=(to_tcp_option(option),),
            )
            writer.write(float(i), _ip(seg, src, dst))
        other = TcpSegment(
            src_port=40009,
            dst_port=5001,
            seq=1,
            ack=1,
            flags=ACK,
            window=65535,
            options=(UnknownOption(253, b"\x12\x34\x01\x02"),),
        )
        writer.write(2.0, _ip(other, src, dst))
    assert _tshark_eno(pcap) == _codec_eno(pcap)
    rows = tshark_fields(
        pcap, ["eno.length_byte", "eno.data_len", "eno.a", "eno.b"], display_filter="frame.number == 1"
    )
    assert rows == [[["0x88"], ["9"], ["1"], ["1"]]]
    # another experiment's kind 253 stays Wireshark's own "Experimental" option
    assert tshark_count(pcap, "tcp.options.experimental.exid == 0x1234 && !eno") == 1


def _ip(seg: TcpSegment, src: str, dst: str) -> bytes:
    from lab.wire.checksum import pack_address

    payload = encode_segment(seg, pack_address(src), pack_address(dst))
    return encode_ip(Ipv4Packet(src=src, dst=dst, protocol=TCP_PROTOCOL, payload=payload))


def _streams(pcap: Path) -> dict[tuple[str, int, str, int], bytes]:
    """Each direction of each TCP connection reassembled by sequence number (first copy of each byte)."""
    isn: dict[tuple, int] = {}
    pieces: dict[tuple, dict[int, bytes]] = defaultdict(dict)
    for _n, ip, seg in _segments(pcap):
        key = (ip.src, seg.src_port, ip.dst, seg.dst_port)
        if seg.flags & SYN:
            isn[key] = seg.seq
        elif seg.payload and key in isn:
            pieces[key].setdefault((seg.seq - isn[key] - 1) % (1 << 32), seg.payload)
    out = {}
    for key, parts in pieces.items():
        stream = bytearray()
        for offset in sorted(parts):
            data = parts[offset]
            if offset <= len(stream) < offset + len(data):
                stream += data[len(stream) - offset :]
        out[key] = bytes(stream)
    return out


def _codec_messages(stream: bytes, tep: int) -> list[tuple[str, int]]:
    """(type, length) of every tcpcrypt message of one direction, read by lab.wire.tcpcrypt."""
    buf = Buffer(stream)
    out = []
    magic = int.from_bytes(stream[:4], "big")
    if magic in (INIT1_MAGIC, INIT2_MAGIC):
        start = buf.tell()
        (pull_init1 if magic == INIT1_MAGIC else pull_init2)(buf, tep=tep)
        out.append(("1" if magic == INIT1_MAGIC else "2", buf.tell() - start))
    while not buf.eof():
        start = buf.tell()
        pull_frame(buf)
        out.append(("3", buf.tell() - start))
    return out


@pytest.mark.parametrize("pcap_name", ["h1-eth0.pcap", "h2-eth0.pcap"])
def test_tcpcrypt_messages_add_up_to_the_stream(bundles: Bundles, pcap_name: str) -> None:
    pcap = bundles["eno-basic"] / "pcaps" / pcap_name
    streams = _streams(pcap)
    assert len(streams) == 2
    fields = ["ip.src", "tcp.srcport", "tcpcrypt.type", "tcpcrypt.message_len", "tcpcrypt.clen"]
    seen: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for src, port, types, message_lens, clens in tshark_fields(pcap, fields, display_filter="tcpcrypt"):
        message_lens, clens = iter(message_lens), iter(clens)
        for kind in types:  # in stream order within the frame
            length = int(next(message_lens)) if kind in ("1", "2") else 3 + int(next(clens))
            seen[(src[-1], port[-1])].append((kind, length))
    for (src, sport, _dst, _dport), stream in streams.items():
        expected = _codec_messages(stream, tep=0x23)
        got = seen[(src, str(sport))]
        assert got == expected, f"{src}:{sport}"
        assert sum(length for _kind, length in got) == len(stream)
    assert tshark_count(pcap, MALFORMED) == 0


def test_no_tcpcrypt_without_a_negotiated_eno(bundles: Bundles) -> None:
    for pcap in (bundles["eno-stripped"] / "pcaps").glob("*.pcap"):
        assert tshark_count(pcap, "tcpcrypt") == 0, pcap.name
    # eno-mismatch: only the connection that agreed on X448 is tcpcrypt
    pcap = bundles["eno-mismatch"] / "pcaps" / "h1-eth0.pcap"
    ports = {row[0][-1] for row in tshark_fields(pcap, ["tcp.dstport"], display_filter="tcpcrypt.type == 1")}
    assert ports == {"5001"}


@pytest.mark.parametrize("scenario", ["hotspot", "port-443"])
def test_iketcp_messages_decode_and_esp_decrypts_in_place(bundles: Bundles, scenario: str, tmp_path: Path) -> None:
    bundle = bundles[scenario]
    keys = key_tables(read_jsonl(bundle / "trace.jsonl")).tshark_options()
    assert keys
    for pcap in sorted((bundle / "pcaps").glob("*.pcap")):
        counted = iketcp_to_udp(pcap, tmp_path / f"{pcap.stem}-udp.pcap")  # our own reassembly and framing
        assert counted.ike_frames >= 4 and counted.esp_frames > 0 and not counted.broken
        fields = [
            "iketcp.type",
            "isakmp.exchangetype",
            "esp.spi",
            "esp.protocol",
            "isakmp.enc.decrypted",
            "_ws.malformed",
            "_ws.expert.severity",
            "iketcp.prefix",
        ]
        rows = tshark_fields(pcap, fields, extra=keys)  # one pass over every frame
        tcp_rows = [row for row in rows if row[0]]
        types = [t for row in tcp_rows for t in row[0]]
        assert types.count("1") == counted.ike_frames, pcap.name
        assert types.count("2") == counted.esp_frames, pcap.name
        # every IKE message reached isakmp, every ESP packet esp, and each decrypted (its next header is
        # read from the decrypted trailer)
        assert sum(len(row[1]) for row in tcp_rows) == counted.ike_frames
        assert sum(len(row[2]) for row in tcp_rows) == counted.esp_frames
        assert sum(len(row[3]) for row in tcp_rows) == counted.esp_frames
        # every IKE message after IKE_SA_INIT (34) is encrypted, and every one decrypts
        encrypted = [row for row in tcp_rows if any(x != "34" for x in row[1])]
        assert len(encrypted) >= 2 and all(row[4] for row in encrypted), pcap.name
        assert not any(row[5] for row in rows), f"malformed in {pcap.name}"
        assert tshark_count(pcap, MALFORMED, extra=keys) == 0, pcap.name
        assert sum(len(row[7]) for row in rows) == 1  # one TCP connection got through, with its one prefix


def test_no_malformed_packet_anywhere(bundles: Bundles) -> None:
    for name in bundles.names:
        keys = key_tables(read_jsonl(bundles[name] / "trace.jsonl")).tshark_options()
        for pcap in ("h1-eth0.pcap", "r1-eth1.pcap"):  # the sender's capture and one a hop away
            assert tshark_count(bundles[name] / "pcaps" / pcap, MALFORMED, extra=keys) == 0, f"{name}/{pcap}"


def test_scripts_load_without_a_lua_error(tmp_path: Path) -> None:
    """A Lua error only prints a warning and tshark goes on: look for it, and use every filter name."""
    import subprocess

    tshark = tshark_or_skip()
    empty = tmp_path / "empty.pcap"
    PcapWriter(empty).close()
    done = subprocess.run(
        [
            tshark,
            *[a for s in SCRIPTS for a in ("-X", f"lua_script:{DIRECTORY / s}")],
            "-r",
            str(empty),
            "-Y",
            "eno || eno.tep || eno.b || tcpcrypt || tcpcrypt.clen || iketcp || iketcp.length",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Lua" not in done.stderr and "rror" not in done.stderr, done.stderr


def test_cli_names_the_directory_and_the_tshark_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dissectors"]) == 0
    out = capsys.readouterr().out
    assert str(DIRECTORY) in out and "lua_script:" in out and "tcp.try_heuristic_first: TRUE" in out
    assert main(["dissectors", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [Path(p).name for p in info["scripts"]] == list(SCRIPTS)
    assert all(Path(p).is_file() for p in info["scripts"])


LIBRESWAN_CAPTURE = Path("/work/shared/spec/captures/ikev2_libreswan_udp_then_tcp_fallback_IMPAIRED_FRAMING.pcap")


def test_libreswan_capture_without_the_length_field_is_flagged_not_misread() -> None:
    """libreswan with the tcp-skip-setsockopt-espintcp impairment sends the prefix, then IKE messages
    without RFC 9329's Length: the prefix decodes, and each such segment is a malformed IKETCP frame."""
    if not LIBRESWAN_CAPTURE.is_file():
        pytest.skip(f"the reference capture {LIBRESWAN_CAPTURE.name} is not on this machine")
    rows = tshark_fields(
        LIBRESWAN_CAPTURE, ["iketcp.prefix", "iketcp.length", "iketcp.malformed"], display_filter="iketcp"
    )
    assert [r[0] for r in rows].count(["IKETCP"]) == 1
    framed = [r for r in rows if r[1]]
    assert len(framed) == 4 and all(r[1] == ["0"] and r[2] for r in framed)  # the 4-byte zero marker read as Length
    assert tshark_count(LIBRESWAN_CAPTURE, "udp && isakmp.exchangetype == 34") == 4  # the UDP attempts before TCP

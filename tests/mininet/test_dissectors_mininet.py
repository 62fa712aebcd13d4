"""The Lua dissectors and the run report on Mininet captures (Ethernet, real kernel forwarding).

The same checks as tests/dissectors/ on bundles the Mininet backend writes:
every ENO option as our codec reads it, tcpcrypt messages that add up to the
stream, every IKE message and ESP packet of the TCP stream decoded and every ESP
packet decrypted with the exported keys, nothing malformed; and a report with
no external reference.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.ike.keylog import key_tables
from lab.ike.pcap import iketcp_to_udp
from lab.mininet.run import run_mininet_scenario
from lab.report import write_report
from lab.scenario import get_scenario
from lab.trace import read_jsonl
from tests.dissectors.conftest import tshark_count, tshark_fields, tshark_or_skip
from tests.dissectors.test_dissectors import MALFORMED, _codec_eno, _codec_messages, _streams, _tshark_eno
from tests.mininet.test_endpoint import clean_machine  # noqa: F401 - a fixture

pytestmark = pytest.mark.mininet


def test_eno_and_tcpcrypt_on_mininet_captures(clean_machine: None, tmp_path: Path) -> None:  # noqa: F811
    tshark_or_skip()
    result = run_mininet_scenario(get_scenario("eno-basic"), seed=1, out_dir=tmp_path / "eno-basic")
    assert result.ok
    pcaps = sorted((tmp_path / "eno-basic" / "pcaps").glob("*.pcap"))
    assert pcaps
    for pcap in pcaps:
        expected = _codec_eno(pcap)
        assert len(expected) >= 3 and _tshark_eno(pcap) == expected, pcap.name
        assert tshark_count(pcap, MALFORMED) == 0, pcap.name
    pcap = tmp_path / "eno-basic" / "pcaps" / "h2-eth0.pcap"
    fields = ["ip.src", "tcp.srcport", "tcpcrypt.type", "tcpcrypt.message_len", "tcpcrypt.clen"]
    seen: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for src, port, types, message_lens, clens in tshark_fields(pcap, fields, display_filter="tcpcrypt"):
        message_lens, clens = iter(message_lens), iter(clens)
        for kind in types:
            length = int(next(message_lens)) if kind in ("1", "2") else 3 + int(next(clens))
            seen.setdefault((src[-1], port[-1]), []).append((kind, length))
    streams = _streams(pcap)
    assert len(streams) == 2
    for (src, sport, _dst, _dport), stream in streams.items():
        assert seen[(src, str(sport))] == _codec_messages(stream, tep=0x23)
    page = write_report(tmp_path / "eno-basic", tmp_path / "eno-basic.html").read_text(encoding="utf-8")
    assert re.search(r"https?://|\bsrc\s*=|<script", page) is None and "TCPCRYPT_ECDHE_Curve25519" in page


def test_iketcp_decrypts_in_place_on_mininet_captures(clean_machine: None, tmp_path: Path) -> None:  # noqa: F811
    tshark_or_skip()
    result = run_mininet_scenario(get_scenario("hotspot"), seed=1, out_dir=tmp_path / "hotspot")
    assert result.ok
    keys = key_tables(read_jsonl(tmp_path / "hotspot" / "trace.jsonl")).tshark_options()
    assert keys
    for pcap in sorted((tmp_path / "hotspot" / "pcaps").glob("*.pcap")):
        counted = iketcp_to_udp(pcap, tmp_path / f"{pcap.stem}-udp.pcap")
        assert counted.ike_frames >= 4 and counted.esp_frames > 0 and not counted.broken
        rows = [
            r for r in tshark_fields(pcap, ["iketcp.type", "isakmp.exchangetype", "esp.protocol"], extra=keys) if r[0]
        ]
        types = [t for row in rows for t in row[0]]
        assert types.count("1") == counted.ike_frames and types.count("2") == counted.esp_frames, pcap.name
        assert sum(len(row[1]) for row in rows) == counted.ike_frames
        assert sum(len(row[2]) for row in rows) == counted.esp_frames  # every ESP packet decrypted
        assert tshark_count(pcap, MALFORMED, extra=keys) == 0, pcap.name

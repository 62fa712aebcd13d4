"""The Lua dissectors on a capture of our IKE endpoint against libreswan 4.10's pluto over TCP
(RFC 9329: the IKETCP prefix, then length-framed messages), in both roles (needs root).

Every IKE message on the wire must decode through ``iketcp`` into Wireshark's ``isakmp`` (as many
as our own reassembly, :func:`lab.ike.pcap.iketcp_to_udp`, finds), every encrypted one must
decrypt with the keys our endpoint exported, straight from the TCP capture, and nothing may be
malformed. pluto runs childless here (no kernel ESP on this machine, see
tests/ike/test_interop_libreswan.py), so such a session carries no ESP packet; the test says so
by counting none, and ESP decryption in place is checked on the simulator's hotspot and port-443
captures (test_dissectors.py) and on Mininet (tests/mininet/test_dissectors_mininet.py).
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.ike.keylog import key_tables
from lab.ike.pcap import iketcp_to_udp
from lab.trace import read_jsonl
from tests.dissectors.conftest import tshark_count, tshark_fields, tshark_or_skip
from tests.dissectors.test_dissectors import MALFORMED
from tests.ike.test_interop_libreswan import OURS, PSK, REPO, Lab, initiator_args, sh

pytestmark = [pytest.mark.kernel, pytest.mark.xdist_group("libreswan")]

IKE_SA_INIT, IKE_AUTH, INFORMATIONAL = "34", "35", "37"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and pluto")
    tshark_or_skip()
    setup = Lab(tmp_path)
    try:
        yield setup
    finally:
        setup.close()


def captured(lab: Lab, capture: Path, session: Callable[[], None]) -> None:
    """Run ``session`` while tcpdump writes our namespace's TCP 4500 packets to ``capture``."""
    dump = subprocess.Popen(
        [*lab.at(lab.ours), "tcpdump", "--immediate-mode", "-U", "-n", "-i", "v" + lab.ours, "-w", str(capture),
         "tcp port 4500 or icmp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        ready, _, _ = select.select([dump.stderr], [], [], 15.0)
        assert ready and "listening on" in dump.stderr.readline(), "tcpdump did not start"
        for _ in range(50):  # capturing for real once a probe shows up in the file
            sh(*lab.at(lab.ours), "ping", "-c", "1", "-W", "1", "10.89.1.2", check=False)
            if capture.exists() and capture.stat().st_size > 24:
                break
            time.sleep(0.1)
        session()
    finally:
        time.sleep(0.3)  # the last FIN/ACKs
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)


def check_capture(capture: Path, trace: Path, tmp_path: Path) -> dict[str, int]:
    """The assertions of the module docstring; returns what was counted."""
    keys = key_tables(read_jsonl(trace)).tshark_options()
    assert keys, "our endpoint exported no keys"
    ours = iketcp_to_udp(capture, tmp_path / "as-udp.pcap")  # our own reassembly of the same TCP stream
    assert ours.ike_frames >= 4 and not ours.broken
    fields = ["iketcp.type", "isakmp.exchangetype", "isakmp.enc.decrypted", "esp.spi", "iketcp.prefix", "tcp.stream"]
    rows = tshark_fields(capture, fields, extra=keys)
    types = [t for row in rows for t in row[0]]
    exchanges = [x for row in rows for x in row[1]]
    assert types.count("1") == ours.ike_frames and len(exchanges) == ours.ike_frames  # each IKE message to isakmp
    assert types.count("2") == ours.esp_frames == 0  # childless: no ESP on the wire (see the docstring)
    assert sum(len(row[3]) for row in rows) == 0
    assert {IKE_SA_INIT, IKE_AUTH} <= set(exchanges)
    encrypted = [row for row in rows if any(x != IKE_SA_INIT for x in row[1])]
    assert len(encrypted) >= 2 and all(len(row[2]) == len(row[1]) for row in encrypted)  # every one decrypts
    connections = {row[5][0] for row in rows if row[0]}
    prefixed = [row[5][0] for row in rows if row[4]]
    assert sorted(prefixed) == sorted(connections)  # each TCP connection starts with its one IKETCP prefix
    assert tshark_count(capture, MALFORMED, extra=keys) == 0
    return {"ike": ours.ike_frames, "encrypted": len(encrypted), "connections": len(connections)}


def test_our_initiator_against_pluto_over_tcp_decodes_and_decrypts(lab: Lab, tmp_path: Path) -> None:
    lab.up()
    capture, trace = tmp_path / "initiator.pcap", tmp_path / "trace.jsonl"
    result: list[list[dict]] = []

    def session() -> None:
        args = initiator_args("--transport", "tcp", "--keys", str(tmp_path / "keys"), "--trace", str(trace))
        result.append(lab.ours_cmd(*args))

    captured(lab, capture, session)
    events = result[0]
    assert events[0]["rc"] == 0, (events, lab.log()[-3000:])
    assert "IKETCP ACCEPTED" in lab.log()
    counted = check_capture(capture, trace, tmp_path)
    assert counted["ike"] >= 8  # INVALID_KE round, IKE_SA_INIT, IKE_AUTH, liveness, delete: each way


def test_pluto_initiating_to_our_responder_over_tcp_decodes_and_decrypts(lab: Lab, tmp_path: Path) -> None:
    """pluto writes the IKETCP prefix and the framing here; our responder exports the keys."""
    lab.up()
    capture, trace = tmp_path / "responder.pcap", tmp_path / "trace.jsonl"
    outcome: dict[str, str] = {}

    def session() -> None:
        responder = subprocess.Popen(
            [*lab.at(lab.ours), sys.executable, "-m", "lab.scenario.ike_live", "respond", "--local", OURS, "--psk",
             PSK, "--local-id", "west", "--remote-id", "east", "--timeout", "25", "--linger", "0.5",
             "--keys", str(tmp_path / "keys"), "--trace", str(trace)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30.0  # until our responder listens on TCP 4500
            while not sh(*lab.at(lab.ours), "ss", "-Hltn", "sport = :4500", check=False).stdout.strip():
                assert responder.poll() is None, f"our responder exited: {responder.stderr.read()[-2000:]}"
                assert time.monotonic() < deadline, "our responder did not listen on TCP 4500 within 30 s"
                time.sleep(0.02)
            outcome["whack"] = lab.whack_initiate()
            outcome["out"], outcome["err"] = responder.communicate(timeout=40)
        finally:
            if responder.poll() is None:
                responder.kill()
                responder.wait(timeout=5)
        outcome["rc"] = str(responder.returncode)

    captured(lab, capture, session)
    assert outcome["rc"] == "0", (outcome, lab.log()[-3000:])
    events = [json.loads(line) for line in outcome["out"].splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["IkeSaEstablished"] and events[0]["transport"] == "tcp"
    check_capture(capture, trace, tmp_path)

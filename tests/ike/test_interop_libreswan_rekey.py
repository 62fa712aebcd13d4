"""IKE SA rekeying and libreswan's default proposals, against pluto 4.10 in namespaces (needs root).

The set-up is ``test_interop_libreswan``'s: pluto with the espintcp shim, childless
(no kernel ESP here, so no Child SA can be installed on pluto's side: the Child SA
surviving a rekey is checked between two lab endpoints in ``test_rekey``). pluto's
``conn`` has no ``ike=``/``esp=`` lines: it offers and accepts its defaults.

pluto rekeys the IKE SA when told with ``whack --impair event-v2-rekey:<serial>``
(the event ``ikelifetime`` would schedule, without waiting for it); we rekey with
``ike_live --rekey-after``. After either rekey the old SA is deleted, a liveness
check runs on the new SA and our Delete ends it; tshark decrypts both IKE SAs'
messages with the keys ``lab.ike.keylog`` exports.
"""

from __future__ import annotations

import json
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab.ike.keylog import key_tables
from lab.ike.pcap import iketcp_to_udp
from lab.trace import read_jsonl
from tests.ike.test_interop_libreswan import (
    REPO,
    WHACK,
    Lab,
    initiator_args,
    pytestmark,  # noqa: F401  (root only, kernel mark)
    sh,
)


@pytest.fixture(name="lab")
def lab_fixture(tmp_path: Path) -> Iterator[Lab]:
    setup = Lab(tmp_path)
    try:
        yield setup
    finally:
        setup.close()


SK = "46"  # payload type numbers as tshark prints them
SA, KE, NONCE, DELETE = "33", "34", "40", "42"


@contextmanager
def capture(lab: Lab, path: Path, bpf: str) -> Iterator[None]:
    """tcpdump on our side's interface, running for real once a probe shows up in the file."""
    dump = subprocess.Popen(
        [*lab.at(lab.ours), "tcpdump", "--immediate-mode", "-U", "-n", "-i", "v" + lab.ours, "-w", str(path), bpf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([dump.stderr], [], [], 15.0)
        assert ready and "listening on" in dump.stderr.readline(), "tcpdump did not start"
        for _ in range(50):
            sh(*lab.at(lab.ours), "ping", "-c", "1", "-W", "1", "10.89.1.2", check=False)
            if path.exists() and path.stat().st_size > 24:
                break
            time.sleep(0.1)
        yield
    finally:
        time.sleep(0.3)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)


def pluto_ike_serial(lab: Lab) -> str:
    states = sh(*lab.at(lab.peer), str(WHACK), "--ctlsocket", str(lab.dir / "run" / "pluto.ctl"), "--showstates").stdout
    match = re.search(r"#(\d+): .*STATE_V2_ESTABLISHED_IKE_SA", states)
    assert match, states
    return match.group(1)


def run_ours(lab: Lab, args: list[str], *, on_established: list[str] | None = None) -> list[dict]:
    """Our initiator; when it is up, ``on_established`` runs whack with those arguments."""
    proc = subprocess.Popen(
        [*lab.at(lab.ours), sys.executable, "-m", "lab.scenario.ike_live", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    events = []
    started = time.monotonic()
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            event["wall_s"] = round(time.monotonic() - started, 3)
            events.append(event)
            if event["event"] == "IkeSaEstablished" and on_established is not None:
                ctl = str(lab.dir / "run" / "pluto.ctl")
                extra = [a.replace("{serial}", pluto_ike_serial(lab)) for a in on_established]
                sh(*lab.at(lab.peer), str(WHACK), "--ctlsocket", ctl, *extra, check=False)
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0, (events, proc.stderr.read()[-2000:], lab.log()[-4000:])
    return events


def tshark_payloads(capture_file: Path, trace: Path) -> list[tuple[str, str, str, set[str]]]:
    """(SPIi, SPIr, exchange type, payload types) per IKE message, decrypted with the exported keys."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    tables = key_tables(read_jsonl(trace))
    out = sh(
        tshark, "-n", "-r", str(capture_file), *tables.tshark_options(), "-T", "fields",
        "-e", "isakmp.ispi", "-e", "isakmp.rspi", "-e", "isakmp.exchangetype", "-e", "isakmp.typepayload",
    ).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[2]:
            rows.append((fields[0].replace(":", ""), fields[1].replace(":", ""), fields[2], set(fields[3].split(","))))
    return rows


def check_rekey_decrypts(rows: list[tuple[str, str, str, set[str]]], rekeyed: dict) -> None:
    old = (rekeyed["old_spi_i"], rekeyed["old_spi_r"])
    new = (rekeyed["spi_i"], rekeyed["spi_r"])
    create = [p for i, r, x, p in rows if (i, r) == old and x == "36"]
    assert len(create) == 2 and all({SK, SA, NONCE, KE} <= p for p in create), rows  # rekey, old SA's keys
    closing = [p for i, r, x, p in rows if (i, r) == new and x == "37" and DELETE in p]
    assert closing, rows  # our Delete on the new SA, decrypted with the new SA's keys


def test_pluto_rekeys_the_ike_sa_over_tcp_and_tshark_decrypts_both(lab: Lab, tmp_path: Path) -> None:
    lab.up()
    pcap, trace = tmp_path / "ours.pcap", tmp_path / "trace.jsonl"
    with capture(lab, pcap, "tcp port 4500 or icmp"):
        events = run_ours(
            lab,
            initiator_args(
                "--transport", "tcp", "--until-rekeyed", "1", "--trace", str(trace), "--keys", str(tmp_path / "keys")
            ),
            on_established=["--impair", "event-v2-rekey:{serial}"],
        )
    names = [e["event"] for e in events]
    assert names == ["IkeSaEstablished", "IkeSaRekeyed", "old_sa_deleted", "LivenessChecked", "IkeSaDeleted"]
    rekeyed = events[1]
    assert rekeyed["initiated"] is False and rekeyed["spi_i"] != events[0]["spi_i"]
    log = lab.log_with("initiator rekeyed IKE SA", "IKE SA expired")
    assert "initiator rekeyed IKE SA" in log, log[-3000:]
    records = list(read_jsonl(trace))
    states = [r.data for r in records if r.layer == "ike" and r.name == "state_updated" and r.data.get("to")]
    assert {"from": "ESTABLISHED", "to": "REKEYED"}.items() <= next(s for s in states if s["to"] == "REKEYED").items()
    assert any(s["to"] == "CLOSED" and s["input"] == "recv_delete" for s in states)  # pluto deleted the old SA
    udp = tmp_path / "ours_udp.pcap"
    conversion = iketcp_to_udp(pcap, udp)
    assert not conversion.broken
    check_rekey_decrypts(tshark_payloads(udp, trace), rekeyed)


@pytest.mark.parametrize(
    ("transport", "extra", "pluto_says"),
    [
        pytest.param("tcp", ["--offer-all", "--encr", "aes-cbc"], "cipher=AES_CBC_256 integ=HMAC_SHA2_512_256 prf=HMAC_SHA2_512 group=MODP2048", id="tcp-aes-cbc-sha2-512"),
        pytest.param("udp", ["--offer-all"], "cipher=AES_GCM_16_256 integ=n/a prf=HMAC_SHA2_512 group=MODP2048", id="udp-gcm-prf-sha2-512"),
        pytest.param("udp", ["--dh-group", "21"], "group=DH21", id="udp-p521"),
        pytest.param("tcp", ["--dh-group", "20", "--offer-all", "--encr", "aes-cbc"], "group=DH20", id="tcp-p384-aes-cbc"),
    ],
)  # fmt: skip
def test_we_rekey_the_ike_sa_with_pluto_defaults(
    lab: Lab, tmp_path: Path, transport: str, extra: list[str], pluto_says: str
) -> None:
    lab.up(enable_tcp="yes" if transport == "tcp" else "no")
    pcap, trace = tmp_path / "ours.pcap", tmp_path / "trace.jsonl"
    bpf = "tcp port 4500 or icmp" if transport == "tcp" else "udp port 500 or udp port 4500 or icmp"
    with capture(lab, pcap, bpf):
        events = run_ours(
            lab,
            initiator_args(
                "--transport",
                transport,
                "--rekey-after",
                "0.2",
                "--until-rekeyed",
                "1",
                "--trace",
                str(trace),
                "--keys",
                str(tmp_path / "keys"),
                *extra,
            ),
        )
    names = [e["event"] for e in events]
    assert names == ["IkeSaEstablished", "IkeSaRekeyed", "old_sa_deleted", "LivenessChecked", "IkeSaDeleted"]
    assert events[0]["transport"] == transport and events[1]["initiated"] is True
    log = lab.log_with("responder rekeyed IKE SA")
    assert "responder rekeyed IKE SA" in log, log[-3000:]
    assert re.search(r"responder rekeyed IKE SA #\d+ \{[^}]*" + re.escape(pluto_says), log), log[-3000:]
    if transport == "tcp":
        udp = tmp_path / "ours_udp.pcap"
        assert not iketcp_to_udp(pcap, udp).broken
        pcap = udp
    check_rekey_decrypts(tshark_payloads(pcap, trace), events[1])


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_pluto_defaults_establish_with_our_responder(lab: Lab, tmp_path: Path, transport: str) -> None:
    lab.up(enable_tcp="yes" if transport == "tcp" else "no")
    trace = tmp_path / "trace.jsonl"
    responder = subprocess.Popen(
        [*lab.at(lab.ours), sys.executable, "-m", "lab.scenario.ike_live", "respond", "--local", "10.89.1.1",
         "--psk", "lab-psk-not-secret-0123456789", "--local-id", "west", "--remote-id", "east", "--timeout", "25",
         "--linger", "0.5", "--trace", str(trace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30.0
        while not sh(
            *lab.at(lab.ours), "ss", "-Hlun" if transport == "udp" else "-Hltn", "sport = :4500", check=False
        ).stdout.strip():
            assert responder.poll() is None, responder.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "our responder did not listen within 30 s"
            time.sleep(0.02)
        whack = lab.whack_initiate()
        out, err = responder.communicate(timeout=40)
    finally:
        if responder.poll() is None:
            responder.kill()
            responder.wait(timeout=5)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert responder.returncode == 0, (out, err, whack, lab.log()[-3000:])
    assert [e["event"] for e in events] == ["IkeSaEstablished"] and events[0]["transport"] == transport
    assert "initiator established IKE SA" in lab.log()
    keys = [r.data for r in read_jsonl(trace) if r.layer == "ike" and r.name == "key_updated"]
    # pluto's default proposals lead with AES_GCM_16_256, PRF HMAC_SHA2_512 then _256, KE in MODP2048
    assert (keys[-1]["encr"], keys[-1]["key_bits"], keys[-1]["prf"], keys[-1]["dh_group"]) == (
        "AES-GCM-16",
        256,
        "PRF_HMAC_SHA2_512",
        14,
    )


def test_refused_tcp_reconnect_ends_our_ike_sa_at_once(lab: Lab, tmp_path: Path) -> None:
    """pluto dies (SIGKILL: no Delete); our reconnect meets a closed port, and the SA ends at once, saying why."""
    lab.up()
    trace = tmp_path / "trace.jsonl"
    proc = subprocess.Popen(
        [*lab.at(lab.ours), sys.executable, "-m", "lab.scenario.ike_live",
         *initiator_args("--transport", "tcp", "--wait-deleted", "--trace", str(trace))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    killed_at = deleted_at = None
    events = []
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            events.append(event)
            if event["event"] == "IkeSaEstablished":
                assert lab.pluto is not None
                lab.pluto.kill()
                lab.pluto.wait(timeout=10)
                killed_at = time.monotonic()
            elif event["event"] == "IkeSaDeleted":
                deleted_at = time.monotonic()
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0, (events, proc.stderr.read()[-2000:])
    assert killed_at is not None and deleted_at is not None, events
    assert deleted_at - killed_at < 2.0  # not the 31.5 s response timeout
    (deleted,) = [e for e in events if e["event"] == "IkeSaDeleted"]
    assert deleted["error"] and "refused" in deleted["reason"], deleted
    records = [r.data for r in read_jsonl(trace) if r.layer == "iketcp" and r.data.get("event") == "peer_gone"]
    assert records and "refused" in records[0]["reason"]

"""Interop with libreswan 4.10's pluto over real kernel TCP/UDP in network namespaces (needs root).

Topology (addresses private to the namespaces the test creates)::

    lab (ours) 10.89.1.1 ──── router ──── 10.89.2.1 pluto

pluto runs with peers/espintcp_shim.c preloaded (compiled here into a tmp
dir): this kernel has no espintcp ULP, and the shim does the RFC 8229
length framing in user space. Without kernel ESP pluto cannot install a
Child SA, so it runs childless (``--impair omit-v2-ike-auth-child``) and we
send childless IKE_AUTH (RFC 6023). Our side is ``python -m lab.scenario.ike_live``:
the lab's IKE over the kernel's sockets.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.ike.keylog import IKEV2_TABLE
from lab.ike.pcap import iketcp_to_udp
from lab.trace import read_jsonl

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

REPO = Path(__file__).resolve().parents[2]
PLUTO = Path("/usr/libexec/ipsec/pluto")
WHACK = Path("/usr/libexec/ipsec/whack")
ADDCONN = Path("/usr/libexec/ipsec/addconn")
SHIM_SOURCE = Path("/work/shared/peers/espintcp_shim.c")
PSK = "lab-psk-not-secret-0123456789"
OURS, PLUTO_ADDR = "10.89.1.1", "10.89.2.1"


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=check)


class Lab:
    """Three namespaces, one pluto; everything is removed by name/PID on close."""

    def __init__(self, tmp: Path) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ours, self.router, self.peer = f"ikA{tag}", f"ikR{tag}", f"ikP{tag}"
        self.tmp = tmp
        self.pluto: subprocess.Popen[bytes] | None = None
        self.dir = tmp / "pluto"
        self.holders: dict[str, subprocess.Popen[bytes]] = {}

    def pid(self, ns: str) -> str:
        return str(self.holders[ns].pid)

    def at(self, ns: str) -> list[str]:
        """The command prefix that runs a program in namespace ``ns``."""
        return ["nsenter", "-t", self.pid(ns), "-n"]

    def up(
        self,
        *,
        block_udp: bool = False,
        enable_tcp: str = "yes",
        conn_auth: str | None = None,
        nss_setup: Callable[[Path], None] | None = None,
    ) -> None:
        """``conn_auth`` replaces the conn's PSK lines (authby, ids); ``nss_setup(nss_dir)`` fills pluto's NSS db."""
        missing = [p for p in (PLUTO, WHACK, ADDCONN) if not p.exists()]
        if missing or shutil.which("certutil") is None:
            pytest.fail("libreswan is not installed (apt-get install libreswan; ./run-tests installs it)")
        if shutil.which("gcc") is None:
            pytest.fail("gcc is needed to build peers/espintcp_shim.c")
        shim = self.tmp / "espintcp_shim.so"
        sh("gcc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(SHIM_SOURCE), "-ldl")
        for ns in (self.ours, self.router, self.peer):  # unnamed namespaces: nothing shows up in `ip netns`
            holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
            self.holders[ns] = holder
            for _ in range(100):
                if os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                    break
                time.sleep(0.01)
            sh(*self.at(ns), "ip", "link", "set", "lo", "up")
        sh(
            "ip",
            "link",
            "add",
            "v" + self.ours,
            "netns",
            self.pid(self.ours),
            "type",
            "veth",
            "peer",
            "name",
            "ra" + self.ours[3:],
            "netns",
            self.pid(self.router),
        )
        sh(
            "ip",
            "link",
            "add",
            "v" + self.peer,
            "netns",
            self.pid(self.peer),
            "type",
            "veth",
            "peer",
            "name",
            "rb" + self.peer[3:],
            "netns",
            self.pid(self.router),
        )
        for ns, dev, addr in (
            (self.ours, "v" + self.ours, f"{OURS}/24"),
            (self.peer, "v" + self.peer, f"{PLUTO_ADDR}/24"),
            (self.router, "ra" + self.ours[3:], "10.89.1.2/24"),
            (self.router, "rb" + self.peer[3:], "10.89.2.2/24"),
        ):
            sh(*self.at(ns), "ip", "addr", "add", addr, "dev", dev)
            sh(*self.at(ns), "ip", "link", "set", dev, "up")
        sh(*self.at(self.router), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh(*self.at(self.ours), "ip", "route", "add", "default", "via", "10.89.1.2")
        sh(*self.at(self.peer), "ip", "route", "add", "default", "via", "10.89.2.2")
        if block_udp:
            sh(*self.at(self.router), "iptables", "-A", "FORWARD", "-p", "udp", "-j", "DROP")
        d = self.dir
        (d / "nss").mkdir(parents=True)
        (d / "run").mkdir()
        sh("certutil", "-N", "-d", f"sql:{d / 'nss'}", "--empty-password")
        if nss_setup is not None:
            nss_setup(d / "nss")
        auth = conn_auth or "\tauthby=secret\n\tleftid=@east\n\trightid=@west\n"
        (d / "ipsec.conf").write_text(
            "config setup\n"
            f"\tlogfile={d / 'pluto.log'}\n\tlogappend=no\n\tlisten-tcp=yes\n\tdumpdir={d / 'run'}\n\n"
            f"conn t\n\tikev2=yes\n{auth}"
            f"\tleft={PLUTO_ADDR}\n\tright={OURS}\n"
            f"\ttype=transport\n\tenable-tcp={enable_tcp}\n\ttcp-remoteport=4500\n\tretransmit-timeout=10s\n\tauto=add\n"
        )
        secrets = d / "ipsec.secrets"
        secrets.write_text(f'@east @west : PSK "{PSK}"\n')
        secrets.chmod(0o600)
        env = dict(os.environ, LD_PRELOAD=str(shim))
        self.pluto = subprocess.Popen(
            [*self.at(self.peer), str(PLUTO), "--impair", "omit-v2-ike-auth-child", "--config", str(d / "ipsec.conf"),
             "--nssdir", str(d / "nss"), "--rundir", str(d / "run"), "--secretsfile", str(secrets), "--ipsecdir", str(d),
             "--listen-tcp", "--nofork"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        ctl = d / "run" / "pluto.ctl"
        for _ in range(100):
            if ctl.exists():
                break
            time.sleep(0.05)
        sh(
            *self.at(self.peer),
            str(ADDCONN),
            "--config",
            str(d / "ipsec.conf"),
            "--ctlsocket",
            str(ctl),
            "--autoall",
        )

    def ours_cmd(self, *args: str, timeout: float = 40) -> list[dict]:
        proc = subprocess.run(
            [*self.at(self.ours), sys.executable, "-m", "lab.scenario.ike_live", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            check=False,
        )
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        return [{"rc": proc.returncode, "stderr": proc.stderr[-2000:]}, *events]

    def whack_initiate(self) -> str:
        ctl = self.dir / "run" / "pluto.ctl"
        return sh(
            *self.at(self.peer),
            str(WHACK),
            "--ctlsocket",
            str(ctl),
            "--name",
            "t",
            "--initiate",
            timeout=30,
            check=False,
        ).stdout

    def log(self) -> str:
        path = self.dir / "pluto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_with(self, *needles: str, timeout_s: float = 5.0) -> str:
        """pluto's log once it holds every one of ``needles`` (pluto may write its lines
        a little after our side is done, on a loaded machine), or as it is at the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            log = self.log()
            if all(n in log for n in needles) or time.monotonic() >= deadline:
                return log
            time.sleep(0.1)

    def close(self) -> None:
        if self.pluto is not None and self.pluto.poll() is None:
            self.pluto.send_signal(signal.SIGTERM)
            try:
                self.pluto.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.pluto.kill()
                self.pluto.wait(timeout=5)
        for holder in self.holders.values():  # the namespaces go with their last process
            holder.kill()
            holder.wait(timeout=5)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    setup = Lab(tmp_path)
    try:
        yield setup
    finally:
        setup.close()


def initiator_args(*extra: str) -> list[str]:
    return [
        "initiate",
        "--local",
        OURS,
        "--remote",
        PLUTO_ADDR,
        "--psk",
        PSK,
        "--local-id",
        "west",
        "--remote-id",
        "east",
        "--childless",
        "--timeout",
        "25",
        *extra,
    ]


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events[1:]]


def test_our_initiator_with_pluto_over_tcp_and_tshark_decrypts_our_ike_auth(lab: Lab, tmp_path: Path) -> None:
    lab.up()
    capture = tmp_path / "ours.pcap"
    dump = subprocess.Popen(
        [
            *lab.at(lab.ours),
            "tcpdump",
            "--immediate-mode",  # no block timeout: nothing left in the ring when it stops
            "-U",
            "-n",
            "-i",
            "v" + lab.ours,
            "-w",
            str(capture),
            "tcp port 4500 or icmp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([dump.stderr], [], [], 15.0)
        assert ready and "listening on" in dump.stderr.readline(), "tcpdump did not start"
        for _ in range(50):  # capturing for real once a probe shows up in the file
            sh(*lab.at(lab.ours), "ping", "-c", "1", "-W", "1", "10.89.1.2", check=False)
            if capture.exists() and capture.stat().st_size > 24:
                break
            time.sleep(0.1)
        keys = tmp_path / "keys"
        events = lab.ours_cmd(*initiator_args("--transport", "tcp", "--keys", str(keys)))
    finally:
        time.sleep(0.3)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
    assert events[0]["rc"] == 0, (events, lab.log()[-3000:])
    assert names(events) == ["IkeSaEstablished", "LivenessChecked", "IkeSaDeleted"]
    assert events[1]["transport"] == "tcp" and events[1]["port"] == 4500
    log = lab.log()
    assert "responder established IKE SA; authenticated peer using authby=secret and ID_FQDN '@west'" in log
    assert "IKETCP ACCEPTED" in log
    # pluto chose MODP2048 first: our initiator followed its INVALID_KE_PAYLOAD (RFC 7296 §1.2)
    assert "INVALID_KE_PAYLOAD" in log
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    udp = tmp_path / "ours_udp.pcap"
    conversion = iketcp_to_udp(capture, udp)
    assert conversion.ike_frames >= 8 and not conversion.broken  # pluto's frames parse as RFC 9329 framing
    record = (keys / IKEV2_TABLE).read_text().splitlines()[0]
    out = sh(
        tshark,
        "-n",
        "-r",
        str(udp),
        "-o",
        f"uat:{IKEV2_TABLE}:{record}",
        "-T",
        "fields",
        "-e",
        "isakmp.exchangetype",
        "-e",
        "isakmp.typepayload",
        "-e",
        "isakmp.id.data",
    ).stdout
    auth = [line.split("\t") for line in out.splitlines() if line.startswith("35\t")]
    assert len(auth) == 2
    assert {"46", "35", "39"} <= set(auth[0][1].split(","))  # SK{IDi, AUTH} decrypted from our keys
    assert {"46", "36", "39"} <= set(auth[1][1].split(","))  # pluto's SK{IDr, AUTH} decrypted too


def test_our_responder_with_pluto_initiating_over_tcp(lab: Lab) -> None:
    lab.up()
    responder = subprocess.Popen(
        [*lab.at(lab.ours), sys.executable, "-m", "lab.scenario.ike_live", "respond", "--local", OURS, "--psk", PSK,
         "--local-id", "west", "--remote-id", "east", "--timeout", "25", "--linger", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30.0  # until our responder listens on TCP 4500 (bounded; a busy machine is slow)
        while not sh(*lab.at(lab.ours), "ss", "-Hltn", "sport = :4500", check=False).stdout.strip():
            assert responder.poll() is None, f"our responder exited: {responder.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "our responder did not listen on TCP 4500 within 30 s"
            time.sleep(0.02)
        whack = lab.whack_initiate()
        out, err = responder.communicate(timeout=40)
    finally:
        if responder.poll() is None:
            responder.kill()
            responder.wait(timeout=5)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert responder.returncode == 0, (out, err, whack, lab.log()[-3000:])
    assert [e["event"] for e in events] == ["IkeSaEstablished"]
    assert events[0]["transport"] == "tcp"
    assert "initiator established IKE SA; authenticated peer using authby=secret and ID_FQDN '@west'" in lab.log()


def test_our_initiator_falls_back_to_tcp_through_a_udp_blocking_router(lab: Lab) -> None:
    lab.up(block_udp=True)
    events = lab.ours_cmd(*initiator_args("--transport", "fallback", "--udp-timeout", "1.5"))
    assert events[0]["rc"] == 0, (events, lab.log()[-3000:])
    assert names(events) == ["FallbackToTcp", "IkeSaEstablished", "LivenessChecked", "IkeSaDeleted"]
    assert events[2]["transport"] == "tcp"
    log = lab.log_with("responder established IKE SA", "sent IKE_SA_INIT reply")
    assert "responder established IKE SA" in log, log[-3000:]
    assert "sent IKE_SA_INIT reply" in log, log[-3000:]
    assert "from 10.89.1.1:500" not in log, log[-3000:]  # no UDP reached pluto


def test_our_initiator_with_pluto_over_udp_moves_to_4500(lab: Lab, tmp_path: Path) -> None:
    lab.up()
    trace = tmp_path / "trace.jsonl"
    events = lab.ours_cmd(*initiator_args("--transport", "udp", "--trace", str(trace)))
    assert events[0]["rc"] == 0, (events, lab.log()[-3000:])
    assert names(events) == ["IkeSaEstablished", "LivenessChecked", "IkeSaDeleted"]
    assert events[1]["transport"] == "udp" and events[1]["port"] == 4500
    assert "responder established IKE SA" in lab.log()
    sent = [
        (r.data["exchange"], r.data["port"]) for r in read_jsonl(trace) if r.layer == "ike" and r.name == "segment_sent"
    ]
    assert sent[0] == ("IKE_SA_INIT", 500) and ("IKE_AUTH", 4500) in sent  # RFC 7296 §2.23: IKE_AUTH on 4500

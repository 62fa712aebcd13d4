"""Our user-space MPTCP against Linux MPTCP on real packets (two TUN devices, own netns)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("mptcp_interop.py")
SIZE = 16 * 1024 * 1024

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: TUN devices and MPTCP endpoints in a new netns"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="the kernel has no /dev/net/tun"),
    pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None, reason="needs unshare and ip"),
    pytest.mark.skipif(not Path("/proc/sys/net/mptcp/enabled").exists(), reason="the kernel has no MPTCP"),
]


def _run(*args: str) -> dict:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, str(SCRIPT), "--size", str(SIZE), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "client_timeout" not in result, result
    return result


def _check(result: dict, *, checksum: bool) -> None:
    client, server = result["client"], result["server"]
    # our client -> kernel server: MPTCP on the kernel's side, byte-exact, tokens agree
    assert client["kernel_info"]["is_mptcp"] == 1
    assert client["kernel_received"] == SIZE and client["sha_ok"] is True
    assert client["kernel_info"]["token"] == client["remote_token"]
    assert client["kernel_info"]["csum_enabled"] == (1 if checksum else 0) and client["checksum"] is checksum
    trace = client["trace"]
    assert trace["fallback"] == [] and trace["errors"] == []
    assert "10.82.0.1" in trace["addresses_added"]  # the kernel's ADD_ADDR, HMAC verified
    assert len(trace["established_subflows"]) >= 2  # MP_JOIN subflows
    assert sum(1 for n in client["bytes_per_subflow"].values() if n > 0) >= 2  # data on more than one subflow
    assert {"MP_CAPABLE", "MP_JOIN", "DSS", "ADD_ADDR"} <= set(trace["received"])
    # kernel client -> our server: the kernel joins from its second address and accepts our ADD_ADDR
    assert server["greeting"] == "HELLO\n"
    assert server["bytes_ok"] is True and server["sha_echo_ok"] is True
    assert server["kernel_info"]["is_mptcp"] == 1 and server["kernel_info"]["subflows"] >= 1
    assert server["kernel_info"]["add_addr_accepted"] == 1
    assert server["kernel_info"]["token"] in server["remote_tokens"]
    assert len(server["trace"]["established_subflows"]) >= 2
    assert server["trace"]["fallback"] == [] and server["trace"]["errors"] == []


def test_mptcp_interoperates_with_linux_both_ways_and_falls_back_through_a_stripper() -> None:
    result = _run("--strip")
    _check(result, checksum=False)
    stripped = result["stripped"]
    assert stripped["sha_ok"] is True and stripped["kernel_received"] == SIZE
    assert stripped["kernel_info"]["is_mptcp"] == 0
    assert stripped["fallback"] == "no MP_CAPABLE in the SYN/ACK"


def test_mptcp_interoperates_with_linux_with_dss_checksums() -> None:
    _check(_run("--checksum"), checksum=True)

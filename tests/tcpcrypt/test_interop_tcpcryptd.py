"""Draft-compatible mode against the reference daemon tcpcryptd (scslab/tcpcrypt, tcpcrypt-02 + ENO-03).

tcpcryptd is in no package registry; the test runs when it is on PATH (built
from its public repository, with its ``iptables.sh`` next to the binary or
named by ``TCPCRYPTD_IPTABLES``) and skips with the reason otherwise. It runs
in a fresh network namespace: the daemon, in its Linux proxy mode, encrypts a
kernel client's connection, and our stack, on a TUN device, answers in the
``draft02`` profile (ENO kind 253/ExID 0x454E without the b bit, one-byte
cipher identifiers, uncompressed P-256 points, tcpcryptd's key and IV
construction, a bare TCP FIN as end of stream). With ``tcnetstat`` (built
alongside) on PATH, the daemon's session ID is compared with ours.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("tcpcryptd_interop.py")

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        shutil.which("tcpcryptd") is None,
        reason="tcpcryptd is not on PATH (it is in no package registry: build it from github.com/scslab/tcpcrypt)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: TUN device, NFQUEUE rules, a network namespace"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="the kernel has no /dev/net/tun"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("unshare", "ip", "iptables")),
        reason="needs unshare, ip and iptables",
    ),
]


def test_kernel_client_through_tcpcryptd_to_our_draft02_server() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["eno_state"] == "encrypted", result
    assert result["tep"] == "0x21"
    assert result["bytes_ok"] is True  # the daemon's frames, decrypted here
    assert result["kernel_got_sha"] is True  # our frames, decrypted by the daemon
    if result["tcnetstat"]:  # the daemon's own session ID (tcnetstat, built with it) equals ours
        assert result["daemon_has_our_session_id"] is True, result["daemon_sids"]

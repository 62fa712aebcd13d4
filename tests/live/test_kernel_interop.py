"""Our user-space TCP against the Linux kernel's TCP on real packets (TUN, own netns)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("tun_interop.py")

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: opens a TUN device in a new network namespace"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="the kernel has no /dev/net/tun"),
    pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None, reason="needs unshare and ip"),
]


def test_user_space_tcp_interoperates_with_the_kernel() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # our client -> kernel server: 2 MiB, the kernel's SHA-256 matches
    assert result["kernel_received"] == 2 * 1024 * 1024
    assert result["client_sha_ok"] is True
    # Linux agrees to every option we offer
    assert result["negotiated"] == {"sack": True, "timestamps": True, "window_scaling": True, "mss": 1448}
    # kernel client -> our server: 1 MiB byte-exact, our SHA-256 echo matches on the kernel side
    assert result["server_bytes_ok"] is True
    assert result["server_sha_echo_ok"] is True
    # our RST for a closed port is one the kernel accepts as a refusal
    assert result["refused"] is True
    # with packets lost both ways, both directions still arrive byte-exact
    lossy = result["lossy"]
    assert lossy["dropped_out"] > 20 and lossy["dropped_in"] > 20
    assert lossy["client_sha_ok"] is True
    assert lossy["server_bytes_ok"] is True
    assert lossy["server_sha_echo_ok"] is True

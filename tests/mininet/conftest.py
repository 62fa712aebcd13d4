"""Mininet tests: they need root, Mininet's Python library and mnexec; without them they skip, saying why.

Helpers here start the kernel-socket bulk transfer of :mod:`lab.mininet.apps`
between two hosts, with a timeout on every wait.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def mininet_skip_reason() -> str | None:
    """Why the Mininet tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root: Mininet creates network namespaces and veth links"
    try:
        import mininet.net  # noqa: F401
    except ImportError:
        return "Mininet is not importable: .venv/bin/pip install mininet==2.3.0.dev6"
    for program, package in (
        ("mnexec", "mininet"),
        ("ifconfig", "net-tools"),
        ("tc", "iproute2"),
        ("ethtool", "ethtool"),
    ):
        if shutil.which(program) is None:
            return f"{program} is not on PATH: apt install {package}"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mininet tests share the machine (namespaces, nftables, kernel MPTCP settings, the
    process list they check for leftovers): under xdist they all run on one worker, one at
    a time (``--dist loadgroup``, as ./run-tests passes). First among the hooks: xdist's own
    turns the mark into the group (a ``@mininet`` suffix of the test's id) and must see it,
    which depends on the order plugins were registered in otherwise."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here or item.get_closest_marker("mininet") is not None:
            item.add_marker(pytest.mark.xdist_group("mininet"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("mininet") is not None:
        reason = mininet_skip_reason()
        if reason is not None:
            pytest.skip(reason)


def read_json_line(proc: subprocess.Popen[str], *, timeout: float) -> dict[str, Any]:
    """The next line ``proc`` prints, as JSON; fails the test after ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no output from {proc.args!r} within {timeout:g} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr is not None else ""
                pytest.fail(f"{proc.args!r} exited with {proc.wait(timeout=10)} before printing: {err[-1000:]}")
            return json.loads(line)


def _last_json(out: str, proc: subprocess.Popen[str], err: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, f"{proc.args!r} printed nothing (exit {proc.returncode}): {err[-1000:]}"
    result = json.loads(lines[-1])
    assert result.get("event") != "error", result
    return result


@dataclass(frozen=True, slots=True)
class Transfer:
    sent: dict[str, Any]
    received: dict[str, Any]

    @property
    def goodput_mbps(self) -> float:
        return self.received["bytes"] * 8 / self.received["elapsed_s"] / 1e6


def kernel_transfer(
    net: Any,
    *,
    src: str,
    dst: str,
    dst_addr: str,
    size_bytes: int,
    seed: int = 1,
    bind: str | None = None,
    port: int = 5001,
    timeout: float = 60.0,
) -> Transfer:
    """A kernel TCP bulk transfer from host ``src`` to ``dst_addr`` on host ``dst``."""
    app = [sys.executable, "-m", "lab.mininet.apps"]
    popen: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
        "cwd": ROOT,
    }
    receiver = net.popen(
        dst, [*app, "receive", "--listen", dst_addr, "--port", str(port), "--timeout", str(timeout)], **popen
    )
    ready = read_json_line(receiver, timeout=30)
    assert ready["event"] == "listening", ready
    argv = [*app, "send", "--connect", dst_addr, "--port", str(port), "--bytes", str(size_bytes)]
    argv += ["--seed", str(seed), "--timeout", str(timeout)]
    if bind is not None:
        argv += ["--bind", bind]
    sender = net.popen(src, argv, **popen)
    sent_out, sent_err = sender.communicate(timeout=timeout + 30)
    recv_out, recv_err = receiver.communicate(timeout=timeout + 30)
    return Transfer(_last_json(sent_out, sender, sent_err), _last_json(recv_out, receiver, recv_err))

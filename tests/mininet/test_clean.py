"""``clean()`` after runs killed at random moments: nothing of theirs is left.

Each run is a real controller process (a MininetBackend with captures, processes
it tracks, processes started behind its back with ``&`` in a node's shell, links
going down and up) killed with SIGKILL at a random moment: while it imports,
while Mininet builds the network, while it works. ``clean()`` must then leave no
process in the run's namespaces (also those re-parented to PID 1), no interface
of the topology in the root namespace and no state file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.mininet import clean
from lab.mininet.backend import _namespace_members, process_start_time
from tests.mininet.conftest import ROOT

pytestmark = pytest.mark.mininet

RUNS = 20
SEED = 16

BUSY_RUN = """
import subprocess, sys, time
from lab.mininet import MininetBackend
from lab.topology import build_topology
from topologies import TOPOLOGIES

state, pcaps, marker = sys.argv[1:4]
spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=0.0)
print("building", flush=True)
# captures (tcpdump, tracked) on r1 only: nothing tracked ever runs in h2
net = MininetBackend(spec, state_dir=state, pcap_dir=pcaps, pcap_interfaces=["r1-eth0"]).__enter__()
net.popen("h1", ["sleep", marker], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
# nobody records these; they outlive the node's shell (its hangup does not reach them) and PID 1 adopts them
net.host("h2").cmd(f"setsid sleep {marker} </dev/null >/dev/null 2>&1 &")
net.host("r1").cmd(f"(setsid sleep {marker} </dev/null >/dev/null 2>&1 &)")
print("started", flush=True)
up = False
while True:
    net.popen("r1", ["sleep", marker], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    net.set_link_up("h1-r1", up)
    up = not up
"""

INTERFACES = {"h1-eth0", "r1-eth0", "r1-eth1", "h2-eth0"}


def _with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in argv:
            found.append(int(entry))
    return found


def _wait_for_line(proc: subprocess.Popen[str], wanted: str, *, timeout: float) -> bool:
    """Read ``proc``'s lines until ``wanted`` (True) or its end or the timeout (False)."""
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            return False
        if line.strip() == wanted:
            return True
    return False


def _recorded_nodes(state: Path) -> list[dict[str, int]]:
    out = []
    for path in [*state.glob("*.json"), *state.glob("*.tmp")]:
        try:
            out += list(json.loads(path.read_text())["nodes"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            continue
    return out


def _wait_shells_gone(nodes: list[dict[str, int]], *, timeout: float) -> None:
    """The node shells end on their own once their controller is gone (their terminal hangs
    up); clean() is meant for later, when they have. Bounded: clean() copes either way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(process_start_time(n["pid"]) != n.get("start") for n in nodes):
            return
        time.sleep(0.05)


def test_runs_killed_at_random_moments_leave_nothing_after_clean(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    moments = []
    for i in range(RUNS):
        state, pcaps = tmp_path / f"state{i}", tmp_path / f"pcaps{i}"
        marker = f"9{i:03d}.{os.getpid()}{rng.randrange(10**6):06d}"  # sleep's argument: names this run's processes
        run = subprocess.Popen(
            [sys.executable, "-c", BUSY_RUN, str(state), str(pcaps), marker],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        # half the runs die while building (or before), half while working
        phase = "building" if i % 2 == 0 else "started"
        reached = _wait_for_line(run, "building", timeout=60)
        if phase == "started" and reached:
            reached = _wait_for_line(run, "started", timeout=60)
        assert reached or run.poll() is None, f"run {i} ended by itself before it was killed"
        delay = rng.uniform(0.0, 1.5 if phase == "building" else 0.5)
        time.sleep(delay)  # the random moment (not a wait for anything)
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=30)
        moments.append((phase, round(delay, 2)))
        nodes = _recorded_nodes(state)
        namespaces = {int(n["netns"]): int(n["netns_cookie"]) for n in nodes if n.get("netns_cookie")}
        _wait_shells_gone(nodes, timeout=10)
        done = clean(state_dir=state)
        left = _with_marker(marker)
        assert left == [], f"run {i} ({phase} + {delay:.2f} s): processes {left} survived clean(): {done}"
        members = _namespace_members(namespaces)
        assert members == {}, f"run {i} ({phase} + {delay:.2f} s): still in its namespaces: {members}; {done}"
        remaining = INTERFACES & {name for _index, name in socket.if_nameindex()}
        assert not remaining, f"run {i}: interfaces {remaining} left in the root namespace; {done}"
        assert list(state.glob("*")) == [], f"run {i}: state files left: {list(state.glob('*'))}"
        assert clean(state_dir=state) == []
    assert {phase for phase, _ in moments} == {"building", "started"}


def test_a_process_of_a_dead_run_in_no_namespace_of_it_is_found_by_its_environment(tmp_path: Path) -> None:
    """A child the controller forked just before it was killed can exec after its node's shell is
    gone: it then runs outside every namespace of the run (found once beside two busy loops: a
    ``sleep`` survived clean()). Every process a run starts carries the run's id in its environment,
    and clean() kills by that too."""
    from lab.mininet.backend import RUN_ENV, STATE_VERSION

    run_id = f"99999-{os.getpid():08x}"[:14]
    controller = subprocess.Popen([sys.executable, "-c", "pass"])
    controller.wait()  # a controller that is dead: its PID no longer has the recorded start time
    marker = f"9999.{os.getpid()}"
    orphan = subprocess.Popen(["sleep", marker], env={**os.environ, RUN_ENV: run_id})
    bystander = subprocess.Popen(["sleep", marker + "1"], env={**os.environ, RUN_ENV: run_id + "x"})
    try:
        state = {
            "version": STATE_VERSION,
            "controller": {"pid": controller.pid, "start": 1},
            "topology": "single-path",
            "interfaces": [],
            "run_id": run_id,
            "nodes": {},
            "processes": [],
        }
        (tmp_path / f"{run_id}.json").write_text(json.dumps(state))
        done = clean(state_dir=tmp_path)
        assert any(f"killed processes [{orphan.pid}]" in line for line in done), done
        assert orphan.wait(timeout=10) is not None
        assert bystander.poll() is None  # another run's id, or a live run's, is left alone
    finally:
        for p in (orphan, bystander):
            p.kill()
            p.wait()


def test_a_process_mid_exec_is_found_once_its_environment_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between execve()'s new memory map and its environment being set up, /proc/PID/environ reads
    empty, and Popen() may already have returned (found once beside two busy loops: clean() missed
    a ``sleep`` started just before it). Such a process is read again shortly after."""
    from lab.mininet import backend

    marker = b"TCPLAB_MININET_RUN=99998-mid-exec"
    child = subprocess.Popen(["sleep", "9998.5"], env={**os.environ, "TCPLAB_MININET_RUN": "99998-mid-exec"})
    try:
        real = Path.read_bytes
        reads: list[str] = []

        def first_read_empty(self: Path) -> bytes:
            if str(self) == f"/proc/{child.pid}/environ":
                reads.append(str(self))
                if len(reads) == 1:
                    return b""  # as mid-exec
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", first_read_empty)
        assert backend._processes_with_env(marker) == [child.pid]
        assert len(reads) == 2
    finally:
        child.kill()
        child.wait()

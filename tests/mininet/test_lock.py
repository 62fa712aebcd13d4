"""Mininet networks are built one at a time per machine: a run waits for another's build (bounded),
records that it waits and for whom, and builds once the other is done; within one process the
lock is re-entrant."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lab.mininet import backend as mn
from lab.mininet.backend import MininetBackend, NetworkLock
from lab.mininet.topo import MininetCommandError
from lab.trace import MemoryTracer
from tests.mininet.conftest import mininet_skip_reason
from tests.mininet.test_backend import spec_of

pytestmark = [
    pytest.mark.mininet,
    pytest.mark.skipif(mininet_skip_reason() is not None, reason=str(mininet_skip_reason())),
]

HOLDER = """
import sys
from lab.mininet.backend import NetworkLock
lock = NetworkLock()
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
"""


def _holder() -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_waits_for_another_build_then_builds(tmp_path: Path) -> None:
    holder = _holder()
    tracer = MemoryTracer()
    built = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with MininetBackend(spec_of("single-path"), tracer=tracer, state_dir=tmp_path):
                built.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=second)
    try:
        thread.start()
        waiting = None
        for _ in range(300):  # bounded: up to 30 s for the waiting record
            waiting = next((r for r in tracer.records if r.data.get("state") == "waiting"), None)
            if waiting is not None or errors:
                break
            thread.join(0.1)
        assert waiting is not None, errors
        assert waiting.data["holder_pid"] == holder.pid
        assert not built.is_set()
    finally:
        holder.communicate("go\n", timeout=30)
    thread.join(120)
    assert not errors and built.is_set(), errors


def test_the_wait_is_bounded_and_names_the_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    holder = _holder()
    try:
        with pytest.raises(MininetCommandError, match=f"another Mininet run \\(pid {holder.pid}\\)"):
            NetworkLock(wait_s=0.3).acquire()
    finally:
        holder.communicate("go\n", timeout=30)
    lock = NetworkLock(wait_s=5)
    lock.acquire()
    lock.release()


def test_re_entrant_within_one_process() -> None:
    outer, inner = NetworkLock(wait_s=1), NetworkLock(wait_s=1)
    outer.acquire()
    inner.acquire()  # the same process: no wait
    inner.release()
    assert mn.NETWORK_LOCK.as_posix() in NetworkLock._held
    outer.release()
    assert mn.NETWORK_LOCK.as_posix() not in NetworkLock._held

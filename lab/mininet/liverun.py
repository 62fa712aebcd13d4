"""A scenario on Mininet as a :class:`lab.runs.LabRun`: what ``tcplab tui --backend mininet`` follows.

:class:`MininetRun` runs :func:`lab.mininet.run.run_mininet_scenario` in a
background thread and hands the viewer, in batches:

* the endpoints' records, as the controller reads them from their pipes;
* the controller's own records (link realisation and link events,
  middleboxes, an endpoint that failed), forwarded from its thread;
* for every host where a workload runs a kernel stack (``src_stack`` /
  ``dst_stack`` ``"kernel"`` or ``"kernel-mptcp"``), the ``mptcp`` records
  that :mod:`lab.scenario.mptcp_observer` makes from that host's interfaces (a small
  process inside the host's namespace, started through the backend, so it
  is stopped by PID with everything else), marked ``"source": "wire"``.
  They are also merged into the bundle's ``trace.jsonl`` at the end, so a
  replay shows them too.

``t`` is wall seconds since the run's start, as in the bundle. Links go
down and up for real (``ip link set``), middlebox policies are installed and
removed with the kernel's tools (:mod:`lab.mininet.middlebox`); both are
applied on the controller's thread between two of its polls. Pause, step,
speed and new transfers are not possible on real hosts and raise
ControlUnavailable. :meth:`MininetRun.close` stops the run (the backend
removes everything it started) and waits for the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, LabError
from lab.scenario import Scenario, WireObserver, build_scenario_topology, bundle
from lab.scenario.live import (
    ControlUnavailable,
    LabRun,
    PolicyInfo,
    RunStatus,
    policy_key,
    policy_label,
    standard_policies,
)
from lab.trace import TraceRecord

ROOT = Path(__file__).resolve().parents[2]
OBSERVER_READY_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 90.0
SIM_ONLY = "a live Mininet run follows the wall clock: pause, step and speed are for simulated runs"
NO_NEW_TRANSFERS = (
    "on Mininet the transfers are the scenario's: every endpoint process schedules its workloads "
    "before the start; start another run for another transfer"
)


def kernel_ends(scenario: Scenario) -> dict[str, set[int]]:
    """Hosts where a workload wants a wire observer (a kernel stack's end), with its ports."""
    out: dict[str, set[int]] = {}
    for observer in wire_observers(scenario):
        out.setdefault(observer.host, set()).update(observer.ports)
    return out


def wire_observers(scenario: Scenario) -> list[Any]:
    """The wire observers the scenario's workloads ask for, one per (host, module), ports merged."""
    merged: dict[tuple[str, str], set[int]] = {}
    for workload in scenario.transfers:
        for observer in workload.wire_observers():
            merged.setdefault((observer.host, observer.module), set()).update(observer.ports)
    return [WireObserver(module, host, frozenset(ports)) for (host, module), ports in sorted(merged.items())]


class MininetRun(LabRun):
    """``scenario`` on Mininet, followed live (needs root; see :mod:`lab.mininet.run`).

    With ``out_dir`` the run leaves the bundle ``tcplab replay`` opens
    (``pcaps`` of every interface unless false). ``observe_kernel`` starts
    the wire observers of kernel hosts. Raises ConfigError for a scenario
    whose topology cannot be built; what fails once the run is under way
    (not root, Mininet missing, an endpoint that cannot start) arrives as a
    fatal ``run`` ``error`` record. With ``hold`` the network stays up once the
    transfers are done (links and middleboxes still switch) until :meth:`close`.
    """

    backend = "mininet"
    controls = frozenset({"links", "middleboxes"})

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        out_dir: Path | None = None,
        pcaps: bool = True,
        time_limit_s: float | None = None,
        observe_kernel: bool = True,
        python: str = sys.executable,
        hold: bool = False,
    ) -> None:
        self.scenario = scenario
        self.name = scenario.name
        self.seed = seed
        self.out_dir = out_dir
        self.pcaps = pcaps
        self.time_limit_s = time_limit_s
        self.python = python
        self.hold = hold  # keep the network up after the transfers, until close()
        self.spec = build_scenario_topology(scenario)
        self._topology = self.spec.to_dict() | {"diagram": self.spec.diagram}
        self._wire_observers = wire_observers(scenario) if observe_kernel else []
        self.observed = kernel_ends(scenario) if observe_kernel else {}
        self._lock = threading.Lock()
        self._pending: list[TraceRecord] = []
        self._wire_records: list[TraceRecord] = []
        self._commands: queue.Queue[tuple[str, Callable[[Any], None]]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backend: Any = None
        self._t0: float | None = None
        self._t0_guess: float | None = None
        self._ctl_seen = 0
        self._running = False
        self._finished = False
        self._ended_at: float | None = None
        self._error: str | None = None
        self._results: list[Any] = []
        self.result: Any = None  # the MininetRunResult once the run is over
        self._observers: list[tuple[str, subprocess.Popen[bytes], threading.Thread]] = []
        self.observer_stats: dict[str, dict[str, int]] = {}  # per host: packets, malformed, dropped
        self._policies: dict[str, tuple[PolicyInfo, Callable[[], Any]]] = {}
        for router, factory in scenario.middleboxes:
            desc = factory().describe()
            key = f"{router}/{policy_key(desc)}"
            self._policies[key] = (PolicyInfo(key, router, policy_label(desc), desc, True), factory)
        for router in self.spec.routers():
            for suffix, label, factory in standard_policies(router):
                key = f"{router}/{suffix}"
                if key not in self._policies:
                    desc = factory().describe()
                    self._policies[key] = (PolicyInfo(key, router, label, desc, False), factory)

    # --- LabRun

    def topology(self) -> dict[str, Any]:
        return self._topology

    def now(self) -> float:
        if self._ended_at is not None:
            return self._ended_at
        t0 = self._t0
        return 0.0 if t0 is None else time.monotonic() - t0

    def status(self) -> RunStatus:
        results = list(self._results)
        done = sum(1 for r in results if r.complete)
        if self._error:
            text = self._error
        elif self._finished:
            ok = results and all(r.ok for r in results)
            text = f"finished: transfers {done}/{len(results)}" + ("" if ok else " (not all ok)")
        elif self._t0 is None:
            text = "building the network" if self._thread is not None else "not started"
        elif self.hold and results and done == len(results):
            ok = all(r.ok for r in results)
            text = f"transfers {done}/{len(results)} done{'' if ok else ' (not all ok)'}; the network stays up until q"
        else:
            text = f"transfers {done}/{len(results)}"
        return RunStatus(
            now=self.now(),
            paused=False,
            speed=1.0,
            finished=self._finished,
            text=text,
            extra={
                "bytes_received": sum(r.bytes_received for r in results),
                "bytes_expected": sum(r.bytes_expected for r in results),
                "observed": {host: sorted(ports) for host, ports in self.observed.items()},
                "observers": dict(self.observer_stats),
            },
        )

    def results(self) -> list[Any]:
        return list(self._results)

    def start(self) -> None:
        """Start the run's thread (``trace_batches`` does this when it is first read)."""
        if self._thread is not None or self._stop.is_set():
            return
        self._thread = threading.Thread(target=self._main, name=f"mininet-run-{self.name}", daemon=False)
        self._thread.start()

    async def trace_batches(self, interval: float = 0.05) -> AsyncIterator[list[TraceRecord]]:
        self.start()
        while True:
            records = self._drain()
            if records:
                yield records
            if self._finished and not self._pending:
                return
            await asyncio.sleep(interval)

    def _drain(self) -> list[TraceRecord]:
        with self._lock:
            out, self._pending = self._pending, []
        out.sort(key=lambda r: r.t)
        return out

    def _emit(self, records: list[TraceRecord]) -> None:
        if records:
            with self._lock:
                self._pending.extend(records)

    # --- the run's thread

    def _main(self) -> None:
        from lab.mininet.run import run_mininet_scenario

        try:
            self.result = run_mininet_scenario(
                self.scenario,
                seed=self.seed,
                out_dir=self.out_dir,
                pcaps=self.pcaps,
                time_limit_s=self.time_limit_s,
                python=self.python,
                on_records=self._emit,
                before_start=self._before_start,
                progress=self._progress,
                stop=self._stop,
                hold=self.hold,
            )
            self._results = list(self.result.transfers)
        except LabError as exc:
            self._fail(str(exc))
        except Exception as exc:  # the viewer must see it and stay up
            frames = traceback.extract_tb(exc.__traceback__)[-3:]
            self._fail(
                f"the Mininet run failed: {type(exc).__name__}: {exc}",
                where=[f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in frames],
            )
        finally:
            self._ended_at = self.now()
            self._running = False
            self._forward_controller()
            for _, _, reader in self._observers:
                reader.join(timeout=5.0)
            self._merge_wire_records()
            self._finished = True

    def _fail(self, reason: str, **extra: Any) -> None:
        self._error = reason
        self._emit([TraceRecord(self.now(), "net", "run", "error", {"reason": reason, "fatal": True, **extra})])

    def _before_start(self, backend: Any) -> None:
        self._backend = backend
        self._running = True
        for observer in self._wire_observers:
            host = observer.host
            try:
                self._start_observer(backend, observer)
            except (LabError, OSError) as exc:
                self._emit(
                    [
                        TraceRecord(
                            0.0,
                            host,
                            "run",
                            "error",
                            {"reason": f"no wire observer on {host}: {exc}", "fatal": False},
                        )
                    ]
                )
        self._t0_guess = time.monotonic()
        self._forward_controller()

    def _start_observer(self, backend: Any, observer: Any) -> None:
        host, ports = observer.host, observer.ports
        ifaces = [i for i in self.spec.interfaces.values() if i.node == host]
        argv = [self.python, "-m", observer.module, "--node", host]
        for iface in ifaces:
            argv += ["--interface", iface.name, "--address", iface.ipv4]
            if getattr(iface, "ipv6", None):
                argv += ["--address", iface.ipv6]
        for port in sorted(ports):
            argv += ["--port", str(port)]
        for lo, hi in self._fenced_tcp(backend, host):  # the host's user-space stack traces its own
            argv += ["--exclude-local", f"{lo}-{hi}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        proc = backend.popen(
            host, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT), env=env
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + OBSERVER_READY_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(left, 0.0))
            if not ready:
                raise LabError(f"the wire observer on {host} was not ready within {OBSERVER_READY_TIMEOUT_S:g} s")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                err = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
                raise LabError(f"the wire observer on {host} exited ({proc.wait()}): {err.strip()}")
            line += chunk
        first, _, rest = line.partition(b"\n")
        msg = json.loads(first)
        if msg.get("msg") != "ready":
            raise LabError(f"the wire observer on {host} failed: {msg.get('reason', msg)}")
        reader = threading.Thread(target=self._read_observer, args=(host, proc, rest), name=f"wire-{host}", daemon=True)
        self._observers.append((host, proc, reader))
        reader.start()

    @staticmethod
    def _fenced_tcp(backend: Any, host: str) -> list[tuple[int, int]]:
        """The TCP port ranges the host's user-space stack owns (the controller recorded its fence)."""
        out: list[tuple[int, int]] = []
        for item in getattr(getattr(backend, "tracer", None), "records", None) or []:
            try:
                _mono, node, layer, name, data = item
                if node == host and layer == "endpoint" and isinstance(data.get("fence"), dict):
                    out += [(int(lo), int(hi)) for lo, hi in data["fence"].get("tcp") or []]
            except (TypeError, ValueError, AttributeError):
                continue
        return out

    def _rebase(self, mono: float) -> float:
        t0 = self._t0 if self._t0 is not None else self._t0_guess
        return 0.0 if t0 is None else max(0.0, mono - t0)

    def _read_observer(self, host: str, proc: subprocess.Popen[bytes], rest: bytes) -> None:
        """Thread: the observer's records, rebased on the run's start, to the viewer and the bundle."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            batch: list[TraceRecord] = []
            for line in data[:cut].splitlines():
                try:
                    obj = json.loads(line)
                    if "msg" in obj:
                        if obj["msg"] == "stopped":
                            self.observer_stats[host] = {k: v for k, v in obj.items() if k != "msg"}
                        continue
                    rec = TraceRecord.from_dict(obj)
                except (ValueError, TypeError, AttributeError):
                    continue
                batch.append(TraceRecord(self._rebase(rec.t), rec.node, rec.layer, rec.name, rec.data))
            with self._lock:
                self._wire_records += batch
            self._emit(batch)
        status = proc.wait()
        if status not in (0, -15) and self._running:
            err = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
            reason = f"the wire observer on {host} exited ({status}): {err.strip()}"
            self._emit([TraceRecord(self.now(), host, "run", "error", {"reason": reason, "fatal": False})])

    def _progress(self, view: Any) -> None:
        """On the controller's thread, every poll: the start time, controls, controller records."""
        if self._t0 is None:
            self._t0 = getattr(view, "t0", None) or (time.monotonic() - view.now)
        self._results = list(view.results)
        while True:
            try:
                what, command = self._commands.get_nowait()
            except queue.Empty:
                break
            try:
                command(self._backend)
            except LabError as exc:
                self._emit(
                    [TraceRecord(self.now(), "net", "run", "error", {"reason": f"{what}: {exc}", "fatal": False})]
                )
        self._forward_controller()

    def _forward_controller(self) -> None:
        """The controller's new records (made on its thread, stamped time.monotonic())."""
        tracer = getattr(self._backend, "tracer", None)
        records = getattr(tracer, "records", None)
        if not isinstance(records, list):
            return
        new = records[self._ctl_seen :]
        self._ctl_seen += len(new)
        out = []
        for item in new:
            try:
                mono, node, layer, name, data = item
            except (TypeError, ValueError):
                continue
            out.append(TraceRecord(self._rebase(mono) if self._t0 is not None else 0.0, node, layer, name, data))
        self._emit(out)

    def _merge_wire_records(self) -> None:
        """Add the observers' records to the bundle's trace, in ``t`` order."""
        if self.out_dir is None or not self._wire_records:
            return
        trace = self.out_dir / "trace.jsonl"
        if not trace.is_file():
            return
        wire = sorted(self._wire_records, key=lambda r: r.t)

        def existing() -> Iterator[tuple[float, bytes]]:
            with open(trace, "rb") as fh:
                for line in fh:
                    try:
                        t = float(json.loads(line)["t"])
                    except (ValueError, KeyError, TypeError):
                        t = 0.0
                    yield t, line if line.endswith(b"\n") else line + b"\n"

        ours = ((r.t, r.to_json().encode() + b"\n") for r in wire)
        tmp = trace.with_suffix(".jsonl.tmp")
        try:
            with open(tmp, "wb") as out:
                for _t, line in heapq.merge(existing(), ours, key=lambda item: item[0]):
                    out.write(line)
            tmp.replace(trace)
            summary = json.loads((self.out_dir / "summary.json").read_text(encoding="utf-8"))
            if summary.get("complete"):  # the trace changed: its digest too
                bundle.finalise(self.out_dir, summary, interrupted=bool(summary.get("interrupted")))
        except (OSError, ValueError) as exc:
            self._emit([TraceRecord(self.now(), "net", "run", "error", {"reason": f"bundle: {exc}", "fatal": False})])

    # --- controls

    def _queue(self, what: str, command: Callable[[Any], None]) -> None:
        if not self._running or self._stop.is_set():
            state = "has ended" if self._finished or self._stop.is_set() else "is not running yet"
            raise ControlUnavailable(f"the Mininet network {state}")
        self._commands.put((what, command))

    def set_link_up(self, link: str, up: bool) -> None:
        if link not in self.spec.links:
            raise ConfigError(f"no link named {link!r}; links: {', '.join(self.spec.links)}")
        self._queue(f"link {link} {'up' if up else 'down'}", lambda backend: backend.set_link_up(link, up))

    def middlebox_policies(self) -> list[PolicyInfo]:
        return [info for info, _ in self._policies.values()]

    def set_middlebox_enabled(self, key: str, enabled: bool) -> None:
        if key not in self._policies:
            raise ConfigError(f"no middlebox policy {key!r}; known: {', '.join(self._policies)}")
        info, factory = self._policies[key]
        if info.enabled == enabled:
            return

        def apply(backend: Any) -> None:
            if enabled:
                backend.add_middlebox(info.router, factory())
            else:
                failed = backend.remove_middlebox(info.router, info.description)
                if failed:
                    raise LabError(f"removing {info.label} left: {'; '.join(failed)}")

        self._queue(f"middlebox {info.label} {'on' if enabled else 'off'}", apply)
        info.enabled = enabled

    def start_transfer(self, size_bytes: int = 0) -> str:
        raise ControlUnavailable(NO_NEW_TRANSFERS)

    def stop_transfer(self) -> str | None:
        raise ControlUnavailable(NO_NEW_TRANSFERS)

    def pause(self, paused: bool = True) -> None:
        raise ControlUnavailable(SIM_ONLY)

    def step(self, seconds: float = 0.1) -> None:
        raise ControlUnavailable(SIM_ONLY)

    def set_speed(self, speed: float | None) -> None:
        raise ControlUnavailable(SIM_ONLY)

    def close(self) -> None:
        """Stop the run and wait until the network and every process it started are gone."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            self._finished = True
            return
        for _ in range(3):  # a Ctrl-C while waiting: keep waiting, the cleanup must finish
            try:
                thread.join(timeout=CLOSE_TIMEOUT_S)
                break
            except KeyboardInterrupt:
                continue
        with contextlib.suppress(Exception):
            for _, proc, _ in self._observers:
                if proc.stdout is not None:
                    proc.stdout.close()
                if proc.stderr is not None:
                    proc.stderr.close()

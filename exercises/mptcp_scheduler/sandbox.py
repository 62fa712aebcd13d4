"""The attendee's scheduler, called across the sandbox boundary one decision at a time.

The grader runs the simulation (or, on Mininet, h1's endpoint runs the
connection) in its own process; only ``MyScheduler.pick`` runs in the
sandbox (:mod:`exercises.sandbox`). :class:`RemoteScheduler` starts
``python -m exercises.mptcp_scheduler.sandbox IN_FD OUT_FD`` there and, for
every decision, writes one JSON line with the candidates (address, srtt,
cwnd, send_room, backup) and reads back the index the attendee's ``pick``
chose (or null). Nothing else crosses: the trace, the transfer's result and
every check stay in the grader's process, so a submission that forges a
trace or replaces ``simulate`` only forges its own decisions.

Protocol (JSON lines): ``{"op": "load"}`` -> ``{"redundant": bool}``;
``{"op": "pick", "candidates": [[local_addr, local_port, remote_addr,
remote_port, srtt, cwnd, send_room, backup], ...]}`` -> ``{"choice": int |
null}``; a failure is ``{"error": {"kind", "message", "detail"}}``.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from exercises.grading import SOLUTION_FILE, Submission, SubmissionError, submission_env
from exercises.mptcp_scheduler import scenario as sc
from lab.errors import ConfigError
from lab.mptcp.config import MptcpConfig
from lab.scenario import Scenario, Transfer, runs_here
from lab.scenario.mptcp import MptcpTransfer

REGISTERED_AS = "attendee"
LINE_LIMIT_BYTES = 1 << 16


class SchedulerProblem(Exception):
    """The solution's scheduler is not something the connection can use."""


class RemoteFailure(SubmissionError):
    """What went wrong in the sandbox; its text carries the attendee's traceback too (on Mininet
    only the text of an exception raised inside h1's endpoint reaches the grader)."""

    def __str__(self) -> str:
        return "\n".join(p for p in (self.message, self.detail) if p)


# --- inside the sandbox ---------------------------------------------------------------------


@dataclass
class CandidateView:
    """What the attendee's ``pick`` sees of a subflow (the attributes of SubflowView)."""

    addr: Any
    srtt: float | None
    cwnd: int
    send_room: int
    backup: bool


def scheduler_class(module: Any) -> type:
    """``MyScheduler`` from the solution. Raises SchedulerProblem when it is missing, not a
    Scheduler subclass, or cannot be created without arguments."""
    from lab.mptcp.strategies import Scheduler

    cls = getattr(module, sc.SCHEDULER_CLASS, None)
    if cls is None:
        raise SchedulerProblem(f"solution.py defines no class {sc.SCHEDULER_CLASS}")
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise SchedulerProblem(f"{sc.SCHEDULER_CLASS} must be a subclass of lab.mptcp.strategies.Scheduler")
    try:
        cls()
    except TypeError as exc:  # abstract pick(), or an __init__ that wants arguments
        raise SchedulerProblem(f"{sc.SCHEDULER_CLASS}() cannot be created: {exc}") from None
    return cls


def _error(kind: str, message: str, detail: str = "") -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message, "detail": detail}}


def _failure(exc: BaseException, solution: str) -> dict[str, Any]:
    from exercises import _runner

    detail = _runner._short_traceback(exc, solution)
    return _error("exception", f"your scheduler failed: {type(exc).__name__}: {exc}", detail)


def serve(in_fd: int, out_fd: int) -> int:
    """The loop in the sandbox: load solution.py (with the runner's limits), answer each request."""
    from exercises import _runner
    from lab.tcp.addresses import FourTuple

    reader = os.fdopen(in_fd, "rb")
    writer = os.fdopen(out_fd, "wb", buffering=0)

    def answer(payload: dict[str, Any]) -> None:
        writer.write(json.dumps(payload).encode() + b"\n")

    first = json.loads(reader.readline(LINE_LIMIT_BYTES) or b"{}")
    _runner._limit_resources(first.get("cpu_limit_s"), first.get("memory_limit_bytes"), first.get("output_limit_bytes"))
    solution = str(Path(SOLUTION_FILE).resolve())
    loaded = _runner.load(solution)
    if "error" in loaded:
        answer(loaded)
        return 0
    try:
        scheduler = scheduler_class(loaded["module"])()
    except SchedulerProblem as exc:
        answer(_error("bad_result", str(exc)))
        return 0
    except BaseException as exc:  # noqa: BLE001
        answer(_failure(exc, solution))
        return 0
    answer({"redundant": bool(getattr(scheduler, "redundant", False))})
    while line := reader.readline(LINE_LIMIT_BYTES):
        request = json.loads(line)
        views = [
            CandidateView(FourTuple(la, lp, ra, rp), srtt, cwnd, room, backup)
            for la, lp, ra, rp, srtt, cwnd, room, backup in request["candidates"]
        ]
        try:
            choice = scheduler.pick(list(views))
        except BaseException as exc:  # noqa: BLE001 - whatever pick() does becomes the report
            answer(_failure(exc, solution))
            continue
        if choice is None:
            answer({"choice": None})
            continue
        index = next((i for i, v in enumerate(views) if v is choice), None)
        if index is None:
            answer(_error("bad_result", f"pick() returned {choice!r}, which is not one of the candidates (or None)"))
        else:
            answer({"choice": index})
    return 0


# --- in the grader (or h1's endpoint on Mininet) --------------------------------------------


class RemoteScheduler:
    """The sandboxed process running the attendee's scheduler, and the calls to it.

    ``time_limit_s`` bounds the whole run's time spent waiting for the attendee's decisions.
    Raises SubmissionError (from ``open`` and ``pick``) when solution.py cannot give a usable
    scheduler, raises in ``pick``, answers nonsense or runs out of time."""

    def __init__(self, directory: Path, *, time_limit_s: float) -> None:
        from exercises.sandbox import Sandbox

        self.time_limit_s = time_limit_s
        self.used_s = 0.0
        self.calls = 0
        self.redundant = False
        self.failure: SubmissionError | None = None
        self.box = Sandbox(Path(directory))
        self._output = open(self.box.base / "output.txt", "wb")  # noqa: SIM115 - closed in close()
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        try:
            self.box.start(
                [sys.executable, "-m", __name__, str(to_child_r), str(from_child_w)],
                env=submission_env(),
                stdout=self._output,
                pass_fds=(to_child_r, from_child_w),
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._buffer = b""

    @property
    def protections(self) -> Any:
        return self.box.status()

    def open(self, *, cpu_limit_s: int, memory_limit_bytes: int, output_limit_bytes: int) -> None:
        reply = self._ask(
            {
                "op": "load",
                "cpu_limit_s": cpu_limit_s,
                "memory_limit_bytes": memory_limit_bytes,
                "output_limit_bytes": output_limit_bytes,
            }
        )
        self.redundant = bool(reply.get("redundant"))

    def pick(self, candidates: Sequence[Any]) -> Any:
        self.calls += 1
        reply = self._ask(
            {
                "op": "pick",
                "candidates": [
                    [*sf.addr, sf.srtt, int(sf.cwnd), int(sf.send_room), bool(sf.backup)] for sf in candidates
                ],
            }
        )
        choice = reply.get("choice")
        if choice is None:
            return None
        if type(choice) is not int or not 0 <= choice < len(candidates):
            raise self._fail(SubmissionError("bad_result", f"the scheduler answered {choice!r}, not a candidate"))
        return candidates[choice]

    def _fail(self, exc: SubmissionError) -> SubmissionError:
        if self.failure is None:
            self.failure = exc
        return self.failure

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        start = time.monotonic()
        try:
            os.write(self._to_child, json.dumps(request).encode() + b"\n")
        except OSError:
            raise self._fail(self._ended()) from None
        while b"\n" not in self._buffer:
            left = self.time_limit_s - self.used_s - (time.monotonic() - start)
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise self._fail(
                    SubmissionError(
                        "timeout",
                        f"your scheduler did not finish within {self.time_limit_s:g} s (all its decisions together) "
                        "(an endless loop in pick()?)",
                        self.output(),
                    )
                )
            chunk = os.read(self._from_child, 65536)
            if not chunk:
                raise self._fail(self._ended())
            self._buffer += chunk
            if len(self._buffer) > LINE_LIMIT_BYTES:
                raise self._fail(SubmissionError("crash", "the scheduler's process sent an oversized answer"))
        line, self._buffer = self._buffer.split(b"\n", 1)
        self.used_s += time.monotonic() - start
        try:
            reply = json.loads(line)
            if not isinstance(reply, dict):
                raise ValueError("not an object")  # noqa: TRY004 - caught just below
        except ValueError:
            raise self._fail(
                SubmissionError("crash", "the scheduler's process answered something unreadable")
            ) from None
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            raise self._fail(
                RemoteFailure(
                    str(err.get("kind", "exception")), str(err.get("message", "failed")), str(err.get("detail", ""))
                )
            )
        return reply

    def _ended(self) -> SubmissionError:
        from exercises.grading import _how
        from exercises.sandbox import exit_description

        proc = self.box._proc
        code = proc.wait(timeout=5) if proc is not None else 0
        return SubmissionError(
            "crash", f"the scheduler's process ended ({_how(exit_description(code))})", self.output()
        )

    def output(self) -> str:
        from exercises.grading import _tail

        self._output.flush()
        return _tail(self.box.base / "output.txt")

    def close(self) -> None:
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.box.close()
        self._output.close()


def proxy_class(remote: RemoteScheduler) -> type:
    """A Scheduler subclass whose ``pick`` asks ``remote`` (every instance shares the one process)."""
    from lab.mptcp.strategies import Scheduler

    class AttendeeScheduler(Scheduler):
        name = REGISTERED_AS
        redundant = remote.redundant

        def pick(self, candidates: Sequence[Any]) -> Any:
            return remote.pick(candidates)

    return AttendeeScheduler


def open_remote(sub_or_dir: Submission | Path, *, time_limit_s: float) -> RemoteScheduler:
    """A started RemoteScheduler with the attendee's class loaded. Raises SubmissionError."""
    from exercises.grading import MEMORY_LIMIT_BYTES, OUTPUT_LIMIT_BYTES

    directory = sub_or_dir.directory if isinstance(sub_or_dir, Submission) else Path(sub_or_dir)
    if not (directory / SOLUTION_FILE).is_file():
        raise SubmissionError("missing", f"no {SOLUTION_FILE} in {directory}")
    try:
        remote = RemoteScheduler(directory, time_limit_s=time_limit_s)
    except (OSError, ValueError) as exc:
        raise SubmissionError("crash", f"could not start the scheduler's process: {exc}") from None
    try:
        remote.open(
            cpu_limit_s=int(time_limit_s) + 2,
            memory_limit_bytes=MEMORY_LIMIT_BYTES,
            output_limit_bytes=OUTPUT_LIMIT_BYTES,
        )
    except SubmissionError:
        remote.close()
        raise
    return remote


@dataclass(frozen=True, kw_only=True)
class AttendeeSchedulerTransfer(MptcpTransfer):
    """The scenario's MPTCP transfer on Mininet, with h1's scheduler the attendee's, asked across
    the sandbox from the process that runs ``src`` (the sandbox is started there before the
    transfer is scheduled). Raises ConfigError (from ``schedule``) when the solution cannot give
    a usable scheduler."""

    solution_dir: str = ""
    time_limit_s: float = 60.0

    def __post_init__(self) -> None:
        # the attendee's scheduler exists only where it runs: check the other settings with a stand-in
        Transfer.__post_init__(self)
        try:
            MptcpConfig(**{**(self.client or {}), "scheduler": "min_rtt"})
            MptcpConfig(**(self.server or {}))
        except TypeError as exc:
            raise ConfigError(f"transfer {self.name}: bad MPTCP setting: {exc}") from None

    def schedule(self, run: Any) -> None:
        if runs_here(run, self.src):
            import atexit

            from lab.mptcp.strategies import register_scheduler

            try:
                remote = open_remote(Path(self.solution_dir), time_limit_s=self.time_limit_s)
            except SubmissionError as exc:
                raise ConfigError("\n".join(p for p in (exc.message, exc.detail) if p)) from None
            atexit.register(remote.close)
            register_scheduler(REGISTERED_AS, proxy_class(remote))
        super().schedule(run)


def mininet_scenario(directory: Path, *, time_limit_s: float = 60.0) -> Scenario:
    """The grader's scenario with h1 asking the attendee's ``MyScheduler`` in ``directory``, for
    Mininet (paths shaped to ``MININET_PATH_MBPS``: see the scenario's docstring)."""
    base = sc.scenario("min_rtt", bw_mbps=sc.MININET_PATH_MBPS)
    transfers = []
    for t in base.transfers:
        fields = {f: getattr(t, f) for f in MptcpTransfer.__dataclass_fields__}
        fields["client"] = {**(fields["client"] or {}), "scheduler": REGISTERED_AS}
        transfers.append(
            AttendeeSchedulerTransfer(**fields, solution_dir=str(Path(directory).resolve()), time_limit_s=time_limit_s)
        )
    return replace(base, transfers=tuple(transfers))


if __name__ == "__main__":
    try:
        sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))
    except BrokenPipeError:
        sys.exit(0)
    except Exception:  # noqa: BLE001 - the grader sees the end of the pipe and this output
        traceback.print_exc()
        sys.exit(1)

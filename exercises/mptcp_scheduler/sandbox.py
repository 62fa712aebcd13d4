"""Runs the scenario with the attendee's scheduler, in the submission's own process.

``python -m exercises.mptcp_scheduler.sandbox REQUEST RESULT`` is started by
:meth:`exercises.grading.Submission.call_many` (with its time, CPU and
memory limits) instead of the plain runner: ``solution.py`` is loaded by
``exercises._runner`` exactly as for any other exercise, then every call
``["simulate", []]`` replays the grader's scenario (its seed, its topology,
never the working copy's) with ``MyScheduler`` registered as h1's scheduler,
and returns the trace records the checks read; ``["check_scheduler", []]``
only checks that ``MyScheduler`` is one the connection can use. Printed
output is never read.

On Mininet (``--backend mininet``) the scheduler must run where h1's
connection runs: in h1's endpoint process. The grader first checks the
class here (``check_scheduler``, with the sandbox's limits), then runs
:func:`mininet_scenario`, whose :class:`AttendeeSchedulerTransfer` loads
``solution.py`` and registers ``MyScheduler`` in the endpoint process that
runs h1 (the other hosts never load it) before scheduling the transfer.
There it runs under the run's time limit; an exception it raises ends h1's
endpoint and is reported in the run's errors.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from exercises import _runner
from exercises.grading import SimReplay, decode_value, encode_value
from exercises.mptcp_scheduler import scenario as sc
from lab.errors import ConfigError
from lab.mptcp.config import MptcpConfig
from lab.scenario.mptcp import MptcpTransfer
from lab.scenario import Scenario, Transfer, runs_here

REGISTERED_AS = "attendee"


class SchedulerProblem(Exception):
    """The solution's scheduler is not something the connection can use."""


def scheduler_class(module: Any) -> type:
    """``MyScheduler`` from the solution, wrapped to check what ``pick()`` returns.

    Raises SchedulerProblem when it is missing or not a Scheduler subclass.
    """
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

    class Checked(cls):  # type: ignore[misc, valid-type]
        def pick(self, candidates):  # noqa: ANN001, ANN202
            offered = list(candidates)
            choice = super().pick(offered)
            if choice is not None and not any(choice is c for c in offered):
                raise SchedulerProblem(f"pick() returned {choice!r}, which is not one of the candidates (or None)")
            return choice

    Checked.__name__ = cls.__name__
    return Checked


def compact(records: list[Any]) -> list[list[Any]]:
    """The records the checks read: app and mptcp state, h1's data segments (conn and length only)."""
    out = []
    for r in records:
        if r.layer == "tcp":
            if r.name == "segment_sent" and r.node == "h1" and r.data.get("len"):
                out.append([r.t, r.node, r.layer, r.name, {"conn": r.data["conn"], "len": r.data["len"]}])
        elif r.layer == "app" or (r.layer == "mptcp" and r.name in ("state_updated", "error")):
            out.append([r.t, r.node, r.layer, r.name, r.data])
    return out


def simulate(module: Any) -> dict[str, Any]:
    """The grader's scenario with the solution's scheduler on h1. Raises SchedulerProblem."""
    from lab.mptcp.strategies import register_scheduler

    register_scheduler(REGISTERED_AS, scheduler_class(module))
    q = SimReplay(sc.scenario(REGISTERED_AS), seed=sc.SEED).finish()
    return {"records": compact(q.records), "extra": q.extra}


def load_solution(path: str) -> Any:
    """Import ``solution.py`` at ``path`` as module ``solution`` (as ``exercises._runner`` does).
    Raises ConfigError saying what went wrong (unreadable, syntax error, exception at import)."""
    try:
        source = Path(path).read_text(encoding="utf-8")
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"syntax error in solution.py line {exc.lineno}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read solution.py: {exc}") from None
    sys.path.insert(0, str(Path(path).parent))
    spec = importlib.util.spec_from_loader("solution", loader=None, origin=path)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = path
    sys.modules["solution"] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - the attendee's scheduler runs here on Mininet
    except Exception as exc:  # noqa: BLE001 - anything at import time is the attendee's error
        raise ConfigError(f"solution.py raised {type(exc).__name__} while being imported: {exc}") from None
    return module


@dataclass(frozen=True, kw_only=True)
class AttendeeSchedulerTransfer(MptcpTransfer):
    """The scenario's MPTCP transfer, with ``MyScheduler`` from the ``solution`` file registered
    (as ``REGISTERED_AS``) in the process that runs ``src`` before the transfer is scheduled.
    Raises ConfigError (from ``schedule``) when the solution cannot give a usable scheduler."""

    solution: str = ""

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
            from lab.mptcp.strategies import register_scheduler

            try:
                cls = scheduler_class(load_solution(self.solution))
            except SchedulerProblem as exc:
                raise ConfigError(str(exc)) from None
            register_scheduler(REGISTERED_AS, cls)
        super().schedule(run)


def mininet_scenario(solution: Path) -> Scenario:
    """The grader's scenario with h1 running ``MyScheduler`` of ``solution``, for Mininet
    (paths shaped to ``MININET_PATH_MBPS``: see the scenario's docstring)."""
    # the attendee's name is registered only in h1's endpoint process
    base = sc.scenario("min_rtt", bw_mbps=sc.MININET_PATH_MBPS)
    transfers = []
    for t in base.transfers:
        fields = {f: getattr(t, f) for f in MptcpTransfer.__dataclass_fields__}
        fields["client"] = {**(fields["client"] or {}), "scheduler": REGISTERED_AS}
        transfers.append(AttendeeSchedulerTransfer(**fields, solution=str(Path(solution).resolve())))
    return replace(base, transfers=tuple(transfers))


def main(request_path: str, result_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    result = Path(result_path)
    load_request = result.with_name("load-request.json")
    load_result = result.with_name("load-result.json")
    load_request.write_text(json.dumps({**request, "calls": []}))
    _runner.main(str(load_request), str(load_result))  # limits, then solution.py imported as "solution"
    loaded = json.loads(load_result.read_text())
    if loaded.get("error"):
        _runner._write(result, loaded)
        return 0
    module = sys.modules["solution"]
    solution = request["solution"]
    results: list[dict[str, Any]] = []
    for function, args in request["calls"]:
        try:
            if function == "check_scheduler":
                scheduler_class(module)
                value = True
            elif function == "simulate":
                value = simulate(module, *decode_value(args))
            else:
                raise SchedulerProblem(f"unknown request {function!r}")
            results.append({"value": encode_value(value)})
        except SchedulerProblem as exc:
            results.append({"error": {"kind": "bad_result", "message": str(exc), "detail": ""}})
        except BaseException as exc:  # noqa: BLE001 - whatever the scheduler does becomes a report
            detail = _runner._short_traceback(exc, solution)
            if not any(f.filename == solution for f in traceback.extract_tb(exc.__traceback__)):
                detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-4:]).rstrip()
            results.append(
                {
                    "error": {
                        "kind": "exception",
                        "message": f"the run with your scheduler failed: {type(exc).__name__}: {exc}",
                        "detail": detail,
                    }
                }
            )
    _runner._write(result, {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

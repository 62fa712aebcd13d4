"""Runs the scenario with the attendee's scheduler, in the submission's own process.

``python -m exercises.mptcp_scheduler.sandbox REQUEST RESULT`` is started by
:meth:`exercises.grading.Submission.call_many` (with its time, CPU and
memory limits) instead of the plain runner: ``solution.py`` is loaded by
``exercises._runner`` exactly as for any other exercise, then every call
``["simulate", []]`` replays the grader's scenario (its seed, its topology,
never the working copy's) with ``MyScheduler`` registered as h1's scheduler,
and returns the trace records the checks read. Printed output is never read.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from exercises import _runner
from exercises.grading import SimReplay, decode_value, encode_value
from exercises.mptcp_scheduler import scenario as sc

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
            if function != "simulate":
                raise SchedulerProblem(f"unknown request {function!r}")
            value = simulate(module, *decode_value(args))
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

"""Runs an attendee's solution.py in its own process: ``python -m exercises._runner REQUEST RESULT``.

REQUEST is JSON ``{"solution": path, "calls": [[function, [args...]], ...]}``;
the outcome goes to the RESULT file (never to stdout, which belongs to the
attendee's prints): ``{"results": [{"value": ...} | {"error": {...}}, ...]}``
or ``{"error": {"kind", "message", "detail"}}`` when the module cannot be loaded.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import sys
import traceback
from pathlib import Path
from typing import Any

from exercises.grading import decode_value, encode_value


def _short_traceback(exc: BaseException, solution: str) -> str:
    """The traceback frames inside solution.py only, plus the error line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == solution]
    lines = traceback.format_list(frames) if frames else []
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _write(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def _limit_resources(cpu_s: int | None, memory_bytes: int | None, file_bytes: int | None) -> None:
    """CPU seconds, address space and file size for this process, set before the attendee's code runs."""
    for which, value, extra in (
        (resource.RLIMIT_CPU, cpu_s, 1),
        (resource.RLIMIT_AS, memory_bytes, 0),
        (resource.RLIMIT_FSIZE, file_bytes, 0),
    ):
        if not value:
            continue
        try:
            resource.setrlimit(which, (value, value + extra))
        except (ValueError, OSError):
            pass  # a lower hard limit is already in place


def load(solution: str) -> dict[str, Any]:
    """Import ``solution`` (an absolute path) as module ``solution``: ``{"module": module}``, or
    ``{"error": {"kind", "message", "detail"}}`` saying why it cannot be imported."""
    sys.path.insert(0, str(Path(solution).parent))
    try:
        source = Path(solution).read_text(encoding="utf-8")
        code = compile(source, solution, "exec")
    except SyntaxError as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
        message = f"syntax error in solution.py line {exc.lineno}"
        return {"error": {"kind": "syntax", "message": message, "detail": detail}}
    except (OSError, UnicodeDecodeError) as exc:
        return {"error": {"kind": "missing", "message": f"cannot read solution.py: {exc}", "detail": ""}}
    spec = importlib.util.spec_from_loader("solution", loader=None, origin=solution)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = solution
    sys.modules["solution"] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - running the attendee's module is this process's job
    except ModuleNotFoundError as exc:
        return {"error": {"kind": "missing_package", "message": missing_module_message(exc), "detail": ""}}
    except BaseException as exc:  # noqa: BLE001 - anything at import time is the attendee's error
        return {
            "error": {
                "kind": "import",
                "message": f"solution.py raised {type(exc).__name__} while being imported",
                "detail": _short_traceback(exc, solution),
            }
        }
    return {"module": module}


def missing_module_message(exc: ModuleNotFoundError) -> str:
    """One line naming the package a failed import needs."""
    name = (exc.name or str(exc)).split(".")[0]
    return f"solution.py needs the Python package {name!r}, which is not installed"


def main(request_path: str, result_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    result = Path(result_path)
    _limit_resources(request.get("cpu_limit_s"), request.get("memory_limit_bytes"), request.get("output_limit_bytes"))
    solution = str(Path(request["solution"]).resolve())
    loaded = load(solution)
    if "error" in loaded:
        _write(result, loaded)
        return 0
    module = loaded["module"]
    results: list[dict[str, Any]] = []
    for function, args in request["calls"]:
        fn = getattr(module, function, None)
        if not callable(fn):
            results.append(
                {"error": {"kind": "exception", "message": f"solution.py has no function {function}()", "detail": ""}}
            )
            continue
        try:
            value = fn(*decode_value(args))
        except ModuleNotFoundError as exc:
            message = missing_module_message(exc)
            results.append({"error": {"kind": "missing_package", "message": message, "detail": ""}})
            continue
        except BaseException as exc:  # noqa: BLE001
            results.append(
                {
                    "error": {
                        "kind": "exception",
                        "message": f"{function}() raised {type(exc).__name__}: {exc}",
                        "detail": _short_traceback(exc, solution),
                    }
                }
            )
            continue
        try:
            results.append({"value": encode_value(value)})
        except (TypeError, ValueError) as exc:
            results.append({"error": {"kind": "bad_result", "message": f"{function}() returned {exc}", "detail": ""}})
    _write(result, {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

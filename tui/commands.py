"""CLI subcommands contributed by tui/ (entry point tcplab.commands): tui, replay, serve.

Each value of COMMANDS takes the tcplab subparsers object and adds its
subcommands; handlers return an exit status and report bad input with
lab.cli.fail.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_SCENARIO = "two-paths"


def _speed(text: str) -> float | None:
    if text in ("max", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a positive number or 'max', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"speed must be a positive number or 'max', got {text!r}")
    return value


def cmd_tui(args: argparse.Namespace) -> int:
    from lab.cli import _parse_params, prepare_bundle, validate_scenario
    from lab.scenario import get_scenario
    from lab.scenario.backend import get_backend

    backend = get_backend(args.backend)
    backend.check_available(pcaps=not args.no_record)  # not root, no Mininet...: one line before any screen
    scenario = get_scenario(args.scenario)
    if args.param:
        scenario = scenario.with_params(**_parse_params(args.param))
    validate_scenario(scenario)
    out_dir = None
    if not args.no_record:
        suffix = f"-{backend.name}-tui" if backend.wall_clock else "-tui"
        out_dir, _created = prepare_bundle(args.out, args.scenario, args.seed, force=args.force, suffix=suffix)
    lab_run = backend.live_run(
        scenario, seed=args.seed, speed=args.speed, out_dir=out_dir, pause_at_moments=not args.no_auto_pause
    )
    return _run_app(lab_run, args, out_dir)


def cmd_replay(args: argparse.Namespace) -> int:
    from lab.cli import command, fail
    from lab.runs import ReplayRun

    path = Path(args.run_dir)
    if not path.exists():
        return fail(f"no run bundle at {path}")
    try:
        lab_run = ReplayRun(path, speed=args.speed, defer=True)  # the app shows the loading progress
    except FileNotFoundError:
        return fail(
            f"{path} has no trace.jsonl (a run bundle is made by '{command('run', 'SCENARIO')}' or '{command('tui')}')"
        )
    except (OSError, ValueError, TypeError, KeyError) as exc:  # a bundle too damaged to open
        return fail(f"{path}: not a readable run bundle ({type(exc).__name__}: {exc})")
    status = _run_app(lab_run, args, None)
    verdict = getattr(lab_run, "verdict", None)
    if status == 0 and verdict is not None and not verdict.ok:
        print(
            f"tcplab: {path} is not an intact bundle ({len(verdict.problems)} problems; "
            f"see '{command('verify', str(path))}')",
            file=sys.stderr,
        )
        return 1
    return status


def _exit_with_parent() -> None:
    """Ask the kernel to send us SIGTERM when the process that started us ends (Linux
    PR_SET_PDEATHSIG): an app ``tcplab serve`` started must not outlive the server,
    however the server ends. Elsewhere (no prctl) nothing happens."""
    import ctypes
    import os
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getppid()
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _exit_soon(after_s: float = 0.4) -> None:
    """End the process ``after_s`` seconds from now unless it has ended by then."""
    import os
    import threading

    timer = threading.Timer(after_s, os._exit, (130,))
    timer.daemon = True
    timer.start()


def _run_app(lab_run: Any, args: argparse.Namespace, out_dir: Path | None) -> int:
    from tui.app import LabApp

    if getattr(args, "exit_with_parent", False):
        _exit_with_parent()
    from lab.cli import command

    app = LabApp(lab_run)
    if getattr(args, "headless_check", False):
        return _headless_check(app)
    terminated: list[int] = []

    def on_sigterm(signum: int, _frame: Any) -> None:  # like quitting: the run is closed, its bundle finalised
        terminated.append(signum)
        app.exit(return_code=130)
        if getattr(args, "exit_with_parent", False):  # under tcplab serve: a page that stopped reading
            _exit_soon()  # can leave the app blocked on its output, unable to quit; it must end anyway

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        lab_run.close()  # also when the app did not unmount cleanly: the network must go, the bundle be final
    if out_dir is not None:
        print(f"bundle: {out_dir}  (replay with: {command('replay', str(out_dir))})")
        print(f"report: {command('report', str(out_dir))}")
    return 130 if terminated else 0


def _headless_check(app: Any) -> int:
    """Open the app without a terminal, let the run finish, print what the views hold (for scripts)."""
    import asyncio
    import json

    async def check() -> dict[str, Any]:
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(600):
                await pilot.pause(0.05)
                if app.finished:
                    break
            await pilot.pause()
            return {type(v).__name__: v.state() for v in app.views()} | {"problems": app.problems}

    print(json.dumps(asyncio.run(check()), default=str))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from lab.cli import fail

    try:
        from tui.serve import LabServer
    except ImportError:
        return fail("tcplab serve needs textual-serve: pip install textual-serve")
    if not 0 < args.port < 65536:
        return fail(f"port must be 1..65535, got {args.port}")
    parts = [sys.executable, "-m", "lab.cli"]
    if args.replay:
        parts += ["replay", str(Path(args.replay).resolve())]
    else:
        parts += ["tui", args.scenario, "--seed", str(args.seed), "--no-record"]
        if args.speed is not None:
            parts += ["--speed", str(args.speed)]
        if args.no_auto_pause:
            parts += ["--no-auto-pause"]
    if not 6 <= args.font_size <= 64:
        return fail(f"font size must be 6..64 pixels, got {args.font_size}")
    # exec: the app replaces the shell textual-serve starts it with, so the server is its parent
    command = "exec " + shlex.join([*parts, "--exit-with-parent"])
    import tempfile

    templates = Path(tempfile.mkdtemp(prefix="tcplab-serve-"))
    try:
        write_page_template(templates, font_size=args.font_size)
    except (OSError, ValueError) as exc:
        return fail(f"cannot prepare the page template: {exc}")
    server = LabServer(
        command,
        host=args.host,
        port=args.port,
        title=f"tcplab {args.replay or args.scenario}",
        templates_path=templates,  # absolute: replaces textual-serve's own
    )
    print(
        f"tcplab: serving on http://{args.host}:{args.port}/ (font {args.font_size} px; "
        f"?fontsize=N in the address overrides it; Ctrl+C stops)",
        file=sys.stderr,
    )
    try:
        server.serve()
    finally:
        for f in templates.iterdir():
            f.unlink()
        templates.rmdir()
    # the apps are gone and nothing is left to save; the interpreter's own teardown (coroutines
    # of connections that never finished, resolver threads) can take seconds on a busy machine
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


GOOGLE_FONT_LINK = """    <link
      rel="stylesheet"
      href="https://fonts.googleapis.com/css?family=Roboto%20Mono"
    />"""
LOCAL_FONT_FACE = """    <style>
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf") format("truetype");
        font-style: normal;
      }
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-Italic-VariableFont_wght.ttf") format("truetype");
        font-style: italic;
      }
    </style>"""


def write_page_template(directory: Path, *, font_size: int) -> Path:
    """textual-serve's page, changed so that no request leaves the machine (the font comes from
    the server's own static files, not a web font service) and the terminal's font size is
    ``font_size`` unless the address asks for another (``?fontsize=N``). Raises OSError, or
    ValueError when the installed textual-serve's page no longer has the parts changed here."""
    import textual_serve

    page = (Path(textual_serve.__file__).parent / "templates" / "app_index.html").read_text(encoding="utf-8")
    if GOOGLE_FONT_LINK not in page or 'data-font-size="{{ font_size }}"' not in page:
        raise ValueError("textual-serve's page template has changed; update tui/commands.py")
    page = page.replace(GOOGLE_FONT_LINK, LOCAL_FONT_FACE)
    # the server passes 16 when the address names no size: then ours applies
    page = page.replace(
        'data-font-size="{{ font_size }}"',
        'data-font-size="{{ font_size if font_size != 16 else ' + str(font_size) + ' }}"',
    )
    out = directory / "app_index.html"
    out.write_text(page, encoding="utf-8")
    return out


def add_commands(sub: Any) -> None:
    from lab.cli import backend_help
    from lab.scenario.backend import backend_names

    s = sub.add_parser("tui", help="the live lab in the terminal (simulator, or Mininet as root)")
    s.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO, help=f"scenario name (default: {DEFAULT_SCENARIO})")
    s.add_argument("--seed", type=int, default=1, help="random seed")
    s.add_argument("--backend", choices=backend_names(), default="sim", help=backend_help())
    s.add_argument("--speed", type=_speed, default=1.0, help="virtual seconds per wall second, or 'max' (default: 1)")
    s.add_argument(
        "--param", "-p", action="append", default=[], metavar="NAME=VALUE", help="topology parameter, repeatable"
    )
    s.add_argument("--out", metavar="DIR", help="bundle directory (default: runs/SCENARIO-seedN-TIME-tui)")
    s.add_argument("--force", action="store_true", help="replace a bundle already at --out")
    s.add_argument("--no-record", action="store_true", help="do not write a run bundle")
    s.add_argument(
        "--no-auto-pause",
        action="store_true",
        help="do not pause at the scenario's key moments (for demos that should run through)",
    )
    s.add_argument("--headless-check", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_tui)

    s = sub.add_parser("replay", help="open a recorded run bundle in the TUI, with a time slider")
    s.add_argument("run_dir", metavar="RUN_DIR", help="the bundle directory (or a trace.jsonl)")
    s.add_argument("--speed", type=_speed, default=1.0, help="playback speed, or 'max' (default: 1)")
    s.add_argument("--headless-check", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_replay)

    s = sub.add_parser("serve", help="the TUI in a web browser (textual-serve), e.g. for a projector")
    s.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO, help=f"scenario name (default: {DEFAULT_SCENARIO})")
    s.add_argument("--seed", type=int, default=1, help="random seed")
    s.add_argument("--speed", type=_speed, default=None, help="virtual seconds per wall second, or 'max' (default: 1)")
    s.add_argument("--replay", metavar="RUN_DIR", help="serve a recorded run instead of a live one")
    s.add_argument("--no-auto-pause", action="store_true", help="do not pause at the scenario's key moments")
    s.add_argument(
        "--font-size",
        type=int,
        default=16,
        metavar="PX",
        help="terminal font size in the page, e.g. 24-28 for a projector (?fontsize=N in the address overrides it)",
    )
    s.add_argument("--host", default="localhost", help="address to listen on")
    s.add_argument("--port", type=int, default=8000, help="port to listen on")
    s.set_defaults(fn=cmd_serve)


COMMANDS: dict[str, Callable[[Any], None]] = {"tui": add_commands}

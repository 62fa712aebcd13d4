"""Take the README's screenshots of the lab (SVG, as Textual draws them) into docs/screenshots/.

    .venv/bin/python scripts/screenshots.py [--size 100x32] [NAME ...]

Each shot runs its scenario in the simulator (seed 1) with the lab pausing at
key moments, goes on to the moment named below, shows the view and saves the
screen; ``replay`` opens a recorded path-failure run and jumps to a moment on
its slider; ``serve`` (PNG) is ``tcplab serve path-failure --font-size 20`` in
headless Chromium, as a projector shows it; ``report`` (PNG) is path-failure's
``tcplab report`` page in headless Chromium, at its plots. Nothing is staged: what the
picture shows is what an attendee sees.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.runs import ReplayRun  # noqa: E402
from lab.scenario import get_scenario  # noqa: E402
from lab.sim.liverun import SimRun  # noqa: E402
from tui.app import LabApp  # noqa: E402

# name: (scenario, the moment to stop at, the view to show, keys pressed there)
SHOTS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "topology": ("path-failure", "link-down", "topology", ()),
    "subflows": ("path-failure", "rto-reinjection", "subflows", ()),
    "eno": ("eno-basic", "session-ids-equal", "eno", ()),
    "iketcp": ("hotspot", "ike-sa-won", "iketcp", ()),
    "packets": ("mptcp-two-paths", "subflow-joined", "packets", ()),
    "events": ("tcpcrypt-tamper", "reset", "events", ()),
    "graphs": ("path-failure", "link-up", "graphs", ()),
}


async def _live(name: str, size: tuple[int, int], out: Path) -> Path:
    scenario, moment, view, keys = SHOTS[name]
    app = LabApp(SimRun(get_scenario(scenario), seed=1, speed=None, pause_at_moments=True))
    app.animation_level = "none"  # the tab underline where it ends, not half way
    async with app.run_test(size=size) as pilot:
        paused_polls = 0
        for _ in range(2400):  # bounded: two minutes of a busy machine
            await pilot.pause(0.05)
            status = app.lab_run.status()
            if any(m.key == moment for m in app.moments) and (status.paused or status.finished):
                break
            paused_polls = paused_polls + 1 if status.paused else 0
            if paused_polls >= 4:  # paused at another moment (its records drawn by now): on to the next
                app.action_toggle_pause()
                paused_polls = 0
        else:
            raise SystemExit(f"{name}: {scenario} never reached its moment {moment}")
        app.action_show_tab(view)
        for key in keys:
            await pilot.press(key)
        app.flush_views()
        await pilot.pause(0.3)
        path = out / f"{name}.svg"
        app.save_screenshot(str(path))
        app.lab_run.close()
        await app.workers.wait_for_complete()
    return path


async def _replay(size: tuple[int, int], out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "path-failure"
        live = SimRun(get_scenario("path-failure"), seed=1, speed=None, out_dir=bundle)
        live.run_to_end()
        live.close()
        app = LabApp(ReplayRun(bundle, speed=None))
        app.animation_level = "none"
        async with app.run_test(size=size) as pilot:
            for _ in range(2400):
                await pilot.pause(0.05)
                if app.finished:
                    break
            for _ in range(3):  # link down, the first reinjection after a timeout, link up
                await pilot.press("n")
            app.flush_views()
            await pilot.pause(0.3)
            path = out / "replay.svg"
            app.save_screenshot(str(path))
            app.lab_run.close()
            await app.workers.wait_for_complete()
    return path


def _serve(out: Path) -> Path:
    import os
    import signal
    import socket
    import subprocess
    import time

    from tests.tui.browser import screenshot

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "serve", "path-failure", "--font-size", "20", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        path = out / "serve.png"
        # the lab pauses at path-failure's first moment (link down at 1.5 s); give it the time to get there
        asyncio.run(screenshot(f"http://localhost:{port}/", path, wait_s=30.0, width=1280, height=800))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    return path


def _report(out: Path) -> Path:
    """path-failure's report (``tcplab report``) in headless Chromium, at its throughput plot."""
    from lab.report import write_report
    from lab.runs import run_headless
    from tests.tui.browser import screenshot

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "path-failure"
        run_headless("sim", get_scenario("path-failure"), seed=1, out_dir=bundle, pcaps=False)
        page = write_report(bundle, Path(tmp) / "path-failure.html")
        path = out / "report.png"
        asyncio.run(screenshot(page.as_uri() + "#s2", path, wait_s=4.0, width=1000, height=1500))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", help=f"which shots (default: all of {', '.join([*SHOTS, 'replay', 'serve', 'report'])})"
    )
    parser.add_argument("--size", default="100x32", help="terminal COLUMNSxROWS (default: 100x32)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="directory for the SVG files")
    args = parser.parse_args()
    columns, rows = (int(x) for x in args.size.split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.names or [*SHOTS, "replay", "serve", "report"]:
        if name == "replay":
            path = asyncio.run(_replay((columns, rows), out))
        elif name == "serve":
            path = _serve(out)
        elif name == "report":
            path = _report(out)
        elif name in SHOTS:
            path = asyncio.run(_live(name, (columns, rows), out))
        else:
            parser.error(f"unknown shot {name!r}")
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``tcplab`` command line.

Bad input (an unknown scenario, a bad link value, an unwritable directory)
gets one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, LabError

EXIT_USAGE = 2


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless the help names it already or
    there is none to show (a flag that is off, an option that is unset)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
            or action.nargs == 0
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """One-line errors; every option's help shows its default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, not the usage block
        self.exit(EXIT_USAGE, f"tcplab: error: {message} (see '{command('--help')}')\n")


def command(*args: str) -> str:
    """A tcplab command line as the user can type it here: ``tcplab ...`` when tcplab
    is on PATH, else ``./start ...`` (the checkout's start script, relative to the
    current directory when that is inside the checkout)."""
    words = shlex.join(args) if args else ""
    if shutil.which("tcplab") is not None:
        return f"tcplab {words}".rstrip()
    start = Path(__file__).resolve().parents[1] / "start"
    if start.is_file():
        if start.parent == Path.cwd().resolve():
            return f"./start {words}".rstrip()
        # the start script works in its own directory: paths that exist here must be absolute
        words = shlex.join(str(Path(a).resolve()) if a and Path(a).exists() else a for a in args)
        return f"{shlex.quote(str(start))} {words}".rstrip()
    return f"{shlex.quote(sys.executable)} -m lab.cli {words}".rstrip()


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("tcplab")
    except PackageNotFoundError:
        return "unknown (not installed)"


def fail(message: str) -> int:
    """Print one clear error line; the exit status for bad input."""
    print(f"tcplab: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``["delay_ms=5", "bw_mbps=(10,5)"]`` -> dict. Raises ConfigError on a malformed item."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"parameter {item!r} is not NAME=VALUE")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            raise ConfigError(f"parameter {key}: {raw!r} is not a number, tuple or string literal") from None
    return out


def cmd_scenarios(args: argparse.Namespace) -> int:
    from lab.scenario import registry

    for name, sc in sorted(registry.scenarios().items()):
        print(f"{name:<18} [{sc.topology}] {sc.description}")
    return 0


def cmd_topo(args: argparse.Namespace) -> int:
    from lab.scenario import registry
    from lab.scenario.backend import get_backend
    from lab.topology import build_topology

    known = registry.topologies()
    if args.name not in known:
        return fail(f"unknown topology {args.name!r}; known: {', '.join(sorted(known))}")
    spec = build_topology(args.name, known[args.name], **_parse_params(args.param))
    backend = get_backend(getattr(args, "backend", "sim"))
    realisation = backend.link_realisation(spec)  # how a real network would realise each link (nothing is built)
    if args.json:
        extra = {} if realisation is None else {backend.name: realisation}
        print(json.dumps(spec.to_dict() | {"diagram": spec.diagram} | extra, indent=2))
        return 0
    print(f"{args.name}\n")
    print(spec.diagram)
    print()
    for name, link in spec.links.items():
        bw = "unshaped" if link.bw_mbps is None else f"{link.bw_mbps:g} Mbit/s"
        jitter = f" (+0-{link.jitter_ms:g} ms jitter)" if link.jitter_ms else ""
        print(
            f"  {name:<10} {bw:>14}  {link.delay_ms:g} ms one-way{jitter}  {link.loss_pct:g} % loss  "
            f"queue {link.queue_packets} pkts"
        )
    print()
    for iface in spec.interfaces.values():
        print(f"  {iface.name:<9} {iface.ipv4:<12} {iface.ipv6}")
    if realisation is not None:
        print(f"\n  on {backend.title}:")
        for name, r in realisation.items():
            print(f"  {name:<10} " + "; ".join(f"{k} {r[k]}" for k in ("bw", "delay", "jitter", "loss", "queue") if k in r))
    return 0


def _default_out_dir(scenario: str, seed: int, suffix: str = "") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{scenario}-seed{seed}-{stamp}{suffix}"


def validate_scenario(scenario: Any) -> None:
    """Raise ConfigError now for what would make the run fail before it starts (bad
    topology parameters, TCP settings, link events), so no bundle is begun for it."""
    from lab.scenario import build_scenario_topology
    from lab.tcp import TcpConfig

    spec = build_scenario_topology(scenario)
    try:
        TcpConfig(**scenario.tcp)
    except TypeError as exc:
        raise ConfigError(f"scenario {scenario.name}: bad TCP setting: {exc}") from None
    for ev in scenario.link_events:
        if ev.link not in spec.links:
            raise ConfigError(f"scenario {scenario.name}: link event on unknown link {ev.link!r}")


def prepare_bundle(out: str | None, scenario: str, seed: int, *, force: bool, suffix: str = "") -> tuple[Path, bool]:
    """The bundle directory for a run (``--out`` or the default), ready to be written:
    (path, created here). Raises ConfigError (an existing bundle without --force) or OSError."""
    from lab.scenario import bundle

    out_dir = Path(out) if out else _default_out_dir(scenario, seed, suffix)
    if not out:  # two runs started in the same second get two bundles
        base, n = out_dir, 2
        while out_dir.exists():
            out_dir, n = base.with_name(f"{base.name}-{n}"), n + 1
    try:
        created = bundle.prepare(out_dir, force=force)
    except OSError as exc:
        raise ConfigError(f"cannot write the run bundle to {out_dir}: {exc.strerror or exc}") from None
    return out_dir, created


def bundle_listing(out_dir: Path) -> dict[str, Any]:
    """Where a bundle is and its files (for ``--json``)."""
    from lab.scenario import bundle

    return {"path": str(out_dir), "files": ["summary.json", *bundle.bundle_files(out_dir)]}


def _final_summary(out_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json as the run finalised it (with its digests), else the run's own summary."""
    try:
        written = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return summary
    return written if isinstance(written, dict) else summary


def _interrupted(out_dir: Path) -> int:
    print(f"tcplab: interrupted; the bundle so far: {out_dir}", file=sys.stderr)
    print(f"  replay it with: {command('replay', str(out_dir))}", file=sys.stderr)
    print(f"  report: {command('report', str(out_dir))}", file=sys.stderr)
    return 130


def cmd_run(args: argparse.Namespace) -> int:
    from lab.runs import run_headless
    from lab.scenario import get_scenario
    from lab.scenario.backend import get_backend

    backend = get_backend(args.backend)
    scenario = get_scenario(args.scenario)
    if args.param:
        scenario = scenario.with_params(**_parse_params(args.param))
    backend.check_available(pcaps=not args.no_pcap)  # not root, no Mininet...: one line, exit 2, nothing written
    validate_scenario(scenario)
    out_dir, _created = prepare_bundle(args.out, args.scenario, args.seed, force=args.force)
    clock = "wall" if backend.wall_clock else "virtual"
    quiet = args.quiet or not sys.stderr.isatty()
    try:
        if quiet:
            result = run_headless(backend, scenario, seed=args.seed, out_dir=out_dir, pcaps=not args.no_pcap)
        else:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("[bold]{task.description}" + (f" ({backend.name})" if backend.wall_clock else "")),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn(clock + " {task.fields[vt]:.2f} s"),
                TimeElapsedColumn(),
                transient=True,
            ) as bar:
                task = bar.add_task(args.scenario, total=1.0, vt=0.0)

                def progress(run: Any) -> None:
                    expected = run.bytes_expected() or 1
                    bar.update(task, completed=run.bytes_received() / expected, vt=run.now)

                result = run_headless(
                    backend, scenario, seed=args.seed, out_dir=out_dir, pcaps=not args.no_pcap, progress=progress
                )
    except KeyboardInterrupt:
        return _interrupted(out_dir)
    summary = result.summary()
    if args.json:
        print(json.dumps(_final_summary(out_dir, summary) | {"bundle": bundle_listing(out_dir)}, indent=2))
    else:
        on = f", {backend.name}" if backend.wall_clock else ""
        verdict = "OK" if summary["ok"] else "FAILED"
        print(f"scenario {summary['scenario']} (seed {summary['seed']}{on}): {verdict}")
        for t in summary["transfers"]:
            match = "SHA-256 match" if t["sha256_match"] else "SHA-256 MISMATCH"
            goodput = "-" if t["goodput_mbps"] is None else f"{t['goodput_mbps']:.2f} Mbit/s"
            err = f"  ({t['error']})" if t["error"] else ""
            ike = ""
            if t.get("ike_established_s") is not None and t["name"].endswith("i->r"):
                rtts = f", {t['ike_established_rtts']:g} RTT" if t.get("ike_established_rtts") is not None else ""
                ike = f"; IKE SA over {t.get('transport', '?')} {t.get('port', '')} at {t['ike_established_s']:.3f} s{rtts}"
            print(f"  {t['name']}: {t['bytes_received']}/{t['bytes_expected']} bytes, {match}, goodput {goodput}{ike}{err}")
        for error in summary.get("errors", []):
            print(f"  error: {error}")
        if "sim_time_s" in summary:
            print(f"  virtual {summary['sim_time_s']:.3f} s in {summary['wall_time_s']:.2f} s wall")
        else:
            print(f"  {summary['run_time_s']:.3f} s of transfer in {summary['wall_time_s']:.2f} s wall")
        print(f"  bundle: {out_dir}  (replay with: {command('replay', str(out_dir))})")
        print(f"  report: {command('report', str(out_dir))}")
    return 0 if summary["ok"] else 1


def cmd_verify(args: argparse.Namespace) -> int:
    """``tcplab verify RUN_DIR``: 0 for an intact, complete bundle; 1 naming each damaged file."""
    from lab.scenario import bundle

    path = Path(args.run_dir)
    if not path.is_dir():
        return fail(f"no run bundle at {path} (a run bundle is the directory 'tcplab run' or 'tcplab tui' writes)")
    verdict = bundle.verify(path)
    if args.json:
        print(
            json.dumps(
                {"path": str(path), "ok": verdict.ok, "interrupted": verdict.interrupted, "problems": verdict.problems}
            )
        )
    elif verdict.ok:
        note = " (the run was interrupted before it finished)" if verdict.interrupted else ""
        print(f"{path}: intact, {verdict.files} files match their SHA-256{note}")
    else:
        for problem in verdict.problems:
            print(f"{path}: {problem}")
    return 0 if verdict.ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from lab.bench import get_benchmark
    from lab.scenario import registry

    if args.bench_cmd == "list":
        for name, b in sorted(registry.benchmarks().items()):
            root = "(root) " if b.root else ""
            print(f"{name:<27} target {b.target:<20} {root}{b.description}")
        return 0
    from lab.bench.base import machine_reference

    bench = get_benchmark(args.name)
    before = machine_reference()
    result = bench.run()
    result["machine"] = {**before, "load_1min_after": machine_reference()["load_1min"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['bench']}: {result['metric']} = {result['value']} {result['unit']} (target {result['target']}: {'met' if result['passed'] else 'NOT met'})"
        )
        for k, v in result.items():
            if k not in ("bench", "metric", "value", "unit", "target", "passed"):
                print(f"  {k}: {v}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``tcplab report RUN_DIR [--out FILE.html]``: one self-contained HTML page for a run bundle."""
    from lab.report import write_report

    path = Path(args.run_dir)
    if not path.is_dir():
        return fail(f"no run bundle at {path} (a run bundle is the directory 'tcplab run' or 'tcplab tui' writes)")
    started = time.perf_counter()
    out = write_report(path, Path(args.out) if args.out else None)
    took = time.perf_counter() - started
    print(f"report: {out}  ({out.stat().st_size // 1024} KiB in {took:.1f} s; open it in a browser)")
    return 0


def cmd_dissectors(args: argparse.Namespace) -> int:
    """``tcplab dissectors``: where the Wireshark Lua dissectors are and the lines that load them."""
    from lab import dissectors

    folder = dissectors.plugin_folder()
    tshark = dissectors.tshark_command_line()
    keys = "$(python -m lab.ike.keylog RUN_DIR --options)"
    if args.args:
        print(shlex.join(dissectors.tshark_args()))
        return 0
    if args.json:
        print(
            json.dumps(
                {
                    "directory": str(dissectors.DIRECTORY),
                    "scripts": [str(p) for p in dissectors.scripts()],
                    "tshark_args": dissectors.tshark_args(),
                    "tshark": tshark,
                    "plugin_folder": str(folder),
                    "preferences": dissectors.PREFERENCES,
                },
                indent=2,
            )
        )
        return 0
    print(f"Wireshark dissectors for TCP-ENO, tcpcrypt and IKE/ESP over TCP: {dissectors.DIRECTORY}")
    print("  filters: eno, tcpcrypt, iketcp")
    print("tshark:")
    print(f"  {tshark}")
    print(f"  or, shorter: tshark $({command('dissectors', '--args')}) -r CAPTURE.pcap")
    print("  with a run's IKE and ESP keys (ESP decrypts straight from the TCP capture):")
    print(f"  eval {tshark.replace(' -r CAPTURE.pcap', '')} {keys} -r RUN_DIR/pcaps/h1-eth0.pcap")
    print(f"Wireshark: copy them into your personal Lua plugins folder ({folder}):")
    files = " ".join(shlex.quote(str(p)) for p in dissectors.scripts())
    print(f"  mkdir -p {shlex.quote(str(folder))} && cp {files} {shlex.quote(str(folder))}/")
    print("  and set these preferences (Edit > Preferences > Advanced, or the 'preferences' file):")
    for line in dissectors.preferences_lines():
        print(f"    {line}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Remove what crashed runs left behind, for every backend (Mininet: only its own, by PID and interface name)."""
    if os.geteuid() != 0:
        return fail(
            "tcplab clean needs root (it removes network namespaces' processes and interfaces): "
            f"run it with sudo: sudo {command('clean')}"
        )
    from lab.scenario.backend import backend_names, get_backend

    done = [line for name in backend_names() for line in get_backend(name).clean()]
    for line in done:
        print(line)
    if not done:
        print("nothing to clean")
    return 0


def _backends() -> list[str]:
    from lab.scenario.backend import backend_names

    return backend_names()


def backend_help() -> str:
    """--backend's help: every backend with what it is (default: sim)."""
    from lab.scenario.backend import backend_names, get_backend

    return "; ".join(f"{name}: {get_backend(name).description}" for name in backend_names()) + " (default: sim)"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="tcplab", description="A hands-on lab for Multipath TCP, TCP-ENO/tcpcrypt and IKEv2 over TCP.")
    p.add_argument("--version", action="version", version=f"tcplab {version()}")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    s = sub.add_parser("scenarios", help="list scenarios")
    s.set_defaults(fn=cmd_scenarios)

    s = sub.add_parser("topo", help="show a topology's diagram, links and addresses")
    s.add_argument("name", help="topology name (see 'scenarios' for the topology each scenario uses)")
    s.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="topology parameter, repeatable; per-path ones take one value for every path or a tuple, "
        "e.g. delay_ms=5 or delay_ms=(5,20)",
    )
    s.add_argument("--json", action="store_true", help="print the topology as JSON")
    s.add_argument(
        "--backend", choices=_backends(), default="sim", help="also show how that backend realises each link (default: sim)"
    )
    s.set_defaults(fn=cmd_topo)

    s = sub.add_parser("run", help="run a scenario headless and write a run bundle")
    s.add_argument("scenario", help="scenario name (see 'scenarios')")
    s.add_argument("--seed", type=int, default=1, help="random seed (same seed, same run in the simulator)")
    s.add_argument("--out", metavar="DIR", help="bundle directory (default: runs/SCENARIO-seedN-TIME)")
    s.add_argument("--force", action="store_true", help="replace a bundle already at --out")
    s.add_argument("--backend", choices=_backends(), default="sim", help=backend_help())
    s.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="topology parameter override, repeatable (e.g. delay_ms=5)",
    )
    s.add_argument("--no-pcap", action="store_true", help="skip per-interface captures")
    s.add_argument("--json", action="store_true", help="print summary.json with the bundle's path and files")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("verify", help="check a run bundle against its summary's SHA-256 digests")
    s.add_argument("run_dir", metavar="RUN_DIR", help="the bundle directory")
    s.add_argument("--json", action="store_true", help="print one JSON object: path, ok, interrupted, problems")
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("report", help="write a self-contained HTML report (plots, ladder, timeline) of a run bundle")
    s.add_argument("run_dir", metavar="RUN_DIR", help="the bundle directory")
    s.add_argument("--out", metavar="FILE.html", help="where to write it (default: RUN_DIR.html, beside the bundle)")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("dissectors", help="where the Wireshark dissectors for TCP-ENO, tcpcrypt and IKETCP are")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument(
        "--args", action="store_true", help="print only tshark's arguments: tshark $(tcplab dissectors --args) -r X"
    )
    s.set_defaults(fn=cmd_dissectors)

    s = sub.add_parser("clean", help="(root) remove the leftovers of a crashed Mininet run")
    s.set_defaults(fn=cmd_clean)

    s = sub.add_parser("bench", help="benchmarks")
    bsub = s.add_subparsers(dest="bench_cmd", required=True, parser_class=Parser)
    b = bsub.add_parser("list", help="list benchmarks ((root): needs root and Mininet)")
    b.set_defaults(fn=cmd_bench)
    b = bsub.add_parser("run", help="run one benchmark")
    b.add_argument("name", help="benchmark name (see 'bench list')")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(fn=cmd_bench)

    # tui/ and exercises/ add their own subcommands (tui, replay, serve, exercise)
    # through the tcplab.commands entry points, so lab never imports them.
    from lab.scenario import registry

    for add_commands in registry.commands().values():
        add_commands(sub)
    return p


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM is handled like Ctrl-C: runs stop and finalise their bundles."""
    raise KeyboardInterrupt


def _silence_stdout() -> None:
    """stdout's reader went away (``tcplab scenarios | head -1``): say nothing more."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        status = args.fn(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except (LabError, ValueError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except KeyboardInterrupt:
        print("tcplab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

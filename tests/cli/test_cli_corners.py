"""The command line's corners: parameters, --version, help and defaults, broken pipes, hints
that work as typed, backends that cannot start, ./run-tests' summary line, README and bench list."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli import build_parser, command, main
from lab.scenario import registry

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
        **kwargs,
    )


def test_one_value_for_a_per_path_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topo", "two-paths", "-p", "delay_ms=5"]) == 0
    out = capsys.readouterr().out
    assert out.count("2.5 ms one-way") == 4  # both paths, 5 ms one-way each: 2.5 ms per link
    assert main(["topo", "two-paths", "-p", "delay_ms=(5,20)", "-p", "bw_mbps=3"]) == 0
    out = capsys.readouterr().out
    assert out.count("3 Mbit/s") == 4 and out.count("10 ms one-way") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["topo", "two-paths", "-p", "delay_ms=(1,2,3)"],
            (
                "topology two-paths: delay_ms takes one number for every path or 2 numbers, one per path, "
                "e.g. -p delay_ms=5 or -p delay_ms=(5,20); got (1, 2, 3)"
            ),
        ),
        (
            ["run", "single-path", "-p", "delay_ms=(1,2)"],
            "topology single-path: delay_ms takes one number, e.g. -p delay_ms=20; got (1, 2)",
        ),
    ],
)
def test_a_parameter_of_the_wrong_form_names_the_form_with_an_example(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"tcplab: error: {message}"]


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert re.fullmatch(r"tcplab \d+\.\d+\.\d+\S*\n", proc.stdout)


def _parsers(parser: argparse.ArgumentParser, path: str = "tcplab"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_has_help_and_shows_its_default() -> None:
    seen = 0
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(
                action, (argparse._HelpAction, argparse._SubParsersAction)
            ):
                continue
            seen += 1
            name = action.option_strings[0] if action.option_strings else action.dest
            assert action.help, f"{path} {name} has no help text"
            default = action.default
            if default not in (None, False, [], argparse.SUPPRESS) and not isinstance(action, argparse._VersionAction):
                shown = parser._get_formatter()._get_help_string(action) % {"default": default}
                assert "default" in shown, f"{path} {name}: the default {default!r} is not shown"
                assert "default" in " ".join(text.split()), path
    assert seen > 40


def test_a_closed_pipe_is_silent() -> None:
    for args in (["scenarios"], ["topo", "two-paths", "--json"], ["bench", "list"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before a line is written, as with '| head -0'
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
        assert err == "", args
    shell = subprocess.run(
        ["bash", "-c", f"{shlex_join([sys.executable, '-m', 'lab.cli', 'scenarios'])} | head -1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert shell.stderr == "" and len(shell.stdout.splitlines()) == 1


def shlex_join(words: list[str]) -> str:
    import shlex

    return shlex.join(words)


def test_hints_use_the_start_script_unless_tcplab_is_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert command("replay", "runs/a b") == "./start replay 'runs/a b'"
    monkeypatch.chdir(tmp_path)
    assert command("verify", "x") == f"{ROOT / 'start'} verify x"
    (tmp_path / "runs" / "b").mkdir(parents=True)  # ./start runs in its own directory: paths made absolute
    assert command("replay", "runs/b") == f"{ROOT / 'start'} replay {tmp_path / 'runs' / 'b'}"
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/local/bin/tcplab")
    assert command("exercise", "check", "mptcp_token") == "tcplab exercise check mptcp_token"


def test_the_printed_replay_hint_works_as_typed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if not Path(p, "tcplab").exists())
    out = tmp_path / "bundle"
    proc = run_cli("run", "single-path", "--out", str(out), "--no-pcap", env=env)
    assert proc.returncode == 0, proc.stderr
    (hint,) = re.findall(r"replay with: (.*)\)$", proc.stdout, re.MULTILINE)
    assert hint.startswith("./start replay ")
    replay = subprocess.run(
        ["bash", "-c", f"{hint} --headless-check"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert '"SubflowsView"' in replay.stdout


@pytest.mark.parametrize("what", ["root", "mininet", "mnexec"])
@pytest.mark.parametrize("cmd", ["run", "tui"])
def test_a_backend_that_cannot_start_refuses_in_one_line_before_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, what: str, cmd: str
) -> None:
    if what == "root":
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    elif what == "mininet":
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        monkeypatch.setitem(sys.modules, "mininet.net", None)  # import fails
    else:
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        real_which = shutil.which
        monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "mnexec" else real_which(name))
    out = tmp_path / "bundle"
    assert main([cmd, "two-paths", "--backend", "mininet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tcplab: error: ")
    expected = {"root": "needs root", "mininet": "pip install mininet", "mnexec": "apt install mininet"}[what]
    assert expected in err[0]
    assert not out.exists()


def test_bench_list_marks_root_only_benches_and_agrees_with_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "list"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    benches = registry.benchmarks()
    assert set(listed) == set(benches)
    readme = (ROOT / "README.md").read_text()
    rows = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"^\| `([a-z0-9-]+)` \| (.*?) \| (.*?) \|$", readme, re.MULTILINE)
        if m.group(1) in benches or m.group(1).startswith(("sim-", "mininet-", "tui-", "tcpcrypt-"))
    }
    assert set(rows) == set(benches), "README's benchmark table and 'bench list' name different benches"
    for name, bench in benches.items():
        what, target = rows[name]
        assert target.startswith(bench.target), f"{name}: README says {target!r}, bench list {bench.target!r}"
        assert what.startswith("(root)") == bench.root, name
        assert ("(root)" in listed[name]) == bench.root, name
        assert bench.root == name.startswith("mininet-")


def test_run_tests_prints_the_summary_line_whatever_flags_are_added(tmp_path: Path) -> None:
    for extra in (["-q"], ["-qq"], ["--quiet", "-q"], ["-v"]):
        proc = subprocess.run(
            ["./run-tests", *extra, "-n", "0", "-p", "no:cacheprovider", "tests/test_topology.py", "-k", "per_path"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert re.search(r"^(=+ )?\d+ passed(, \d+ deselected)? in ", proc.stdout, re.MULTILINE), (
            extra,
            proc.stdout[-1000:],
        )

"""An attendee who wants the points without the work, graded by `tcplab exercise grade` (and `check`).

Each attack is a solution.py handed in next to an honest attendee's reference solution. None may earn
full marks, nothing it starts may outlive the grade, no file may appear outside its working directory,
and nothing of the grader's (its environment, its memory, its files) may come back in the results.
The same runs as root (the submission runs as nobody) and as a normal user (user namespaces), and
with the kernel refusing namespaces (graded anyway, the protections that were off said so).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exercises.grading import PROJECT_ROOT, load_exercise
from exercises.sandbox import DISK_LIMIT_BYTES, Protections, Sandbox
from lab.cli import main

CANARY = "tcplab-canary-7f3a9c"  # in the grader's environment: must never reach a result
SLEEP_TOKEN = "987.654321"  # a daemon's `sleep` argument: found in /proc if it survived
NO_NEW_FILE = "tcplab-pwned-8d1e"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


def survivors() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if SLEEP_TOKEN.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """A listener on 127.0.0.1 that records any connection, a canary in the environment, places a
    submission must not write to; afterwards: no survivor, no new file."""
    monkeypatch.setenv("TCPLAB_TEST_SECRET", CANARY)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    accepted.append(conn.recv(100) or b"(connected)")
                except OSError:
                    accepted.append(b"(connected)")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    outside = [
        tmp_path / NO_NEW_FILE,
        PROJECT_ROOT / NO_NEW_FILE,
        Path("/tmp") / NO_NEW_FILE,
        Path("/var/tmp") / NO_NEW_FILE,
    ]
    yield {"port": listener.getsockname()[1], "accepted": accepted, "outside": outside, "tmp": tmp_path}
    stop.set()
    thread.join()
    listener.close()
    assert not accepted, f"a submission reached the grader's 127.0.0.1: {accepted}"
    left = survivors()
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"processes outlived the grade: {left}"
    written = [str(p) for p in outside if p.exists()]
    for p in written:
        Path(p).unlink()
    assert not written, f"files appeared outside the working directory: {written}"


def handins(tmp: Path, name: str, attack: str) -> Path:
    """SUBMISSIONS_DIR with ada (the reference solution) and mallory (``attack`` + the starter)."""
    ex = load_exercise(name)
    subs = tmp / "subs"
    for attendee in ("ada", "mallory"):
        (subs / attendee).mkdir(parents=True)
        shutil.copyfile(ex.package_dir / "README.md", subs / attendee / "README.md")
    shutil.copyfile(ex.package_dir / "solution" / "solution.py", subs / "ada" / "solution.py")
    starter = (ex.package_dir / "starter.py").read_text()
    (subs / "mallory" / "solution.py").write_text(starter + "\n\n" + attack)
    return subs


ATTACKS = {
    "runs a reference solution found on disk": """
import glob, os, runpy, time
_found = [f"{ROOT}/exercises/{EX}/solution/solution.py", *glob.glob(f"/work/*/exercises/{EX}/solution/solution.py")]
_deadline = time.monotonic() + 8
for _root, _dirs, _files in os.walk("/"):
    _dirs[:] = [d for d in _dirs if d not in ("proc", "sys", "dev")]
    if _root.endswith(f"{EX}/solution") and "solution.py" in _files:
        _found.append(os.path.join(_root, "solution.py"))
    if time.monotonic() > _deadline:
        break
for _path in _found:
    try:
        globals().update({k: v for k, v in runpy.run_path(_path).items() if not k.startswith("__")})
        break
    except OSError:
        continue
""",
    "prints fake results": """
print("eno_tep: 10/10 points (none)")
print("all checks passed")
print(json.dumps({"passed": True, "points": 10, "max_points": 10}) if False else "")
""",
    "writes a forged result file and exits": """
import json, os
for _p in ("/io/result.json", "result.json", "../io/result.json"):
    try:
        with open(_p, "w") as _fh:
            json.dump({"results": [{"value": 0} for _ in range(200)]}, _fh)
    except OSError:
        pass
os._exit(0)
""",
    "fills the disk": """
import os
_chunk = b"x" * (1 << 20)
for _i in range(1 << 14):  # 16 GiB, a file at a time, each under any per-file limit
    try:
        with open(f"fill-{_i}", "wb") as _fh:
            _fh.write(_chunk)
    except OSError:
        break
""",
    "starts a setsid daemon": f"""
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{SLEEP_TOKEN}"])
    os._exit(0)
""",
    "writes outside its working directory": """
import os, pathlib
for _p in OUTSIDE:
    try:
        pathlib.Path(_p).write_text("pwned")
    except OSError:
        pass
""",
    "connects to the grader's 127.0.0.1": """
import socket
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2).sendall(b"pwned")
except OSError:
    pass
""",
    "reads the grader's memory and environment": """
import os, re
_seen = []
for _pid in {os.getppid(), 1, *[int(p) for p in os.listdir("/proc") if p.isdigit()]}:
    for _what in ("environ", "cmdline"):
        try:
            _seen.append(open(f"/proc/{_pid}/{_what}", "rb").read())
        except OSError:
            pass
    try:
        with open(f"/proc/{_pid}/maps") as _maps, open(f"/proc/{_pid}/mem", "rb") as _mem:
            for _line in _maps:
                _lo, _hi = (int(x, 16) for x in _line.split()[0].split("-"))
                if "rw" in _line.split()[1] and _hi - _lo < 1 << 26:
                    try:
                        _mem.seek(_lo)
                        _seen.append(_mem.read(_hi - _lo))
                    except (OSError, ValueError, OverflowError):
                        pass
    except OSError:
        pass
_blob = b"".join(_seen)
_hits = sorted(set(re.findall(rb"tcplab-canary-[0-9a-f]+", _blob)))
raise RuntimeError(f"stolen: {_hits} {os.environ.get('TCPLAB_TEST_SECRET')}")
""",
}


def _attack(name: str, world: dict[str, object], exercise: str = "eno_tep") -> str:
    outside = [str(p) for p in world["outside"]]  # type: ignore[union-attr]
    head = (
        f"import json\nOUTSIDE = {outside!r}\nPORT = {world['port']}\nROOT = {str(PROJECT_ROOT)!r}\nEX = {exercise!r}\n"
    )
    return head + ATTACKS[name]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attacks_on_grade_earn_nothing_and_leave_nothing(
    attack: str, world: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    subs = handins(world["tmp"], "eno_tep", _attack(attack, world))  # type: ignore[arg-type]
    code, out, _ = run(capsys, "exercise", "grade", "eno_tep", str(subs), "--json", "--jobs", "1")
    results = {r["attendee"]: r for r in json.loads(out)}
    assert code == 1
    assert results["ada"]["passed"] and results["ada"]["points"] == results["ada"]["max_points"]
    mallory = results["mallory"]
    assert not mallory["passed"] and mallory["points"] < mallory["max_points"], json.dumps(mallory, indent=1)
    assert CANARY not in out
    assert mallory["sandbox"]["off"] == [], mallory["sandbox"]


@pytest.mark.parametrize(
    "attack",
    [
        "starts a setsid daemon",
        "writes outside its working directory",
        "connects to the grader's 127.0.0.1",
        "reads the grader's memory and environment",
        "runs a reference solution found on disk",
    ],
)
def test_attacks_on_check_earn_nothing_and_leave_nothing(
    attack: str, world: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    subs = handins(world["tmp"], "eno_tep", _attack(attack, world))  # type: ignore[arg-type]
    code, out, _ = run(capsys, "exercise", "check", "eno_tep", "--dir", str(subs / "mallory"), "--json")
    report = json.loads(out)
    assert code == 1 and not report["passed"] and CANARY not in out


FORGE_SCHEDULER = """
import json, os, sys
import __main__
# what used to work: the simulation ran in this process, and its trace was believed
def simulate(*args, **kwargs):
    return {"records": [], "extra": {"results": {"bulk": {"sha256_match": True, "bytes_received": 1,
            "bytes_expected": 1, "goodput_mbps": 99.0}}}}
__main__.simulate = simulate
for _mod in list(sys.modules.values()):
    if getattr(_mod, "simulate", None) is not None:
        try:
            _mod.simulate = simulate
        except Exception:
            pass
try:
    import exercises.grading as _g
    _g.SimReplay.finish = lambda self: None
except Exception:
    pass
for _p in ("/io/result.json",):
    try:
        json.dump({"results": [{"value": simulate()}]}, open(_p, "w"))
    except OSError:
        pass
"""


def test_forging_simulate_or_the_trace_in_mptcp_scheduler_earns_nothing(
    world: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    subs = handins(world["tmp"], "mptcp_scheduler", FORGE_SCHEDULER)  # type: ignore[arg-type]
    _, out, _ = run(capsys, "exercise", "grade", "mptcp_scheduler", str(subs), "--json", "--jobs", "2")
    results = {r["attendee"]: r for r in json.loads(out)}
    assert results["ada"]["points"] == 5, json.dumps(results["ada"], indent=1)
    mallory = {c["name"]: c for c in results["mallory"]["checks"]}
    # graded on what its (starter) scheduler really did: everything on path A
    assert results["mallory"]["points"] == 1, json.dumps(results["mallory"], indent=1)
    assert not mallory["both paths carry a fair share of the data"]["passed"]


def test_reference_solution_is_hidden_from_the_scheduler_sandbox(
    world: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    attack = _attack("runs a reference solution found on disk", world, "mptcp_scheduler")
    subs = handins(world["tmp"], "mptcp_scheduler", attack)  # type: ignore[arg-type]
    _, out, _ = run(capsys, "exercise", "grade", "mptcp_scheduler", str(subs), "--json", "--jobs", "2")
    results = {r["attendee"]: r for r in json.loads(out)}
    assert results["mallory"]["points"] < 5, json.dumps(results["mallory"], indent=1)


# --- as a normal user, and with namespaces refused -------------------------------------------


def _python_for_nobody() -> list[str] | None:
    """A command running this project's Python as nobody (root's own interpreter may sit where nobody
    cannot reach it: then the system's Python of the same version, with our packages on its path)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = [
        "env",
        "HOME=/tmp",
        "TCPLAB_GRADING_KEY=/tmp/tcplab-nobody-test.key",
        f"PYTHONPATH={os.pathsep.join([str(PROJECT_ROOT), *site])}",
    ]
    base = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *env]
    for python in (sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"):
        probe = subprocess.run([*base, python, "-c", "import lab, exercises.grading"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [*base, python]
    return None


def _nobody_handins(name: str, attack: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="tcplab-nobody-"))
    subs = handins(tmp, name, attack)
    nobody = pwd.getpwnam("nobody")
    for p in (tmp, *tmp.rglob("*")):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    return subs


@pytest.mark.parametrize("refuse_namespaces", [False, True])
def test_grading_as_a_normal_user(refuse_namespaces: bool, world: dict[str, object]) -> None:
    command = _python_for_nobody()
    if command is None:
        pytest.skip("needs root (to become nobody with setpriv) and a Python nobody can run")
    attack = _attack("starts a setsid daemon", world) + _attack("writes outside its working directory", world)
    subs = _nobody_handins("eno_tep", attack)
    try:
        grade = [*command, "-m", "lab.cli", "exercise", "grade", "eno_tep", str(subs), "--json", "--jobs", "1"]
        if refuse_namespaces:  # a user namespace where no further one may be made: the kernel refuses
            grade = [
                *command[:-1],
                "unshare",
                "--user",
                "--map-user=65534",
                "--map-group=65534",
                "--keep-caps",
                "sh",
                "-c",
                'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"',
                "sh",
                command[-1],
                *grade[len(command) :],
            ]
        proc = subprocess.run(grade, capture_output=True, text=True, timeout=300, check=False)
        results = {r["attendee"]: r for r in json.loads(proc.stdout)}
        assert results["ada"]["passed"], proc.stdout + proc.stderr
        assert not results["mallory"]["passed"]
        sandbox = results["mallory"]["sandbox"]
        assert not sandbox["as_root"]
        if refuse_namespaces:
            assert not sandbox["pid_namespace"] and not sandbox["filesystem"]
            assert any("refused new namespaces" in p for p in sandbox["problems"]), sandbox
            assert "no network (own network namespace)" in sandbox["off"]
            assert sandbox["descendants_killed"], sandbox  # what still holds: the daemon was adopted and killed
            assert not survivors()
            # what does not: nobody may write where everyone may (/tmp); the report said so
            for p in world["outside"]:  # type: ignore[union-attr]
                if Path(p).exists():
                    Path(p).unlink()
        else:
            # all but the disk limit, which needs root to mount its tmpfs
            assert sandbox["off"] == [Protections.DESCRIPTIONS["disk_limit"]], sandbox
            assert sandbox["pid_namespace"] and sandbox["filesystem"], sandbox
    finally:
        shutil.rmtree(subs.parent, ignore_errors=True)


def test_scheduler_across_the_sandbox_as_a_normal_user() -> None:
    """The scheduler's pipe crosses a user namespace too: the reference gets full marks, the starter not."""
    command = _python_for_nobody()
    if command is None:
        pytest.skip("needs root (to become nobody with setpriv) and a Python nobody can run")
    subs = _nobody_handins("mptcp_scheduler", "")
    try:
        grade = [*command, "-m", "lab.cli", "exercise", "grade", "mptcp_scheduler", str(subs), "--json", "--jobs", "2"]
        proc = subprocess.run(grade, capture_output=True, text=True, timeout=300, check=False)
        results = {r["attendee"]: r for r in json.loads(proc.stdout)}
        assert results["ada"]["points"] == 5, proc.stdout + proc.stderr
        assert results["mallory"]["points"] == 1, proc.stdout
        assert results["ada"]["sandbox"]["off"] == [Protections.DESCRIPTIONS["disk_limit"]]
        assert not results["ada"]["sandbox"]["as_root"]
    finally:
        shutil.rmtree(subs.parent, ignore_errors=True)


FILL = """
import errno, os
chunk = b"x" * (1 << 20)
total = 0
for i in range(1 << 14):
    try:
        with open(f"fill-{i}", "wb") as fh:
            fh.write(chunk)
        total += len(chunk)
    except OSError as exc:
        print(total, errno.errorcode.get(exc.errno, exc.errno))
        break
else:
    print(total, "none")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the disk limit is a tmpfs the grader mounts, which needs root")
def test_a_submission_cannot_fill_the_graders_disk(tmp_path: Path) -> None:
    """File after file, each small: what it writes fills the sandbox's own tmpfs and stops there."""
    (tmp_path / "solution.py").write_text("")
    with Sandbox(tmp_path) as box:
        proc = box.start([sys.executable, "-I", "-S", "-c", FILL], env={}, stdout=subprocess.PIPE)
        out, _ = proc.communicate(timeout=120)
        assert box.status().disk_limit and box.status().filesystem, box.status()
        base = box.base
    total, why = out.decode().split()
    assert why == "ENOSPC" and 0 < int(total) <= DISK_LIMIT_BYTES, out
    assert not base.exists()  # unmounted and removed

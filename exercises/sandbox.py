"""The sandbox a submission's code runs in, from the grader's side.

:class:`Sandbox` copies the submission into a fresh working directory and
starts a command there through ``exercises/_launcher.py``, which (see its
docstring) puts it in its own PID, network, mount, IPC and UTS namespaces,
builds a read-only view of the system with only the working directory
writable, hides the grader's processes and the reference solutions, and as
root runs it as ``nobody``. What the kernel refused is reported
(:class:`Protections`), and the grade goes on without it.

Nothing the sandboxed code writes is read back except the file the grader
asked for (and then only as data: the checks run here, on what the grader
ran itself).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

LAUNCHER = Path(__file__).resolve().with_name("_launcher.py")
EXERCISES_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = EXERCISES_DIR.parent
CODE_DIRS = ("lab", "exercises", "topologies")  # what submissions import (the project's code, read-only)
WORKDIR_LIMIT_BYTES = 64 << 20  # a submission directory bigger than this is refused
# as root, the sandbox's directories live on a tmpfs of this size: a submission that writes file after
# file (each under the file-size limit) fills it, not the grader's disk
DISK_LIMIT_BYTES = 2 * WORKDIR_LIMIT_BYTES + (32 << 20)
UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class Protections:
    """What held for one sandboxed run (each False: that protection was off)."""

    pid_namespace: bool = False  # nothing outlives the run; no view of the grader's processes
    network_namespace: bool = False  # no network at all, 127.0.0.1 is its own
    filesystem: bool = False  # read-only system, only the working directory writable, no reference solutions
    unprivileged_user: bool = False  # as root: runs as nobody (not root: already the caller's own uid)
    descendants_killed: bool = False  # without a PID namespace: orphans adopted and killed (child subreaper)
    disk_limit: bool = False  # what it writes lives on a size-limited tmpfs (as root), not the grader's disk
    as_root: bool = False
    problems: tuple[str, ...] = ()

    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "pid_namespace": "own PID namespace (nothing survives the run, the grader's processes are invisible)",
        "network_namespace": "no network (own network namespace)",
        "filesystem": "read-only filesystem view with only the working directory writable, no reference solutions",
        "unprivileged_user": "runs as an unprivileged user",
        "disk_limit": f"writes limited to {DISK_LIMIT_BYTES >> 20} MiB in all (a tmpfs of that size, as root)",
    }

    def off(self) -> list[str]:
        """The protections that did not hold, in words (empty: all of them held)."""
        out = [text for key, text in self.DESCRIPTIONS.items() if key != "unprivileged_user" and not getattr(self, key)]
        if not self.pid_namespace and self.descendants_killed:
            out[0] = (
                "own PID namespace (the submission sees the grader's processes; what it starts is still killed "
                "after the run unless it kills the sandbox's launcher first)"
            )
        if self.as_root and not self.unprivileged_user:
            out.append(self.DESCRIPTIONS["unprivileged_user"])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid_namespace": self.pid_namespace,
            "network_namespace": self.network_namespace,
            "filesystem": self.filesystem,
            "unprivileged_user": self.unprivileged_user if self.as_root else True,
            "descendants_killed": self.pid_namespace or self.descendants_killed,
            "disk_limit": self.disk_limit,
            "as_root": self.as_root,
            "off": self.off(),
            "problems": list(self.problems),
        }


def hidden_dirs() -> list[str]:
    """Directories the sandbox must not see into: every exercise's reference solution."""
    return sorted(str(p) for p in EXERCISES_DIR.glob("*/solution") if p.is_dir())


def read_only_dirs() -> list[str]:
    """Python (interpreter, standard library, the environment's packages) and the project's code."""
    dirs = {sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix}
    dirs.add(str(Path(os.path.realpath(sys.executable)).parent.parent))
    dirs.update(str(PROJECT_ROOT / d) for d in CODE_DIRS if (PROJECT_ROOT / d).is_dir())
    dirs.update(site_dirs())
    return sorted(d for d in dirs if d and d != "/" and os.path.isdir(d))


def site_dirs() -> list[str]:
    """The package directories on the grader's path (installed packages: Scapy, cryptography...)."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and os.path.isdir(p)]


def _unprivileged_ids() -> tuple[int, int] | None:
    try:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        return None
    for group in ("nogroup", "nobody"):
        try:
            return user.pw_uid, grp.getgrnam(group).gr_gid
        except KeyError:
            continue
    return user.pw_uid, user.pw_gid


def _dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


@dataclass
class Sandbox:
    """A throwaway working directory (a copy of ``source``) and the commands run in it.

    Use as a context manager; ``start`` starts one command, ``finish`` stops it and everything it
    started. Raises ValueError (from the constructor) for a submission directory over
    ``WORKDIR_LIMIT_BYTES``, OSError when the copy fails.
    """

    source: Path
    base: Path = field(init=False)
    work: Path = field(init=False)
    io: Path = field(init=False)
    protections: Protections | None = field(init=False, default=None)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _status_fd: int | None = field(init=False, default=None)
    _init_pid: int | None = field(init=False, default=None)
    _disk_limited: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        source = Path(self.source)
        if source.is_dir() and _dir_size(source) > WORKDIR_LIMIT_BYTES:
            raise ValueError(f"{source} holds more than {WORKDIR_LIMIT_BYTES >> 20} MiB")
        self.base = Path(tempfile.mkdtemp(prefix="tcplab-sandbox-"))
        self._disk_limited = _mount_tmpfs(self.base, DISK_LIMIT_BYTES)
        self.work, self.io = self.base / "work", self.base / "io"
        if source.is_dir():
            shutil.copytree(source, self.work, symlinks=True)
        else:
            self.work.mkdir()
        self.io.mkdir()
        (self.base / "root").mkdir()
        ids = _unprivileged_ids() if os.geteuid() == 0 else None
        self._ids = ids
        if ids is not None:
            for path in (self.work, self.io, *self.work.rglob("*")):
                os.lchown(path, *ids)

    def __enter__(self) -> Sandbox:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        stdout: IO[bytes] | int,
        stdin: IO[bytes] | int = subprocess.DEVNULL,
        pass_fds: Sequence[int] = (),
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (``{work}`` and ``{io}`` in it and in ``env`` are the working and request
        directories as the command sees them). Raises OSError when Python cannot be started."""
        status_r, status_w = os.pipe()
        cfg = {
            "argv": list(argv),
            "env": env,
            "status_fd": status_w,
            "pass_fds": list(pass_fds),
            "work_dir": str(self.work),
            "io_dir": str(self.io),
            "root_dir": str(self.base / "root"),
            "read_only": read_only_dirs(),
            "hidden": hidden_dirs(),
            "run_uid": self._ids[0] if self._ids else None,
            "run_gid": self._ids[1] if self._ids else None,
        }
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(cfg)],
                cwd=self.base,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(status_w, *pass_fds),
            )
        finally:
            os.close(status_w)
        self._status_fd = status_r
        return self._proc

    def status(self, timeout_s: float = 10.0) -> Protections:
        """What the launcher achieved (waits for its report, at most ``timeout_s``)."""
        if self.protections is not None:
            return self.protections
        data = b""
        fd = self._status_fd
        deadline = time.monotonic() + timeout_s
        while fd is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        merged: dict[str, Any] = {}
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                merged.update(json.loads(line))
            except ValueError:
                continue
        self._init_pid = merged.get("init_pid")
        problems = tuple(str(p) for p in merged.get("problems", []))
        if not merged:
            problems += ("the sandbox did not report what it set up",)
        self.protections = Protections(
            pid_namespace=bool(merged.get("pid_namespace")),
            network_namespace=bool(merged.get("network_namespace")),
            filesystem=bool(merged.get("filesystem")),
            unprivileged_user=bool(merged.get("unprivileged_user")),
            descendants_killed=bool(merged.get("descendants_killed")),
            disk_limit=self._disk_limited,
            as_root=os.geteuid() == 0,
            problems=problems,
        )
        return self.protections

    def stop(self) -> None:
        """Kill the command and everything it started (its PID namespace, or its process group when
        there is none), then wait until they are gone."""
        proc = self._proc
        if proc is None:
            return
        running = not _exited(proc.pid)
        self.status(timeout_s=0.5 if running else 5.0)
        if running:  # the launcher kills what the command started (its namespace, or its descendants)
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except OSError:
                pass
            deadline = time.monotonic() + 2.0
            while not _exited(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.005)
        # the launcher is not reaped yet, so its process group ID cannot have been reused
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        if self._init_pid:  # PID 1 of the namespace dies of its parent's death; wait for it
            deadline = time.monotonic() + 5.0
            while _alive(self._init_pid) and time.monotonic() < deadline:
                time.sleep(0.005)
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None
        self._proc = None

    def close(self) -> None:
        self.stop()
        if self._disk_limited:  # the tmpfs goes with everything on it
            subprocess.run(["umount", "--lazy", str(self.base)], capture_output=True, check=False)
            self._disk_limited = False
        shutil.rmtree(self.base, ignore_errors=True)


def _mount_tmpfs(path: Path, size_bytes: int) -> bool:
    """As root: a private tmpfs of ``size_bytes`` on ``path``; True when mounted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700,nosuid,nodev", "tcplab-sandbox", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, without reaping it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None and info.si_pid != 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def exit_description(returncode: int) -> int:
    """The launcher's exit status as ``subprocess`` would give the command's: a namespace's PID 1
    reports a command killed by signal N as 128 + N."""
    if 128 < returncode < 128 + 65:
        return -(returncode - 128)
    return returncode

"""Starts a submission's Python inside the sandbox: ``python -I _launcher.py CONFIG_JSON``.

Run by :mod:`exercises.sandbox` (never by hand). It imports nothing from the
project: it runs with the grader's privileges until it has built the sandbox,
then replaces itself with the submission's command. Steps:

1. ``unshare`` new PID, network, mount, IPC and UTS namespaces (plus a user
   namespace mapping only the caller's own uid when not root). Refused:
   the command runs without them and the status says so.
2. A child becomes PID 1 of the new PID namespace. It builds a new root on a
   tmpfs: read-only binds of the system directories, of Python and of the
   project's code directories (each exercise's ``solution/`` hidden under an
   empty read-only tmpfs), a small private ``/tmp``, a few ``/dev`` nodes,
   the working directory (read-write) at ``/submission`` and the request
   directory at ``/io``; ``pivot_root`` into it, a fresh ``/proc`` (only the
   namespace's processes), the old root detached.
3. As root it switches to an unprivileged user (``nobody``); in a user
   namespace the command's exec drops every capability. No new privileges
   (``PR_SET_NO_NEW_PRIVS``), parent-death signal SIGKILL.
4. PID 1 forks the command, reports what it achieved on the status pipe
   (JSON, then closes it: the command never holds it), waits for the command
   and exits with its status. When PID 1 exits the kernel kills whatever is
   left in the namespace (a ``setsid`` daemon included); when this launcher
   is killed (the grader's time limit), PID 1 gets SIGKILL and the same
   happens.
"""

import ctypes
import json
import os
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEV_NODES = ("null", "zero", "full", "random", "urandom")
TMP_SIZE = "64m"

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.unshare.argtypes = (ctypes.c_int,)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
libc.syscall.restype = ctypes.c_long
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}.get(os.uname().machine, 155)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s):
    return None if s is None else os.fsencode(s)


def mount(source, target, fstype, flags, data=None) -> None:
    _check(libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def prctl(option: int, arg: int) -> None:
    _check(libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


def _locked_flags(path: str) -> int:
    """The flags of the mount holding ``path`` that a remount in a user namespace must keep."""
    st = os.statvfs(path).f_flag
    flags = 0
    for st_bit, ms_bit in (
        (1, MS_RDONLY),
        (2, MS_NOSUID),
        (4, MS_NODEV),
        (8, MS_NOEXEC),
        (1024, MS_NOATIME),
        (2048, MS_NODIRATIME),
        (4096, MS_RELATIME),
    ):
        if st & st_bit:
            flags |= ms_bit
    return flags


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def bind(source: str, root: str, *, target: str | None = None, writable: bool = False) -> None:
    """Bind ``source`` at ``root + (target or source)``, read-only unless ``writable``."""
    dest = root + (target or source)
    if os.path.isdir(source):
        _mkdirs(dest)
    else:
        _mkdirs(os.path.dirname(dest))
        if not os.path.exists(dest):
            open(dest, "w").close()
    mount(source, dest, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | _locked_flags(source)
    if not writable:
        flags |= MS_RDONLY
    mount(None, dest, None, flags)


def build_root(cfg: dict) -> None:
    """Steps 2 of the module docstring, up to the fresh /proc. Raises OSError."""
    root = cfg["root_dir"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            os.symlink(os.readlink(d), root + d)
        elif os.path.isdir(d):
            bind(d, root)
    for d in cfg["read_only"]:
        if os.path.exists(d) and not os.path.exists(root + d):
            bind(d, root)
    for d in cfg["hidden"]:  # an empty, read-only directory over each reference solution
        if os.path.isdir(root + d):
            mount("tmpfs", root + d, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    _mkdirs(root + "/dev")
    for node in DEV_NODES:
        bind("/dev/" + node, root, writable=True)
    os.symlink("/proc/self/fd", root + "/dev/fd")
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"{root}/dev/{name}")
    _mkdirs(root + "/tmp")
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={TMP_SIZE},mode=1777")
    bind(cfg["work_dir"], root, target="/submission", writable=True)
    bind(cfg["io_dir"], root, target="/io", writable=True)
    _mkdirs(root + "/proc")
    # before the old root goes: a user namespace may mount a proc only where one is fully visible
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mkdirs(root + "/.old")
    os.chdir(root)
    _check(libc.syscall(SYS_PIVOT_ROOT, b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_user(cfg: dict) -> bool:
    """As root: the unprivileged user; True when switched."""
    uid, gid = cfg.get("run_uid"), cfg.get("run_gid")
    if os.getuid() != 0 or uid is None:
        return False
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return True


def main() -> int:
    cfg = json.loads(sys.argv[1])
    status_fd = cfg["status_fd"]
    status = {
        "pid_namespace": False,
        "network_namespace": False,
        "filesystem": False,
        "unprivileged_user": False,
        "problems": [],
    }
    keep = set(cfg["pass_fds"])
    for fd in keep:
        os.set_inheritable(fd, True)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if uid != 0:
        flags |= CLONE_NEWUSER
    namespaces = libc.unshare(flags) == 0
    if not namespaces:
        status["problems"].append(f"the kernel refused new namespaces: {os.strerror(ctypes.get_errno())}")
    elif uid != 0:
        try:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text)
        except OSError as exc:  # the namespaces exist; what needs the mapping (mounts) is reported below
            status["problems"].append(f"the user namespace has no uid mapping: {exc}")
    if not namespaces:  # grade anyway: the command runs here, in the grader's namespaces
        os.chdir(cfg["work_dir"])
        return _without_namespaces(cfg, status, status_fd)
    pid = os.fork()
    if pid:
        os.write(status_fd, (json.dumps({"init_pid": pid}) + "\n").encode())
        os.close(status_fd)
        for fd in keep:
            os.close(fd)
        signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
        _, wstatus = os.waitpid(pid, 0)
        if os.WIFSIGNALED(wstatus):
            sig = os.WTERMSIG(wstatus)
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        return os.waitstatus_to_exitcode(wstatus) if not os.WIFSIGNALED(wstatus) else 128
    return _init(cfg, status, status_fd)


def _init(cfg: dict, status: dict, status_fd: int) -> int:
    """PID 1 of the new PID namespace."""
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        status["pid_namespace"] = True
        status["network_namespace"] = True
        try:
            build_root(cfg)
            status["filesystem"] = True
        except OSError as exc:
            if os.path.isdir("/submission"):  # the new root stands; only its last touches failed
                raise
            status["problems"].append(f"no private filesystem view: {exc}")
            try:  # at least no view of the grader's processes
                mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            except OSError as exc2:
                status["pid_namespace"] = False
                status["problems"].append(f"no fresh /proc: {exc2}")
        os.chdir("/submission" if status["filesystem"] else cfg["work_dir"])
        try:
            status["unprivileged_user"] = drop_user(cfg)
        except OSError as exc:
            status["problems"].append(f"could not switch to an unprivileged user: {exc}")
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a change of user cleared it
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        prctl(PR_SET_DUMPABLE, 0)  # the command cannot trace this process
    except BaseException as exc:  # noqa: BLE001 - reported, and the command is not started
        status["problems"].append(f"sandbox setup failed: {exc}")
        _report(status_fd, status)
        os._exit(111)
    _report(status_fd, status)
    child = os.fork()
    if child == 0:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _limit_processes()
        _exec(cfg)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:  # reap everything; the command's status is what counts
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            os._exit(111)
        if pid == child:
            break
    os._exit(os.WTERMSIG(wstatus) + 128 if os.WIFSIGNALED(wstatus) else os.WEXITSTATUS(wstatus))


PR_SET_CHILD_SUBREAPER = 36


def _without_namespaces(cfg: dict, status: dict, status_fd: int) -> int:
    """No PID namespace: this process adopts every orphan the command leaves (a child subreaper),
    and kills all its descendants when the command ends or the grader asks (SIGTERM)."""
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        prctl(PR_SET_DUMPABLE, 0)
        status["descendants_killed"] = True
    except OSError as exc:
        status["problems"].append(f"no child subreaper: {exc}")
    _report(status_fd, status)
    child = os.fork()
    if child == 0:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        _exec(cfg)
    stopping = []  # set once the command ended or the grader asked: from then on, kill whatever appears
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True) or _kill_children())
    code = 111
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            code = os.WTERMSIG(wstatus) + 128 if os.WIFSIGNALED(wstatus) else os.WEXITSTATUS(wstatus)
            stopping.append(True)
        if stopping:
            _kill_children()
    return code


def _kill_children() -> None:
    """SIGKILL every process whose parent is this one (orphans come here: see the subreaper)."""
    me = str(os.getpid()).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == me:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


MAX_PROCESSES = 256  # per user (in a user namespace: the namespace's own count), against fork bombs


def _limit_processes() -> None:
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
    except (ValueError, OSError):
        pass


def _report(status_fd: int, status: dict) -> None:
    try:
        os.write(status_fd, (json.dumps(status) + "\n").encode())
    finally:
        os.close(status_fd)


def _exec(cfg: dict) -> int:
    """Start the command; ``{work}`` and ``{io}`` in its arguments and environment become where
    the working and request directories are seen from it."""
    inside = os.getcwd() == "/submission"
    places = {"{work}": "/submission" if inside else cfg["work_dir"], "{io}": "/io" if inside else cfg["io_dir"]}

    def fill(text: str) -> str:
        for key, value in places.items():
            text = text.replace(key, value)
        return text

    argv = [fill(a) for a in cfg["argv"]]
    env = {k: fill(v) for k, v in cfg["env"].items()}
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        print(f"sandbox: cannot start {argv[0]}: {exc}", file=sys.stderr)
        os._exit(127)
    return 127


if __name__ == "__main__":
    sys.exit(main())

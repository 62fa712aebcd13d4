"""``with MininetBackend(spec) as net:``: a topology spec on Mininet, and everything it starts stopped again.

The backend checks its prerequisites (root, Mininet, mnexec), decides how each
link is realised (:func:`lab.mininet.topo.plan_links`: netem, or without it
the user-space emulator of :mod:`lab.mininet.linkemu`), records that in the trace, builds the network and
optionally starts one tcpdump per interface. Leaving the ``with`` block, by
return, exception or Ctrl-C, stops what it started: its processes by PID
(never by name pattern), any other process found inside its namespaces (also
by PID, while those namespaces are certainly still ours), then the Mininet
network; it then checks that nothing is left.

Networks are built one at a time per machine: while it is built, a network's
veth pairs are made in the root namespace under the spec's names (``h1-eth0``)
before they move into their nodes, where two runs would collide. A run holds
``/run/tcplab/mininet.lock`` (an ``flock``, released when its process ends,
however it ends) from the build until its links are configured; a second run
waits for it, bounded, recording that it waits and for which PID. Once built,
any number of networks run side by side.

A run writes a small state file (``/run/tcplab/mininet/*.json``: the PIDs and
start times of its node shells and processes, its interfaces and namespaces)
so that :func:`clean` can remove the leftovers of a run that was killed. We do
not use ``mininet.clean.cleanup()`` (``mn -c``): it kills processes by name
pattern (``pkill -f mininet:``, ``killall ping ...``) and deletes every
``*-ethN`` interface, which would hit other users and parallel runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from lab.errors import ConfigError, LabError
from lab.mininet.topo import DEFAULT_COMMAND_TIMEOUT_S, MininetCommandError, plan_links, spec_topo
from lab.topology import TopologySpec
from lab.trace import NULL_TRACER, Tracer

STATE_DIR = Path("/run/tcplab/mininet")
ENVIRON_SETTLE_S = 0.05  # how long _processes_with_env() gives a process mid-exec to show its environment
RUN_ENV = "TCPLAB_MININET_RUN"  # names the run in the environment of every process it starts
STATE_VERSION = 1
CAPTURE_START_TIMEOUT_S = 15.0
NETWORK_LOCK = Path("/run/tcplab/mininet.lock")  # whatever the state directory: the names are the machine's
NETWORK_LOCK_WAIT_S = 120.0  # how long a run waits for another one's build


class NetworkLock:
    """The machine's one-build-at-a-time lock (see the module docstring). Re-entrant within a
    process (threads of one process may build side by side: Mininet names them apart)."""

    _mutex = threading.Lock()
    _held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, count)

    def __init__(self, path: Path = NETWORK_LOCK, wait_s: float = NETWORK_LOCK_WAIT_S) -> None:
        self.path = str(path)
        self.wait_s = wait_s
        self._mine = False

    def acquire(self, on_wait: Any = None) -> None:
        """Take the lock, waiting at most ``wait_s``; ``on_wait(pid)`` once if another run holds it.
        Raises MininetCommandError when the wait runs out, ConfigError when the lock cannot be made."""
        with self._mutex:
            if self.path in self._held:
                fd, count = self._held[self.path]
                self._held[self.path] = (fd, count + 1)
                self._mine = True
                return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot make the Mininet network lock {self.path}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder(fd)
                if not told and on_wait is not None:
                    on_wait(holder)
                    told = True
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise MininetCommandError(
                        f"another Mininet run (pid {holder or '?'}) has been building its network for over"
                        f" {self.wait_s:.0f} s; wait for it, or stop it (tcplab clean)"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        with self._mutex:
            self._held[self.path] = (fd, 1)
        self._mine = True

    def release(self) -> None:
        if not self._mine:
            return
        self._mine = False
        with self._mutex:
            fd, count = self._held[self.path]
            if count > 1:
                self._held[self.path] = (fd, count - 1)
                return
            del self._held[self.path]
        os.close(fd)  # closing the only descriptor releases the flock

    @staticmethod
    def _holder(fd: int) -> int | None:
        try:
            return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except (OSError, ValueError):
            return None


def check_prerequisites(*, pcaps: bool = False, offloads: bool = True) -> None:
    """Raises ConfigError with one line naming the fix when the Mininet backend cannot run here."""
    if os.geteuid() != 0:
        raise ConfigError("the Mininet backend needs root (network namespaces, veth links, tc): run it with sudo")
    try:
        import mininet.net  # noqa: F401
    except ImportError:
        raise ConfigError(
            "Mininet's Python library is not importable: pip install mininet==2.3.0.dev6 (or apt install mininet)"
        ) from None
    needs = [
        ("mnexec", "apt install mininet"),
        ("ip", "apt install iproute2"),
        ("tc", "apt install iproute2"),
        ("sysctl", "apt install procps"),
        ("ifconfig", "apt install net-tools (Mininet configures interfaces with it)"),
    ]
    if offloads:
        needs.append(("ethtool", "apt install ethtool"))
    if pcaps:
        needs.append(("tcpdump", "apt install tcpdump (needed for pcaps)"))
    for program, fix in needs:
        if shutil.which(program) is None:
            raise ConfigError(f"the Mininet backend needs {program}, which is not on PATH: {fix}")


# --- processes and namespaces, seen through /proc


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live, non-zombie process, else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(pid: int, start: int | None) -> bool:
    now = process_start_time(pid)
    return now is not None and (start is None or now == start)


def _netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _processes_in(netns: set[int]) -> list[int]:
    """PIDs of the processes whose network namespace is one of ``netns`` (inode numbers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _netns_inode(int(entry)) in netns:
            found.append(int(entry))
    return found


SO_NETNS_COOKIE = 71  # Linux 5.14: a network namespace's 64-bit cookie, never reused while the system runs
CLONE_NEWNET = 0x40000000


def netns_cookie(pid: int) -> int | None:
    """The cookie of the network namespace process ``pid`` is in, or None (the process is
    gone, or this kernel has no SO_NETNS_COOKIE). Inode numbers of namespaces are reused
    once a namespace is freed; cookies are not, so a cookie recorded when a run started
    names that run's namespace and no other. Read from a short-lived thread that enters
    the namespace (setns affects only the calling thread)."""
    import ctypes
    import struct

    found: list[int] = []

    def probe() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                return
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                found.append(struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0])
        except OSError:
            return
        finally:
            os.close(fd)

    thread = threading.Thread(target=probe, name=f"netns-cookie-{pid}", daemon=True)
    thread.start()
    thread.join()
    return found[0] if found else None


def _namespace_members(netns: dict[int, int | None]) -> dict[int, list[int]]:
    """For recorded namespaces ``{inode: cookie}``: the PIDs in each one that is still the
    recorded namespace (same cookie; without a recorded cookie, same inode). Every process
    counts, also those re-parented to PID 1 and those nobody recorded."""
    by_inode: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            inode = _netns_inode(int(entry))
            if inode in netns:
                by_inode.setdefault(inode, []).append(int(entry))
    out: dict[int, list[int]] = {}
    for inode, pids in by_inode.items():
        cookie = netns.get(inode)
        if cookie is None:
            out[inode] = pids
            continue
        for pid in pids:  # any member that is still there can tell the namespace's cookie
            now = netns_cookie(pid)
            if now is not None:
                if now == cookie:
                    out[inode] = pids
                break
    return out


def _processes_with_env(marker: bytes) -> list[int]:
    """PIDs whose environment holds ``marker`` (``NAME=value``), this process excepted.

    A process in the middle of execve() shows an empty environment for a moment (its new
    memory map is in place, its environment not yet): those are read again once, shortly after.
    """
    found = []
    me = os.getpid()
    empty = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if not environ:
            empty.append(entry)  # a kernel thread, or a process mid-exec
        elif marker in environ.split(b"\0"):
            found.append(int(entry))
    if empty:
        time.sleep(ENVIRON_SETTLE_S)
        for entry in empty:
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.append(int(entry))
    return found


def _root_interfaces() -> set[str]:
    return {name for _index, name in socket.if_nameindex()}


def _kill_pids(pids: Iterable[tuple[int, int | None]], *, timeout: float) -> list[int]:
    """SIGTERM, then SIGKILL after ``timeout``, the processes (pid, start time) still
    alive; returns those that were. Works for processes that are not our children."""
    targets = [(pid, start) for pid, start in pids if _alive(pid, start)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start in targets:
            if _alive(pid, start):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(pid, start) for pid, start in targets):
            time.sleep(0.02)
        if not any(_alive(pid, start) for pid, start in targets):
            break
    return [pid for pid, _start in targets]


def _delete_root_interfaces(names: Iterable[str]) -> list[str]:
    present = _root_interfaces()
    deleted = []
    for name in names:
        if name in present:
            subprocess.run(["ip", "link", "del", "dev", name], capture_output=True, timeout=15, check=False)
            deleted.append(name)
    return deleted


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Ctrl-C (and SIGTERM, which tcplab handles alike) during cleanup is held back until
    the cleanup is done, then raised as KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt


@dataclass(slots=True)
class TrackedProcess:
    node: str
    argv: list[str]
    popen: subprocess.Popen[Any]
    start: int | None

    @property
    def pid(self) -> int:
        return self.popen.pid


class MininetBackend:
    """A topology spec running on Mininet, as a context manager.

    ``pcap_dir`` asks for one tcpdump per interface (``pcap_interfaces``
    selects some; default all), writing ``<pcap_dir>/<interface>.pcap``.
    ``disable_offloads`` turns off checksum/segmentation offloads so frames
    are real packets. Commands run inside nodes time out after
    ``command_timeout_s``; stopping a process waits ``stop_timeout_s`` before
    SIGKILL. ``seed`` seeds the random loss of the user-space link emulators.

    Entering raises ConfigError (prerequisites missing, or a link property this
    kernel cannot realise) before anything is built, and MininetCommandError
    when configuring a node fails; in both cases whatever was built is removed.
    """

    def __init__(
        self,
        spec: TopologySpec,
        *,
        tracer: Tracer = NULL_TRACER,
        pcap_dir: str | os.PathLike[str] | None = None,
        pcap_interfaces: Iterable[str] | None = None,
        disable_offloads: bool = True,
        state_dir: str | os.PathLike[str] = STATE_DIR,
        command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        stop_timeout_s: float = 10.0,
        seed: int = 1,
    ) -> None:
        self.spec = spec
        self.seed = seed  # seeds the random loss of the user-space link emulators
        self.tracer = tracer
        self.pcap_dir = None if pcap_dir is None else Path(pcap_dir)
        self.pcap_interfaces = list(spec.interfaces) if pcap_interfaces is None else list(pcap_interfaces)
        for name in self.pcap_interfaces:
            if name not in spec.interfaces:
                raise ConfigError(f"no interface named {name!r} to capture; interfaces: {', '.join(spec.interfaces)}")
        self.disable_offloads = disable_offloads
        self.state_dir = Path(state_dir)
        self.command_timeout_s = command_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.link_realisation: dict[str, dict[str, str]] = {}
        self.link_emulators: dict[str, subprocess.Popen[Any]] = {}  # link name -> its user-space emulator
        self._middleboxes: list[Any] = []  # lab.mininet.middlebox.InstalledMiddlebox, in order added
        self.pcaps: dict[str, Path] = {}
        self.leftovers: list[str] = []
        self.node_pids: dict[str, int] = {}
        self._node_starts: dict[str, int | None] = {}
        self._netns: dict[str, int] = {}
        self._netns_cookies: dict[str, int] = {}
        self._processes: list[TrackedProcess] = []
        self._net: Any = None
        self._t0 = time.monotonic()
        self._state_path = self.state_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self._run_env_set = False
        self._run_env_before: str | None = None
        self._started = False
        self._stopped = False
        self._lock = NetworkLock()

    # --- lifecycle

    def now(self) -> float:
        """Seconds since this backend was created (the ``t`` of its trace records)."""
        return time.monotonic() - self._t0

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        leftovers = self.stop()
        if leftovers and exc_type is None:
            raise MininetCommandError(f"the Mininet run left things behind: {'; '.join(leftovers)}")

    def start(self) -> None:
        """Check, plan, build and configure; start captures. Raises ConfigError,
        MininetCommandError, or LabError when called twice."""
        if self._started:
            raise LabError("this MininetBackend was already started; make a new one")
        self._started = True
        check_prerequisites(pcaps=self.pcap_dir is not None, offloads=self.disable_offloads)
        plans = plan_links(self.spec, seed=self.seed)
        self.link_realisation = {name: dict(plan.realisation) for name, plan in plans.items()}
        for name, realisation in self.link_realisation.items():
            self.tracer.record_node(
                self.now(),
                "net",
                "link",
                "state_updated",
                {"link": name, "backend": "mininet", "up": True, **realisation, "realised_by": plans[name].methods},
            )
        from mininet.link import Link
        from mininet.net import Mininet

        # every process started from here on (node shells, what they start, popen's children) carries
        # the run's id in its environment: clean() finds by it what a killed run left in no namespace
        # of the run (a child forked just before the kill whose node was gone by the time it attached)
        self._run_env_before = os.environ.get(RUN_ENV)
        self._run_env_set = True
        os.environ[RUN_ENV] = self._state_path.stem
        self._write_state()
        topo = spec_topo(self.spec, plans, disable_offloads=self.disable_offloads, timeout=self.command_timeout_s)
        self._lock.acquire(on_wait=self._record_waiting)
        try:
            self._net = Mininet(topo=topo, controller=None, link=Link, build=False, autoSetMacs=False)
            self._watch_new_nodes()
            try:
                self._net.build()
            finally:
                self._record_nodes()  # also after a failed build: the shells that exist must be stopped
            self._net.start()
        finally:
            self._lock.release()
        from lab.mininet.linkemu import start_emulators

        self.link_emulators = start_emulators(self, plans)
        if self.pcap_dir is not None:
            self._start_captures()
        self.tracer.record_node(
            self.now(), "net", "mininet", "state_updated", {"state": "running", "topology": self.spec.name}
        )

    def stop(self) -> list[str]:
        """Stop everything this backend started; safe to call twice. Returns what was
        found left behind and could not be removed (empty when all is clean)."""
        if self._stopped:
            return self.leftovers
        self._stopped = True
        if self._run_env_set:  # start() set it: put it back
            self._run_env_set = False
            if self._run_env_before is None:
                os.environ.pop(RUN_ENV, None)
            else:
                os.environ[RUN_ENV] = self._run_env_before
        with _sigint_deferred():
            notes: list[str] = []
            self._remove_middleboxes(notes)
            if self.link_emulators:
                from lab.mininet.linkemu import record_stats

                record_stats(self)  # what the user-space emulators forwarded, lost and how late
            self._stop_processes()
            if self._net is not None:
                stray = self._stray_processes()
                if stray:
                    killed = _kill_pids([(pid, process_start_time(pid)) for pid in stray], timeout=self.stop_timeout_s)
                    if killed:
                        notes.append(f"killed stray processes in our namespaces: {killed}")
                try:
                    self._net.stop()
                except Exception as exc:  # noqa: BLE001 - the checks below still run
                    notes.append(f"mininet stop failed: {exc}")
            self.leftovers = self._check_clean()
            if not self.leftovers:
                with contextlib.suppress(OSError):
                    self._state_path.unlink()
            if self._started:
                data: dict[str, Any] = {"state": "stopped", "leftovers": self.leftovers}
                if notes:
                    data["notes"] = notes
                self.tracer.record_node(self.now(), "net", "mininet", "state_updated", data)
        return self.leftovers

    def _record_waiting(self, holder: int | None) -> None:
        self.tracer.record_node(
            self.now(),
            "net",
            "mininet",
            "state_updated",
            {"state": "waiting", "why": "another Mininet run is building its network", "holder_pid": holder},
        )

    # --- middleboxes

    def add_middlebox(self, router_name: str, box: Any) -> dict[str, Any]:
        """Realise a :class:`lab.scenario.middlebox.Middlebox` (the objects ``SimNetwork.add_middlebox``
        takes) on router ``router_name`` (see :mod:`lab.mininet.middlebox`): nftables,
        iptables TCPOPTSTRIP, or the policy itself in an NFQUEUE forwarder. Records
        ``middlebox state_updated {"installed": ...}`` and returns what was installed;
        it is removed on exit. Raises ConfigError (not a router, bad policy) or
        MininetCommandError (a command failed), LabError when not running."""
        from lab.mininet import middlebox

        if self._net is None or self._stopped:
            raise LabError("the Mininet network is not running")
        index = max((m.plan.index for m in self._middleboxes), default=0) + 1  # unique after removals
        installed = middlebox.install(self, router_name, box, index)
        self._middleboxes.append(installed)
        plan = installed.plan
        self.tracer.record_node(
            self.now(),
            router_name,
            "middlebox",
            "state_updated",
            {"installed": plan.description, "backend": "mininet", "realised_by": plan.realised_by},
        )
        return {**plan.description, "realised_by": plan.realised_by}

    def remove_middlebox(self, router_name: str, description: dict[str, Any]) -> list[str]:
        """Remove the latest policy installed on ``router_name`` with this description (what
        ``add_middlebox`` returned, or the policy's ``describe()``); records ``middlebox
        state_updated {"removed": ...}``. Returns what could not be removed. Raises
        ConfigError when no such policy is installed, LabError when not running."""
        from lab.mininet import middlebox

        if self._net is None or self._stopped:
            raise LabError("the Mininet network is not running")
        wanted = {k: v for k, v in description.items() if k != "realised_by"}
        for installed in reversed(self._middleboxes):
            if installed.plan.router == router_name and installed.plan.description == wanted:
                break
        else:
            raise ConfigError(f"no middlebox {wanted} is installed on {router_name}")
        self._middleboxes.remove(installed)
        failed = middlebox.remove(self, installed)
        self.tracer.record_node(
            self.now(), router_name, "middlebox", "state_updated", {"removed": installed.plan.description}
        )
        return failed

    def _remove_middleboxes(self, notes: list[str]) -> None:
        from lab.mininet import middlebox

        for installed in reversed(self._middleboxes):
            failed = middlebox.remove(self, installed)
            notes += [f"removing {installed.plan.description['policy']}: {f}" for f in failed]
            self.tracer.record_node(
                self.now(), installed.plan.router, "middlebox", "state_updated", {"removed": installed.plan.description}
            )
        self._middleboxes.clear()

    # --- access

    @property
    def mininet(self) -> Any:
        """The ``mininet.net.Mininet`` object. Raises LabError before start."""
        if self._net is None:
            raise LabError("the Mininet network is not running")
        return self._net

    def host(self, name: str) -> Any:
        """The Mininet node (a host or a router) called ``name``. Raises ConfigError
        for an unknown name, LabError when the network is not running."""
        if name not in self.spec.nodes:
            raise ConfigError(f"no node named {name!r}; nodes: {', '.join(self.spec.nodes)}")
        return self.mininet[name]

    def popen(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside node ``name`` (``node.popen``); it is tracked by PID and
        stopped when the backend stops. Keyword arguments go to ``subprocess.Popen``
        (stdout and stderr default to pipes)."""
        if self._stopped:
            raise LabError("the Mininet network was stopped")
        node = self.host(name)
        proc = node.popen(list(argv), **kwargs)
        self._processes.append(TrackedProcess(name, list(argv), proc, process_start_time(proc.pid)))
        self._write_state()
        return proc

    def cmd(
        self,
        name: str,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        check: bool = True,
        input: str | None = None,
    ) -> str:
        """Run ``command`` (a shell string or an argv list) inside node ``name`` and
        return its stdout. Raises MininetCommandError when it exits non-zero (with
        ``check``) or outlives ``timeout`` seconds (it is killed)."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        timeout = self.command_timeout_s if timeout is None else timeout
        proc = self.popen(name, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise MininetCommandError(f"{name}: {' '.join(argv)} timed out after {timeout:g} s") from None
        finally:
            self._forget(proc)
        if check and proc.returncode != 0:
            detail = " / ".join(line.strip() for line in (err or "").strip().splitlines()[-3:])
            raise MininetCommandError(f"{name}: {' '.join(argv)} failed (exit {proc.returncode}): {detail}")
        return out

    def interface_counters(self, name: str) -> dict[str, dict[str, int]]:
        """Per-interface counters of node ``name`` from its /proc/net/dev:
        ``{"r2-eth0": {"rx_bytes": ..., "rx_packets": ..., "tx_bytes": ..., "tx_packets": ...}}``."""
        counters = {}
        for line in self.cmd(name, ["cat", "/proc/net/dev"]).splitlines()[2:]:
            ifname, _, rest = line.partition(":")
            values = [int(v) for v in rest.split()]
            counters[ifname.strip()] = {
                "rx_bytes": values[0],
                "rx_packets": values[1],
                "tx_bytes": values[8],
                "tx_packets": values[9],
            }
        return counters

    @property
    def processes(self) -> list[TrackedProcess]:
        """The processes started in nodes and not yet forgotten."""
        return list(self._processes)

    # --- link events

    def set_link_up(self, link: str, up: bool) -> None:
        """Take ``link`` down or up: ``ip link set ... down|up`` on both of its spec
        interfaces. Going down flushes the kernel's routes through an interface
        (and its IPv6 addresses), so coming up restores them from the spec.
        Records ``link state_updated {"link", "up"}``. Raises ConfigError for an
        unknown link, MininetCommandError when a command fails."""
        from lab.mininet.topo import LinkPlan, node_commands

        if link not in self.spec.links:
            raise ConfigError(f"no link named {link!r}; links: {', '.join(self.spec.links)}")
        ends = [i for i in self.spec.interfaces.values() if i.link == link]
        for iface in ends:
            self.cmd(iface.node, ["ip", "link", "set", "dev", iface.name, "up" if up else "down"])
        if up:
            plans = {name: LinkPlan(name, {}) for name in self.spec.links}  # routes only: no tc lines
            for iface in ends:
                cmds = node_commands(self.spec, iface.node, plans, disable_offloads=False)
                marker = f"dev {iface.name}"
                v4 = [
                    line.replace("route add", "route replace", 1)
                    for line in cmds.ip4
                    if line.startswith("route add") and (line.endswith(marker) or f"{marker} " in line)
                ]
                v6 = [f"addr replace {iface.ipv6}/64 dev {iface.name} nodad"]
                v6 += [
                    line.replace("route add", "route replace", 1)
                    for line in cmds.ip6
                    if line.startswith("route add") and (line.endswith(marker) or f"{marker} " in line)
                ]
                self.cmd(iface.node, ["ip", "-4", "-batch", "-"], input="\n".join(v4) + "\n")
                self.cmd(iface.node, ["ip", "-6", "-batch", "-"], input="\n".join(v6) + "\n")
        self.tracer.record_node(
            self.now(), "net", "link", "state_updated", {"link": link, "up": up, "backend": "mininet"}
        )

    # --- captures

    def _start_captures(self) -> None:
        assert self.pcap_dir is not None
        self.pcap_dir.mkdir(parents=True, exist_ok=True)
        waiting: list[tuple[str, subprocess.Popen[Any], IO[bytes]]] = []
        logs: list[IO[bytes]] = []
        try:
            for ifname in self.pcap_interfaces:
                iface = self.spec.interfaces[ifname]
                path = self.pcap_dir / f"{ifname}.pcap"
                log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; tcpdump keeps its own descriptor
                logs.append(log)
                # --immediate-mode: take each packet from the kernel as it comes (buffered
                # packets are lost when tcpdump is stopped); -U: write each one out at once;
                # -Z root: keep the right to write into pcap_dir (Debian's tcpdump drops to "tcpdump")
                argv = ["tcpdump", "-i", ifname, "-n", "--immediate-mode", "-U", "-Z", "root", "-w", str(path)]
                proc = self.popen(iface.node, argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
                waiting.append((ifname, proc, log))
                self.pcaps[ifname] = path
            deadline = time.monotonic() + CAPTURE_START_TIMEOUT_S
            while waiting:
                for item in list(waiting):
                    ifname, proc, log = item
                    text = os.pread(log.fileno(), 65536, 0).decode(errors="replace")
                    if "listening on" in text:
                        waiting.remove(item)
                    elif proc.poll() is not None:
                        raise MininetCommandError(f"tcpdump on {ifname} exited: {text.strip()[-300:]}")
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(item[0] for item in waiting)
                    raise MininetCommandError(f"tcpdump did not start within {CAPTURE_START_TIMEOUT_S:g} s on {names}")
                if waiting:
                    time.sleep(0.02)
        finally:
            for log in logs:
                log.close()

    # --- stopping and checking

    def _forget(self, proc: subprocess.Popen[Any]) -> None:
        self._processes = [p for p in self._processes if p.popen is not proc]

    def _stop_processes(self) -> None:
        procs = [p for p in self._processes if p.popen.poll() is None]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in procs:
                if p.popen.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.popen.send_signal(sig)
            deadline = time.monotonic() + self.stop_timeout_s
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            procs = [p for p in procs if p.popen.poll() is None]
            if not procs:
                break
        for p in self._processes:
            for stream in (p.popen.stdin, p.popen.stdout, p.popen.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    def _stray_processes(self) -> list[int]:
        """Processes inside our namespaces other than the node shells: started by hand
        (``node.cmd("x &")``). While the shells live, those namespaces are ours."""
        shells = {pid for name, pid in self.node_pids.items() if _alive(pid, self._node_starts.get(name))}
        live_ns = {ns for name, ns in self._netns.items() if self.node_pids.get(name) in shells}
        if not live_ns:
            return []
        return [pid for pid in _processes_in(live_ns) if pid not in shells]

    def _check_clean(self) -> list[str]:
        leftovers = []
        for p in self._processes:
            if p.popen.poll() is None:
                leftovers.append(f"process {p.pid} ({' '.join(p.argv)[:60]}) in {p.node} still runs")
        for name, pid in self.node_pids.items():
            if _alive(pid, self._node_starts.get(name)):
                killed = _kill_pids([(pid, self._node_starts.get(name))], timeout=self.stop_timeout_s)
                if _alive(pid, self._node_starts.get(name)):
                    leftovers.append(f"the shell of node {name} (pid {pid}) still runs")
                elif killed:
                    reason = f"the shell of node {name} (pid {pid}) had to be killed"
                    self.tracer.record_node(self.now(), "net", "mininet", "error", {"reason": reason})
        # veth ends are made inside the nodes' namespaces, never here; anything with our
        # names in the root namespace is a leftover (only looked for once we built something)
        if self._net is None:
            return leftovers
        deleted = _delete_root_interfaces(self.spec.interfaces)
        remaining = _root_interfaces() & set(self.spec.interfaces)
        if deleted:
            self.tracer.record_node(
                self.now(),
                "net",
                "mininet",
                "error",
                {"reason": f"deleted interfaces left in the root namespace: {deleted}"},
            )
        leftovers += [f"interface {name} in the root namespace" for name in sorted(remaining)]
        return leftovers

    # --- the state file, for clean() after a crash

    def _record_nodes(self) -> None:
        if self._net is None:
            return
        for node in self._net.hosts:
            self._record_node(node, write=False)
        self._write_state()

    def _record_node(self, node: Any, *, write: bool = True) -> None:
        """Note a node's shell, namespace inode and cookie (for clean() after a crash)."""
        if node.pid is None or self.node_pids.get(node.name) == node.pid:
            return
        self.node_pids[node.name] = node.pid
        self._node_starts[node.name] = process_start_time(node.pid)
        ns = _netns_inode(node.pid)
        if ns is not None:
            self._netns[node.name] = ns
        cookie = netns_cookie(node.pid)
        if cookie is not None:
            self._netns_cookies[node.name] = cookie
        if write:
            self._write_state()

    def _watch_new_nodes(self) -> None:
        """Record each node's shell as soon as Mininet starts it, not once the whole network
        is built: a run killed half-way through the build leaves nothing clean() cannot find."""
        net = self._net
        add_host = net.addHost

        def recorded_add_host(*args: Any, **kwargs: Any) -> Any:
            node = add_host(*args, **kwargs)
            with contextlib.suppress(Exception):  # recording must never break the build
                self._record_node(node)
            return node

        net.addHost = recorded_add_host

    def _write_state(self) -> None:
        state = {
            "version": STATE_VERSION,
            "controller": {"pid": os.getpid(), "start": process_start_time(os.getpid())},
            "topology": self.spec.name,
            "interfaces": list(self.spec.interfaces),
            "run_id": self._state_path.stem,  # in the environment of every process the run started
            "nodes": {
                name: {
                    "pid": pid,
                    "start": self._node_starts.get(name),
                    "netns": self._netns.get(name),
                    "netns_cookie": self._netns_cookies.get(name),
                }
                for name, pid in self.node_pids.items()
            },
            "processes": [{"pid": p.pid, "start": p.start, "node": p.node, "argv": p.argv} for p in self._processes],
        }
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self._state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            tmp.replace(self._state_path)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the Mininet run state to {self.state_dir}: {exc.strerror or exc}"
            ) from None


def clean(
    spec: TopologySpec | None = None, *, state_dir: str | os.PathLike[str] = STATE_DIR, timeout: float = 10.0
) -> list[str]:
    """Remove the leftovers of Mininet runs whose controller died (killed, crashed).

    Reads the state files in ``state_dir``: the node shells and processes they
    list are killed by PID, only while the PID still has the recorded start
    time; every other process inside those runs' network namespaces is killed
    too (found by walking ``/proc/*/ns/net``, so also processes re-parented to
    PID 1 that nobody recorded), once the namespace's cookie shows it is still
    the one the run made (an inode number alone may have been reused). Their
    interfaces, and those of ``spec`` if given, are deleted from the root
    namespace. Runs whose controller is alive are left alone. Returns what
    was done, one line each.
    """
    done: list[str] = []
    directory = Path(state_dir)
    names: set[str] = set(spec.interfaces) if spec is not None else set()
    paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
    # a run killed while writing its first state file leaves only the .tmp it was writing
    paths += [p for p in sorted(directory.glob("*.tmp")) if not p.with_suffix(".json").exists()]
    for path in paths:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            controller = state["controller"]
        except (OSError, ValueError, KeyError, TypeError):
            pid = path.name.split("-", 1)[0]
            if path.suffix == ".tmp" and pid.isdigit() and process_start_time(int(pid)) is not None:
                continue  # being written by a live run right now
            done.append(f"{path.name}: unreadable state file removed")
            path.unlink(missing_ok=True)
            continue
        if _alive(int(controller["pid"]), controller.get("start")):
            continue
        recorded = [(int(n["pid"]), n.get("start")) for n in state.get("nodes", {}).values()]
        recorded += [(int(p["pid"]), p.get("start")) for p in state.get("processes", [])]
        netns = {
            int(n["netns"]): (int(n["netns_cookie"]) if n.get("netns_cookie") else None)
            for n in state.get("nodes", {}).values()
            if n.get("netns")
        }
        # without a recorded cookie (an older state file) a namespace counts as the run's only
        # while one of its recorded processes still holds it: its inode may have been reused
        holders = {_netns_inode(pid) for pid, start in recorded if _alive(pid, start)}
        netns = {ns: cookie for ns, cookie in netns.items() if cookie is not None or ns in holders}
        killed: set[int] = set()
        targets = {(pid, start) for pid, start in recorded}
        marker = f"{RUN_ENV}={state.get('run_id') or path.stem}".encode()
        for _round in range(5):  # again while something in the namespaces started more
            for pids in _namespace_members(netns).values():
                targets |= {(pid, process_start_time(pid)) for pid in pids}
            targets |= {(pid, process_start_time(pid)) for pid in _processes_with_env(marker)}
            found = _kill_pids(sorted(targets, key=lambda t: t[0]), timeout=timeout)
            killed |= set(found)
            targets = set()
            if not found:
                break
        if killed:
            done.append(f"{path.name}: killed processes {sorted(killed)}")
        names |= set(state.get("interfaces", []))
        path.unlink(missing_ok=True)
        path.with_suffix(".tmp").unlink(missing_ok=True)
        done.append(f"{path.name}: removed the state of a dead run of {state.get('topology', '?')}")
    deleted = _delete_root_interfaces(sorted(names))
    if deleted:
        done.append(f"deleted interfaces in the root namespace: {', '.join(deleted)}")
    return done

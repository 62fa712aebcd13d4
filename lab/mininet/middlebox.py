"""The simulator's middlebox policies on a Mininet router, with the kernel's own tools.

:meth:`lab.mininet.backend.MininetBackend.add_middlebox` takes the same
:class:`lab.scenario.middlebox.Middlebox` objects as ``SimNetwork.add_middlebox``
and realises them in the router's namespace, on forwarded packets only (as
the simulator's routers apply them):

* :class:`~lab.scenario.middlebox.BlockUdpPorts`, :class:`~lab.scenario.middlebox.BlockTcpPorts`:
  an nftables ``inet`` table whose forward chain drops UDP (TCP) to (and, if
  asked, from) the ports.
* :class:`~lab.scenario.middlebox.StripTcpOptions`: iptables/ip6tables
  ``TCPOPTSTRIP`` in the mangle table's FORWARD chain (it overwrites the
  options with NOPs and fixes the checksum, as the policy does); ``when="syn"``
  matches ``--tcp-flags SYN SYN`` (SYN and SYN/ACK), ``"after_handshake"``
  ``--tcp-flags SYN NONE`` (segments without SYN), as the policy decides.
* :class:`~lab.scenario.middlebox.DropTcpOption`: iptables/ip6tables
  ``--tcp-option N -j DROP`` per kind in the mangle table's FORWARD chain (the
  firewall rule it models), with the same ``--tcp-flags`` match for ``when``.
* :class:`~lab.scenario.middlebox.SourceNat`: nftables ``snat`` of TCP and UDP
  from the ``inside`` interface to ``public_address`` (one of the router's
  other addresses), ports from ``port_base`` up, in a postrouting chain;
  conntrack maps the replies back. As the policy does, other protocols from
  inside and unmapped TCP/UDP to the public address are dropped. The kernel
  picks public ports in the range its own way (the policy counts up).
* anything else, :class:`~lab.scenario.middlebox.FlipPayloadBytes` included: the
  policy object itself, in a user-space NFQUEUE forwarder inside the router
  (``python -m lab.mininet.middlebox``). The kernel queues every forwarded
  packet (for FlipPayloadBytes only TCP, to its ``dst_port`` when it has
  one) and the forwarder hands each one to ``policy.process()`` and returns
  the verdict: accept as is, accept rewritten (the policy fixed the
  checksum) or drop. A policy of its own that rewrites before routing
  (``prerouting``) is refused: only SourceNat's is realised (by conntrack).

Each policy gets its own table or chain (``tcplab_mb<N>``, ``TCPLAB_MB<N>``)
and NFQUEUE number ``N``, so removing it removes exactly what it added;
:func:`remove` runs on the backend's exit, before its processes are stopped.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import json
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.errors import ConfigError
from lab.scenario.middlebox import (
    BlockTcpPorts,
    BlockUdpPorts,
    DropIpFragments,
    DropTcpOption,
    FlipPayloadBytes,
    Middlebox,
    SourceNat,
    StripTcpOptions,
)
from lab.trace import Tracer

FORWARDER_READY_TIMEOUT_S = 15.0
NFT_TABLE_PREFIX = "tcplab_mb"
IPTABLES_CHAIN_PREFIX = "TCPLAB_MB"
# iptables' match for a policy's ``when`` (StripTcpOptions, DropTcpOption)
TCP_FLAGS_MATCH = {"all": [], "syn": ["--tcp-flags", "SYN", "SYN"], "after_handshake": ["--tcp-flags", "SYN", "NONE"]}


@dataclass(slots=True)
class MiddleboxPlan:
    """How one policy is realised on one router: commands (argv, stdin) that
    install and remove it, and the argv of its user-space forwarder, if any."""

    router: str
    index: int
    description: dict[str, Any]
    realised_by: str
    install: list[tuple[list[str], str | None]] = field(default_factory=list)
    remove: list[tuple[list[str], str | None]] = field(default_factory=list)
    forwarder: list[str] | None = None
    uses_iptables: bool = False  # the mangle tables (ip, ip6) are created if missing


@dataclass(slots=True)
class InstalledMiddlebox:
    """A policy in place on a router (what :func:`remove` takes back)."""

    plan: MiddleboxPlan
    box: Middlebox
    forwarder: subprocess.Popen[str] | None = None
    created_tables: list[tuple[str, str]] = field(default_factory=list)  # (tool, nft family) made by us


def _iptables_chain(
    chain: str, rules: list[list[str]]
) -> tuple[list[tuple[list[str], None]], list[tuple[list[str], None]]]:
    """Install/remove commands of a mangle-table chain ``chain`` jumped to from FORWARD,
    for IPv4 and IPv6; ``rules`` are the arguments after ``-A chain``."""
    install: list[tuple[list[str], None]] = []
    remove: list[tuple[list[str], None]] = []
    for tool in ("iptables", "ip6tables"):
        base = [tool, "-w", "-t", "mangle"]
        install.append(([*base, "-N", chain], None))
        install += [([*base, "-A", chain, *rule], None) for rule in rules]
        install.append(([*base, "-A", "FORWARD", "-j", chain], None))
        remove += [
            ([*base, "-D", "FORWARD", "-j", chain], None),
            ([*base, "-F", chain], None),
            ([*base, "-X", chain], None),
        ]
    return install, remove


def _is_exactly(box: Middlebox, cls: type[Middlebox]) -> bool:
    """``box`` is a ``cls`` whose packet handling is ``cls``'s own (a subclass that
    overrides it goes to the NFQUEUE forwarder, which runs whatever it does)."""
    return isinstance(box, cls) and type(box).process is cls.process and type(box).prerouting is cls.prerouting


def plan_middlebox(
    spec: Any, router: str, box: Middlebox, index: int, *, python: str = sys.executable
) -> MiddleboxPlan:
    """The realisation of ``box`` as policy number ``index`` on ``router``.

    Raises ConfigError when ``router`` is not a router of ``spec`` or the policy
    names an interface the router lacks.
    """
    if router not in spec.nodes or spec.nodes[router].kind != "router":
        raise ConfigError(f"no router named {router!r}; routers: {', '.join(spec.routers())}")
    description = box.describe()
    table = f"{NFT_TABLE_PREFIX}{index}"
    chain = f"{IPTABLES_CHAIN_PREFIX}{index}"
    plan = MiddleboxPlan(router, index, description, "")
    kind = type(box).__name__
    if _is_exactly(box, SourceNat):
        ifaces = {i.name: i for i in spec.interfaces_of(router)}
        if box.inside not in ifaces:
            raise ConfigError(f"{router} has no interface {box.inside!r} for NAT; its interfaces: {', '.join(ifaces)}")
        outside = [i for i in ifaces.values() if i.name != box.inside and i.ipv4 == box.public_address]
        if not outside:
            raise ConfigError(
                f"NAT on {router}: public_address {box.public_address} must be the address of one of its other "
                f"interfaces ({', '.join(f'{i.name} {i.ipv4}' for i in ifaces.values() if i.name != box.inside)})"
            )
        public, inside = box.public_address, box.inside
        script = (
            f"table ip {table} {{\n"
            "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
            f'    iifname "{inside}" oifname != "{inside}" meta l4proto {{ tcp, udp }} counter '
            f"snat to {public}:{box.port_base}-65535\n"
            "  }\n"
            "  chain forward { type filter hook forward priority filter; policy accept;\n"
            f'    iifname "{inside}" oifname != "{inside}" meta l4proto != {{ tcp, udp }} counter drop\n'
            "  }\n"
            "  chain input { type filter hook input priority filter; policy accept;\n"
            f'    iifname != "{inside}" ip daddr {public} meta l4proto {{ tcp, udp }} counter drop\n'
            "  }\n}\n"
        )
        plan.realised_by = (
            f"nft snat to {public}:{box.port_base}-65535 from {inside} (conntrack maps replies back); "
            "other protocols from inside and unmapped packets to the public address dropped"
        )
        plan.install.append((["nft", "-f", "-"], script))
        plan.remove.append((["nft", "delete", "table", "ip", table], None))
    elif _is_exactly(box, BlockUdpPorts) or _is_exactly(box, BlockTcpPorts):
        proto = "udp" if isinstance(box, BlockUdpPorts) else "tcp"
        ports = ", ".join(str(p) for p in sorted(box.ports))
        lines = [f"    {proto} dport {{ {ports} }} counter drop"]
        if box.both_directions:
            lines.append(f"    {proto} sport {{ {ports} }} counter drop")
        script = (
            f"table inet {table} {{\n"
            "  chain forward { type filter hook forward priority filter; policy accept;\n"
            + "\n".join(lines)
            + "\n  }\n}\n"
        )
        plan.realised_by = "nft drop (inet forward)"
        plan.install.append((["nft", "-f", "-"], script))
        plan.remove.append((["nft", "delete", "table", "inet", table], None))
    elif _is_exactly(box, DropIpFragments):
        # before connection tracking's defragmentation (priority -400) sees and joins them
        script = (
            f"table inet {table} {{\n"
            "  chain prerouting { type filter hook prerouting priority -450; policy accept;\n"
            "    ip frag-off & 0x3fff != 0 counter drop\n"
            "    exthdr frag exists counter drop\n"
            "  }\n}\n"
        )
        plan.realised_by = "nft drop of IPv4 and IPv6 fragments (prerouting, before defragmentation)"
        plan.install.append((["nft", "-f", "-"], script))
        plan.remove.append((["nft", "delete", "table", "inet", table], None))
    elif _is_exactly(box, StripTcpOptions):
        match = TCP_FLAGS_MATCH
        kinds = ",".join(str(k) for k in sorted(box.kinds))
        rule = ["-p", "tcp", *match[box.when], "-j", "TCPOPTSTRIP", "--strip-options", kinds]
        plan.install, plan.remove = _iptables_chain(chain, [rule])
        plan.uses_iptables = True
        plan.realised_by = f"iptables TCPOPTSTRIP --strip-options {kinds}" + (
            "" if box.when == "all" else f" ({' '.join(match[box.when])})"
        )
    elif _is_exactly(box, DropTcpOption):
        match = TCP_FLAGS_MATCH[box.when]
        rules = [["-p", "tcp", *match, "-m", "tcp", "--tcp-option", str(k), "-j", "DROP"] for k in sorted(box.kinds)]
        plan.install, plan.remove = _iptables_chain(chain, rules)
        plan.uses_iptables = True
        plan.realised_by = "iptables " + "; ".join(f"--tcp-option {k} -j DROP" for k in sorted(box.kinds)) + (
            "" if box.when == "all" else f" ({' '.join(match)})"
        )
    elif type(box).prerouting is not Middlebox.prerouting:
        raise ConfigError(
            f"{kind} rewrites packets before routing; the Mininet backend realises only the prerouting of SourceNat"
        )
    else:
        if _is_exactly(box, FlipPayloadBytes):  # it only ever touches TCP (to its dst_port)
            rule = ["-p", "tcp"] + (["--dport", str(box.dst_port)] if box.dst_port is not None else [])
            what = "forwarded TCP packets" + ("" if box.dst_port is None else f" to port {box.dst_port}")
        else:  # whatever the policy looks at, it sees every forwarded packet
            rule, what = [], "every forwarded packet"
        rule += ["-j", "NFQUEUE", "--queue-num", str(index)]
        plan.install, plan.remove = _iptables_chain(chain, [rule])
        plan.uses_iptables = True
        policy = base64.b64encode(pickle.dumps(box)).decode("ascii")
        plan.forwarder = [python, "-m", "lab.mininet.middlebox", "--queue", str(index), "--policy", policy]
        plan.realised_by = f"user-space NFQUEUE {index} ({kind}.process on {what})"
    return plan


def install(net: Any, router: str, box: Middlebox, index: int) -> InstalledMiddlebox:
    """Realise ``box`` on ``router`` of the running backend ``net``. Raises ConfigError
    (bad router or policy) or MininetCommandError (a command failed; what was
    installed of it is removed again)."""
    from lab.mininet.linkemu import _read_line
    from lab.mininet.topo import MininetCommandError

    plan = plan_middlebox(net.spec, router, box, index)
    installed = InstalledMiddlebox(plan, box)
    try:
        if plan.forwarder is not None:
            proc = net.popen(
                router,
                plan.forwarder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            installed.forwarder = proc
            line = _read_line(proc, timeout=FORWARDER_READY_TIMEOUT_S, what=f"the NFQUEUE forwarder on {router}")
            if line.get("event") != "ready":
                raise MininetCommandError(f"the NFQUEUE forwarder on {router} failed: {line.get('error', line)}")
        if plan.uses_iptables:
            for tool, family in (("iptables", "ip"), ("ip6tables", "ip6")):
                listed = net.cmd(router, ["nft", "list", "table", family, "mangle"], check=False, timeout=30)
                if not listed.strip():
                    installed.created_tables.append((tool, family))
        for argv, stdin in plan.install:
            net.cmd(router, argv, input=stdin)
    except BaseException:
        remove(net, installed)
        raise
    return installed


def remove(net: Any, installed: InstalledMiddlebox) -> list[str]:
    """Take back what :func:`install` added (rules first, then the forwarder); returns
    the commands that failed (empty when everything was removed)."""
    from lab.mininet.topo import run_in_node

    failed = []
    for argv, stdin in installed.plan.remove:
        try:
            # not net.cmd: this also runs while the backend stops, when it starts nothing new
            run_in_node(net.host(installed.plan.router), argv, input=stdin, timeout=30)
        except Exception as exc:  # noqa: BLE001 - go on removing the rest
            failed.append(f"{' '.join(argv)}: {exc}")
    for tool, family in installed.created_tables:
        # iptables-nft leaves the (now empty) mangle table behind: as before, there is none
        try:
            node = net.host(installed.plan.router)
            rules = run_in_node(node, [tool, "-w", "-t", "mangle", "-S"], timeout=30).splitlines()
            if all(line.startswith("-P ") for line in rules if line.strip()):
                run_in_node(node, ["nft", "delete", "table", family, "mangle"], timeout=30)
        except Exception as exc:  # noqa: BLE001
            failed.append(f"deleting table {family} mangle: {exc}")
    proc = installed.forwarder
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return failed


def forwarder_stats(installed: InstalledMiddlebox, *, timeout: float = 5.0) -> dict[str, Any]:
    """The counters and latest trace records of a running NFQUEUE forwarder.
    Raises MininetCommandError when it does not answer, LabError without one."""
    from lab.errors import LabError
    from lab.mininet.linkemu import _read_line

    proc = installed.forwarder
    if proc is None:
        raise LabError(f"{installed.plan.description['policy']} has no user-space forwarder")
    proc.send_signal(signal.SIGUSR1)
    line = _read_line(proc, timeout=timeout, what="the NFQUEUE forwarder")
    return {k: v for k, v in line.items() if k != "event"}


# --- the NFQUEUE forwarder (runs inside the router's namespace)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_IFINDEX_INDEV = 5
NFQA_IFINDEX_OUTDEV = 6
NFQA_PAYLOAD = 10
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NF_DROP = 0
NF_ACCEPT = 1
QUEUE_MAXLEN = 4096
_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _attrs(buf: bytes, start: int, end: int) -> dict[int, bytes]:
    out = {}
    pos = start
    while pos + 4 <= end:
        length, kind = _NLATTR.unpack_from(buf, pos)
        if length < 4:
            break
        out[kind & 0x3FFF] = buf[pos + 4 : pos + length]
        pos += (length + 3) & ~3
    return out


class NfQueue:
    """One netfilter queue, bound over a raw NETLINK_NETFILTER socket. Raises OSError."""

    def __init__(self, queue: int) -> None:
        self.queue = queue
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE
            self.sock.bind((0, 0))
            self._config(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
            self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_PACKET)))
            self._config(_attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)))
        except OSError:
            self.sock.close()
            raise

    def _message(self, msg_type: int, body: bytes, flags: int) -> bytes:
        self._seq += 1
        payload = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.queue) + body
        return (
            _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, self._seq, 0)
            + payload
        )

    def _config(self, body: bytes) -> None:
        self.sock.send(self._message(NFQNL_MSG_CONFIG, body, NLM_F_REQUEST | NLM_F_ACK))
        reply = self.sock.recv(65536)
        _length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(reply)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", reply, _NLMSGHDR.size)
            if error:
                raise OSError(-error, f"NFQUEUE {self.queue} configuration refused")

    def packets(self) -> Any:
        """Yield (packet id, IP packet, in ifindex, out ifindex) as the kernel queues them."""
        while True:
            data = self.sock.recv(1 << 17)
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
                if length < _NLMSGHDR.size:
                    break
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    attrs = _attrs(data, pos + _NLMSGHDR.size + 4, pos + length)
                    header = attrs.get(NFQA_PACKET_HDR)
                    payload = attrs.get(NFQA_PAYLOAD)
                    if header is not None and payload is not None:
                        (packet_id,) = struct.unpack_from("!I", header)
                        indev = attrs.get(NFQA_IFINDEX_INDEV)
                        outdev = attrs.get(NFQA_IFINDEX_OUTDEV)
                        yield (
                            packet_id,
                            payload,
                            struct.unpack("!I", indev)[0] if indev else 0,
                            struct.unpack("!I", outdev)[0] if outdev else 0,
                        )
                pos += (length + 3) & ~3

    def verdict(self, packet_id: int, verdict: int, payload: bytes | None = None) -> None:
        body = _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
        if payload is not None:
            body += _attr(NFQA_PAYLOAD, payload)
        self.sock.send(self._message(NFQNL_MSG_VERDICT, body, NLM_F_REQUEST))


class _RecentTracer(Tracer):
    """Keeps the latest records (the forwarder prints them when asked)."""

    def __init__(self, keep: int = 1000) -> None:
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    def record(self, now: float, layer: str, name: str, data: dict[str, Any]) -> None:
        self.records.append({"t": now, "layer": layer, "name": name, "data": data})

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        self.record(now, layer, name, data)


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    import time

    parser = argparse.ArgumentParser(
        prog="python -m lab.mininet.middlebox", description="NFQUEUE forwarder running a middlebox policy"
    )
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--policy", required=True, help="the pickled policy, base64 (written by plan_middlebox)")
    args = parser.parse_args(argv)
    try:
        box = pickle.loads(base64.b64decode(args.policy))
        if not isinstance(box, Middlebox):
            raise TypeError(f"not a Middlebox: {type(box).__name__}")
    except Exception as exc:  # noqa: BLE001 - any bad policy is one error line
        _emit({"event": "error", "error": f"bad policy: {exc}"})
        return 2
    try:
        queue = NfQueue(args.queue)
    except OSError as exc:
        _emit({"event": "error", "error": f"cannot bind NFQUEUE {args.queue}: {exc}"})
        return 1
    tracer = _RecentTracer()
    counts = {"packets": 0, "accepted": 0, "rewritten": 0, "dropped": 0}
    t0 = time.monotonic()

    def report(_signum: int, _frame: Any) -> None:
        _emit({"event": "stats", **counts, "records": list(tracer.records)})

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGUSR1, report)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    names: dict[int, str] = {}

    def name_of(index: int) -> str:
        if index not in names:
            with contextlib.suppress(OSError):
                names[index] = socket.if_indextoname(index)
        return names.get(index, str(index))

    _emit({"event": "ready", "queue": args.queue, "policy": box.describe()})
    try:
        for packet_id, packet, indev, outdev in queue.packets():
            counts["packets"] += 1
            result = box.process(
                packet, now=time.monotonic() - t0, ingress=name_of(indev), egress=name_of(outdev), tracer=tracer
            )
            if result is None:
                counts["dropped"] += 1
                queue.verdict(packet_id, NF_DROP)
            elif result == packet:
                counts["accepted"] += 1
                queue.verdict(packet_id, NF_ACCEPT)
            else:
                counts["rewritten"] += 1
                queue.verdict(packet_id, NF_ACCEPT, result)
    except SystemExit:
        pass
    _emit({"event": "stopped", **counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())

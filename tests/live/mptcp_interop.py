"""Run inside a fresh network namespace (``unshare -n``): our MPTCP against Linux MPTCP.

Two TUN devices give our stack two addresses (two paths as far as MPTCP is
concerned); the kernel's MPTCP endpoints announce or use its second address.
Prints one JSON line with what happened; the test asserts on it.

    python mptcp_interop.py [--checksum] [--size BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import socket
import subprocess
import sys
import threading

from lab.mptcp.config import MptcpConfig
from lab.stack.host import StreamHandler
from lab.stack.tun import TunDevice, TunHost
from lab.tcp import TcpConfig
from lab.trace import MemoryTracer

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO = 1
TCP_IS_MPTCP = 43
KERNEL = ("10.81.0.1", "10.82.0.1")
STACK = ("10.81.0.2", "10.82.0.2")


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True)


def kernel_info(s: socket.socket) -> dict:
    info: dict = {"is_mptcp": s.getsockopt(socket.IPPROTO_TCP, TCP_IS_MPTCP)}
    try:
        b = s.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
        info["subflows"] = b[0]
        info["add_addr_accepted"] = b[2]
        info["token"] = int.from_bytes(b[12:16], sys.byteorder)
        if len(b) >= 43:
            info["csum_enabled"] = b[42]
    except OSError as exc:
        info["error"] = str(exc)
    return info


def kernel_server(port: int, ready: threading.Event, out: dict) -> None:
    """Kernel MPTCP: greet, receive until DATA_FIN, answer with the SHA-256, close."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(4)
    ready.set()
    conn, _ = srv.accept()
    conn.sendall(b"HELLO\n")
    h = hashlib.sha256()
    n = 0
    while chunk := conn.recv(1 << 16):
        h.update(chunk)
        n += len(chunk)
    out["kernel_received"] = n
    out["kernel_info"] = kernel_info(conn)
    conn.sendall(h.hexdigest().encode())
    conn.close()
    srv.close()


def kernel_client(port: int, data: bytes, out: dict) -> None:
    """Kernel MPTCP: read the greeting, send ``data``, DATA_FIN, read the answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    s.settimeout(60)
    s.connect((STACK[0], port))
    greeting = s.recv(6)
    out["greeting"] = greeting.decode(errors="replace")
    s.sendall(data)
    out["kernel_info"] = kernel_info(s)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    out["kernel_got_reply"] = reply.decode(errors="replace")
    s.close()


class Peer(StreamHandler):
    """Client: send ``payload`` and close; server: greet, collect, answer with the SHA-256."""

    def __init__(self, payload: bytes | None, done: asyncio.Future) -> None:
        self.payload = payload
        self.received = bytearray()
        self.done = done
        self.lost: str | None = None

    def connection_made(self, stream) -> None:
        if self.payload is not None:
            stream.send(self.payload)
            stream.close()
        else:
            stream.send(b"HELLO\n")

    def data_received(self, stream, data: bytes) -> None:
        self.received += data

    def eof_received(self, stream) -> None:
        if self.payload is None:
            stream.send(hashlib.sha256(self.received).hexdigest().encode())
            stream.close()
        if not self.done.done():
            self.done.set_result(bytes(self.received))

    def connection_lost(self, stream, reason: str, reset: bool) -> None:
        self.lost = f"{reason} reset={reset}"
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))


def summarise(tracer: MemoryTracer, token: int | None = None) -> dict:
    recs = [r for r in tracer.records if r.layer == "mptcp"]
    established = [r.data["subflow"] for r in recs if r.name == "state_updated" and r.data.get("to") == "ESTABLISHED"]
    subtypes_sent = sorted({o["subtype"] for r in recs if r.name == "segment_sent" for o in r.data["mptcp"]})
    subtypes_rcvd = sorted({o["subtype"] for r in recs if r.name == "segment_received" for o in r.data["mptcp"]})
    return {
        "established_subflows": established,
        "sent": subtypes_sent,
        "received": subtypes_rcvd,
        "fallback": [r.data["fallback"] for r in recs if "fallback" in r.data],
        "errors": [  # each with the subflow and time it happened on
            f"{r.data.get('reason')} ({r.data.get('subflow', '-')}, t={r.t:.3f})"
            for r in recs
            if r.name in ("error", "segment_dropped")
        ][:10],
        "addresses_added": [r.data["address_added"] for r in recs if "address_added" in r.data],
        "terminated": [r.data for r in recs if "terminated" in r.data],
        "local_tokens": sorted({r.data["local_token"] for r in recs if r.name == "key_updated"}),
    }


async def main(args: argparse.Namespace) -> dict:
    sh("ip link set lo up")
    sh("sysctl -qw net.mptcp.enabled=1")
    sh(f"sysctl -qw net.mptcp.checksum_enabled={1 if args.checksum else 0}")
    sh("ip mptcp limits set subflow 4 add_addr_accepted 4")
    tuns = []
    for i, (k, _s) in enumerate(zip(KERNEL, STACK, strict=True)):
        tun = TunDevice(f"tm{i}")
        sh(f"ip addr add {k}/24 dev tm{i} && ip link set tm{i} up")
        tuns.append(tun)
    tracer = MemoryTracer()
    host = TunHost(tuns[0], STACK[0], more=((tuns[1], STACK[1]),), tracer=tracer, tcp_config=TcpConfig(min_rto_s=0.2))
    loop = asyncio.get_running_loop()
    result: dict = {}
    size = args.size

    # 1. our client -> kernel server, which announces its second address
    sh(f"ip mptcp endpoint add {KERNEL[1]} dev tm1 signal")
    payload = random.Random(7).randbytes(size)
    ready = threading.Event()
    out1: dict = {}
    t = threading.Thread(target=kernel_server, args=(5001, ready, out1), daemon=True)
    t.start()
    await loop.run_in_executor(None, ready.wait, 10)
    done: asyncio.Future = loop.create_future()
    handler = Peer(payload, done)
    stream = host.stack.connect(KERNEL[0], 5001, handler, group=MptcpConfig(checksum=args.checksum))
    mp = stream.conn
    try:
        reply = await asyncio.wait_for(done, args.timeout)
    except TimeoutError:
        mib = subprocess.run("nstat -az", shell=True, capture_output=True, text=True).stdout
        return {
            "client_timeout": summarise(tracer),
            "kernel": out1,
            "mib": [line for line in mib.splitlines() if "MPTcp" in line and line.split()[1] != "0"],
            "records": [(round(r.t, 3), r.name, r.data) for r in tracer.records if r.layer == "mptcp"][-40:],
        }
    await loop.run_in_executor(None, t.join, 20)
    for _ in range(50):
        if mp.terminated:
            break
        await asyncio.sleep(0.1)
    result["client"] = {
        **out1,
        "sha_ok": reply.endswith(hashlib.sha256(payload).hexdigest().encode()),
        "bytes_per_subflow": {str(s.addr): s.bytes_scheduled for s in mp.subflows},
        "our_token": mp.local_token,
        "remote_token": mp.remote_token,
        "checksum": mp.checksum,
        "terminated": mp.terminated,
        "lost": handler.lost,
        "trace": summarise(tracer),
    }
    sh("ip mptcp endpoint flush")
    tracer.records.clear()

    # 2. kernel client -> our server; the kernel opens a subflow from its second address,
    # and our ADD_ADDR offers our second address
    sh(f"ip mptcp endpoint add {KERNEL[1]} dev tm1 subflow")
    up = random.Random(8).randbytes(size)
    server_done: asyncio.Future = loop.create_future()
    servers: list[Peer] = []

    def make() -> Peer:
        servers.append(Peer(None, server_done))
        return servers[-1]

    host.stack.listen(6001, make, group=MptcpConfig(checksum=args.checksum))
    out2: dict = {}
    kt = threading.Thread(target=kernel_client, args=(6001, up, out2), daemon=True)
    kt.start()
    got = await asyncio.wait_for(server_done, 120)
    await loop.run_in_executor(None, kt.join, 30)
    mps = host.stack.groups()
    await asyncio.sleep(0.5)
    result["server"] = {
        **out2,
        "bytes_ok": got == up,
        "sha_echo_ok": out2.get("kernel_got_reply") == hashlib.sha256(up).hexdigest(),
        "received_per_subflow": {str(s.addr): s.bytes_received for m in mps for s in m.subflows},
        "our_tokens": [m.local_token for m in mps],
        "remote_tokens": [m.remote_token for m in mps],
        "trace": summarise(tracer),
    }
    sh("ip mptcp endpoint flush")
    tracer.records.clear()

    # 3. through an option stripper (TCPOPTSTRIP of kind 30 both ways): a byte-exact fallback to TCP
    if args.strip:
        sh("iptables -t mangle -A PREROUTING -p tcp -j TCPOPTSTRIP --strip-options 30")
        sh("iptables -t mangle -A POSTROUTING -p tcp -j TCPOPTSTRIP --strip-options 30")
        ready = threading.Event()
        out3: dict = {}
        t = threading.Thread(target=kernel_server, args=(5003, ready, out3), daemon=True)
        t.start()
        await loop.run_in_executor(None, ready.wait, 10)
        done = loop.create_future()
        handler = Peer(payload, done)
        stream = host.stack.connect(KERNEL[0], 5003, handler, group=MptcpConfig(checksum=args.checksum))
        reply = await asyncio.wait_for(done, 120)
        await loop.run_in_executor(None, t.join, 20)
        result["stripped"] = {
            **out3,
            "sha_ok": reply.endswith(hashlib.sha256(payload).hexdigest().encode()),
            "fallback": stream.conn.fallback,
            "trace": summarise(tracer),
        }
        sh("iptables -t mangle -F")
    host.close()
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--checksum", action="store_true")
    p.add_argument("--size", type=int, default=8 * 1024 * 1024)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--strip", action="store_true", help="also run through a TCPOPTSTRIP of option 30")
    print(json.dumps(asyncio.run(main(p.parse_args()))))
    sys.stdout.flush()

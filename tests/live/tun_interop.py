"""Run inside a fresh network namespace (``unshare -n``): our TCP against the kernel's.

Prints one JSON line with what happened; the test asserts on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import subprocess
import sys
import threading

from lab.stack.host import StreamHandler
from lab.stack.tun import TunDevice, TunHost
from lab.tcp import TcpConfig

KERNEL_ADDR = "10.77.0.1"
STACK_ADDR = "10.77.0.2"


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True)


def kernel_sink_server(port: int, ready: threading.Event, out: dict) -> None:
    """Kernel TCP: receive until EOF, answer with the SHA-256, close."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((KERNEL_ADDR, port))
    srv.listen(1)
    ready.set()
    conn, _ = srv.accept()
    h = hashlib.sha256()
    n = 0
    while chunk := conn.recv(65536):
        h.update(chunk)
        n += len(chunk)
    out["kernel_received"] = n
    conn.sendall(h.hexdigest().encode())
    conn.close()
    srv.close()


def kernel_client(port: int, data: bytes, out: dict) -> None:
    """Kernel TCP: send ``data``, half-close, read the peer's answer."""
    s = socket.create_connection((STACK_ADDR, port), timeout=30)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    out["kernel_got_reply"] = reply.decode()
    s.close()


class Collect(StreamHandler):
    def __init__(self, payload: bytes | None, done: asyncio.Future) -> None:
        self.payload = payload
        self.received = bytearray()
        self.done = done
        self.stream = None

    def connection_made(self, stream) -> None:
        self.stream = stream
        if self.payload is not None:
            stream.send(self.payload)
            stream.close()

    def data_received(self, stream, data: bytes) -> None:
        self.received += data

    def eof_received(self, stream) -> None:
        if self.payload is None:  # server side: answer with the SHA-256, then close
            stream.send(hashlib.sha256(self.received).hexdigest().encode())
            stream.close()
        if not self.done.done():
            self.done.set_result(bytes(self.received))

    def connection_lost(self, stream, reason: str, reset: bool) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))


async def main() -> dict:
    sh("ip link set lo up")
    tun = TunDevice("tl0")
    sh(f"ip addr add {KERNEL_ADDR}/24 dev tl0 && ip link set tl0 up")
    host = TunHost(tun, STACK_ADDR, tcp_config=TcpConfig(min_rto_s=0.2))
    loop = asyncio.get_running_loop()
    result: dict = {}

    # 1. our client -> kernel server
    payload = random.Random(7).randbytes(2 * 1024 * 1024)
    ready = threading.Event()
    t = threading.Thread(target=kernel_sink_server, args=(5001, ready, result), daemon=True)
    t.start()
    await loop.run_in_executor(None, ready.wait, 10)
    done: asyncio.Future = loop.create_future()
    handler = Collect(payload, done)
    stream = host.stack.connect(KERNEL_ADDR, 5001, handler)
    reply = await asyncio.wait_for(done, 60)
    conn = stream.conn
    result["client_sha_ok"] = reply.decode() == hashlib.sha256(payload).hexdigest()
    result["negotiated"] = {
        "sack": conn._sack_ok,
        "timestamps": conn._ts_ok,
        "window_scaling": conn._wscale_ok,
        "mss": conn.mss,
    }
    await loop.run_in_executor(None, t.join, 10)

    # 2. kernel client -> our server
    up = random.Random(8).randbytes(1024 * 1024)
    server_done: asyncio.Future = loop.create_future()
    host.stack.listen(6001, lambda: Collect(None, server_done))
    kt = threading.Thread(target=kernel_client, args=(6001, up, result), daemon=True)
    kt.start()
    got = await asyncio.wait_for(server_done, 60)
    await loop.run_in_executor(None, kt.join, 30)
    result["server_bytes_ok"] = got == up
    result["server_sha_echo_ok"] = result.get("kernel_got_reply") == hashlib.sha256(up).hexdigest()

    # 3. a closed port answers with a RST the kernel reports as a refusal
    def try_closed_port() -> bool:
        try:
            socket.create_connection((STACK_ADDR, 7999), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    result["refused"] = await loop.run_in_executor(None, try_closed_port)
    # 4. the same both ways with every 23rd packet we send and every 29th we receive lost:
    # SACK recovery against Linux's receiver, and Linux's retransmissions into ours
    counters = {"out": 0, "in": 0, "dropped_out": 0, "dropped_in": 0}
    real_write = tun.write

    def lossy_write(packet: bytes) -> None:
        counters["out"] += 1
        if counters["out"] % 23 == 0:
            counters["dropped_out"] += 1
            return
        real_write(packet)

    real_input = host.stack.input_packet

    def lossy_input(packet: bytes) -> None:
        counters["in"] += 1
        if counters["in"] % 29 == 0:
            counters["dropped_in"] += 1
            return
        real_input(packet)

    tun.write = lossy_write
    host.stack.input_packet = lossy_input
    ready = threading.Event()
    lossy_result: dict = {}
    t = threading.Thread(target=kernel_sink_server, args=(5002, ready, lossy_result), daemon=True)
    t.start()
    await loop.run_in_executor(None, ready.wait, 10)
    done = loop.create_future()
    host.stack.connect(KERNEL_ADDR, 5002, Collect(payload, done))
    reply = await asyncio.wait_for(done, 120)
    await loop.run_in_executor(None, t.join, 10)
    server_done = loop.create_future()
    host.stack.listen(6002, lambda: Collect(None, server_done))
    kt = threading.Thread(target=kernel_client, args=(6002, up, lossy_result), daemon=True)
    kt.start()
    got = await asyncio.wait_for(server_done, 120)
    await loop.run_in_executor(None, kt.join, 60)
    result["lossy"] = {
        "client_sha_ok": reply.decode() == hashlib.sha256(payload).hexdigest(),
        "server_bytes_ok": got == up,
        "server_sha_echo_ok": lossy_result.get("kernel_got_reply") == hashlib.sha256(up).hexdigest(),
        **counters,
    }
    await asyncio.sleep(0.2)
    host.close()
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    sys.stdout.flush()

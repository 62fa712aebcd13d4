"""Kernel-socket bulk transfers between Mininet hosts (tests, baselines).

Run inside a host with ``node.popen([sys.executable, "-m", "lab.mininet.apps", ...])``:

* ``receive --listen ADDR --port P`` prints ``{"event": "listening", ...}``
  once it listens, then accepts one connection, reads to EOF and prints
  ``{"event": "received", "bytes": ..., "sha256": ..., "elapsed_s": ...}``
  (``elapsed_s`` runs from accept to EOF).
* ``send --connect ADDR --port P --bytes N --seed S [--bind ADDR]`` sends the
  N bytes of ``random.Random(S).randbytes`` (see :func:`payload_chunks`),
  closes its sending side, waits for the receiver to close and prints
  ``{"event": "sent", "bytes": ..., "sha256": ..., "elapsed_s": ...}``.

Every line is one JSON object; a failure prints ``{"event": "error", ...}``
and exits 1. Both sides give up after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import random
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

CHUNK_BYTES = 1 << 16  # a multiple of 4, so chunked randbytes equal one randbytes call


def payload_chunks(size_bytes: int, seed: int, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The first ``size_bytes`` of ``random.Random(seed).randbytes(size_bytes)``, in chunks."""
    rng = random.Random(seed)
    left = size_bytes
    while left > 0:
        n = min(chunk_bytes, left)
        yield rng.randbytes(n)
        left -= n


def payload_sha256(size_bytes: int, seed: int) -> str:
    """SHA-256 (hex) of the payload a sender with ``size_bytes`` and ``seed`` sends."""
    digest = hashlib.sha256()
    for chunk in payload_chunks(size_bytes, seed):
        digest.update(chunk)
    return digest.hexdigest()


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def receive(listen: str, port: int, *, timeout_s: float) -> dict[str, Any]:
    """Accept one connection on ``listen``:``port`` and read it to EOF. Raises OSError."""
    with socket.socket(_family(listen), socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((listen, port))
        server.listen(1)
        server.settimeout(timeout_s)
        _emit({"event": "listening", "address": listen, "port": server.getsockname()[1]})
        conn, peer = server.accept()
    deadline = time.monotonic() + timeout_s
    with conn:
        started = time.monotonic()
        digest = hashlib.sha256()
        received = 0
        while True:
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            data = conn.recv(1 << 18)
            if not data:
                break
            digest.update(data)
            received += len(data)
        elapsed = time.monotonic() - started
        local = conn.getsockname()
    return {
        "event": "received",
        "bytes": received,
        "sha256": digest.hexdigest(),
        "elapsed_s": elapsed,
        "local": [local[0], local[1]],
        "peer": [peer[0], peer[1]],
    }


def send(
    connect: str, port: int, *, size_bytes: int, seed: int, bind: str | None = None, timeout_s: float
) -> dict[str, Any]:
    """Connect (from ``bind`` if given), send the payload, wait for the peer to close. Raises OSError."""
    deadline = time.monotonic() + timeout_s
    with socket.socket(_family(connect), socket.SOCK_STREAM) as sock:
        if bind is not None:
            sock.bind((bind, 0))
        sock.settimeout(timeout_s)
        started = time.monotonic()
        sock.connect((connect, port))
        digest = hashlib.sha256()
        for chunk in payload_chunks(size_bytes, seed):
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(chunk)
            digest.update(chunk)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        while sock.recv(4096):
            pass
        elapsed = time.monotonic() - started
        local = sock.getsockname()
    return {
        "event": "sent",
        "bytes": size_bytes,
        "sha256": digest.hexdigest(),
        "elapsed_s": elapsed,
        "local": [local[0], local[1]],
        "peer": [connect, port],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.mininet.apps", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("receive", help="accept one connection, print its byte count and SHA-256")
    r.add_argument("--listen", required=True)
    r.add_argument("--port", type=int, default=5001)
    r.add_argument("--timeout", type=float, default=60.0)
    s = sub.add_parser("send", help="send seeded pseudo-random bytes, print their SHA-256")
    s.add_argument("--connect", required=True)
    s.add_argument("--port", type=int, default=5001)
    s.add_argument("--bytes", type=int, required=True, dest="size_bytes")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--bind")
    s.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "receive":
            result = receive(args.listen, args.port, timeout_s=args.timeout)
        else:
            result = send(
                args.connect,
                args.port,
                size_bytes=args.size_bytes,
                seed=args.seed,
                bind=args.bind,
                timeout_s=args.timeout,
            )
    except (OSError, ValueError) as exc:
        _emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run inside a fresh network namespace (``unshare -n``): kernel TCP + tcpcryptd against our draft02 server.

tcpcryptd runs in its Linux proxy mode (``-e``) with the daemon's own
iptables rules (``iptables.sh`` from its source tree, found next to the
binary or through ``TCPCRYPTD_IPTABLES``): the kernel client's connection is
redirected to the daemon, which opens its own connection to our stack on a
TUN device, negotiating ENO (kind 253) and tcpcrypt-02 with it. The kernel
client runs as ``nobody`` so that the daemon's rules (owner root) tell the two
apart. Prints one JSON line; test_interop_tcpcryptd.py asserts on it. The
daemon is stopped by its PID; its rules go away with the namespace.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.eno.extension import EnoConfig, EnoExtension
from lab.stack.host import Stream, StreamHandler
from lab.stack.tun import TunDevice, TunHost
from lab.tcpcrypt.stream import TcpcryptConfig
from lab.wire.tcpcrypt import DRAFT02_AEAD_AES_128_GCM, DRAFT02_TEP_ECDHE_P256

KERNEL_ADDR = "10.78.0.1"
STACK_ADDR = "10.78.0.2"
PORT = 7777
QUEUE = 666
SIZE = 48 * 1024

# the kernel client: send SIZE bytes, read the answer until EOF (tcpcryptd's proxy mode has no half-close)
CLIENT = f"""
import hashlib, random, socket, sys
data = random.Random(11).randbytes({SIZE})
s = socket.create_connection(({STACK_ADDR!r}, {PORT}), timeout=20)
s.sendall(data)
reply = b""
while chunk := s.recv(65536):
    reply += chunk
print(reply.decode() == hashlib.sha256(data).hexdigest())
"""


def sh(cmd: str, **env: str) -> None:
    subprocess.run(cmd, shell=True, check=True, env={**os.environ, **env})


class Answer(StreamHandler):
    """Receives SIZE bytes, answers with their SHA-256 and closes."""

    def __init__(self, done: asyncio.Future, ctl: str) -> None:
        self.done = done
        self.ctl = ctl
        self.received = bytearray()
        self.daemon_sids = ""

    def data_received(self, stream: Stream, data: bytes) -> None:
        self.received += data
        if len(self.received) >= SIZE and not self.done.done():
            tcnetstat = shutil.which("tcnetstat")
            if tcnetstat:  # the daemon's view of the session, while the connection is up
                out = subprocess.run([tcnetstat, "-u", self.ctl], capture_output=True, text=True, timeout=10)
                self.daemon_sids = out.stdout
            stream.send(hashlib.sha256(self.received).hexdigest().encode())
            stream.close()
            self.done.set_result(bytes(self.received))

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))


async def main() -> dict:
    daemon_bin = shutil.which("tcpcryptd") or "tcpcryptd"
    rules = os.environ.get("TCPCRYPTD_IPTABLES") or str(Path(os.path.realpath(daemon_bin)).with_name("iptables.sh"))
    sh("ip link set lo up")
    tun = TunDevice("tc0")
    sh(f"ip addr add {KERNEL_ADDR}/24 dev tc0 && ip link set tc0 up")
    sh(f"sh {rules} start", DAEMON_USER="root", DIVERT_PORT=str(QUEUE), ONLY_PORTS=str(PORT))
    jail = tempfile.mkdtemp(prefix="tcpcryptd-jail-")
    ctl = f"{jail}/control"
    daemon = subprocess.Popen(
        [daemon_bin, "-p", str(QUEUE), "-e", "-f", "-U", "root", "-J", jail, "-u", ctl],
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
    )
    try:
        await asyncio.sleep(1.0)
        host = TunHost(tun, STACK_ADDR)
        loop = asyncio.get_running_loop()
        config = EnoConfig(
            teps=(DRAFT02_TEP_ECDHE_P256,),
            tcpcrypt=TcpcryptConfig(profile="draft02", aeads=(DRAFT02_AEAD_AES_128_GCM,)),
        )
        extensions: list[EnoExtension] = []

        def factory() -> EnoExtension:
            ext = EnoExtension(config)
            extensions.append(ext)
            return ext

        done: asyncio.Future = loop.create_future()
        handler = Answer(done, ctl)
        host.stack.listen(PORT, lambda: handler, extension_factory=factory)
        client = await asyncio.create_subprocess_exec(
            "/usr/bin/python3", "-c", CLIENT, user="nobody", stdout=asyncio.subprocess.PIPE
        )
        got = await asyncio.wait_for(done, 60)
        out, _ = await asyncio.wait_for(client.communicate(), 30)
        ext = extensions[0]
        sid = ext.session_id.hex() if ext.session_id else ""
        return {
            "eno_state": ext.state.value,
            "tep": f"0x{ext.negotiated_tep:02x}" if ext.negotiated_tep else None,
            "bytes_ok": got == __import__("random").Random(11).randbytes(SIZE),
            "kernel_got_sha": out.decode().strip() == "True",
            "session_id": sid,
            "daemon_sids": handler.daemon_sids,
            "daemon_has_our_session_id": bool(sid) and sid.upper() in handler.daemon_sids,
            "tcnetstat": shutil.which("tcnetstat") is not None,
        }
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

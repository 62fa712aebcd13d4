"""Run an :class:`~lab.ike.endpoint.IkeEndpoint` over the kernel's UDP and TCP sockets with asyncio.

The IKE layer is the lab's; UDP and TCP below it are the kernel's. Used to
meet third-party IKE daemons (libreswan's pluto) inside network namespaces::

    python -m lab.scenario.ike_live initiate --local 10.88.1.1 --remote 10.88.2.1 --psk SECRET \\
        --local-id west --remote-id east --transport fallback --udp-timeout 1 --childless
    python -m lab.scenario.ike_live respond --local 10.88.2.1 --psk SECRET --local-id east
    python -m lab.scenario.ike_live initiate --local 10.88.1.1 --remote 10.88.2.1 --local-id west \\
        --cert west.pem --key west.key --ca root.pem --fragmentation --path-mtu 1280

Each prints one JSON object per event (``{"event": "IkeSaEstablished", ...}``)
and exits 0 once the IKE SA is established (the initiator after a liveness
check and a Delete unless ``--keep``; with ``--until-rekeyed N`` only after
N IKE SA rekeys, ours from ``--rekey-after S`` or the peer's), 1 when it failed or timed out, 2 for
bad arguments. ``--keys DIR`` writes tshark's decryption tables for the SAs.
``--cert``/``--key``/``--ca`` authenticate with certificates (RFC 7427
signatures) instead of ``--psk``: ``--cert`` holds our certificate first,
then the intermediates to send; ``--ca`` the trust anchors; chains are
checked at the wall-clock time. ``--fragmentation`` offers RFC 7383.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lab.errors import ConfigError, LabError
from lab.ike.certs import Credential
from lab.ike.config import IKE_UDP_PORT, NAT_T_PORT, IkeConfig
from lab.ike.endpoint import IkeEndpoint, TcpClose, TcpOpen, TcpSend, UdpSend
from lab.ike.events import IkeEvent, IkeSaDeleted, IkeSaEstablished, IkeSaRekeyed, LivenessChecked
from lab.ike.keylog import key_tables
from lab.ike.policy import OVERSIZE_UDP_POLICIES
from lab.trace import MemoryTracer
from lab.wire.ikev2 import ENCR_AES_CBC, ENCR_AES_GCM_16

ENCR_BY_NAME = {"aes-gcm-16": ENCR_AES_GCM_16, "aes-cbc": ENCR_AES_CBC}


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, driver: LiveIkeDriver, port: int) -> None:
        self.driver = driver
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        d = self.driver
        d.endpoint.receive_datagram(
            data, local=(d.endpoint.local_addr, self.port), remote=(addr[0], addr[1]), now=d.now
        )
        d.pump()


class _Tcp(asyncio.Protocol):
    def __init__(self, driver: LiveIkeDriver, conn_id: int | None) -> None:
        self.driver = driver
        self.conn_id = conn_id
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        d = self.driver
        sock = transport.get_extra_info("socket")
        local, remote = sock.getsockname()[:2], sock.getpeername()[:2]
        if self.conn_id is None:
            self.conn_id = d.endpoint.tcp_accepted(local=local, remote=remote, now=d.now)
        else:
            d.endpoint.tcp_connected(self.conn_id, local=local, remote=remote, now=d.now)
        d.tcp[self.conn_id] = self
        d.pump()

    def data_received(self, data: bytes) -> None:
        self.driver.endpoint.receive_tcp_data(self.conn_id, data, now=self.driver.now)
        self.driver.pump()

    def eof_received(self) -> bool:
        self.driver.endpoint.receive_tcp_data(self.conn_id, b"", now=self.driver.now)
        self.driver.pump()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        d = self.driver
        if self.conn_id is not None and d.tcp.pop(self.conn_id, None) is self:
            d.endpoint.tcp_closed(self.conn_id, now=d.now)
            d.pump()


class LiveIkeDriver:
    """Pumps one endpoint on the running asyncio loop; ``on_event`` sees every IkeEvent."""

    def __init__(self, endpoint: IkeEndpoint, *, on_event: Callable[[IkeEvent], None]) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self._t0 = self.loop.time()
        self.udp: dict[int, _Udp] = {}
        self.tcp: dict[int, _Tcp] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False

    @property
    def now(self) -> float:
        return self.loop.time() - self._t0

    async def start(self) -> None:
        """Bind UDP 500 and 4500 (and listen on the TCP ports for a responder). Raises OSError."""
        addr = self.endpoint.local_addr
        for port in (IKE_UDP_PORT, NAT_T_PORT):
            _, proto = await self.loop.create_datagram_endpoint(lambda p=port: _Udp(self, p), local_addr=(addr, port))
            self.udp[port] = proto
        if not self.endpoint.initiator:
            for port in self.endpoint.config.tcp_ports:
                server = await self.loop.create_server(lambda: _Tcp(self, None), addr, port, reuse_address=True)
                self._servers.append(server)

    def close(self) -> None:
        for server in self._servers:
            server.close()
        for proto in list(self.tcp.values()):
            if proto.transport is not None:
                proto.transport.abort()
        for proto in self.udp.values():
            if proto.transport is not None:
                proto.transport.close()
        if self._timer is not None:
            self._timer.cancel()

    def pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while True:
                actions = self.endpoint.actions_to_send()
                for action in actions:
                    self._perform(action)
                events = []
                while (event := self.endpoint.next_event()) is not None:
                    events.append(event)
                for event in events:
                    self.on_event(event)
                if not actions and not events:
                    break
        finally:
            self._pumping = False
        when = self.endpoint.get_timer()
        if when is not None and (self._timer_at is None or when < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self.loop.call_at(self._t0 + when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        due = self.endpoint.get_timer()
        if due is not None and due <= self.now + 1e-6:
            self.endpoint.handle_timer(now=max(self.now, due))
        self.pump()

    def _perform(self, action: UdpSend | TcpOpen | TcpSend | TcpClose) -> None:
        if isinstance(action, UdpSend):
            proto = self.udp.get(action.local_port)
            if proto is not None and proto.transport is not None:
                proto.transport.sendto(action.data, action.remote)
        elif isinstance(action, TcpSend):
            proto = self.tcp.get(action.conn_id)
            if proto is not None and proto.transport is not None and not proto.transport.is_closing():
                proto.transport.write(action.data)
        elif isinstance(action, TcpOpen):
            self.loop.create_task(self._open(action))
        elif isinstance(action, TcpClose):
            proto = self.tcp.pop(action.conn_id, None)
            if proto is not None and proto.transport is not None:
                proto.conn_id = None
                proto.transport.close()

    async def _open(self, action: TcpOpen) -> None:
        try:
            await self.loop.create_connection(
                lambda: _Tcp(self, action.conn_id),
                action.remote[0],
                action.remote[1],
                local_addr=(self.endpoint.local_addr, 0),
            )
        except OSError as exc:
            refused = isinstance(exc, ConnectionRefusedError)  # ECONNREFUSED: the peer answered with a RST
            self.endpoint.tcp_failed(action.conn_id, str(exc), now=self.now, refused=refused)
            self.pump()


def load_certificates(pem: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM file. Raises ConfigError when there is none or the file cannot be read."""
    try:
        return tuple(x509.load_pem_x509_certificates(pem.read_bytes()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load certificates from {pem}: {exc}") from None


def load_credential(cert_pem: Path, key_pem: Path) -> Credential:
    """Our certificate (the first in ``cert_pem``), the intermediates after it and its private key.

    Raises ConfigError for files that do not hold that.
    """
    certificates = load_certificates(cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load {cert_pem} / {key_pem}: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_pem}: an RSA or ECDSA key is needed, not {type(key).__name__}")
    if key.public_key().public_numbers() != certificates[0].public_key().public_numbers():
        raise ConfigError(f"{key_pem} is not the key of the first certificate in {cert_pem}")
    return Credential(certificates[0], key, tuple(certificates[1:]))


def _event_json(event: IkeEvent) -> dict[str, Any]:
    data = asdict(event) if is_dataclass(event) else {}
    out: dict[str, Any] = {"event": type(event).__name__}
    for key, value in data.items():
        out[key] = value.hex() if isinstance(value, bytes) else value
    return out


async def run_live(args: argparse.Namespace) -> int:
    initiator = args.mode == "initiate"
    tracer = MemoryTracer()
    cert_auth: dict[str, Any] = {}
    if args.cert:
        cert_auth = {
            "auth": "signature",
            "credential": load_credential(Path(args.cert), Path(args.key)),
            "trust_anchors": load_certificates(Path(args.ca)),
            "validation_time": dt.datetime.now(dt.UTC),
        }
    config = IkeConfig(
        **({"psk": args.psk.encode()} if args.psk else {}),
        local_id=args.local_id.encode(),
        remote_id=args.remote_id.encode() if args.remote_id else None,
        transport=args.transport,
        fallback=args.fallback,
        udp_timeout_s=args.udp_timeout,
        tcp_ports=tuple(args.tcp_port),
        child_sa=not args.childless,
        export_keys=bool(args.keys),
        dh_groups=tuple(args.dh_group),
        retransmit_s=args.retransmit,
        offer_all=args.offer_all,
        encrs=tuple(ENCR_BY_NAME[name] for name in args.encr),
        fragmentation=args.fragmentation,
        separate_transports=args.separate_transports,
        id_type=args.id_type,
        oversize_udp=args.oversize_udp,
        path_mtu_bytes=args.path_mtu,
        **cert_auth,
    )
    endpoint = IkeEndpoint(
        config=config,
        initiator=initiator,
        local_addr=args.local,
        remote_addr=args.remote,
        rng=random.Random(args.seed) if args.seed is not None else random.SystemRandom(),
        tracer=tracer,
    )
    done = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    rekeys_wanted = args.until_rekeyed

    def rekey_now() -> None:
        try:
            driver.endpoint.rekey_ike(now=driver.now)
            driver.pump()
        except LabError as exc:
            print(json.dumps({"event": "error", "detail": str(exc)}), flush=True)

    def after_rekey() -> None:
        """Once the old IKE SA's Delete is through (either end sends it), go on on the new SA."""
        if done.done():
            return
        if driver.endpoint.retiring_sas():
            loop.call_later(0.05, after_rekey)
            return
        print(json.dumps({"event": "old_sa_deleted", "after_s": round(driver.now, 3)}), flush=True)
        try:
            if not initiator or args.keep:
                done.set_result(0)
            else:
                driver.endpoint.check_liveness(now=driver.now)
                driver.pump()
        except LabError as exc:
            print(json.dumps({"event": "error", "detail": str(exc)}), flush=True)
            done.set_result(1)

    def on_event(event: IkeEvent) -> None:
        nonlocal rekeys_wanted
        print(json.dumps(_event_json(event)), flush=True)
        if done.done():
            return
        try:
            if isinstance(event, IkeSaEstablished):
                if args.rekey_after is not None:
                    loop.call_later(args.rekey_after, rekey_now)
                if rekeys_wanted or args.wait_deleted:
                    return  # wait for the rekeys (ours or the peer's), or for the SA to go away
                if not initiator or args.keep:
                    done.set_result(0)
                else:
                    driver.endpoint.check_liveness(now=driver.now)
            elif isinstance(event, IkeSaRekeyed):
                rekeys_wanted = max(rekeys_wanted - 1, 0)
                if rekeys_wanted == 0:
                    after_rekey()
            elif isinstance(event, LivenessChecked):
                driver.endpoint.close(now=driver.now)
            elif isinstance(event, IkeSaDeleted):
                done.set_result(0 if (event.reason == "closed" and initiator) or args.wait_deleted else 1)
        except LabError as exc:
            print(json.dumps({"event": "error", "detail": str(exc)}), flush=True)
            done.set_result(1)

    driver = LiveIkeDriver(endpoint, on_event=on_event)
    try:
        await driver.start()
        if initiator:
            endpoint.connect(now=driver.now)
            driver.pump()
        rc = await asyncio.wait_for(done, timeout=args.timeout)
    except TimeoutError:
        print(json.dumps({"event": "timeout", "after_s": args.timeout}), flush=True)
        rc = 1
    finally:
        if args.linger:
            await asyncio.sleep(args.linger)
        driver.close()
        if args.keys:
            tables = key_tables(tracer.records)
            tables.write(Path(args.keys))
        if args.trace:
            tracer.write_jsonl(Path(args.trace))
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.scenario.ike_live", description="IKEv2 over kernel UDP/TCP sockets"
    )
    parser.add_argument("mode", choices=("initiate", "respond"))
    parser.add_argument("--local", required=True, help="local IPv4 address to bind")
    parser.add_argument("--remote", help="the responder's address (initiate)")
    parser.add_argument("--psk", help="pre-shared key (without --cert)")
    parser.add_argument("--cert", help="PEM: our certificate, then the intermediate CAs to send")
    parser.add_argument("--key", help="PEM: the private key of --cert (unencrypted PKCS#8)")
    parser.add_argument("--ca", help="PEM: the trust anchors the peer's chain must lead to")
    parser.add_argument(
        "--id-type", choices=("fqdn", "dn"), default="fqdn", help="our ID: --local-id, or --cert's subject DN"
    )
    parser.add_argument("--fragmentation", action="store_true", help="offer IKE fragmentation (RFC 7383)")
    parser.add_argument("--path-mtu", type=int, default=1500, help="the path MTU fragments are sized to")
    parser.add_argument(
        "--separate-transports",
        action="store_true",
        help="offer SEPARATE_TRANSPORTS (IETF draft; the lab's private-use notify number): IKE over TCP after"
        " IKE_SA_INIT over UDP 4500, ESP on UDP",
    )
    parser.add_argument(
        "--oversize-udp",
        choices=OVERSIZE_UDP_POLICIES,
        default="send",
        help="a message too big for the path, unfragmentable: send it whole, or go to TCP (with --transport fallback)",
    )
    parser.add_argument("--local-id", required=True)
    parser.add_argument("--remote-id")
    parser.add_argument("--transport", choices=("udp", "tcp", "fallback"), default="fallback")
    parser.add_argument("--fallback", choices=("sequential", "racing"), default="sequential")
    parser.add_argument("--udp-timeout", type=float, default=2.0)
    parser.add_argument("--retransmit", type=float, default=0.5)
    parser.add_argument("--tcp-port", type=int, action="append", default=None)
    parser.add_argument("--dh-group", type=int, action="append", default=None)
    parser.add_argument("--childless", action="store_true", help="no Child SA in IKE_AUTH (RFC 6023)")
    parser.add_argument("--keep", action="store_true", help="initiator: exit once established, without Delete")
    parser.add_argument(
        "--wait-deleted", action="store_true", help="stay up until the IKE SA is gone, whatever the reason (exit 0)"
    )
    parser.add_argument("--offer-all", action="store_true", help="offer every supported cipher, PRF and integrity")
    parser.add_argument(
        "--encr", choices=tuple(ENCR_BY_NAME), action="append", default=None, help="ciphers, in order (IKE and ESP)"
    )
    parser.add_argument("--rekey-after", type=float, help="rekey the IKE SA this many seconds after it is up")
    parser.add_argument(
        "--until-rekeyed", type=int, default=0, help="carry on until the IKE SA was rekeyed this many times"
    )
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--linger", type=float, default=0.0, help="seconds to keep running after the result")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--keys", help="directory for tshark's decryption tables")
    parser.add_argument("--trace", help="write the trace records (JSON Lines) here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.tcp_port = args.tcp_port or [4500]
    args.dh_group = args.dh_group or [19, 31, 14, 20, 21]
    args.encr = args.encr or list(ENCR_BY_NAME)
    if args.mode == "initiate" and not args.remote:
        parser.error("initiate needs --remote")
    if bool(args.psk) == bool(args.cert):
        parser.error("give either --psk or --cert (with --key and --ca)")
    if args.cert and not (args.key and args.ca):
        parser.error("--cert needs --key and --ca")
    try:
        socket.inet_aton(args.local)
        return asyncio.run(run_live(args))
    except (ConfigError, LabError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Two TcpConnections with EnoExtensions, back to back (tests.tcp.pair.TcpPair underneath)."""

from __future__ import annotations

import random

from lab.eno.events import EnoEvent
from lab.eno.extension import EnoConfig, EnoExtension
from lab.trace import TraceRecord
from lab.wire.checksum import pack_address
from lab.wire.eno import eno_options
from lab.wire.tcp import SYN, TcpSegment, UnknownOption, decode_segment, encode_segment
from tests.tcp.pair import Fault, TcpPair


class EnoPair(TcpPair):
    """``client_eno``/``server_eno`` None: that side has no extension (a host without ENO)."""

    def __init__(
        self,
        client_eno: EnoConfig | None = EnoConfig(),
        server_eno: EnoConfig | None = EnoConfig(),
        *,
        fault: Fault | None = None,
        seed: int = 1,
        one_way_s: float = 0.01,
        **kw: object,
    ) -> None:
        self.client_ext = EnoExtension(client_eno, rng=random.Random(seed * 7)) if client_eno is not None else None
        self.server_ext = EnoExtension(server_eno, rng=random.Random(seed * 11)) if server_eno is not None else None
        super().__init__(
            client_extension=self.client_ext,
            server_extension=self.server_ext,
            fault=fault,
            seed=seed,
            one_way_s=one_way_s,
            **kw,  # type: ignore[arg-type]
        )
        self.eno_events: dict[str, list[EnoEvent]] = {"client": [], "server": []}

    def _collect(self, conn) -> None:  # noqa: ANN001
        super()._collect(conn)
        ext = self.client_ext if conn is self.client else self.server_ext
        if ext is not None:
            while (ev := ext.next_event()) is not None:
                self.eno_events[self.node(conn)].append(ev)

    def eno(self, side: str, cls: type | None = None) -> list[EnoEvent]:
        evs = self.eno_events[side]
        return [e for e in evs if cls is None or isinstance(e, cls)]

    def eno_records(self, *, node: str | None = None, name: str | None = None, layer: str = "eno") -> list[TraceRecord]:
        return self.tracer.select(layer=layer, node=node, name=name)


def rewrite_options(sender, data: bytes, edit) -> bytes:  # noqa: ANN001
    """Re-encode ``sender``'s segment with ``edit(segment) -> options``, checksum fixed like a rewriting box."""
    seg = decode_segment(data)
    new = TcpSegment(seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window, tuple(edit(seg)), seg.payload)
    return encode_segment(new, pack_address(sender.addr.local_addr), pack_address(sender.addr.remote_addr))


def strip_eno(*, syn: bool, non_syn: bool, from_side=None) -> Fault:  # noqa: ANN001
    """A middlebox removing ENO options from SYNs and/or other segments (optionally one direction only)."""

    def fault(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        if from_side is not None and sender is not from_side():
            return [data]
        seg = decode_segment(data)
        is_syn = bool(seg.flags & SYN)
        if (is_syn and syn) or (not is_syn and non_syn):
            if eno_options(seg.options):
                return [
                    rewrite_options(sender, data, lambda s: [o for o in s.options if o not in eno_options(s.options)])
                ]
        return [data]

    return fault


def replace_syn_eno(option: UnknownOption | list[UnknownOption] | None, *, flags: int = SYN) -> Fault:
    """Put ``option`` (raw TCP options) in place of the ENO option of segments whose flags are exactly ``flags``."""
    extra = [] if option is None else option if isinstance(option, list) else [option]

    def fault(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        seg = decode_segment(data)
        if seg.flags != flags:
            return [data]
        return [
            rewrite_options(sender, data, lambda s: [o for o in s.options if o not in eno_options(s.options)] + extra)
        ]

    return fault

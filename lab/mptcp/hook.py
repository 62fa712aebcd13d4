"""Multipath TCP on a host stack: what a host's MPTCP connections share.

:class:`MptcpHook` is the :class:`~lab.tcp.group.GroupHook` a host stack
keeps when an application passes ``group=MptcpConfig(...)``: it owns the
host's tokens (MP_JOIN SYNs find their connection by token, RFC 8684 §3.2),
the ports its ADD_ADDRs announce (they take MP_JOIN SYNs only, §3.4.1) and
the MPTCP version each server was last offered (§3.1).
"""

from __future__ import annotations

import random
from typing import Any

from lab.mptcp.config import MptcpConfig
from lab.mptcp.connection import MptcpConnection
from lab.mptcp.options import syn_mptcp_option
from lab.tcp.addresses import FourTuple
from lab.tcp.config import TcpConfig
from lab.tcp.group import ConnectionGroup, GroupHook, HostServices
from lab.wire.mptcp import MPTCP_RST_ADMINISTRATIVELY_PROHIBITED, MpJoinSyn, MpTcpRst, to_tcp_option


class MptcpHook(GroupHook):
    layer = "mptcp"

    def __init__(self, host: HostServices) -> None:
        super().__init__(host)
        self._tokens: dict[int, MptcpConnection] = {}
        self._join_ports: set[int] = set()  # ports announced in ADD_ADDR: MP_JOIN SYNs only
        self.versions: dict[str, int] = {}  # server address -> MPTCP version to offer it

    def _new(self, config: MptcpConfig, role: str, tcp_config: TcpConfig | None) -> MptcpConnection:
        host = self.host
        mp = MptcpConnection(
            config=config,
            role=role,
            local_addresses=list(host.addresses),
            tcp_config=tcp_config or host.tcp_config,
            tracer=host.tracer,
            rng=random.Random(host.rng.getrandbits(64)),
            allocate_port=host.allocate_port,
            token_in_use=self._tokens.__contains__,
            version_cache=self.versions,
        )
        self._tokens[mp.local_token] = mp
        return mp

    def open(self, config: Any, *, tcp_config: TcpConfig | None) -> MptcpConnection:
        return self._new(config, "client", tcp_config)

    def listening(self, port: int, config: Any) -> None:
        if config.announce_port is not None and config.announce_port != port:
            # the port our ADD_ADDRs announce: it takes MP_JOINs only (RFC 8684 §3.4.1); reserved,
            # so that no connect() takes it and a real-network backend fences it off from the kernel
            self._join_ports.add(config.announce_port)
            self.host.reserve_port(config.announce_port)

    def syn_arrived(
        self,
        addr: FourTuple,
        segment: bytes,
        *,
        config: Any,
        tcp_config: TcpConfig | None,
        now: float,
    ) -> ConnectionGroup | bool | tuple | None:
        if config is None and addr.local_port not in self._join_ports:
            return None
        opt = syn_mptcp_option(segment)
        if isinstance(opt, MpJoinSyn):
            return self._join(addr, segment, opt, now=now)
        if config is None:
            return None  # an announced port takes MP_JOINs only
        mp = self._new(config, "server", tcp_config)
        mp.accept(addr, segment, now=now)
        return mp

    def makes_group(self, segment: bytes) -> bool:
        return not isinstance(syn_mptcp_option(segment), MpJoinSyn)

    def _join(self, addr: FourTuple, segment: bytes, opt: MpJoinSyn, *, now: float) -> MptcpConnection | bool | tuple:
        mp = self._tokens.get(opt.token)
        if mp is not None and mp.established and len(mp.subflows) >= mp.config.max_subflows:
            # RFC 8684 §3.2: a host may refuse a join; §3.6: RST with MP_TCPRST, reason
            # "administratively prohibited" (the subflow is against this host's policy, its
            # max_subflows; Linux sends the same). No subflow state is made for it.
            tracer = self.host.tracer
            if tracer.enabled:
                tracer.record(
                    now,
                    "mptcp",
                    "segment_dropped",
                    {
                        "token": mp.local_token,
                        "subflow": str(addr),
                        "reason": f"MP_JOIN refused: {len(mp.subflows)} subflows, max_subflows {mp.config.max_subflows}",
                    },
                )
            if mp.version == 1:
                return (to_tcp_option(MpTcpRst(reason=MPTCP_RST_ADMINISTRATIVELY_PROHIBITED)),)
            return True
        if mp is None or not mp.established or mp.fallback is not None or mp.terminated:
            tracer = self.host.tracer
            if tracer.enabled:
                tracer.record(
                    now,
                    "mptcp",
                    "segment_dropped",
                    {"subflow": str(addr), "reason": f"MP_JOIN for unknown token {opt.token}", "token": opt.token},
                )
            return True  # RFC 8684 §3.2: an unknown token gets a RST
        mp.accept_join(addr, segment, now=now)
        return mp

    def groups(self) -> list[ConnectionGroup]:
        return list(self._tokens.values())

    def pumped(self, group: ConnectionGroup) -> None:
        mp: Any = group
        tokens = self._tokens
        if mp.terminated:
            if tokens.get(mp.local_token) is mp:
                del tokens[mp.local_token]
            return
        if tokens.get(mp.local_token) is not mp:
            # a version change (RFC 8684 §3.1) gave the connection the other hash's token
            for token in [t for t, m in tokens.items() if m is mp]:
                del tokens[token]
            tokens[mp.local_token] = mp

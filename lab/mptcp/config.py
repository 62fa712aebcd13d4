"""MptcpConfig: what an MPTCP endpoint is asked to do, checked when made."""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import ConfigError

MAX_MAPPING_BYTES = 0xFFFF  # Data-Level Length is 16 bits (RFC 8684 §3.3)


@dataclass(frozen=True, kw_only=True)
class MptcpConfig:
    """Per-endpoint MPTCP settings.

    ``version`` 1 is RFC 8684, 0 is RFC 6824 (SHA-1). ``checksum`` asks for DSS
    checksums (used when either side asks). ``scheduler``, ``path_manager``
    and ``congestion`` name strategies (see :mod:`lab.mptcp.strategies`).
    ``announce`` lets the path manager send ADD_ADDR for this host's other
    addresses (a server's: a client joins from its own and announces nothing);
    ``join`` lets it open MP_JOIN subflows. ``backup_addresses``
    are local addresses whose subflows are backups (MP_JOIN B flag).
    ``receive_buffer_bytes`` bounds the connection-level reassembly buffer:
    the window announced to the peer. ``opportunistic_retransmission`` and
    ``penalisation`` (Raiciu et al., NSDI 2012) and ``slow_path_check`` (ECF:
    keep data off a slow subflow when the fast one would deliver it sooner)
    are the mechanisms for heterogeneous paths.
    ``announce_port`` is the port our ADD_ADDRs carry (RFC 8684 §3.4.1): the
    peer opens its MP_JOINs to that port, on which a host listening with this
    configuration also accepts joins; None announces addresses without a port
    (joins then go to the port of the initial subflow).
    ``versions`` are the MPTCP versions this end supports (empty: ``version``
    only); ``version``, the highest of them, is what a client offers in its
    SYN (RFC 8684 §3.1). A server answers a SYN with the offered version when
    it supports it, with its own highest when the offer is higher; a client
    continues with a lower version the SYN/ACK names when it supports it, and
    a host remembers per server which version to offer next time (see
    ``MptcpConnection``'s ``version_cache``).
    """

    version: int = 1
    checksum: bool = False
    scheduler: str = "min_rtt"
    path_manager: str = "fullmesh"
    congestion: str = "uncoupled"
    announce: bool = True
    join: bool = True
    backup_addresses: tuple[str, ...] = ()
    max_subflows: int = 8
    receive_buffer_bytes: int = 8 * 1024 * 1024
    mapping_bytes: int = 16 * 1448
    opportunistic_retransmission: bool = True
    penalisation: bool = True
    slow_path_check: bool = True
    announce_port: int | None = None
    versions: tuple[int, ...] = ()

    @property
    def hook(self) -> type:
        """The host stack's plug-in for MPTCP (``HostStack.connect(..., group=MptcpConfig())``)."""
        from lab.mptcp.hook import MptcpHook

        return MptcpHook

    @property
    def supported_versions(self) -> tuple[int, ...]:
        """The versions this end speaks, highest first."""
        return tuple(sorted(set(self.versions), reverse=True)) if self.versions else (self.version,)

    def __post_init__(self) -> None:
        from lab.mptcp import strategies

        if self.version not in (0, 1):
            raise ConfigError(f"MPTCP version must be 0 (RFC 6824) or 1 (RFC 8684), got {self.version!r}")
        if not isinstance(self.versions, tuple) or any(isinstance(v, bool) or v not in (0, 1) for v in self.versions):
            raise ConfigError(f"versions must be a tuple of MPTCP versions 0 and 1, got {self.versions!r}")
        if self.versions and (len(set(self.versions)) != len(self.versions) or self.version != max(self.versions)):
            raise ConfigError(
                f"versions {self.versions!r}: no duplicates, and version ({self.version}) must be the highest of them"
            )
        if not 1 <= self.max_subflows <= 64:
            raise ConfigError(f"max_subflows must be 1..64, got {self.max_subflows!r}")
        if not 4096 <= self.receive_buffer_bytes <= 1 << 30:
            raise ConfigError(f"receive_buffer_bytes must be 4096..2**30, got {self.receive_buffer_bytes!r}")
        if not 1 <= self.mapping_bytes <= MAX_MAPPING_BYTES:
            raise ConfigError(f"mapping_bytes must be 1..{MAX_MAPPING_BYTES}, got {self.mapping_bytes!r}")
        if self.announce_port is not None and (
            isinstance(self.announce_port, bool)
            or not isinstance(self.announce_port, int)
            or not 0 < self.announce_port < 65536
        ):
            raise ConfigError(f"announce_port must be a port 1..65535 or None, got {self.announce_port!r}")
        for kind, name, known in (
            ("scheduler", self.scheduler, strategies.SCHEDULERS),
            ("path_manager", self.path_manager, strategies.PATH_MANAGERS),
            ("congestion", self.congestion, strategies.COUPLED_CONGESTION),
        ):
            if name not in known:
                raise ConfigError(f"unknown MPTCP {kind} {name!r}; known: {', '.join(sorted(known))}")

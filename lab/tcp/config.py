"""Per-connection TCP settings."""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpConfig:
    """Settings of one TCP endpoint; every time is in seconds, every size in bytes."""

    mss: int = 1460  # the MSS we announce over IPv4 (MTU 1500 minus 40); 20 less over IPv6
    receive_buffer_bytes: int = 4 * 1024 * 1024
    window_scaling: bool = True  # RFC 7323
    timestamps: bool = True  # RFC 7323
    sack: bool = True  # RFC 2018 / RFC 6675
    congestion_control: str = "cubic"  # a name registered in lab.tcp.congestion
    initial_window_segments: int = 10  # RFC 6928
    initial_rto_s: float = 1.0  # RFC 6298 (2.1)
    min_rto_s: float = 1.0  # RFC 6298 (2.4); Linux uses 0.2
    max_rto_s: float = 60.0  # RFC 6298 (2.5)
    delayed_ack_s: float = 0.04  # RFC 9293 3.8.6.3: under 0.5 s
    quickack_segments: int = 16  # after a hole, ACK this many segments at once (Linux's quick-ACK; RFC 5681 allows it)
    nagle: bool = True  # RFC 9293 3.8.6.2.2
    syn_retries: int = 6
    max_retransmits: int = 15
    msl_s: float = 30.0  # TIME-WAIT lasts 2 * MSL
    keepalive_idle_s: float | None = None  # RFC 9293 3.8.4 (RFC 1122: at least 2 h when on)
    keepalive_interval_s: float = 75.0
    keepalive_probes: int = 9
    dup_thresh: int = 3  # RFC 6675 DupThresh

    def __post_init__(self) -> None:
        if not 64 <= self.mss <= 65495:
            raise ConfigError(f"mss must be 64..65495 bytes, got {self.mss}")
        if not 1 <= self.receive_buffer_bytes <= (1 << 30):
            raise ConfigError(f"receive_buffer_bytes must be 1..2**30, got {self.receive_buffer_bytes}")
        if self.initial_window_segments < 1:
            raise ConfigError("initial_window_segments must be at least 1")
        if not 0 < self.min_rto_s <= self.max_rto_s:
            raise ConfigError("need 0 < min_rto_s <= max_rto_s")
        if not 0 <= self.delayed_ack_s < 0.5:
            raise ConfigError("delayed_ack_s must be below 0.5 s (RFC 9293)")
        from lab.tcp.congestion import CONGESTION_CONTROLS

        if self.congestion_control not in CONGESTION_CONTROLS:
            raise ConfigError(
                f"unknown congestion control {self.congestion_control!r}; known: {', '.join(sorted(CONGESTION_CONTROLS))}"
            )

    @property
    def window_shift(self) -> int:
        """The window scale shift needed to announce the whole receive buffer (RFC 7323 2.3)."""
        shift = 0
        while (self.receive_buffer_bytes >> shift) > 0xFFFF and shift < 14:
            shift += 1
        return shift

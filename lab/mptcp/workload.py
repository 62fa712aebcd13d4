"""MptcpTransfer: a bulk transfer over Multipath TCP, as a scenario workload."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.apps import BulkSender, BulkSink
from lab.errors import ConfigError
from lab.mptcp.config import MptcpConfig
from lab.scenario import Transfer

if TYPE_CHECKING:
    from lab.scenario import ScenarioRun


@dataclass(frozen=True, kw_only=True)
class MptcpTransfer(Transfer):
    """A bulk transfer from ``src`` to ``dst`` over MPTCP.

    ``client``/``server`` are MptcpConfig keyword arguments for each end;
    ``None`` for an end makes it a plain TCP host (to show fallback).
    """

    client: dict[str, Any] | None = field(default_factory=dict)
    server: dict[str, Any] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for side in (self.client, self.server):
            if side is not None:
                try:
                    MptcpConfig(**side)
                except TypeError as exc:
                    raise ConfigError(f"transfer {self.name}: bad MPTCP setting: {exc}") from None

    def schedule(self, run: ScenarioRun) -> None:
        dst_ifaces = run.spec.interfaces_of(self.dst)
        if self.dst not in run.spec.hosts() or not dst_ifaces:
            raise ConfigError(f"transfer {self.name}: no host {self.dst!r}")
        if self.dst_interface >= len(dst_ifaces):
            raise ConfigError(f"transfer {self.name}: {self.dst} has {len(dst_ifaces)} interfaces")
        src = run.net.host(self.src)
        dst = run.net.host(self.dst)
        data = run.payload(self.size_bytes)
        result = run.add_result(self.name, data)
        server = None if self.server is None else MptcpConfig(**self.server)
        client = None if self.client is None else MptcpConfig(**self.client)
        dst.listen(self.port, lambda: BulkSink(result), mptcp=server)
        remote = dst_ifaces[self.dst_interface].ipv4
        run.net.call_at(self.start_s, lambda: BulkSender(result, data).start(src, remote, self.port, mptcp=client))

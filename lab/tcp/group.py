"""How a protocol that spans several TCP connections (Multipath TCP) plugs into a host stack.

The host stack (``lab.stack``) speaks TCP and UDP and knows no such
protocol by name. An application asks for one by passing a
:class:`GroupConfig` to ``connect``/``listen`` (``group=MptcpConfig(...)``);
the config names its :class:`GroupHook` class, and the stack keeps one hook
of each class per host. The hook holds what the protocol shares across a
host's connections (MPTCP: tokens, the ports its ADD_ADDRs announce, the
versions servers speak) and makes :class:`ConnectionGroup` objects; the stack
demultiplexes their member connections, pumps each group as one endpoint and
hands its stream events (``lab.tcp.events``) to the application, exactly as
for a single TcpConnection.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

from lab.tcp.addresses import FourTuple, Outgoing
from lab.tcp.config import TcpConfig
from lab.tcp.connection import TcpConnection
from lab.tcp.state import TcpState
from lab.trace import Tracer


class HostServices(Protocol):
    """What a host stack offers a hook."""

    name: str
    addresses: list[str]
    tracer: Tracer
    rng: random.Random
    tcp_config: TcpConfig

    @property
    def now(self) -> float: ...

    def allocate_port(self) -> int:
        """A free local port for a new member connection."""
        ...

    def reserve_port(self, port: int) -> None:
        """Keep ``port`` from the allocator (and fence it off from a real host's kernel)."""
        ...


class ConnectionGroup(ABC):
    """One connection made of member TCP connections, driven like a TcpConnection.

    The stack calls the same methods as on a TcpConnection (``send``,
    ``close``, ``abort``, ``segments_to_send``, ``next_event``, ``get_timer``,
    ``handle_timer``...) and, after each ``segments_to_send``, takes the member
    connections that appeared or went away, to (un)register them for
    demultiplexing. Segments arriving on a member go to the member itself
    (``receive_segment``); the group is pumped after each.
    """

    addr: FourTuple
    terminated: bool
    layer = "group"  # the trace layer of its records (MPTCP: "mptcp")

    @property
    @abstractmethod
    def state(self) -> TcpState: ...

    @property
    @abstractmethod
    def writable(self) -> bool: ...

    @property
    @abstractmethod
    def send_buffered(self) -> int: ...

    @abstractmethod
    def send(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self, *, now: float) -> None: ...

    @abstractmethod
    def abort(self, reason: str = "aborted", *, now: float) -> None: ...

    @abstractmethod
    def pause_reading(self) -> None: ...

    @abstractmethod
    def resume_reading(self, *, now: float) -> None: ...

    @abstractmethod
    def segments_to_send(self, *, now: float) -> list[Outgoing]: ...

    @abstractmethod
    def take_new_subflows(self) -> list[TcpConnection]:
        """Member connections created since the last call (the stack registers them)."""

    @abstractmethod
    def take_closed_subflows(self) -> list[TcpConnection]:
        """Member connections gone since the last call (the stack forgets them)."""

    @abstractmethod
    def next_event(self) -> Any:
        """The next event; the stream events of ``lab.tcp.events`` reach the application."""

    @abstractmethod
    def get_timer(self) -> float | None: ...

    @abstractmethod
    def handle_timer(self, *, now: float) -> None: ...

    def address_changed(self, address: str, up: bool, *, now: float) -> None:
        """A local address went down or came back (its interface's carrier)."""

    def metrics(self) -> list[dict[str, Any]]:
        """``metrics_updated`` samples, one dict each (recorded by whoever samples the host)."""
        return []

    def sample_rates(self, now: float) -> None:
        """Update rate estimates before :meth:`metrics` is read."""


class GroupHook(ABC):
    """A multi-connection protocol's state on one host; the stack keeps one per class.

    ``layer`` names the trace layer of its records (``mptcp``).
    """

    layer = "group"

    def __init__(self, host: HostServices) -> None:
        self.host = host

    @abstractmethod
    def open(self, config: GroupConfig, *, tcp_config: TcpConfig | None) -> ConnectionGroup:
        """A new group for an active open; the stack then calls its ``connect(addr, now=...)``."""

    def listening(self, port: int, config: GroupConfig) -> None:
        """A listener on ``port`` speaks this protocol with ``config`` (it may reserve more ports)."""

    @abstractmethod
    def syn_arrived(
        self,
        addr: FourTuple,
        segment: bytes,
        *,
        config: GroupConfig | None,
        tcp_config: TcpConfig | None,
        now: float,
    ) -> ConnectionGroup | bool | tuple | None:
        """A SYN (no ACK) for ``addr``'s local port, which has a listener with ``config`` or
        (``config`` None) no listener at all. Returns the group that took it (new or
        existing: the stack pumps it, and registers the stream for a new one), True when
        the hook refused it (the stack answers with a RST), a tuple of TCP options when it
        refused it with a reason (the stack's RST carries them), None when it is not the
        protocol's business (plain TCP as usual; without a listener, a RST)."""

    def makes_group(self, segment: bytes) -> bool:
        """Whether this SYN to a listener would make a new group rather than join one: what the
        listener's backlog of half-open connections counts (see :mod:`lab.stack.syn_backlog`)."""
        return True

    def groups(self) -> list[ConnectionGroup]:
        """The host's live groups."""
        return []

    def pumped(self, group: ConnectionGroup) -> None:
        """After each pump of ``group`` (it may have changed its keys, or ended)."""


class GroupConfig(Protocol):
    """What an application passes as ``group=``: a protocol's settings that name their hook."""

    hook: Callable[[HostServices], GroupHook] | type[GroupHook]

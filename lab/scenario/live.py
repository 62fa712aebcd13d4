"""What a live or recorded run offers the faces (the TUI, serve): the LabRun interface.

A backend's live run (``Backend.live_run``: the simulator's SimRun, Mininet's
MininetRun) and a replayed bundle (``lab.runs.ReplayRun``) implement it:
batches of trace records, the topology, a status, and controls. Nothing
here imports Textual. Controls a run does not support raise
:class:`ControlUnavailable`; bad control values (an unknown link, a speed
that is not positive) raise ConfigError. Problems a viewer must see but
survive (a corrupt trace line, the simulator failing) arrive as ``error``
records of layer ``run``: ``{"reason": "...", "fatal": bool}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lab.errors import ConfigError, LabError
from lab.scenario.base import Scenario, Transfer, Workload
from lab.scenario.middlebox import BlockUdpPorts, Middlebox, StripTcpOptions
from lab.scenario.moments import Moment, MomentSpec
from lab.trace import TraceRecord

DEFAULT_TRANSFER_BYTES = 1024 * 1024
STEP_S = 0.1  # what one "step" advances in virtual time
SPEEDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, None)  # None: as fast as possible


class ControlUnavailable(LabError):
    """The run cannot do this (a replay has no links to take down)."""


@dataclass
class PolicyInfo:
    """A middlebox policy a run can switch on or off at a router."""

    key: str  # "r1/strip_tcp_options:30"
    router: str
    label: str
    description: dict[str, Any]
    enabled: bool


@dataclass
class RunStatus:
    now: float = 0.0
    paused: bool = False
    speed: float | None = 1.0
    finished: bool = False
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class LabRun:
    """What the TUI needs from a run: records, the topology, and controls."""

    backend = "?"
    name = "?"
    controls: frozenset[str] = frozenset()  # of: links, middleboxes, transfer, pause, step, speed, seek

    def topology(self) -> dict[str, Any]:
        """The topology spec as ``topology.json`` has it (nodes, links, interfaces, diagram)."""
        raise NotImplementedError

    def trace_batches(self, interval: float = 0.05) -> AsyncIterator[list[TraceRecord]]:
        """Batches of new records, about every ``interval`` seconds of wall time; ends with the run."""
        raise NotImplementedError

    def status(self) -> RunStatus:
        raise NotImplementedError

    def scenario_declared(self) -> Scenario | None:
        """The scenario this run follows, when it is a known one (replays look it up by name)."""
        scenario = getattr(self, "scenario", None)
        if isinstance(scenario, Scenario):
            return scenario
        from lab.scenario import registry

        try:
            return registry.scenarios().get(self.name)
        except Exception:  # a broken registry entry must not stop a replay
            return None

    def moment_specs(self) -> tuple[MomentSpec, ...]:
        """The key moments the scenario declares (lab/moments.py); none for an unknown one."""
        scenario = self.scenario_declared()
        return tuple(scenario.moments) if scenario is not None else ()

    def main_view(self) -> str:
        """The view the scenario's lesson is best seen in."""
        scenario = self.scenario_declared()
        return scenario.main_view if scenario is not None else "topology"

    def known_moments(self) -> list[Moment]:
        """Moments known ahead of playback (a replay knows all of them); live runs know none."""
        return []

    # controls; each raises ControlUnavailable unless named in ``controls``
    def set_link_up(self, link: str, up: bool) -> None:
        raise ControlUnavailable(f"a {self.backend} run cannot change links")

    def middlebox_policies(self) -> list[PolicyInfo]:
        return []

    def set_middlebox_enabled(self, key: str, enabled: bool) -> None:
        raise ControlUnavailable(f"a {self.backend} run cannot switch middleboxes")

    def start_transfer(self, size_bytes: int = DEFAULT_TRANSFER_BYTES) -> str:
        raise ControlUnavailable(f"a {self.backend} run cannot start transfers")

    def stop_transfer(self) -> str | None:
        raise ControlUnavailable(f"a {self.backend} run cannot stop transfers")

    def pause(self, paused: bool = True) -> None:
        raise ControlUnavailable(f"a {self.backend} run cannot pause")

    def step(self, seconds: float = STEP_S) -> None:
        raise ControlUnavailable(f"a {self.backend} run cannot step")

    def set_speed(self, speed: float | None) -> None:
        raise ControlUnavailable(f"a {self.backend} run has no speed control")

    def seek(self, t: float) -> list[TraceRecord]:
        """Restart the view at virtual time ``t``: every record up to ``t`` (replays only)."""
        raise ControlUnavailable(f"a {self.backend} run cannot seek")

    def close(self) -> None:
        pass


def user_workload(scenario: Scenario, *, name: str, port: int, size_bytes: int) -> Workload:
    """What a face's "start a transfer" runs: the scenario's first workload again, with its
    protocol and settings (MPTCP with its path manager, ENO/tcpcrypt with its policies, an IKE
    session with its fallback mode), under ``name`` on ``port``, starting now, so a middlebox
    or link switched live changes what it does. An ENO transfer expects whatever the
    negotiation comes to (``any``); an IKE session keeps its own ports and data size.
    Scenarios without a workload get a plain TCP transfer. Raises ConfigError for a bad size."""
    base: Any = next(iter(scenario.transfers), None)
    inner = getattr(base, "transfers", None)
    if isinstance(inner, tuple) and inner:  # back-to-back workloads: one of their transfers
        base = inner[0]
    if base is None or not hasattr(base, "__dataclass_fields__") or type(base).__name__ == "AlternatingTransfers":
        base = Transfer()
    names = {f.name for f in fields(base)}
    changes: dict[str, Any] = {"name": name}
    if "port" in names:
        changes["port"] = port
    if "src_port" in names and "dst_port" in names:  # simultaneous open: both ends pick a port
        changes |= {"src_port": port, "dst_port": port + 1000}
    if "size_bytes" in names:
        changes["size_bytes"] = size_bytes
    if "start_s" in names:
        changes["start_s"] = 0.0  # a time in the past: now
    if "expect" in names:
        changes["expect"] = "any"
    for optional in ("local_port", "kernel_announce_port"):
        if optional in names:
            changes[optional] = None
    return replace(base, **changes)


def check_speed(speed: float | None) -> float | None:
    if speed is None:
        return None
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed > 0 or speed != speed:
        raise ConfigError(f"speed must be a positive number or None (as fast as possible), got {speed!r}")
    return float(speed)


def faster(speed: float | None, direction: int) -> float | None:
    """The next speed up (+1) or down (-1) on the SPEEDS ladder."""
    if speed is None:
        index = len(SPEEDS) - 1
    else:
        index = min(range(len(SPEEDS) - 1), key=lambda i: abs(SPEEDS[i] - speed))  # type: ignore[operator]
    return SPEEDS[max(0, min(len(SPEEDS) - 1, index + direction))]


def standard_policies(router: str) -> list[tuple[str, str, Callable[[], Middlebox]]]:
    """Policies any router offers to switch on: (key suffix, label, factory)."""
    return [
        ("strip_tcp_options:30", "strip the MPTCP option (kind 30)", lambda: StripTcpOptions([30])),
        ("strip_tcp_options:69", "strip the TCP-ENO option (kind 69)", lambda: StripTcpOptions([69])),
        ("block_udp:500,4500", "block UDP 500 and 4500 (IKE)", lambda: BlockUdpPorts([500, 4500])),
    ]


def policy_key(desc: dict[str, Any]) -> str:
    name = desc.get("policy", "middlebox")
    for key in ("kinds", "ports"):
        if key in desc:
            value = desc[key]
            return f"{name}:{','.join(str(v) for v in value) if isinstance(value, list) else value}"
    return str(name)


def policy_label(desc: dict[str, Any]) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in desc.items() if k != "policy")
    return f"{desc.get('policy')} ({fields})" if fields else str(desc.get("policy"))

"""The embedded discrete-event network simulator."""

from lab.scenario.middlebox import BlockUdpPorts, FlipPayloadBytes, Middlebox, StripTcpOptions
from lab.sim.network import SimNetwork

__all__ = ["BlockUdpPorts", "FlipPayloadBytes", "Middlebox", "SimNetwork", "StripTcpOptions"]

"""The embedded discrete-event simulator: a Backend (``plugin``) over a virtual-time network.

``network`` carries packets over links with rate, delay, loss and queues,
runs the middlebox policies of ``lab.scenario.middlebox`` at routers and
drives each host's ``lab.stack`` host stack; ``plugin`` is the Backend the
lab finds by the name ``sim``; ``aio`` gives asyncio streams over a paced
network. It carries packets and knows no protocol beyond IP.
"""

from lab.scenario.middlebox import BlockUdpPorts, FlipPayloadBytes, Middlebox, StripTcpOptions
from lab.sim.network import SimNetwork

__all__ = ["BlockUdpPorts", "FlipPayloadBytes", "Middlebox", "SimNetwork", "StripTcpOptions"]

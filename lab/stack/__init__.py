"""The user-space host: one host stack per node, whatever carries its packets.

``host`` (HostStack) owns a node's addresses, demultiplexes IP packets to
TCP connections and UDP ports, runs timers through the driver's scheduler
and gives applications asyncio-Protocol-like callbacks (``Stream``,
``StreamHandler``); it speaks TCP and UDP only, and protocols made of several
TCP connections (Multipath TCP) plug in through ``lab.tcp.group``. ``apps``
holds the bulk sender and sink (SHA-256 checked) and echo; ``tun`` drives a
host stack on a TUN device.
"""

"""tcplab: a hands-on lab for Multipath TCP, TCP-ENO/tcpcrypt and IKEv2 over TCP."""

__version__ = "0.1.0"

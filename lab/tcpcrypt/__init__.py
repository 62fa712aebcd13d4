"""tcpcrypt (RFC 8548): key schedule and frame protection; wire formats are in ``lab.wire.tcpcrypt``."""

"""TCP-ENO (RFC 8547): negotiation rules; the option codec is in ``lab.wire.eno``."""

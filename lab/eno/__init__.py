"""TCP-ENO (RFC 8547): negotiation rules (``rules``), the TCP extension (``extension``), its events,
and scenario workloads (``workload``); the option codec is in ``lab.wire.eno``."""

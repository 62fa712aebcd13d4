"""TCP-ENO (RFC 8547): negotiation rules (``rules``), the TCP extension (``extension``) and its
events; the option codec and the abstract roles are in ``lab.wire.eno``, the workloads in
``lab.scenario.eno``."""

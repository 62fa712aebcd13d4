"""Exercise: forge MP_JOIN SYNs with Scapy against a running MPTCP connection (RFC 8684 §3.2, §5)."""

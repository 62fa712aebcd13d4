"""Exercise: an MPTCP packet scheduler that puts both paths to work (RFC 8684 §3.3.8)."""

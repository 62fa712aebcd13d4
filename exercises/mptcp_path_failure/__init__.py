"""Exercise: keep an MPTCP transfer alive through a path failure (RFC 8684 §3.3.6, §3.3.8)."""

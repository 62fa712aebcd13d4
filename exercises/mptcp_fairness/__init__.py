"""Exercise: one MPTCP connection must take one TCP flow's share of a shared bottleneck (RFC 6356 §2)."""

"""Exercise: MPTCP on heterogeneous paths must beat the best single path (RFC 6356 §2)."""

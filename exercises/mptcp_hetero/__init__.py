"""Exercise: MPTCP on heterogeneous paths must not lose to the best single path (RFC 6356 §2)."""

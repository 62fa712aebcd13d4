"""Exercise: explain and fix an MPTCP fallback caused by an option-stripping firewall (RFC 8684 §3.7)."""

"""Exercise: an MPTCP token and IDSN from the keys a real capture shows."""

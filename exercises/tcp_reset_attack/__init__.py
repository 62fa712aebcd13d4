"""Exercise: forge TCP resets with Scapy against a running transfer (RFC 5961 §3)."""

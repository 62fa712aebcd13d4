"""Exercise: configure IKEv2's fallback to TCP (RFC 9329) to get through UDP-blocking networks fast."""

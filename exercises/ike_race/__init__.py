"""Exercise: sequential against racing fallback from UDP to TCP for IKEv2, measured in RTTs."""

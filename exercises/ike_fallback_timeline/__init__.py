"""Exercise: read the UDP-to-TCP fallback timeline of a real libreswan capture."""

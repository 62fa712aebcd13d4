"""Exercise: show from the trace that a flipped byte never reaches a tcpcrypt application."""

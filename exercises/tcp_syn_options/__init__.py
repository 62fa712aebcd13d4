"""Exercise: a hand-made SYN with chosen options, injected with Scapy, and the SYN-ACK it gets."""

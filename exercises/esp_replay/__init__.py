"""Exercise: replay captured ESP packets with Scapy into a running IPsec tunnel (RFC 4303 §3.4.3)."""

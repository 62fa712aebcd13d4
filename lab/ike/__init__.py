"""IKEv2 (RFC 7296) key derivation and SK payload protection; wire formats are in ``lab.wire.ikev2``."""

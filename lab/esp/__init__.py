"""ESP security associations with AES-GCM (RFC 4303, RFC 4106); wire formats are in ``lab.wire.esp``."""

"""Exercise: decode an RFC 9329 IKETCP stream by hand."""

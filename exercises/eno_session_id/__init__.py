"""Exercise: read the tcpcrypt session ID at both ends of an eno-basic run."""

"""Exercise: which transport and which fragmentation setting get a hybrid post-quantum IKE SA through a network."""

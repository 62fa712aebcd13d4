"""Exercise: trace questions on a lossy plain-TCP run, with fields hidden."""

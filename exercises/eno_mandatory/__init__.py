"""Exercise: a mandatory-encryption endpoint refuses a middlebox that strips TCP-ENO."""

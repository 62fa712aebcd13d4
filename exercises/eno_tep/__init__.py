"""Exercise: predict the TEP that TCP-ENO negotiates from two SYN options."""

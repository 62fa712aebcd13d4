"""Modal screens: help and pickers."""

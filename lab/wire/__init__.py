"""Wire codecs: bytes <-> frozen dataclasses."""

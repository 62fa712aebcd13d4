"""iketcp_decode: read an RFC 9329 IKETCP stream by hand.

stream.txt is a hex dump of everything an IKE initiator sent on its TCP
connection to the responder (stream.bin holds the same bytes). Fill in
ANSWERS (numbers as Python ints, 0x... is fine), then run:

    tcplab exercise check iketcp_decode

Offsets count from the first byte of the stream (offset 0 is the first byte
of the prefix).
"""

from __future__ import annotations

ANSWERS = {
    # the stream prefix, as ASCII text
    "prefix": None,
    # how many length-prefixed frames follow the prefix (count every frame, whatever it carries)
    "frames": None,
    # the value of the first frame's Length field
    "first_length": None,
    # the Exchange Type of the first IKE message (a number)
    "first_exchange_type": None,
    # the IKE SA initiator's SPI, as 16 hex digits
    "initiator_spi": None,
    # the offset at which the second frame starts (its Length field)
    "second_offset": None,
    # the Message ID of the second IKE message
    "second_message_id": None,
    # the offset at which the NAT-keepalive frame starts
    "keepalive_offset": None,
    # the SPI of the first ESP packet (a number)
    "esp_spi": None,
    # the sequence number of the last ESP packet
    "last_esp_seq": None,
}


def answers() -> dict:
    return ANSWERS

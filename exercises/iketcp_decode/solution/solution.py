"""iketcp_decode, reference solution (not handed out by `tcplab exercise start`).

Worked by hand from stream.txt: 49 4b 45 54 43 50 is "IKETCP"; 00b6 = 182
is the first frame's Length (2 Length + 4 marker + 176 IKE message); the IKE
header follows the four zero bytes of the non-ESP marker.
"""

from __future__ import annotations

ANSWERS = {
    "prefix": "IKETCP",
    "frames": 5,
    "first_length": 182,
    "first_exchange_type": 34,  # IKE_SA_INIT
    "initiator_spi": "944aca962018dc05",
    "second_offset": 188,  # 6 + 182
    "second_message_id": 1,
    "keepalive_offset": 387,  # 188 + 199 (2 + 4 + 193)
    "esp_spi": 0x50B2F020,
    "last_esp_seq": 2,
}


def answers() -> dict:
    return ANSWERS

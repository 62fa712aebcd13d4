"""The stream for iketcp_decode: what an IKE initiator sends on its TCP connection (RFC 9329).

Built with the lab's own code from real messages: the IKE_SA_INIT and
IKE_AUTH requests an initiator exchanged with libreswan 4.10
(``libreswan_exchange.json``, message bytes as sent), framed by
``lab.iketcp.IketcpStream``; a NAT-keepalive frame; then ESP packets
sealed with AES-GCM by ``lab.esp.EspSa`` with the child SA's real KEYMAT.
``truth()`` decodes the stream again with ``IketcpStream`` on the responder's
side, so what is asked is what the lab's decoder sees.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lab.esp.sa import EspSa
from lab.iketcp import EspPacketReceived, IkeMessageReceived, IketcpStream, Role
from lab.wire.ip import Ipv4Packet, encode_ipv4
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, encode_datagram

SEED = 8229
EXCHANGE = Path(__file__).with_name("libreswan_exchange.json")
NAT_KEEPALIVE_FRAME = (
    b"\x00\x03\xff"  # Length 3 (counts itself), then the one-octet 0xFF (RFC 9329 §6.6, RFC 3948 §2.3)
)
IPPROTO_IPIP = 4  # ESP Next Header for a tunnelled IPv4 packet
ESP_PACKETS = 2


def build_stream(seed: int = SEED) -> bytes:
    """The initiator's bytes on the TCP stream, prefix first. Raises OSError if the exchange file is missing."""
    exchange = json.loads(EXCHANGE.read_text())
    rng = random.Random(seed)
    stream = IketcpStream(role=Role.INITIATOR)
    stream.send_ike(bytes.fromhex(exchange["msg1"]))  # IKE_SA_INIT request
    stream.send_ike(bytes.fromhex(exchange["msg3"]))  # IKE_AUTH request
    out = stream.data_to_send() + NAT_KEEPALIVE_FRAME
    sa = EspSa(spi=rng.randrange(0x100, 0xFFFF_FFFF), keymat=bytes.fromhex(exchange["child_KEYMAT_i2r_key_salt"]))
    for i in range(ESP_PACKETS):
        udp = encode_datagram(
            UdpDatagram(40000 + i, 53, b"tcplab " + bytes([0x30 + i])),
            bytes([10, 1, 0, 1]),
            bytes([10, 2, 0, 1]),
        )
        inner = encode_ipv4(Ipv4Packet("10.1.0.1", "10.2.0.1", UDP_PROTOCOL, udp, identification=i + 1))
        stream.send_esp(sa.encrypt(inner, next_header=IPPROTO_IPIP))
    return out + stream.data_to_send()


def truth(stream_bytes: bytes) -> dict[str, object]:
    """The answers, read from ``stream_bytes`` by walking the frames and by the lab's IketcpStream."""
    decoder = IketcpStream(role=Role.RESPONDER)
    decoder.receive_data(stream_bytes)
    events = []
    while (ev := decoder.next_event()) is not None:
        events.append(ev)
    ikes = [e for e in events if isinstance(e, IkeMessageReceived)]
    esps = [e for e in events if isinstance(e, EspPacketReceived)]
    offsets, lengths = [], []
    pos = 6
    while pos + 2 <= len(stream_bytes):
        length = int.from_bytes(stream_bytes[pos : pos + 2], "big")
        offsets.append(pos)
        lengths.append(length)
        pos += length
    keepalive = next(o for o, n in zip(offsets, lengths) if n == 3 and stream_bytes[o + 2] == 0xFF)
    return {
        "prefix": stream_bytes[:6].decode("ascii"),
        "frames": len(offsets),
        "first_length": lengths[0],
        "first_exchange_type": ikes[0].header.exchange_type,
        "initiator_spi": ikes[0].header.spi_i.hex(),
        "second_offset": offsets[1],
        "second_message_id": ikes[1].header.message_id,
        "keepalive_offset": keepalive,
        "esp_spi": esps[0].spi,
        "last_esp_seq": esps[-1].seq,
    }


def hexdump(data: bytes) -> str:
    """``xxd``-style: offset, 16 bytes in hex, ASCII."""
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        hexpart = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}: {hexpart:<39}  {text}")
    return "\n".join(lines) + "\n"

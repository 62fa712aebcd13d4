"""Grader for iketcp_decode: ``python -m exercises.iketcp_decode.grade [DIR] [--json]``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exercises.grading import Answers, Check, Exercise, Submission, SubmissionError, compare_field, main_for
from exercises.iketcp_decode import scenario


def collect(sub: Submission) -> Answers:
    stream = scenario.build_stream()  # the grader's own seed, whatever the working copy says
    got = sub.call("answers")
    if not isinstance(got, dict):
        raise SubmissionError("bad_result", f"answers() returned a {type(got).__name__}, not a dict")
    return Answers(got, truth=scenario.truth(stream))


def _normalize_spi(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:016x}"
    if isinstance(value, str):
        return value.lower().replace("0x", "").replace(" ", "").replace(":", "")
    return value


def field(key: str, hints: dict[Any, str] | None = None, normalize: Callable[[Any], Any] | None = None):
    def passed(a: Answers) -> tuple[bool, str]:
        if normalize is not None:
            a = Answers({key: normalize(a.answer(key))}, truth=a.truth)
        return compare_field(a, key, hints=hints)

    return passed


CHECKS = (
    Check(
        "the stream prefix",
        field("prefix"),
        "The TCP Originator's first six bytes are a fixed prefix (RFC 9329 §4). Read them as ASCII.",
    ),
    Check(
        "the number of frames",
        field(
            "frames",
            {4: "Every length-prefixed message is a frame, the NAT-keepalive too.", 6: "The prefix is not a frame."},
        ),
        "Walk the stream: after the prefix, read a 2-byte Length, skip Length bytes (it counts itself), repeat (RFC 9329 §3).",
    ),
    Check(
        "the first frame's Length",
        field(
            "first_length",
            {
                176: "That is the IKE header's Length (the IKE message alone). The frame's Length also counts the "
                "non-ESP marker and itself.",
                180: "The Length field counts its own two octets too (RFC 9329 §3).",
                178: "Do not forget the four-byte non-ESP marker before the IKE header.",
            },
        ),
        "The two bytes right after the prefix are the Length, and it includes itself (RFC 9329 §3, Figure 1).",
    ),
    Check(
        "the first IKE message's exchange type",
        field(
            "first_exchange_type",
            {
                33: "33 is the Next Payload (SA), one byte before the Exchange Type.",
                32: "Count the header bytes again.",
            },
        ),
        "Skip Length (2) and the non-ESP marker (4 zero bytes); the IKE header starts there: SPIi (8), SPIr (8), "
        "Next Payload, Version, Exchange Type (RFC 7296 §3.1).",
    ),
    Check(
        "the IKE SA initiator's SPI",
        field(
            "initiator_spi",
            {"0000000000000000": "That is the marker or the responder's SPI (zero in the first request)."},
            _normalize_spi,
        ),
        "The IKE header begins with the initiator's 8-byte SPI, right after the non-ESP marker (RFC 7296 §3.1).",
    ),
    Check(
        "where the second frame starts",
        field("second_offset", {182: "Offsets count from the start of the stream: add the 6-byte prefix."}),
        "The second frame starts at prefix length + the first frame's Length.",
    ),
    Check(
        "the second IKE message's Message ID",
        field("second_message_id"),
        "The Message ID is the last-but-one 4-byte field of the IKE header (RFC 7296 §3.1); requests count up from 0.",
    ),
    Check(
        "where the NAT-keepalive frame starts",
        field("keepalive_offset"),
        "A NAT-keepalive is a frame whose message is the single byte 0xFF (RFC 9329 §6.6); its Length is 3.",
    ),
    Check(
        "the ESP packet's SPI",
        field("esp_spi", normalize=lambda v: int(v, 16) if isinstance(v, str) else v),
        "A frame whose first four bytes are not zero is ESP: those four bytes are the SPI (RFC 9329 §3, RFC 4303 §2.1). "
        "Give it as a number (0x... is fine).",
    ),
    Check(
        "the last ESP packet's sequence number",
        field("last_esp_seq"),
        "The ESP sequence number follows the SPI (RFC 4303 §2.2); find the last frame.",
    ),
)


def prepare(directory: Path) -> None:
    stream = scenario.build_stream()
    (directory / "stream.bin").write_bytes(stream)
    (directory / "stream.txt").write_text(scenario.hexdump(stream))


EXERCISE = Exercise(
    name="iketcp_decode",
    title="Decode an IKETCP stream by hand: prefix, lengths, non-ESP marker",
    topic="ike",
    minutes=20,
    rfcs=("RFC 9329 §3, §4, §6.6", "RFC 7296 §3.1", "RFC 4303 §2"),
    files=("libreswan_exchange.json",),
    collect=collect,
    checks=CHECKS,
    prepare=prepare,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))

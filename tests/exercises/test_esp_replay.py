"""esp_replay beyond the shared checks of test_exercises.py: the slips its grader must tell apart."""

from __future__ import annotations

import pytest

from exercises.grading import grade

pytest.importorskip("scapy")

NEWEST = "    return [newest, old, moved]\n"


def _by_name(report):
    return {c.name: c for c in report.checks}


def _variant(make_workdir, replacement: str):
    ex, directory = make_workdir("esp_replay", reference=True)
    path = directory / "solution.py"
    text = (ex.package_dir / "solution" / "solution.py").read_text()
    assert NEWEST in text
    path.write_text(text.replace(NEWEST, replacement))
    return _by_name(grade(ex, directory))


def test_an_ike_message_or_a_packet_for_h1_does_not_reach_h2s_sa(make_workdir) -> None:
    by = _variant(
        make_workdir,
        "    ike = [p for p in packets if UDP in p and p[UDP].dport == 500][0]\n"
        "    back = IP(src=h2, dst=h1) / UDP(sport=4500, dport=4500) / Raw(bytes(newest[UDP].payload))\n"
        "    return [ike, back, moved]\n",
    )
    reached = by["the copies reach h2's ESP SA"]
    assert not reached.passed
    assert "packet 1 is UDP to port 500, not 4500" in reached.detail
    assert "packet 2 went to 10.0.1.1, not to h2 (10.0.2.2)" in reached.detail
    assert not by["a replayed packet is dropped as a duplicate"].passed
    assert by["a sequence number moved right of the window fails integrity"].passed


def test_a_flipped_byte_without_a_new_sequence_number_is_a_duplicate(make_workdir) -> None:
    # the window is checked before the ICV (RFC 4303 §3.4.3): the ciphertext change is never looked at
    by = _variant(
        make_workdir,
        "    flipped = payload[:20] + bytes([payload[20] ^ 1]) + payload[21:]\n"
        "    moved = IP(src=h1, dst=h2) / UDP(sport=4500, dport=4500) / Raw(flipped)\n"
        "    return [newest, old, moved]\n",
    )
    moved = by["a sequence number moved right of the window fails integrity"]
    assert not moved.passed and "was dropped: duplicate" in moved.detail
    assert by["the tunnel carries on unharmed"].passed


@pytest.mark.parametrize(
    ("ending", "detail"),
    [
        ("    return [newest, old]\n", "must return a list of 3 packets, got a list of 2"),
        ("    return [newest, old, 'moved']\n", "packet 3 is a str, not a packet"),
    ],
)
def test_wrong_count_and_non_packets_fail_cleanly(ending: str, detail: str, make_workdir) -> None:
    by = _variant(make_workdir, ending)
    assert detail in by["solution.py runs"].detail

"""A bulk transfer's payload beyond 128 MiB: drawn in pieces, the same bytes as one draw would be.

``random.Random.randbytes(n)`` draws n * 8 bits at once and refuses more than a C int holds
(n > 256 MiB): a 300 MB transfer (transfers allow up to 2 GiB, and a long shared-bottleneck
measurement needs that much) ended in an OverflowError traceback.
"""

from __future__ import annotations

import random

import pytest

from lab.mininet.apps import payload_sha256
from lab.stack import apps


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1000, 4097])
def test_pieces_give_the_bytes_of_one_draw(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(apps, "PAYLOAD_PIECE_BYTES", 64)  # a multiple of 4, like the real one
    assert apps.bulk_payload(size, 7) == random.Random(7).randbytes(size)


def test_the_mininet_senders_digest_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    monkeypatch.setattr(apps, "PAYLOAD_PIECE_BYTES", 1 << 12)
    data = apps.bulk_payload(100_000, 11)
    assert hashlib.sha256(data).hexdigest() == payload_sha256(100_000, 11)


def test_the_piece_size_fits_randbytes() -> None:
    assert apps.PAYLOAD_PIECE_BYTES % 4 == 0 and apps.PAYLOAD_PIECE_BYTES * 8 < 2**31

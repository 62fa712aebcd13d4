"""``python -m lab.scenario.ike_live``'s certificate options: bad input is a one-line error and exit 2."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from lab.ike.certs import make_lab_pki
from lab.scenario.ike_live import load_credential, main

BASE = ["initiate", "--local", "127.0.0.1", "--remote", "127.0.0.2", "--local-id", "west"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("creds")
    pki = make_lab_pki(random.Random(3), not_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), intermediates=1,
                       names=("west", "east"))  # fmt: skip
    west, east = pki.end_entities["west"], pki.end_entities["east"]
    pem = serialization.Encoding.PEM
    (d / "west.pem").write_bytes(b"".join(c.public_bytes(pem) for c in (west.certificate, *west.chain)))
    for name, key in (("west.key", west.private_key), ("east.key", east.private_key)):
        (d / name).write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (d / "root.pem").write_bytes(pki.root.certificate.public_bytes(pem))
    (d / "junk.pem").write_text("not a certificate\n")
    return {p.name: p for p in d.iterdir()}


def test_a_credential_loads_with_its_chain(files: dict[str, Path]) -> None:
    credential = load_credential(files["west.pem"], files["west.key"])
    assert credential.name == "west" and [c.subject.rfc4514_string() for c in credential.chain] == [
        "CN=tcplab Intermediate CA 1,O=tcplab"
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give either --psk or --cert"),
        (["--psk", "x", "--cert", "west.pem", "--key", "west.key", "--ca", "root.pem"], "give either --psk or --cert"),
        (["--cert", "west.pem"], "--cert needs --key and --ca"),
        (["--cert", "west.pem", "--key", "east.key", "--ca", "root.pem"], "is not the key of the first certificate"),
        (["--cert", "junk.pem", "--key", "west.key", "--ca", "root.pem"], "cannot load certificates from"),
        (["--cert", "west.pem", "--key", "west.key", "--ca", "missing.pem"], "cannot load certificates from"),
        (["--cert", "west.pem", "--key", "junk.pem", "--ca", "root.pem"], "cannot load"),
        (["--psk", "x", "--id-type", "dn"], "id_type 'dn'"),
        (["--psk", "x", "--separate-transports", "--transport", "tcp"], "separate_transports starts IKE_SA_INIT"),
    ],
)
def test_bad_certificate_options_are_one_line_errors(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = [str(files.get(a, a)) if a.endswith((".pem", ".key")) else a for a in extra]
    args = [a.replace("missing.pem", str(files["root.pem"].parent / "missing.pem")) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main([*BASE, *args]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "".join(err)

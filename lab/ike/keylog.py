"""Keys out for checking: tshark's IKEv2 and ESP decryption tables from a run's ``key_updated`` records.

With ``IkeConfig(export_keys=True)`` (the scenarios' IKE sessions set it)
every IKE SA records SK_ei/SK_er, and SK_ai/SK_ar with AES-CBC (layer
``ike``), and every Child SA its two ESP keys, with their HMAC keys for
AES-CBC (layer ``esp``). An IKE SA made by a rekey (RFC 7296 §2.18) records
its own keys under its new SPIs, and so do rekeyed Child SAs: the tables
cover every SA of the run. This module turns those records into the two UAT
tables tshark 4.0 reads, one record per line, in the files tshark keeps in
a configuration profile (``ikev2_decryption_table``, ``esp_sa``), and into
the equivalent ``-o uat:...`` options::

    python -m lab.ike.keylog runs/hotspot-seed1-...        # writes <bundle>/keys/, prints the options
    python -m lab.ike.pcap runs/.../pcaps/h1-eth0.pcap /tmp/udp.pcap
    tshark -r /tmp/udp.pcap $(python -m lab.ike.keylog runs/... --options)

ESP records use ``*`` for both addresses, so they match behind a NAT and
on any transport. The keys are the lab's own: never export real secrets.

IKE_INTERMEDIATE (RFC 9242) and additional key exchanges (RFC 9370): the
IKE SA keeps its SPIs while its keys change after every IKE_INTERMEDIATE
exchange, and each change is one more ``key_updated`` record (with
``intermediate``: n). tshark's ``ikev2_decryption_table`` has exactly one
row per SPI pair (SPIi, SPIr, SK_ei, SK_er, SK_ai, SK_ar and the
algorithms) and no notion of a key schedule that moves within an SA, so
one table can decrypt only one stage. The table written here holds the
final keys: IKE_AUTH (which carries IntAuth and the certificates), the
Child SA negotiation and everything after decrypt; the IKE_INTERMEDIATE
messages themselves, each protected with the keys from before its own
update, do not: tshark 4.0 still runs them through AES-GCM with the final
keys and shows garbage marked "IKEv2 Integrity Checksum Data is
incorrect" (and a malformed packet). To read IKE_INTERMEDIATE n, build a
table from the records of stage n-1 (the IKE_SA_INIT keys for the first:
``key_tables(r for r in records if "intermediate" not in r.data)``) and
open the capture with that one instead; tests/ike/test_pq_integration.py
checks both with tshark. The KE payloads inside are public
values anyway; only the final keys protect secrets. ESP is unaffected: the
Child SA's keys come from the last SK_d and their rows are exact.

IKE_FOLLOWUP_KE (RFC 9370 §2.2.4) needs nothing more: a rekey's
CREATE_CHILD_SA and IKE_FOLLOWUP_KE messages go over the existing IKE SA
under its unchanged keys (its row opens them), and the Child SA or IKE SA
they make has its own row once the last round is done.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.ike.keys import tshark_esp_record, tshark_ikev2_record
from lab.trace import TraceRecord, read_jsonl
from lab.wire.ikev2 import ENCR_AES_GCM_16, INTEG_NONE

IKEV2_TABLE = "ikev2_decryption_table"
ESP_TABLE = "esp_sa"


@dataclass(frozen=True)
class KeyTables:
    ikev2: list[str]
    esp: list[str]

    def tshark_options(self) -> list[str]:
        """``-o`` arguments for tshark (ESP decryption switched on)."""
        args = []
        for record in self.ikev2:
            args += ["-o", f"uat:{IKEV2_TABLE}:{record}"]
        if self.esp:
            args += ["-o", "esp.enable_encryption_decode:TRUE"]
        for record in self.esp:
            args += ["-o", f"uat:{ESP_TABLE}:{record}"]
        return args

    def write(self, directory: Path) -> list[Path]:
        """Write the two UAT files into ``directory`` (a tshark profile directory works as is)."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, records in ((IKEV2_TABLE, self.ikev2), (ESP_TABLE, self.esp)):
            path = directory / name
            path.write_text("".join(f"{r}\n" for r in records))
            paths.append(path)
        return paths


def key_tables(records: Iterable[TraceRecord]) -> KeyTables:
    """The tables for every SA whose keys were exported; SAs seen from both ends appear once.

    An IKE SA whose keys changed after IKE_INTERMEDIATE exchanges appears with its last keys.
    """
    ikev2: dict[tuple[str, str], str] = {}
    esp: dict[int, str] = {}
    for rec in records:
        if rec.name != "key_updated":
            continue
        data = rec.data
        if rec.layer == "ike" and "sk_ei" in data:
            key = (data["spi_i"], data["spi_r"])
            ikev2[key] = (  # a later record of the same SPI pair is a later stage: the last wins
                tshark_ikev2_record(
                    spi_i=bytes.fromhex(data["spi_i"]),
                    spi_r=bytes.fromhex(data["spi_r"]),
                    sk_ei=bytes.fromhex(data["sk_ei"]),
                    sk_er=bytes.fromhex(data["sk_er"]),
                    encr_id=int(data.get("encr_id", ENCR_AES_GCM_16)),
                    key_bits=int(data["key_bits"]),
                    integ_id=int(data.get("integ_id", INTEG_NONE)),
                    sk_ai=bytes.fromhex(data.get("sk_ai", "")),
                    sk_ar=bytes.fromhex(data.get("sk_ar", "")),
                )
            )
        elif rec.layer == "esp" and "key_in" in data:
            encr_id = int(data.get("encr_id", ENCR_AES_GCM_16))
            integ_id = int(data.get("integ_id", INTEG_NONE))
            for spi_field, key_field, integ_field in (
                ("spi_in", "key_in", "integ_in"),
                ("spi_out", "key_out", "integ_out"),
            ):
                spi = int(data[spi_field], 16)
                esp.setdefault(
                    spi,
                    tshark_esp_record(
                        src="*",
                        dst="*",
                        spi=spi,
                        encr_key=bytes.fromhex(data[key_field]),
                        encr_id=encr_id,
                        auth_id=integ_id,
                        auth_key=bytes.fromhex(data.get(integ_field, "")),
                    ),
                )
    return KeyTables(list(ikev2.values()), list(esp.values()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.ike.keylog", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a run bundle directory (or its trace.jsonl)")
    parser.add_argument("--out", type=Path, help="where to write the tables (default BUNDLE/keys)")
    parser.add_argument("--options", action="store_true", help="print only the tshark -o options")
    args = parser.parse_args(argv)
    trace = args.bundle / "trace.jsonl" if args.bundle.is_dir() else args.bundle
    try:
        tables = key_tables(read_jsonl(trace))
    except (OSError, ValueError, LabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not tables.ikev2 and not tables.esp:
        print("error: no exported keys in the trace (run with IkeConfig(export_keys=True))", file=sys.stderr)
        return 1
    options = " ".join(shlex.quote(a) for a in tables.tshark_options())
    if args.options:
        print(options)
        return 0
    out = args.out or (trace.parent / "keys")
    for path in tables.write(out):
        print(f"wrote {path}")
    print(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())

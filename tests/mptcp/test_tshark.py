"""tshark as an independent decoder of our MPTCP on the wire: no malformed options, its tokens are ours."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from lab.scenario import get_scenario, run_scenario
from lab.trace import read_jsonl

pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark is not installed (./run-tests installs it as root)"
)


def _tshark(pcap: Path, *args: str) -> str:
    proc = subprocess.run(
        ["tshark", "-r", str(pcap), "-o", "mptcp.analyze_mptcp:TRUE", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return proc.stdout


@pytest.mark.parametrize("checksum", [False, True])
def test_tshark_reads_our_mptcp_and_derives_the_tokens_we_report(tmp_path: Path, checksum: bool) -> None:
    sc = get_scenario("mptcp-two-paths")
    cfg = {"path_manager": "fullmesh", "checksum": checksum}
    sc = replace(sc, transfers=(replace(sc.transfers[0], size_bytes=512 * 1024, client=cfg, server=cfg),))
    assert run_scenario(sc, seed=5, out_dir=tmp_path).ok
    ours = {
        r.data["local_token"]
        for r in read_jsonl(tmp_path / "trace.jsonl")
        if r.layer == "mptcp" and r.name == "key_updated"
    }
    assert len(ours) == 2  # client and server
    seen: set[int] = set()
    subtypes: set[str] = set()
    for pcap in sorted((tmp_path / "pcaps").glob("h*.pcap")):
        assert _tshark(pcap, "-Y", "_ws.malformed || _ws.expert.severity >= 8388608").strip() == "", pcap.name
        for line in _tshark(
            pcap, "-Y", "mptcp", "-T", "fields", "-e", "mptcp.expected_token", "-e", "tcp.options.mptcp.subtype"
        ).splitlines():
            token, _, subtype = line.partition("\t")
            if token:
                seen.add(int(token))
            subtypes.update(s for s in subtype.split(",") if s)
    assert seen == ours
    assert {"0", "1", "2", "3"} <= subtypes  # MP_CAPABLE, MP_JOIN, DSS, ADD_ADDR on the wire

"""tshark 4.0 with the shipped Lua dissectors, on bundles the simulator writes here."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.dissectors import tshark_args
from lab.eno.extension import EnoConfig
from lab.runs import run_headless
from lab.scenario import get_scenario

SCENARIOS = ("eno-basic", "eno-mismatch", "eno-stripped", "eno-simultaneous-open", "hotspot", "port-443")


def tshark_or_skip() -> str:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (Debian: apt install tshark)")
    version = subprocess.run([tshark, "-v"], capture_output=True, text=True, check=False).stdout
    if "with Lua" not in version:
        pytest.skip("this tshark was built without Lua")
    return tshark


def tshark_fields(
    pcap: Path, fields: list[str], *, display_filter: str | None = None, extra: list[str] | None = None
) -> list[list[list[str]]]:
    """One row per displayed frame; each field a list of its values (empty when absent)."""
    tshark = tshark_or_skip()
    cmd = [tshark, *tshark_args(), *(extra or []), "-r", str(pcap), "-T", "fields", "-E", "aggregator=|"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for name in fields:
        cmd += ["-e", name]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    assert "Lua: Error" not in done.stderr and "lua_script" not in done.stderr, done.stderr
    rows = []
    for line in done.stdout.splitlines():
        cells = line.split("\t")
        cells += [""] * (len(fields) - len(cells))
        rows.append([c.split("|") if c else [] for c in cells])
    return rows


def tshark_count(pcap: Path, display_filter: str, *, extra: list[str] | None = None) -> int:
    return len(tshark_fields(pcap, ["frame.number"], display_filter=display_filter, extra=extra))


def experimental_eno_basic():  # eno-basic with kind 253/ExID 0x454E on both ends, 256 KiB
    sc = get_scenario("eno-basic")
    cfg = EnoConfig(experimental_encoding=True)
    transfers = tuple(dataclasses.replace(t, client=cfg, server=cfg, size_bytes=256 * 1024) for t in sc.transfers)
    return dataclasses.replace(sc, name="eno-basic-experimental", transfers=transfers)


class Bundles:
    """The simulator's bundles of the scenarios the dissectors are checked on (seed 1), each run
    the first time a test asks for it."""

    names = (*SCENARIOS, "eno-basic-experimental")

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        if name not in self._built:
            scenario = experimental_eno_basic() if name == "eno-basic-experimental" else get_scenario(name)
            result = run_headless("sim", scenario, seed=1, out_dir=self.root / name)
            assert result.ok, name
            self._built[name] = self.root / name
        return self._built[name]


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    tshark_or_skip()
    return Bundles(tmp_path_factory.mktemp("bundles"))

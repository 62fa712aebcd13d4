"""The TUI following a live Mininet run (root): our MPTCP client against Linux MPTCP, whose
subflows the wire observer reports; link controls act on the real interfaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.mininet.liverun import MininetRun
from lab.runs import ReplayRun
from lab.scenario import Scenario
from lab.scenario.mptcp import MptcpTransfer
from tests.mininet.conftest import mininet_skip_reason
from tui.app import LabApp
from tui.widgets.subflows import SubflowsView, SubflowTable
from tui.widgets.topology import TopologyView

from .conftest import eventually, until_finished

SIZE = (120, 40)
PATHS = {"delay_ms": (2.0, 2.0), "bw_mbps": (10.0, 10.0)}
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.mininet,
    pytest.mark.xdist_group("mininet"),
    pytest.mark.skipif(mininet_skip_reason() is not None, reason=str(mininet_skip_reason())),
]


def _scenario(name: str, size_bytes: int, *, time_limit_s: float = 60.0) -> Scenario:
    return Scenario(
        name=name,
        description="our MPTCP client (one subflow per path) to a Linux MPTCP server, on two-paths",
        topology="two-paths",
        topology_params=PATHS,
        transfers=(
            MptcpTransfer(
                size_bytes=size_bytes,
                port=5001,
                dst_stack="kernel-mptcp",
                client={"path_manager": "paired"},
                server={},
                wait_for_close=True,
            ),
        ),
        time_limit_s=time_limit_s,
    )


def _rows(view: SubflowsView, *, node: str, wire: bool) -> dict[str, dict]:
    return {
        key: row
        for key, row in view.rows.items()
        if row["node"] == node and row["mptcp"] and (row.get("source") == "wire") is wire
    }


async def test_subflows_of_a_kernel_peer_seen_on_the_wire(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    run = MininetRun(_scenario("tui-live-kernel-server", 8 << 20), out_dir=bundle, pcaps=False)
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(SubflowsView)

        def both_sides_up() -> bool:
            kernel = _rows(view, node="h2", wire=True)
            ours = _rows(view, node="h1", wire=False)
            return len(kernel) >= 2 and len(ours) >= 2 and all(r["bytes"] for r in kernel.values())

        await eventually(pilot, both_sides_up, limit_s=60)
        first = {k: r["bytes"] for k, r in _rows(view, node="h2", wire=True).items()}
        await eventually(
            pilot,
            lambda: sum(r["bytes"] or 0 for r in _rows(view, node="h2", wire=True).values()) > sum(first.values()),
            limit_s=10,
        )
        await until_finished(app, pilot, limit_s=60)
        kernel = _rows(view, node="h2", wire=True)
        ours = _rows(view, node="h1", wire=False)
        table = app.query_one(SubflowTable)
        assert table.row_count >= 4
        assert {str(table.get_row(k)[1]) for k in kernel} == {"h2*"}  # marked as observed on the wire
        # both paths, seen from the kernel's side: h2's path-A and path-B addresses
        assert {r["subflow"].split(":")[0] for r in kernel.values()} == {"10.0.2.2", "10.0.4.2"}
        assert all(r["state"] == "CLOSED" for r in kernel.values())
        assert sum(r["bytes"] for r in kernel.values()) >= 8 << 20  # the kernel received every byte
        assert {r["state"] for r in ours.values()} <= {"CLOSED", "CLOSING"}
        assert app.problems == []
    assert not run._thread.is_alive()  # type: ignore[union-attr]
    # byte-exact end to end, and the token the wire gives the kernel is the one our client used for it
    (result,) = run.result.transfers
    assert result.ok and result.sha256_received == result.sha256_expected
    assert result.bytes_received == result.bytes_expected == 8 << 20
    keys = [r for r in ReplayRun(bundle).records if r.name == "key_updated" and r.data.get("source") == "wire"]
    assert len(keys) == 1
    assert keys[0].data["local_token"] == result.extra["client"]["remote_token"] == result.extra["server"]["token"]
    assert keys[0].data["remote_token"] == result.extra["client"]["local_token"]
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["backend"] == "mininet" and summary["ok"] is True


async def test_link_and_middlebox_controls_on_mininet(tmp_path: Path) -> None:
    run = MininetRun(_scenario("tui-live-link", 64 << 20, time_limit_s=40.0), out_dir=None, pcaps=False)
    app = LabApp(run)
    link, iface, node = "h1-r2", "h1-eth1", "h1"
    async with app.run_test(size=SIZE) as pilot:
        topo = app.query_one(TopologyView)
        view = app.query_one(SubflowsView)
        await eventually(pilot, lambda: len(_rows(view, node="h2", wire=True)) >= 2, limit_s=60)

        def flags() -> list[str]:
            out = run._backend.cmd(node, ["ip", "-j", "link", "show", "dev", iface])
            return json.loads(out)[0]["flags"]

        assert "UP" in flags()
        await app.run_action(f"toggle_link('{link}')")
        await eventually(pilot, lambda: topo.link_up[link] is False, limit_s=10)
        assert "UP" not in flags()  # really down in h1's namespace
        await app.run_action(f"toggle_link('{link}')")
        await eventually(pilot, lambda: topo.link_up[link] is True, limit_s=10)
        assert "UP" in flags()
        # a middlebox policy on r2, realised by iptables TCPOPTSTRIP in r2's namespace, then off again
        key = "r2/strip_tcp_options:30"

        def mangle() -> str:
            return run._backend.cmd("r2", ["iptables", "-w", "-t", "mangle", "-S"], check=False)

        await app.run_action(f"toggle_policy('{key}')")
        await eventually(pilot, lambda: topo.policies.get(key, {}).get("on") is True, limit_s=15)
        assert "TCPOPTSTRIP" in mangle()
        await app.run_action(f"toggle_policy('{key}')")
        await eventually(pilot, lambda: topo.policies.get(key, {}).get("on") is False, limit_s=15)
        assert "TCPOPTSTRIP" not in mangle()
        # refused controls say why and leave the app up
        await pilot.press("space")
        await pilot.press("t")
        await pilot.pause()
        assert not app.finished
    # leaving the app stopped the run (64 MiB do not fit in the time the test took) and cleaned up
    assert not run._thread.is_alive()  # type: ignore[union-attr]
    assert run.status().finished
    (result,) = run.result.transfers
    if result.error == "stopped before completion":
        assert run.result.errors == []
    else:
        # while r2 strips option 30, Linux may see a data segment without its DSS on a second
        # subflow; with two subflows in use it cannot fall back to TCP (RFC 8684 §3.7) and ends
        # the connection with MP_FASTCLOSE, which our client reports: a real, expected reaction
        assert "MP_FASTCLOSE" in (result.error or ""), result.error


async def test_a_crashed_endpoint_is_an_error_record_not_a_crash(tmp_path: Path) -> None:
    run = MininetRun(_scenario("tui-live-crash", 64 << 20, time_limit_s=40.0), out_dir=None, pcaps=False)
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(SubflowsView)
        await eventually(pilot, lambda: len(_rows(view, node="h1", wire=False)) >= 1, limit_s=30)
        (ours,) = [p for p in run._backend.processes if p.node == "h1" and "lab.mininet.endpoint" in p.argv]
        ours.popen.kill()  # our client's endpoint process dies mid-transfer
        await until_finished(app, pilot, limit_s=40)
        assert any("the endpoint process exited" in p for p in app.problems), app.problems
        assert app.is_running
    (result,) = run.result.transfers
    assert not result.ok and result.error.startswith("endpoint h1 failed")
    assert not run._thread.is_alive()  # type: ignore[union-attr]


async def test_the_network_stays_up_after_the_transfer_until_the_viewer_quits() -> None:
    """The TUI's Mininet runs hold the network (Backend.live_run): controls still act once the
    transfer is done, and quitting takes everything down."""
    from lab.mininet.plugin import BACKENDS

    run = BACKENDS["mininet"].live_run(_scenario("tui-live-hold", 1 << 20), out_dir=None)
    assert isinstance(run, MininetRun) and run.hold
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await eventually(pilot, lambda: run.results() and all(r.complete for r in run.results()), limit_s=60)
        await pilot.pause(1.0)
        assert not run.status().finished and "stays up until q" in run.status().text
        topo = app.query_one(TopologyView)
        await app.run_action("toggle_link('h1-r2')")  # no "the Mininet network has ended"
        await eventually(pilot, lambda: topo.link_up["h1-r2"] is False, limit_s=15)
        out = run._backend.cmd("h1", ["ip", "-j", "link", "show", "dev", "h1-eth1"])
        assert "UP" not in json.loads(out)[0]["flags"]
        assert not app.finished
    assert not run._thread.is_alive()  # type: ignore[union-attr]
    assert run.status().finished
    (result,) = run.result.transfers
    assert result.ok, result.error

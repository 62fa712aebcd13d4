"""Once TCP-ENO has nothing more to say on non-SYN segments (each end has seen the other's first
non-SYN segment), tcpcrypt's segments take plain TCP's fast paths: the same bytes at the same
instants as through the general path, in both directions, for a whole encrypted transfer."""

from __future__ import annotations

import pytest

from lab.scenario import ScenarioRun, get_scenario
from lab.tcp import TcpConnection
from lab.trace import NULL_TRACER


def _wire(scenario_name: str, *, quiet: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    """Every packet h1 and h2 send, with the instant it left, and each connection's final fast-path flag."""
    with monkeypatch.context() as m:
        if not quiet:
            m.setattr(TcpConnection, "extension_quiet", lambda self: None)
        run = ScenarioRun(get_scenario(scenario_name), seed=3, tracer=NULL_TRACER)
        sent: list[tuple[str, float, bytes]] = []
        plain: list[bool] = []
        for host in ("h1", "h2"):
            stack = run.net.host(host)
            transmit = stack._transmit
            for iface in run.spec.interfaces_of(host):

                def capture(packet: bytes, name: str = iface.name, host: str = host, transmit=transmit) -> None:
                    sent.append((host, run.net.now, packet))
                    transmit(name, packet)

                stack.set_interface_sender(iface.name, capture)
        run.net.run(until=run.scenario.time_limit_s, stop=run.done)
        assert all(r.ok for r in run.results), [r.error for r in run.results]
        for host in ("h1", "h2"):
            plain += [c._plain for c in run.net.host(host).connections()]
    return sent, plain


def test_encrypted_segments_on_the_fast_path_are_the_ones_the_general_path_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, fast_plain = _wire("eno-basic", quiet=True, monkeypatch=monkeypatch)
    general, general_plain = _wire("eno-basic", quiet=False, monkeypatch=monkeypatch)
    assert fast_plain and all(fast_plain) and not any(general_plain)
    assert len(fast) == len(general) > 1000
    assert fast == general

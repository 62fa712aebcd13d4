"""The run for tcp_syn_options: h2 runs an echo service on port 7; at 0.5 s h1 starts sending it 1 MiB.

``single-path`` (20 Mbit/s, 20 ms one-way). At ``INJECT_AT`` the packet the
attendee's ``craft_syn()`` returns is injected at h1 (``lab.scenario.inject``: it
leaves h1-eth0 without h1's stack knowing), so h2 answers a SYN that h1's
stack never sent. The options asked for are ``WANT_*`` (in any order, plus
SACK-permitted, without window scaling or timestamps).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lab.scenario import Scenario, ScenarioRun, Transfer, Workload
from lab.stack.apps import EchoServer

SEED = 2
INJECT_AT = 0.1
ATTACKER = "h1"
SERVER = "h2"
SERVER_PORT = 7  # h2's echo service
WANT_MSS = 536
WANT_TEPS = [0x22, 0x21]  # ENO, in this order, host role A (b = 0)


@dataclass(frozen=True, kw_only=True)
class EchoService(Workload):
    """An echo server on ``host``:``port`` (no byte stream of its own to check)."""

    name: str = "echo"
    host: str = "h2"
    port: int = 7

    def schedule(self, run: ScenarioRun) -> None:
        run.net.host(self.host).listen(self.port, EchoServer)


SCENARIO = Scenario(
    name="syn-options",
    description="A hand-made SYN from h1 probes h2's echo service; then h1 sends h2 1 MiB.",
    topology="single-path",
    transfers=(Transfer(size_bytes=1024 * 1024, start_s=0.5), EchoService()),
)

# On Mininet (``--backend mininet``) the run cannot stand still while craft_syn() runs: the SYN
# leaves as soon as it returns, and the transfer starts later so that it comes after the probe.
MININET_TRANSFER_START_S = 4.0
MININET_SCENARIO = replace(
    SCENARIO,
    description=f"A hand-made SYN from h1 probes h2's echo service; at {MININET_TRANSFER_START_S:g} s h1 sends h2 1 MiB.",
    transfers=(Transfer(size_bytes=1024 * 1024, start_s=MININET_TRANSFER_START_S), EchoService()),
)


def scenario_for(backend: str) -> Scenario:
    """The run the grader uses on ``backend`` (``sim`` or ``mininet``)."""
    return MININET_SCENARIO if backend == "mininet" else SCENARIO

"""The run for eno_session_id: the registered ``eno-basic`` scenario, replayed with seed 8547.

h1 connects to h2 offering tcpcrypt (X25519, P-256) in its SYN's ENO option;
h2 picks X25519, Init1/Init2 follow and 2 MiB travel in AES-128-GCM frames.
The session ID depends on the ephemeral keys, and so on the seed: the
attendee gets this run's trace (``trace.jsonl``; ``tcplab run eno-basic
--seed 8547`` makes the same run), the grader replays it and reads the true
values from its own trace.
"""

from __future__ import annotations

from typing import Any

from exercises.grading import SimReplay, TraceQuery
from lab.scenario import Scenario
from topologies.eno_scenarios import SCENARIOS

SEED = 8547
DEFAULT_RUN_SEED = 1  # what `tcplab run` uses without --seed
SCENARIO: Scenario = SCENARIOS["eno-basic"]


def replay(seed: int = SEED, scenario: Scenario = SCENARIO) -> TraceQuery:
    return SimReplay(scenario, seed=seed).finish()


def truth(q: TraceQuery) -> dict[str, Any]:
    """The answers, from the full trace. Raises ValueError when the run did not encrypt."""
    keys = {r.node: r for r in q.select(layer="tcpcrypt", name="key_updated", generation=0)}
    if set(keys) != {"h1", "h2"}:
        raise ValueError(f"the run has tcpcrypt keys at {sorted(keys) or 'no host'}, not at h1 and h2")
    agreed = q.first(layer="eno", name="state_updated", node="h1", to="negotiated")
    if agreed is None:
        raise ValueError("h1 never agreed on a TEP")
    return {
        "session_id_h1": keys["h1"].data["session_id"],
        "session_id_h2": keys["h2"].data["session_id"],
        "tep": agreed.data["tep"],
        "role_h1": agreed.data["role"],
        "aead": keys["h1"].data["aead"],
    }

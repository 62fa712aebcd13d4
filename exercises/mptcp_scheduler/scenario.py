"""The run for mptcp_scheduler: two disjoint 20 Mbit/s paths, your scheduler on h1.

``two-paths`` with path A at 10 ms and path B at 20 ms one-way, 20 Mbit/s
each. h1 sends 4 MiB to h2 over MPTCP, one subflow per path (``paired``
path manager); h1's scheduler is the ``MyScheduler`` class of your
solution.py. No single path can carry more than its 20 Mbit/s: a goodput
above ``SINGLE_PATH_MBPS`` needs both. Graded on Mininet (``--backend
mininet``), the paths are shaped to ``MININET_PATH_MBPS`` each: there the
Python endpoints, tracing every segment, could not fill two 20 Mbit/s paths.

The grader's own copy of this file is the one that runs; editing yours
changes nothing.
"""

from __future__ import annotations

from lab.mptcp.config import MptcpConfig
from lab.scenario import Scenario
from lab.scenario.mptcp import MptcpTransfer

SEED = 7
SIZE_BYTES = 4 * 1024 * 1024
SINGLE_PATH_MBPS = 20.0
MININET_PATH_MBPS = 4.0  # per path on Mininet: the endpoints and the sandboxed scheduler (one decision
# per call over a pipe) must not be the bottleneck, even beside two busy processes on a 2-core laptop
PATH_A = ("10.0.1.1", "10.0.2.2")  # h1 -> r1 -> h2
PATH_B = ("10.0.3.1", "10.0.4.2")  # h1 -> r2 -> h2
SCHEDULER_CLASS = "MyScheduler"
# ECF (when the endpoint has it) may override a scheduler's choice: off, so the choice is yours alone
_ONLY_YOURS = {"slow_path_check": False} if "slow_path_check" in MptcpConfig.__dataclass_fields__ else {}


def scenario(scheduler: str, *, bw_mbps: float = SINGLE_PATH_MBPS) -> Scenario:
    """The run with h1 using the registered scheduler ``scheduler``, each path shaped to ``bw_mbps``."""
    return Scenario(
        name="mptcp-scheduler",
        description=f"h1 sends 4 MiB to h2 over two {bw_mbps:g} Mbit/s paths (10 ms and 20 ms one-way) "
        "with your scheduler.",
        topology="two-paths",
        topology_params={"delay_ms": (10.0, 20.0), "bw_mbps": (bw_mbps, bw_mbps), "queue_packets": 100},
        transfers=(
            MptcpTransfer(
                size_bytes=SIZE_BYTES,
                client={"path_manager": "paired", "scheduler": scheduler, **_ONLY_YOURS},
                server={"path_manager": "paired"},
            ),
        ),
        time_limit_s=20.0,
    )

"""Every benchmark (``tcplab bench``): one JSON object each, figures measured side by side.

``base`` holds the :class:`Benchmark` record and the simulator's TCP benches;
``mptcp``, ``tcpcrypt`` and ``ike`` the protocol benches over scenarios;
``mininet`` the benches that need root and a real network (they reach it
through the Backend interface). Each module exports ``BENCHMARKS`` (name ->
Benchmark), registered under the ``tcplab.benchmarks`` entry point.
"""

from lab.bench.base import BENCHMARKS, LINK_MBPS, MIB, ONE_WAY_MS, Benchmark, _transfer, get_benchmark

__all__ = ["BENCHMARKS", "LINK_MBPS", "MIB", "ONE_WAY_MS", "Benchmark", "_transfer", "get_benchmark"]

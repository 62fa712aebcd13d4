"""MPTCP scenarios: the SCENARIOS registry (entry point tcplab.scenarios, name mptcp)."""

from __future__ import annotations

from lab.scenario import Scenario

SCENARIOS: dict[str, Scenario] = {}

"""The IKETCP view's ESP line counts every IKE session of a node: ike-pq scenarios run a classic and a
hybrid session on h1, each an initiator with its own ESP counters, against one responder on h2."""

from __future__ import annotations

from lab.scenario import get_scenario, run_scenario
from tui.widgets.iketcp import IketcpView


def test_esp_counters_of_two_sessions_on_one_node_add_up() -> None:
    result = run_scenario(get_scenario("ike-pq-separate-transports"), seed=1, pcaps=False)
    records = result.network.tracer.records
    view = IketcpView()
    view.apply(records)
    esp = view.state()["esp"]
    metrics = [r for r in records if r.layer == "esp" and r.name == "metrics_updated"]
    assert {r.data.get("session") for r in metrics if r.node == "h1"} == {"classic", "hybrid"}  # each its own
    for node in ("h1", "h2"):
        sent = [r for r in records if r.node == node and r.layer == "esp" and r.name == "segment_sent"]
        received = [r for r in records if r.node == node and r.layer == "esp" and r.name == "segment_received"]
        counters = esp[f"{node} udp"]
        assert counters["packets_sent"] == len(sent) > 0
        assert counters["packets_received"] == len(received) > 0
        assert counters["bytes_sent"] == sum(r.data["length"] for r in sent)

"""Topology: hosts, routers, links (state, live rates, drops), middleboxes and transfers."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from lab.scenario.rates import WindowRate
from lab.trace import TraceRecord
from tui.messages import ControlRequested
from tui.widgets.base import BAD_RECORD, TraceView, fmt_rate
from tui.widgets.outcomes import OutcomesPanel


def policy_key(router: str, desc: dict[str, Any]) -> str:
    name = desc.get("policy", "middlebox")
    for field in ("kinds", "ports"):
        if field in desc:
            value = desc[field]
            return f"{router}/{name}:{','.join(str(v) for v in value) if isinstance(value, list) else value}"
    return f"{router}/{name}"


class LinkTable(DataTable):
    BINDINGS = [Binding("enter", "toggle", "Link up/down", show=False)]

    def action_toggle(self) -> None:
        if self.row_count:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
            self.post_message(ControlRequested(f"toggle_link('{key}')"))


class PolicyTable(DataTable):
    BINDINGS = [Binding("enter", "toggle", "Policy on/off", show=False)]

    def action_toggle(self) -> None:
        if self.row_count:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
            self.post_message(ControlRequested(f"toggle_policy('{key}')"))


class TopologyView(VerticalScroll, TraceView):
    """The topology with link state and rates; Enter on a link or policy switches it."""

    def __init__(self, topology: dict[str, Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.topology = topology
        self._links = {link["name"]: link for link in topology.get("links", [])}
        self._iface_node = {i["name"]: i["node"] for i in topology.get("interfaces", [])}
        self.reset_state()

    def reset_state(self) -> None:
        self.link_up: dict[str, bool] = {name: True for name in self._links}
        self.rates: dict[tuple[str, str], float] = {}  # (link, "ab"|"ba") -> bit/s
        self._meters: dict[tuple[str, str], WindowRate] = {}  # bytes sent each way, over the last second
        self._clock = 0.0  # the latest record's time
        self._ended = False  # the run is over: nothing flows any more
        self.drops: dict[str, int] = {name: 0 for name in self._links}
        self.policies: dict[str, dict[str, Any]] = {}  # key -> {router, label, on}
        self.transfers: dict[str, dict[str, Any]] = {}
        self._dirty_links: set[str] = set()

    def compose(self) -> ComposeResult:
        with Horizontal(id="topology-top"):
            yield Static(self.topology.get("diagram") or "", id="diagram")
            yield Static(self._node_list_text(), id="nodes")
        yield Static("[b]Links[/b]  [dim](Enter: take down / bring up)[/dim]", classes="section")
        table = LinkTable(id="links", cursor_type="row", zebra_stripes=False)
        yield table
        yield Static("[b]Middleboxes[/b]  [dim](Enter: switch; m: more policies)[/dim]", classes="section")
        yield PolicyTable(id="policies", cursor_type="row")
        yield OutcomesPanel(id="transfers")  # every transfer, its outcome, as expected or not

    def on_mount(self) -> None:
        table = self.query_one("#links", DataTable)
        for key, label in (
            ("name", "Link"),
            ("bw", "Bandwidth"),
            ("delay", "Delay"),
            ("loss", "Loss"),
            ("state", "State"),
            ("ab", "Rate →"),
            ("ba", "Rate ←"),
            ("drops", "Drops"),
        ):
            table.add_column(label, key=key, width={"ab": 10, "ba": 10, "state": 7}.get(key))
        for name, link in self._links.items():
            bw = "unshaped" if link.get("bw_mbps") is None else f"{link['bw_mbps']:g} Mb/s"
            table.add_row(
                name,
                bw,
                f"{link.get('delay_ms', 0):g} ms",
                f"{link.get('loss_pct', 0):g} %",
                self._state_text(True),
                "–",
                "–",
                "0",
                key=name,
            )
        pol = self.query_one("#policies", DataTable)
        pol.add_column("Router", key="router")
        pol.add_column("Policy", key="policy")
        pol.add_column("State", key="state")
        self._refresh_transfers()

    def _node_list_text(self) -> Text:
        text = Text()
        for node in self.topology.get("nodes", []):
            addrs = [i["ipv4"] for i in self.topology.get("interfaces", []) if i["node"] == node["name"]]
            text.append(f"{node['name']}", style="bold")
            text.append(f" {node['kind']:<6} ", style="dim")
            text.append("  ".join(addrs) + "\n")
        text.rstrip()
        return text

    @staticmethod
    def _state_text(up: bool) -> Text:
        return Text("up", style="bold green") if up else Text("DOWN ✗", style="bold reverse red")

    # --- records

    def apply(self, records: list[TraceRecord]) -> None:
        changed_links: set[str] = set()
        transfers_changed = False
        state_changed = False
        if records:
            self._clock = max(self._clock, records[-1].t)
        for rec in records:
            try:
                layer = rec.layer
                if layer == "link":
                    data = rec.data
                    link = data.get("link")
                    if link not in self._links:
                        continue
                    if rec.name == "state_updated" and "up" in data:
                        self.link_up[link] = bool(data["up"])
                        state_changed = True
                        if not data["up"]:
                            self.rates[(link, "ab")] = self.rates[(link, "ba")] = 0.0
                        changed_links.add(link)
                    elif rec.name == "metrics_updated" and "from" in data and "bytes" in data:
                        node = self._iface_node.get(data.get("from", ""), "")
                        direction = "ab" if node == self._links[link]["a"] else "ba"
                        key = (link, direction)
                        nbytes = int(data.get("bytes_departed", data.get("bytes", 0)))
                        meter = self._meters.get(key)
                        if meter is None:
                            meter = self._meters[key] = WindowRate()
                        meter.add(rec.t, nbytes)
                        changed_links.add(link)
                    elif rec.name == "segment_dropped":
                        self.drops[link] += 1
                        changed_links.add(link)
                elif layer == "middlebox" and rec.name == "state_updated":
                    for field, on in (("installed", True), ("removed", False)):
                        desc = rec.data.get(field)
                        if isinstance(desc, dict):
                            key = policy_key(rec.node, desc)
                            label = ", ".join(f"{k}={v}" for k, v in desc.items() if k != "policy")
                            self.policies[key] = {
                                "router": rec.node,
                                "label": f"{desc.get('policy')} {label}".strip(),
                                "on": on,
                            }
                            self._show_policy(key)
                elif layer == "app" and rec.name == "state_updated" and "transfer" in rec.data:
                    info = self.transfers.setdefault(str(rec.data["transfer"]), {})
                    info[str(rec.data.get("event"))] = rec.data
                    transfers_changed = True
            except BAD_RECORD as exc:
                self.bad_record(rec, exc)
        self._dirty_links |= changed_links
        if state_changed:
            self.flush()  # a link going down or up shows at once; rates wait for the next flush
        if transfers_changed:
            self._refresh_transfers()

    def flush(self) -> None:
        """Draw the link rows that changed since the last flush (the app calls this a few times a second)."""
        changed_links, self._dirty_links = self._dirty_links, set()
        for key, meter in self._meters.items():  # windowed, so they decay once a link falls idle
            idle = self._ended or not self.link_up.get(key[0], True)
            rate = 0.0 if idle else meter.rate(self._clock)
            if rate != self.rates.get(key):
                self.rates[key] = rate  # type: ignore[assignment]
                changed_links.add(key[0])
        if changed_links and self.is_mounted:
            table = self.query_one("#links", DataTable)
            for link in changed_links:
                table.update_cell(link, "state", self._state_text(self.link_up[link]))
                table.update_cell(link, "ab", fmt_rate(self.rates.get((link, "ab"))))
                table.update_cell(link, "ba", fmt_rate(self.rates.get((link, "ba"))))
                table.update_cell(link, "drops", str(self.drops[link]))
            self.set_class(not all(self.link_up.values()), "-link-down")

    def _show_policy(self, key: str) -> None:
        if not self.is_mounted:
            return
        table = self.query_one("#policies", DataTable)
        info = self.policies[key]
        state = Text("on", style="bold") if info["on"] else Text("off", style="dim")
        if key in table.rows:
            table.update_cell(key, "state", state)
        else:
            table.add_row(info["router"], info["label"], state, key=key)

    def _refresh_transfers(self) -> None:
        """The transfers are drawn by the outcomes panel (from the app's tracker)."""

    def bytes_carried(self, link: str, direction: str) -> int:
        """Bytes that have left over ``link`` in ``direction`` ("ab" or "ba") so far."""
        meter = self._meters.get((link, direction))
        return meter.total if meter is not None else 0

    def run_ended(self) -> None:
        """The record stream ended: every rate is zero from now on."""
        self._ended = True
        self._dirty_links |= set(self._links)
        self.flush()

    def reset(self) -> None:
        self.reset_state()
        if self.is_mounted:
            table = self.query_one("#links", DataTable)
            for link in self._links:
                table.update_cell(link, "state", self._state_text(True))
                for col in ("ab", "ba"):
                    table.update_cell(link, col, "–")
                table.update_cell(link, "drops", "0")
            self.query_one("#policies", DataTable).clear()
            self.remove_class("-link-down")
            self._refresh_transfers()

    def state(self) -> Any:
        return {
            "links": dict(self.link_up),
            "drops": dict(self.drops),
            "policies": {k: v["on"] for k, v in self.policies.items()},
            "transfers": {k: sorted(v) for k, v in self.transfers.items()},
        }

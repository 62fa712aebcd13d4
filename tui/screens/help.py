"""The help screen: every key and control, and where each view's data comes from."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

VIEWS_HELP = """\
[b]Views[/b] (keys 1-7)
 1 Topology   hosts, routers, links (state, rate each way, drops), middleboxes, transfers
 2 Subflows   per MPTCP connection its subflows (plain TCP connections too): state, backup,
              RTT, cwnd, bytes, rate and its trend; DSS mapping, reinjections, fallback
 3 ENO        the SYN, SYN/ACK, ACK ladder with ENO suboptions decoded, and eno/tcpcrypt records
 4 IKETCP     IKE over UDP blocked, the TCP connection to 4500, ike/esp/iketcp records
 5 Packets    every segment and drop; type a filter (node=h1 flags=S conn=5001 opt=sack drop);
              the selected packet's fields carry their RFC name and section
 6 Events     the highlights (reinjections, fallbacks, resets, MP_FAIL, middlebox actions, AEAD
              failures, IKE moving to TCP: kept for the whole run), then state changes in order
              and any problem (bad trace line, simulator failure)
 7 Graphs     throughput per path over time, stacked on one scale; the data sequence of each
              subflow over time (R retransmitted, ◆ reinjected; ✗ a link down, ↑ up on the axis)

Ctrl+P opens the command palette: every control below, by name."""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, bindings: list[tuple[str, str]], controls: frozenset[str]) -> None:
        super().__init__()
        self._key_help = bindings
        self._controls = controls

    def plain_text(self) -> str:
        """What the screen says, as plain text."""
        import io

        from rich.console import Console

        console = Console(width=100, record=True, file=io.StringIO())
        console.print(self._table())
        return console.export_text() + VIEWS_HELP

    def _table(self) -> Table:
        table = Table(title="Keys", expand=True, show_edge=False)
        table.add_column("Key", style="bold", no_wrap=True)
        table.add_column("What it does")
        for key, description in self._key_help:
            table.add_row(key, description)
        return table

    def compose(self) -> ComposeResult:
        table = self._table()
        with VerticalScroll(id="help-body"):
            yield Static(table)
            yield Static(VIEWS_HELP)
            yield Static(
                f"[dim]This run supports: {', '.join(sorted(self._controls)) or 'viewing only'}. "
                "Esc closes this screen.[/dim]"
            )

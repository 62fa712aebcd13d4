"""ENO handshake: a ladder of SYN, SYN/ACK and ACK with each side's ENO suboptions decoded
(roles, a/b bits, TEPs), what the receiver actually got, and the eno/tcpcrypt records."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from lab.trace import TraceRecord
from tui.widgets.base import BAD_RECORD, TraceView
from tui.widgets.outcomes import OutcomesPanel
from tui.widgets.records import RecordTable

ENO_LAYERS = frozenset({"eno", "tcpcrypt"})
MAX_CONNECTIONS = 12


def _eno_fields(data: dict[str, Any]) -> str:
    """An eno segment record (docs/trace.md) in a few words."""
    option = data.get("option")
    if option is None and "options" not in data:
        return "no ENO option"
    if "options" in data:
        return f"{len(data['options'])} ENO options (treated as none)"
    if data.get("form") == "non-syn":
        return f"ENO (non-SYN form {option})"
    role = "passive (b=1)" if data.get("b") else "active (b=0)"
    teps = " ".join(str(t) for t in data.get("teps") or []) or "none (vacuous)"
    encoding = " kind 253" if data.get("encoding") == "experimental" else ""
    return f"ENO{encoding} {role} a={int(bool(data.get('a')))} TEPs {teps}"


def eno_summary(options: list[Any], syn: bool) -> str:
    """What the ENO option in ``options`` says, decoded (or "no ENO option")."""
    found = [o for o in options if isinstance(o, dict) and str(o.get("kind")) in ("69", "253")]
    if not found:
        return "no ENO option"
    opt = found[0]
    data_hex = str(opt.get("data", ""))
    if str(opt.get("kind")) == "253" and not data_hex.lower().startswith("454e"):
        return "no ENO option"
    if not syn:
        return f"ENO (non-SYN form{', ' + data_hex if data_hex else ''})"
    try:
        from lab.wire.eno import TepSuboption, decode_syn_eno_option

        data = bytes.fromhex(data_hex)
        option = decode_syn_eno_option(bytes((int(opt["kind"]), 2 + len(data))) + data)
    except Exception as exc:  # a malformed option is shown, not fatal
        return f"ENO (undecodable: {exc})"
    g = option.global_suboption
    teps = [
        f"{s.tep_id:#04x}{'+data' if s.v and s.data else ''}" for s in option.suboptions if isinstance(s, TepSuboption)
    ]
    role = "passive (b=1)" if g.passive_role else "active (b=0)"
    return f"ENO {role} a={int(g.application_aware)} TEPs {' '.join(teps) if teps else 'none (vacuous)'}"


def hang(text: Text, width: int) -> Text:
    """``text`` with every line longer than ``width`` wrapped at spaces, continuation lines
    indented under the start of the line's own words (a hanging indent, never column 0)."""
    out = Text()
    width = max(20, width)
    for n, line in enumerate(text.split("\n")):
        if n:
            out.append("\n")
        plain = line.plain
        if len(plain) <= width:
            out.append_text(line)
            continue
        indent = min(len(plain) - len(plain.lstrip(" ")) + 4, width // 2)
        start, first = 0, True
        while start < len(plain):
            room = width if first else width - indent
            if len(plain) - start <= room:
                end = len(plain)
            else:
                cut = plain.rfind(" ", start + 1, start + room + 1)
                end = cut if cut > start else start + room
            piece = line[start:end]
            if not first:
                out.append("\n" + " " * indent)
            out.append_text(piece)
            start, first = end, False
            while start < len(plain) and plain[start] == " ":
                start += 1
    return out


class Hanging(Widget):
    """Text drawn with hanging indents at whatever width it gets."""

    DEFAULT_CSS = "Hanging { height: auto; }"

    def __init__(self, text: Text | str = "", **kw: Any) -> None:
        super().__init__(**kw)
        self._text = Text(text) if isinstance(text, str) else text

    def update(self, text: Text | str) -> None:
        self._text = Text(text) if isinstance(text, str) else text
        self.refresh(layout=True)

    def render(self) -> Text:
        return hang(self._text, self.size.width or 80)

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return max(1, len(hang(self._text, width).plain.split("\n")))


class EnoView(VerticalScroll, TraceView):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reset_state()

    def reset_state(self) -> None:
        self.handshakes: dict[str, dict[str, Any]] = {}  # conn key -> {"client", "server", "steps": [...]}
        # from eno/tcpcrypt records (docs/trace.md): conn key -> {"steps": [...], "sides": {node: {...}}}
        self.eno_conns: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield OutcomesPanel(id="eno-outcomes", classes="outcomes")
        yield Hanging("No handshakes yet.", id="eno-ladder")
        yield Static("[b]eno / tcpcrypt records[/b]", classes="section")
        yield RecordTable(ENO_LAYERS, id="eno-records")

    def apply(self, records: list[TraceRecord]) -> None:
        changed = False
        wanted = []
        for rec in records:
            try:
                if rec.layer in ENO_LAYERS:
                    wanted.append(rec)
                    changed = self._eno_record(rec) or changed
                    continue
                if rec.layer != "tcp" or rec.name not in ("segment_sent", "segment_received"):
                    continue
                flags = str(rec.data.get("flags", ""))
                conn = rec.data.get("conn")
                if not isinstance(conn, str):
                    continue
                local, _, remote = conn.partition("->")
                key = " ⇄ ".join(sorted((local, remote)))
                hs = self.handshakes.get(key)
                syn = "S" in flags
                summary = eno_summary(rec.data.get("options") or [], syn)
                if rec.name == "segment_received":
                    if hs is not None:
                        for step in hs["steps"]:
                            if step["seq"] == rec.data.get("seq") and step["flags"] == flags and step["got"] is None:
                                step["got"] = summary
                                changed = True
                    continue
                if syn and "A" not in flags:
                    if hs is None:
                        if len(self.handshakes) >= MAX_CONNECTIONS:
                            continue
                        hs = self.handshakes[key] = {"client": (rec.node, local), "server": ("?", remote), "steps": []}
                if hs is None or len(hs["steps"]) >= 3:
                    continue
                if syn and "A" in flags:
                    hs["server"] = (rec.node, local)
                elif not syn and not any("A" in s["flags"] and "S" in s["flags"] for s in hs["steps"]):
                    continue
                label = "SYN" if syn and "A" not in flags else ("SYN/ACK" if syn else "ACK")
                hs["steps"].append(
                    {
                        "label": label,
                        "from_client": rec.node == hs["client"][0],
                        "sent": summary,
                        "got": None,
                        "seq": rec.data.get("seq"),
                        "flags": flags,
                        "t": rec.t,
                    }
                )
                changed = True
            except BAD_RECORD as exc:
                self.bad_record(rec, exc)
        if not self.is_mounted:
            return
        if wanted:
            self.query_one(RecordTable).add_records(wanted)
        if changed:
            self.query_one("#eno-ladder", Hanging).update(self.ladder())

    def _eno_record(self, rec: TraceRecord) -> bool:
        data = rec.data
        conn = data.get("conn")
        if not isinstance(conn, str) or "->" not in conn:
            return False
        local, _, remote = conn.partition("->")
        key = " ⇄ ".join(sorted((local, remote)))
        info = self.eno_conns.get(key)
        if info is None:
            if len(self.eno_conns) >= MAX_CONNECTIONS:
                return False
            info = self.eno_conns[key] = {"steps": [], "sides": {}}
        side = info["sides"].setdefault(rec.node, {"addr": local})
        if rec.layer == "eno" and rec.name == "segment_sent":
            info["steps"].append(
                {
                    "t": rec.t,
                    "node": rec.node,
                    "segment": str(data.get("segment", "?")),
                    "sent": _eno_fields(data),
                    "got": None,
                }
            )
        elif rec.layer == "eno" and rec.name == "segment_received":
            got = _eno_fields(data)
            for step in info["steps"]:
                if step["node"] != rec.node and step["segment"] == data.get("segment") and step["got"] is None:
                    step["got"] = got
                    break
            else:  # nothing recorded as sent (the peer's stack records no eno, or it came from elsewhere)
                info["steps"].append(
                    {
                        "t": rec.t,
                        "node": "?",
                        "segment": str(data.get("segment", "?")),
                        "sent": "?",
                        "got": got,
                        "to": rec.node,
                    }
                )
        elif rec.layer == "eno" and rec.name == "state_updated":
            side["state"] = str(data.get("to", side.get("state", "")))
            for field in (
                "role",
                "tep",
                "tep_name",
                "why",
                "local_a",
                "remote_a",
                "local_b",
                "remote_b",
                "session_id",
                "reason",
                "detail",
                "policy",
                "confirmed_by",
            ):
                if field in data:
                    side[field] = data[field]
        elif rec.layer == "eno" and rec.name == "error":
            side["error"] = f"{data.get('reason')}: {data.get('detail')} ({data.get('action', '')})"
        elif rec.layer == "tcpcrypt" and rec.name == "key_updated" and data.get("session_id"):
            side["tcpcrypt_session_id"] = data["session_id"]
            side["aead"] = data.get("aead")
        elif rec.layer == "tcpcrypt" and rec.name == "error":
            side["tcpcrypt_error"] = f"{data.get('reason')}: {data.get('detail')}"
        elif rec.layer == "tcpcrypt" and rec.name in ("segment_sent", "segment_received") and "message" in data:
            arrow = "sent" if rec.name == "segment_sent" else "received"
            side.setdefault("tcpcrypt", []).append(f"{data['message']} {arrow} ({data.get('length')} B)")
        else:
            return False
        return True

    def _eno_ladder(self, text: Text, key: str, info: dict[str, Any]) -> None:
        sides = info["sides"]
        nodes = list(sides)
        a_node = next((s["node"] for s in info["steps"] if s["segment"] == "SYN"), nodes[0] if nodes else "?")
        b_node = next((n for n in nodes if n != a_node), "?")
        text.append(f"{a_node} {sides.get(a_node, {}).get('addr', '?')}", style="bold")
        text.append("  ⇄  ")
        text.append(f"{b_node} {sides.get(b_node, {}).get('addr', '?')}\n", style="bold")
        for step in info["steps"]:
            arrow = "──────▶" if step["node"] == a_node or step.get("to") == b_node else "◀──────"
            text.append(f"  {step['t']:8.4f} {step['segment']:<8} {arrow} ")
            text.append(step["sent"], style="bold" if step["sent"].startswith("ENO") else "dim")
            if step["got"] is not None and step["got"] != step["sent"]:
                text.append(f"\n{'':>28}arrived as: ")
                text.append(step["got"], style="bold reverse")
            text.append("\n")
        session_ids = {}
        for node in (a_node, b_node):
            side = sides.get(node)
            if not side:
                continue
            state = side.get("state", "?")
            style = "bold reverse" if state in ("fallback", "refused", "aborted") else "bold"
            text.append(f"  {node}: ", style="bold")
            text.append(state, style=style)
            if "role" in side:
                text.append(f"  role {side['role']}")
            if "local_a" in side or "local_b" in side:
                text.append(
                    f"  a={int(bool(side.get('local_a')))}/{int(bool(side.get('remote_a')))}"
                    f" b={int(bool(side.get('local_b')))}/{int(bool(side.get('remote_b')))} (local/remote)"
                )
            if "tep" in side:
                text.append(f"  TEP {side['tep']} {side.get('tep_name', '')}")
            if side.get("aead"):
                text.append(f"  {side['aead']}")
            text.append("\n")
            if "why" in side:
                text.append(f"      why: {side['why']}\n", style="italic")
            if side.get("reason"):
                text.append(
                    f"      {state}: {side['reason']} — {side.get('detail', '')}"
                    f"{' (' + str(side['policy']) + ' policy)' if side.get('policy') else ''}\n",
                    style="bold",
                )
            for field in ("error", "tcpcrypt_error"):
                if side.get(field):
                    text.append(f"      error: {side[field]}\n", style="bold reverse")
            if side.get("tcpcrypt"):
                text.append(f"      tcpcrypt: {', '.join(side['tcpcrypt'])}\n")
            sid = side.get("session_id") or side.get("tcpcrypt_session_id")
            if sid:
                session_ids[node] = str(sid)
        if session_ids:
            for node, sid in session_ids.items():
                text.append(f"  session ID at {node}: {sid[:24]}…{sid[-8:]}\n")
            if len(session_ids) == 2:
                same = len(set(session_ids.values())) == 1
                text.append("  ⇒ ", style="bold")
                text.append(
                    "the same session ID at both ends: the keys were agreed end to end"
                    if same
                    else "session IDs DIFFER ✗: someone in between holds keys",
                    style="bold" if same else "bold reverse",
                )
                text.append("\n")
        ended = [
            (node, side)
            for node, side in ((a_node, sides.get(a_node)), (b_node, sides.get(b_node)))
            if side and (side.get("state") == "aborted" or side.get("tcpcrypt_error"))
        ]
        for node, side in ended:
            why = side.get("tcpcrypt_error") or side.get("reason") or "aborted"
            text.append("  ⇒ ", style="bold")
            text.append(
                f"{node} aborted the connection ({why}): nothing after the failed frame reached the application",
                style="bold reverse",
            )
            text.append("\n")
        text.append("\n")

    def ladder(self) -> Text:
        text = Text()
        for key, info in self.eno_conns.items():
            self._eno_ladder(text, key, info)
        without = 0
        for key, hs in self.handshakes.items():
            if key in self.eno_conns:
                continue  # drawn from the eno records
            if not any(s["sent"].startswith("ENO") for s in hs["steps"]):
                without += 1  # nobody offered ENO (plain TCP, MPTCP subflows): no fallback to tell
                continue
            (cnode, caddr), (snode, saddr) = hs["client"], hs["server"]
            text.append(f"{cnode} {caddr}", style="bold")
            text.append("  ⇄  ")
            text.append(f"{snode} {saddr}\n", style="bold")
            for step in hs["steps"]:
                arrow = "──────▶" if step["from_client"] else "◀──────"
                text.append(f"  {step['t']:8.4f} {step['label']:<8} {arrow} ")
                text.append(step["sent"], style="bold" if step["sent"].startswith("ENO") else "dim")
                got = step["got"]
                if got is not None and got != step["sent"]:
                    text.append(f"\n{'':>28}arrived as: ")
                    text.append(got, style="bold reverse")
                text.append("\n")
            sent = [s for s in hs["steps"] if s["label"] in ("SYN", "SYN/ACK")]
            if len(sent) == 2:
                both = all((s["got"] or s["sent"]).startswith("ENO") for s in sent)
                text.append("  ⇒ ", style="bold")
                text.append(
                    "both SYNs carry ENO: a TEP can be selected (RFC 8547 §4.6)"
                    if both
                    else "ENO missing on a SYN: the connection falls back to plain TCP (RFC 8547 §4.6)",
                    style="bold" if both else "bold reverse",
                )
                text.append("\n")
            text.append("\n")
        if without:
            text.append(
                f"{without} TCP connection(s) where no end offered ENO (plain TCP from the start; nothing to negotiate)",
                style="dim",
            )
        return text if text else Text("No handshakes yet.")

    def reset(self) -> None:
        self.reset_state()
        if self.is_mounted:
            self.query_one(RecordTable).reset()
            self.query_one("#eno-ladder", Hanging).update("No handshakes yet.")

    def state(self) -> Any:
        return {
            "eno": {
                k: {"steps": [(s["segment"], s["sent"], s["got"]) for s in v["steps"]], "sides": v["sides"]}
                for k, v in self.eno_conns.items()
            },
            "handshakes": {
                k: [(s["label"], s["sent"], s["got"]) for s in v["steps"]] for k, v in self.handshakes.items()
            },
            "records": self.query_one(RecordTable).count if self.is_mounted else 0,
        }

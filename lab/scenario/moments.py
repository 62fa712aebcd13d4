"""Key moments of a scenario, found in its trace records.

A scenario declares what its lesson hinges on (a link going down, the first
reinjection after a retransmission timeout, MP_FAIL, ENO stripped, the UDP
timeout before IKE moves to TCP...) as :class:`MomentSpec` predicates over
trace records. A :class:`MomentDetector` feeds on records in order and
reports each :class:`Moment` once, with a one-line caption in plain words
and the RFC section that says why. Runs, replays, Mininet runs and graders
read the same records, so they all find the same moments in the same order.

Nothing here imports Textual; the TUI draws what this module finds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lab.trace import TraceRecord

# (record, scratch) -> the fields the caption is formatted with, or None.
# ``scratch`` is a dict private to one spec in one detector, for predicates
# that need to remember earlier records (both ends' session IDs).
Match = Callable[[TraceRecord, dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True, kw_only=True)
class MomentSpec:
    """One kind of key moment: when it happens, and what to say about it.

    ``caption`` is formatted with the fields ``match`` returns (plus ``node``
    and ``t``); ``view`` names the TUI view that shows it best (topology,
    subflows, eno, iketcp, packets, events); ``once_per`` names a field whose
    distinct values each get their own moment (``session`` for two IKE
    initiators), otherwise only the first match counts.
    """

    key: str
    caption: str
    rfc: str
    view: str
    match: Match
    once_per: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Moment:
    t: float
    key: str
    caption: str
    rfc: str
    view: str
    node: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 6),
            "key": self.key,
            "caption": self.caption,
            "rfc": self.rfc,
            "view": self.view,
            "node": self.node,
        }


class _Fields(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def _caption(spec: MomentSpec, rec: TraceRecord, fields: dict[str, Any]) -> str:
    values = _Fields({"node": rec.node, "t": f"{rec.t:.3f}"} | fields)
    try:
        return spec.caption.format_map(values)
    except (ValueError, IndexError, AttributeError):
        return spec.caption


@dataclass
class MomentDetector:
    """Feeds on records in order; each moment is reported once. Never raises on odd records."""

    specs: tuple[MomentSpec, ...]
    moments: list[Moment] = field(default_factory=list)
    _scratch: list[dict[str, Any]] = field(default_factory=list)
    _seen: list[set[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.specs = tuple(self.specs)
        self.reset()

    def reset(self) -> None:
        self.moments = []
        self._scratch = [{} for _ in self.specs]
        self._seen = [set() for _ in self.specs]

    def feed(self, records: Iterable[TraceRecord]) -> list[Moment]:
        """The moments these records complete, in record order."""
        new: list[Moment] = []
        if not self.specs:
            return new
        for rec in records:
            if rec.name == "metrics_updated":
                continue  # no moment hinges on a periodic sample; skip the bulk cheaply
            for i, spec in enumerate(self.specs):
                try:
                    fields = spec.match(rec, self._scratch[i])
                except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                    continue  # a record without the documented shape is no moment
                if fields is None:
                    continue
                instance = ({"node": rec.node} | fields).get(spec.once_per) if spec.once_per else None
                if instance in self._seen[i]:
                    continue
                self._seen[i].add(instance)
                moment = Moment(
                    t=rec.t,
                    key=spec.key,
                    caption=_caption(spec, rec, fields),
                    rfc=spec.rfc,
                    view=spec.view,
                    node=rec.node,
                )
                new.append(moment)
        self.moments.extend(new)
        return new


def detect_moments(specs: Iterable[MomentSpec], records: Iterable[TraceRecord]) -> list[Moment]:
    """Every moment in a finished run's records, in order."""
    detector = MomentDetector(tuple(specs))
    detector.feed(records)
    return detector.moments


# --- predicates scenarios declare their moments with


def _is(rec: TraceRecord, layer: str, name: str) -> bool:
    return rec.layer == layer and rec.name == name


def link_down() -> Match:
    """A link is taken down (by the scenario or from the TUI)."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "link", "state_updated") and rec.data.get("up") is False:
            return {"link": rec.data.get("link", "?")}
        return None

    return match


def link_up() -> Match:
    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "link", "state_updated") and rec.data.get("up") is True:
            return {"link": rec.data.get("link", "?")}
        return None

    return match


def subflow_joined() -> Match:
    """A second subflow (MP_JOIN) is established at the host that opened it."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        d = rec.data
        if _is(rec, "mptcp", "state_updated") and d.get("to") == "ESTABLISHED" and d.get("from") == "PRE_ESTABLISHED":
            return {"subflow": d.get("subflow", "?")}
        return None

    return match


def reinjection(why: str | None = None) -> Match:
    """Data of one subflow is sent again on another (``why`` narrows it: "retransmission timeout")."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "link", "state_updated") and rec.data.get("up") is False:
            scratch["down_at"] = rec.t
            return None
        if not _is(rec, "mptcp", "state_updated"):
            return None
        info = rec.data.get("reinjected")
        if not isinstance(info, dict) or (why is not None and info.get("why") != why):
            return None
        down_at = scratch.get("down_at")
        return {
            "from": info.get("from_subflow", "?"),
            "to": info.get("to_subflow") or "another subflow",
            "why": info.get("why", "?"),
            "len": info.get("len", "?"),
            "since_down": f"{rec.t - down_at:.2f} s after the link went down" if down_at is not None else "",
        }

    return match


def mp_fail() -> Match:
    """A DSS checksum failed and the receiver sent MP_FAIL."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "mptcp", "state_updated") and "mp_fail" in rec.data and rec.data.get("direction") == "sent":
            return {"subflow": rec.data.get("subflow", "?")}
        return None

    return match


def mptcp_fallback() -> Match:
    """An MPTCP connection falls back to plain TCP (no option on the SYN/ACK, no DSS, MP_FAIL...)."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "mptcp", "state_updated") and rec.data.get("fallback"):
            return {"why": rec.data["fallback"]}
        return None

    return match


def middlebox_stripped(kind: int) -> Match:
    """A middlebox removed TCP option ``kind`` from a segment."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "middlebox", "segment_sent") and kind in (rec.data.get("stripped_kinds") or ()):
            return {"kind": kind, "ingress": rec.data.get("ingress", "?")}
        return None

    return match


def eno_outcome(state: str) -> Match:
    """ENO reaches ``state`` ("fallback", "refused", "aborted") at some end; a mandatory end's
    reset for want of ENO counts as "refused" even where no state change is recorded."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        d = rec.data
        refusal = state == "refused" and _is(rec, "eno", "error") and "mandatory" in str(d.get("action", ""))
        if (_is(rec, "eno", "state_updated") and d.get("to") == state) or refusal:
            return {
                "conn": d.get("conn", "?"),
                "detail": d.get("detail") or d.get("reason") or "",
                "policy": d.get("policy", ""),
            }
        return None

    return match


def tep_agreed() -> Match:
    """ENO agrees on a TEP (at host A, from B's SYN-ACK)."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        d = rec.data
        if _is(rec, "eno", "state_updated") and d.get("to") == "negotiated" and d.get("tep_name"):
            return {"tep": str(d["tep_name"]).removeprefix("TCPCRYPT_"), "role": d.get("role", "?")}
        return None

    return match


def session_ids_equal() -> Match:
    """Both ends of a tcpcrypt connection hold the same session ID (RFC 8548 §3.4)."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if not _is(rec, "tcpcrypt", "key_updated"):
            return None
        sid = rec.data.get("session_id")
        if not isinstance(sid, str) or not sid:
            return None
        nodes = scratch.setdefault(sid, set())
        nodes.add(rec.node)
        if len(nodes) >= 2:
            return {"sid": sid[:16] + "…", "nodes": " and ".join(sorted(nodes))}
        return None

    return match


def aead_failure() -> Match:
    """A tcpcrypt frame fails authentication."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "tcpcrypt", "error") and rec.data.get("reason") == "authentication_failed":
            return {"offset": rec.data.get("offset", "?")}
        return None

    return match


def reset_sent(*, reason_contains: str = "") -> Match:
    """A host ends a connection with RST (``reason_contains`` narrows it by the termination reason)."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        d = rec.data
        if _is(rec, "tcp", "state_updated") and d.get("reset") and d.get("terminated"):
            why = str(d["terminated"])
            if reason_contains in why and "by peer" not in why:
                return {"conn": d.get("conn", "?"), "why": why}
        return None

    return match


def ike_attempt(event: str, *, transport: str | None = None) -> Match:
    """An IKE initiator's transport attempt ``event`` ("timeout", "won", "started"...)."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        d = rec.data
        if not (_is(rec, "ike", "state_updated") and d.get("event") == event):
            return None
        if transport is not None and d.get("transport") != transport:
            return None
        after = d.get("after_s")
        return {
            "session": d.get("session", "?"),
            "transport": d.get("transport", "?"),
            "port": d.get("port", "?"),
            "after": f"{after:.2f} s" if isinstance(after, (int, float)) else "?",
        }

    return match


def ike_event(event: str, *, exchange: str | None = None, transport: str | None = None) -> Match:
    """An IKE ``state_updated`` record of ``event`` ("ip_fragments", "reassembled", "sent"...); the
    record's fields (``exchange``, ``length``, ``fragments``, ``ke_len``...) go to the caption."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        d = rec.data
        if not (_is(rec, "ike", "state_updated") and d.get("event") == event):
            return None
        if (exchange is not None and d.get("exchange") != exchange) or (
            transport is not None and d.get("transport") != transport
        ):
            return None
        return dict(d)

    return match


def middlebox_dropped(reason: str) -> Match:
    """A middlebox drops a packet for ``reason`` (the start of the record's reason)."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "middlebox", "segment_dropped") and str(rec.data.get("reason", "")).startswith(reason):
            return dict(rec.data)
        return None

    return match


def iketcp_prefix() -> Match:
    """The TCP originator sends the 6-byte "IKETCP" stream prefix."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        if _is(rec, "iketcp", "segment_sent") and rec.data.get("kind") == "prefix":
            conn = str(rec.data.get("conn", "?"))
            return {"conn": conn, "session": conn.split("/", 1)[0]}
        return None

    return match


def transfer_received() -> Match:
    """A transfer's receiver has every byte (and says whether the SHA-256 matches)."""

    def match(rec: TraceRecord, scratch: dict[str, Any]) -> dict[str, Any] | None:
        d = rec.data
        if _is(rec, "app", "state_updated") and d.get("event") == "received" and d.get("bytes"):
            ok = d.get("sha256_match")
            n = int(d["bytes"])
            size = f"{n / 1048576:g} MiB" if n >= 1048576 else (f"{n / 1024:g} KiB" if n >= 1024 else f"{n} bytes")
            return {
                "transfer": d.get("transfer", "?"),
                "bytes": n,
                "size": size,
                "check": "SHA-256 matches" if ok else "SHA-256 does NOT match: corrupted",
            }
        return None

    return match

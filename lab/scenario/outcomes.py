"""What a scenario expects to happen, and what did, read from its trace records.

A scenario states its intended outcomes (:class:`Expects`): how each of its
transfers ends (``delivered``, ``corrupted``, ``refused``, ``aborted``), which
transport each IKE session ends up on, and which ``error`` records are the
lesson rather than a fault (the AEAD failure of tcpcrypt-tamper, a mandatory
ENO end's refusal). An :class:`OutcomeTracker` feeds on records in order
(live, replayed or from Mininet alike) and says for each transfer what
became of it and whether that is what the scenario expected.

Transfers end in ``app state_updated`` records (docs/trace.md): ``received``
(bytes, ``sha256_match``; ENO workloads add ``outcome``/``client_outcome``)
or ``aborted`` (bytes that arrived, ``reason``). Nothing here imports
Textual, and everything in :class:`Expects` is plain data, so a scenario
still pickles (Mininet hosts get it that way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.trace import TraceRecord

TRANSFER_OUTCOMES = ("delivered", "corrupted", "refused", "aborted")
USER_TRANSFER_PREFIX = "tui-"  # transfers started from a face (the TUI's ``t``): nothing is expected of them


@dataclass(frozen=True, kw_only=True)
class Expects:
    """A scenario's intended outcomes.

    ``transfers`` maps transfer names to one of :data:`TRANSFER_OUTCOMES`; a
    transfer not named is expected to be ``delivered``. ``ike`` maps IKE
    session names to the transport their IKE SA should end on (``udp`` or
    ``tcp``). ``errors`` lists ``(layer, reason)`` pairs of ``error`` records
    that the scenario provokes on purpose (``reason`` matches the start of the
    record's reason). ``summary`` says the lesson's outcome in plain words.
    """

    transfers: tuple[tuple[str, str], ...] = ()
    ike: tuple[tuple[str, str], ...] = ()
    errors: tuple[tuple[str, str], ...] = ()
    summary: str = ""

    def __post_init__(self) -> None:
        for name, outcome in self.transfers:
            if outcome not in TRANSFER_OUTCOMES:
                raise ValueError(f"transfer {name}: expected outcome must be one of {', '.join(TRANSFER_OUTCOMES)}")

    def outcome_of(self, transfer: str) -> str | None:
        """What ``transfer`` should come to (None for one started from a face)."""
        if transfer.startswith(USER_TRANSFER_PREFIX):
            return None
        return dict(self.transfers).get(transfer, "delivered")

    def error_expected(self, rec: TraceRecord) -> bool:
        reason = str(rec.data.get("reason", ""))
        return any(rec.layer == layer and reason.startswith(prefix) for layer, prefix in self.errors)


NOTHING_SPECIAL = Expects()


@dataclass
class TransferOutcome:
    """One transfer as the records tell it."""

    name: str
    expected: str | None  # None: nothing expected (started from a face)
    outcome: str = "running"  # delivered, corrupted, refused, aborted, running
    bytes: int = 0
    detail: str = ""  # "encrypted", "in the clear (ENO fell back)", the abort's reason...
    t: float | None = None

    @property
    def done(self) -> bool:
        return self.outcome != "running"

    @property
    def verdict(self) -> str:
        """``as expected``, ``unexpected``, ``started here`` or ``running``."""
        if not self.done:
            return "running"
        if self.expected is None:
            return "started here"
        return "as expected" if self.outcome == self.expected else "unexpected"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expected": self.expected,
            "outcome": self.outcome,
            "bytes": self.bytes,
            "detail": self.detail,
            "verdict": self.verdict,
        }


@dataclass
class IkeOutcome:
    name: str
    expected: str | None  # transport
    transport: str | None = None  # set when the IKE SA is established (IKE_AUTH answered)
    port: Any = None
    after: float | None = None  # seconds from the session's start to the established IKE SA
    trying: str | None = None  # the transport whose IKE_SA_INIT was answered, while IKE_AUTH is under way

    @property
    def verdict(self) -> str:
        if self.transport is None:
            return "running"
        if self.expected is None:
            return "started here" if self.name.startswith(USER_TRANSFER_PREFIX) else "done"
        return "as expected" if self.transport == self.expected else "unexpected"


_ENO_WORDS = {
    "encrypted": "encrypted (tcpcrypt)",
    "fallback": "in the clear (ENO fell back)",
    "plain": "in the clear (no ENO)",
}


def _classify(data: dict[str, Any]) -> tuple[str, str]:
    """(outcome, detail) of an ``app`` record that ends a transfer."""
    event = data.get("event")
    outcomes = {data.get("outcome"), data.get("client_outcome")}
    nbytes = int(data.get("bytes") or 0)
    if event == "aborted":
        if "refused" in outcomes:
            return "refused", str(data.get("reason", ""))
        return "aborted", str(data.get("reason", ""))
    if "refused" in outcomes and nbytes == 0:
        side = "server" if data.get("outcome") == "refused" else "client"
        return "refused", f"by the mandatory-ENO {side}: nothing in the clear"
    if data.get("sha256_match") is False:
        return "corrupted", "SHA-256 does not match what was sent"
    eno = data.get("client_outcome") if data.get("client_outcome") in _ENO_WORDS else data.get("outcome")
    return "delivered", _ENO_WORDS.get(str(eno), "intact (SHA-256 matches)")


@dataclass
class OutcomeTracker:
    """Feeds on records in order; knows each transfer's outcome and which errors were expected."""

    expects: Expects = NOTHING_SPECIAL
    declared: tuple[str, ...] = ()  # transfer names the scenario declares (listed before they end)
    declared_ike: tuple[str, ...] = ()
    transfers: dict[str, TransferOutcome] = field(default_factory=dict)
    ike: dict[str, IkeOutcome] = field(default_factory=dict)
    expected_errors: list[TraceRecord] = field(default_factory=list)
    unexpected_errors: list[TraceRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.transfers = {n: TransferOutcome(n, self.expects.outcome_of(n)) for n in self.declared}
        self.ike = {n: IkeOutcome(n, dict(self.expects.ike).get(n)) for n in self.declared_ike}
        self._won: dict[tuple[str, str], tuple[str, str, Any, float | None]] = {}  # (node, SA) -> session, how, start
        self._switched: dict[tuple[str, str], str] = {}  # (node, SA) -> where IKE went on (separate transports)
        self.expected_errors = []
        self.unexpected_errors = []

    def feed(self, records: list[TraceRecord]) -> bool:
        """Take a batch; whether anything shown changed."""
        changed = False
        for rec in records:
            if rec.name == "metrics_updated":
                continue
            try:
                if rec.name == "error":
                    expected = self.expects.error_expected(rec)
                    (self.expected_errors if expected else self.unexpected_errors).append(rec)
                    changed = True
                elif rec.layer == "app" and rec.name == "state_updated" and "transfer" in rec.data:
                    changed = self._app(rec) or changed
                elif rec.layer == "ike" and rec.name == "state_updated" and rec.data.get("event") == "won":
                    # IKE_SA_INIT answered: this transport carries the SA, once IKE_AUTH is answered too
                    # (a large IKE_AUTH may still die on it: IP fragments dropped, then TCP)
                    name = str(rec.data.get("session", "?"))
                    info = self.ike.get(name)
                    if info is None:
                        info = self.ike[name] = IkeOutcome(name, dict(self.expects.ike).get(name))
                    key = (rec.node, str(rec.data.get("sa")))
                    transport = self._switched.pop(key, None) or str(rec.data.get("transport", "?"))
                    info.trying = f"{transport.upper()} {rec.data.get('port')}"
                    after = rec.data.get("after_s")
                    started = rec.t - float(after) if isinstance(after, (int, float)) else None
                    self._won[key] = (
                        name,
                        transport,
                        rec.data.get("port"),
                        started,
                    )
                    changed = True
                elif (
                    rec.layer == "ike"
                    and rec.name == "state_updated"
                    and rec.data.get("event") == "transport_switched"
                    and (rec.node, str(rec.data.get("sa"))) in self._won
                ):
                    # separate transports: IKE goes on over TCP after IKE_SA_INIT over UDP, ESP stays on UDP
                    name, _, port, started = self._won[(rec.node, str(rec.data.get("sa")))]
                    transport = str(rec.data.get("ike_transport", "?"))
                    self._won[(rec.node, str(rec.data.get("sa")))] = (name, transport, port, started)
                    self.ike[name].trying = f"{transport.upper()} {port}"
                    changed = True
                elif (
                    rec.layer == "ike" and rec.name == "state_updated" and rec.data.get("event") == "transport_switched"
                ):  # recorded by the SA before the endpoint records "won": kept until then
                    self._switched[(rec.node, str(rec.data.get("sa")))] = str(rec.data.get("ike_transport", "?"))
                elif (
                    rec.layer == "ike"
                    and rec.name == "state_updated"
                    and rec.data.get("exchange") == "IKE_AUTH"
                    and rec.data.get("result") == "ok"
                    and (rec.node, str(rec.data.get("sa"))) in self._won
                ):
                    name, transport, port, started = self._won[(rec.node, str(rec.data.get("sa")))]
                    info = self.ike[name]
                    info.transport, info.port, info.trying = transport, port, None
                    info.after = rec.t - started if started is not None else None
                    changed = True
            except (TypeError, ValueError, KeyError, AttributeError):
                continue  # a record without the documented shape decides nothing
        return changed

    def _app(self, rec: TraceRecord) -> bool:
        data = rec.data
        name = str(data["transfer"])
        info = self.transfers.get(name)
        if info is None:
            info = self.transfers[name] = TransferOutcome(name, self.expects.outcome_of(name))
        event = data.get("event")
        if event not in ("received", "aborted"):
            return False
        if info.done and event == "aborted":
            return False  # the other end's view of an ending already told
        info.outcome, info.detail = _classify(data)
        info.bytes = int(data.get("bytes") or 0)
        info.t = rec.t
        return True

    def unexpected(self) -> list[str]:
        """What the scenario did not expect, in words (transfers that ended otherwise, errors)."""
        out = [
            f"transfer {t.name}: {t.outcome}, expected {t.expected}"
            for t in self.transfers.values()
            if t.verdict == "unexpected"
        ]
        out += [
            f"IKE {i.name}: over {i.transport}, expected {i.expected}"
            for i in self.ike.values()
            if i.verdict == "unexpected"
        ]
        return out

    def state(self) -> dict[str, Any]:
        return {
            "transfers": {n: t.to_dict() for n, t in self.transfers.items()},
            "ike": {n: {"transport": i.transport, "port": i.port, "verdict": i.verdict} for n, i in self.ike.items()},
            "expected_errors": len(self.expected_errors),
            "unexpected_errors": len(self.unexpected_errors),
        }


def declared_transfers(scenario: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(transfer names, IKE session names) a scenario's workloads declare."""
    transfers: list[str] = []
    ike: list[str] = []
    for w in getattr(scenario, "transfers", ()) or ():
        kind = type(w).__name__
        if kind == "IkeSession":
            ike.append(str(w.name))
            if getattr(w, "data_bytes", 0):  # the data each way through its tunnel
                transfers += [f"{w.name} i->r", f"{w.name} r->i"]
        elif hasattr(w, "transfers") and isinstance(w.transfers, tuple):  # back-to-back workloads
            transfers += [str(t.name) for t in w.transfers]
        elif kind == "AlternatingTransfers":
            continue  # names made up as it runs
        else:
            transfers.append(str(getattr(w, "name", "?")))
    return tuple(transfers), tuple(ike)


def tracker_for(scenario: Any) -> OutcomeTracker:
    """A tracker for ``scenario`` (None or an unknown one: nothing expected but delivery)."""
    if scenario is None:
        return OutcomeTracker()
    transfers, ike = declared_transfers(scenario)
    expects = getattr(scenario, "expects", None) or NOTHING_SPECIAL
    return OutcomeTracker(expects=expects, declared=transfers, declared_ike=ike)

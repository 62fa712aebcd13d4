"""The TRANSITIONS table (RFC 9293 3.3.2) and the connection's use of it, under Hypothesis."""

from __future__ import annotations

import random
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.errors import LocalProtocolError
from lab.tcp import TcpConfig, TcpConnection, TcpState
from lab.tcp.state import CAN_RECEIVE_DATA, CAN_SEND, SYNCHRONIZED, TRANSITIONS, Input
from tests.tcp.pair import CLIENT_ADDR, TcpPair

S = TcpState
INPUT_BY_VALUE = {i.value: i for i in Input}
STATE_BY_VALUE = {s.value: s for s in TcpState}


@given(st.sampled_from(TcpState), st.sampled_from(Input))
def test_table_maps_only_to_states(state: TcpState, inp: Input) -> None:
    new = TRANSITIONS.get((state, inp))
    assert new is None or isinstance(new, TcpState)
    assert all(isinstance(k[0], TcpState) and isinstance(k[1], Input) for k in TRANSITIONS)


@given(st.sampled_from(TcpState), st.sampled_from(Input))
def test_connection_follows_the_table(state: TcpState, inp: Input) -> None:
    """_transition() does what the table says, and refuses what it does not list."""
    conn = TcpConnection(addr=CLIENT_ADDR)
    conn._state = state
    expected = TRANSITIONS.get((state, inp))
    if expected is None:
        with pytest.raises(AssertionError):
            conn._transition(inp, 0.0)
        assert conn.state is state
    else:
        conn._transition(inp, 0.0)
        assert conn.state is expected


@pytest.mark.parametrize("state", [s for s in TcpState if s is not S.CLOSED])
def test_abort_closes_every_open_state(state: TcpState) -> None:
    assert TRANSITIONS[(state, Input.ABORT)] is S.CLOSED


@pytest.mark.parametrize("state", [s for s in TcpState if s not in (S.CLOSED, S.LISTEN)])
def test_rst_closes_every_state_with_a_peer(state: TcpState) -> None:
    assert TRANSITIONS[(state, Input.RECV_RST)] is S.CLOSED


def test_listen_and_closed_ignore_rst() -> None:
    # RFC 9293 3.10.7.1/3.10.7.2: a RST to a CLOSED or LISTEN endpoint is ignored
    assert (S.LISTEN, Input.RECV_RST) not in TRANSITIONS
    assert (S.CLOSED, Input.RECV_RST) not in TRANSITIONS
    assert (S.CLOSED, Input.ABORT) not in TRANSITIONS


def test_closed_only_opens() -> None:
    assert {i for (s, i) in TRANSITIONS if s is S.CLOSED} == {Input.ACTIVE_OPEN, Input.PASSIVE_OPEN}


def reachable(start: TcpState, edges: dict[TcpState, set[TcpState]]) -> set[TcpState]:
    seen = {start}
    queue = deque([start])
    while queue:
        for nxt in edges.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def test_every_state_is_reachable_from_closed() -> None:
    forward: dict[TcpState, set[TcpState]] = {}
    for (src, _), dst in TRANSITIONS.items():
        forward.setdefault(src, set()).add(dst)
    assert reachable(S.CLOSED, forward) == set(TcpState)


def test_closed_is_reachable_from_every_state() -> None:
    backward: dict[TcpState, set[TcpState]] = {}
    for (src, _), dst in TRANSITIONS.items():
        backward.setdefault(dst, set()).add(src)
    assert reachable(S.CLOSED, backward) == set(TcpState)


def test_the_rfc_state_diagram() -> None:
    """The edges of RFC 9293 figure 5, besides RST and ABORT."""
    expected = {
        (S.CLOSED, Input.ACTIVE_OPEN): S.SYN_SENT,
        (S.CLOSED, Input.PASSIVE_OPEN): S.LISTEN,
        (S.LISTEN, Input.RECV_SYN): S.SYN_RECEIVED,
        (S.SYN_SENT, Input.RECV_SYN): S.SYN_RECEIVED,
        (S.SYN_SENT, Input.RECV_SYNACK): S.ESTABLISHED,
        (S.SYN_RECEIVED, Input.RECV_ACK_OF_SYN): S.ESTABLISHED,
        (S.SYN_RECEIVED, Input.APP_CLOSE): S.FIN_WAIT_1,
        (S.ESTABLISHED, Input.APP_CLOSE): S.FIN_WAIT_1,
        (S.ESTABLISHED, Input.RECV_FIN): S.CLOSE_WAIT,
        (S.FIN_WAIT_1, Input.RECV_ACK_OF_FIN): S.FIN_WAIT_2,
        (S.FIN_WAIT_1, Input.RECV_FIN): S.CLOSING,
        (S.FIN_WAIT_2, Input.RECV_FIN): S.TIME_WAIT,
        (S.CLOSING, Input.RECV_ACK_OF_FIN): S.TIME_WAIT,
        (S.CLOSE_WAIT, Input.APP_CLOSE): S.LAST_ACK,
        (S.LAST_ACK, Input.RECV_ACK_OF_FIN): S.CLOSED,
        (S.TIME_WAIT, Input.TIMEWAIT_EXPIRED): S.CLOSED,
    }
    for key, dst in expected.items():
        assert TRANSITIONS[key] is dst, key


def test_state_sets_are_consistent() -> None:
    assert S.CLOSED not in SYNCHRONIZED and S.LISTEN not in SYNCHRONIZED and S.SYN_SENT not in SYNCHRONIZED
    assert CAN_RECEIVE_DATA <= SYNCHRONIZED
    assert S.TIME_WAIT not in CAN_SEND and S.LAST_ACK not in CAN_SEND


# --- the connection never leaves the table, whatever happens


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["client", "server"]),
        st.sampled_from(["send", "send", "close", "close", "wait", "abort", "pause", "resume", "connect", "listen"]),
        st.floats(min_value=0.0, max_value=2.0),
    ),
    max_size=10,
)
OPENINGS = st.sampled_from(["listen-connect", "simultaneous", "connect-late-listen", "nothing"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    opening=OPENINGS,
    actions=ACTIONS,
    seed=st.integers(0, 2**16),
    loss_pct=st.sampled_from([0.0, 0.0, 10.0, 40.0]),
)
def test_random_use_stays_within_the_table(opening: str, actions, seed: int, loss_pct: float) -> None:
    rng = random.Random(seed)

    def fault(sender, data: bytes) -> list[bytes]:
        r = rng.random()
        if r < loss_pct / 100:
            return []
        if r > 0.97:
            return [data, data]
        return [data]

    cfg = TcpConfig(msl_s=1.0, syn_retries=2, max_retransmits=3, receive_buffer_bytes=20_000)
    pair = TcpPair(client_config=cfg, server_config=cfg, fault=fault, reorder_rng=random.Random(seed), seed=seed)
    written = {"client": bytearray(), "server": bytearray()}
    if opening == "listen-connect":
        pair.server.listen(now=0.0)
        pair.client.connect(now=0.0)
    elif opening == "simultaneous":
        pair.client.connect(now=0.0)
        pair.server.connect(now=0.0)
    elif opening == "connect-late-listen":
        pair.client.connect(now=0.0)
        pair.run(until=0.5)
        pair.server.listen(now=pair.now)
    for who, action, dt in actions:
        conn = getattr(pair, who)
        before = conn.state
        try:
            if action == "connect":
                conn.connect(now=pair.now)
            elif action == "listen":
                conn.listen(now=pair.now)
            elif action == "send":
                data = rng.randbytes(rng.randrange(1, 5000))
                conn.send(data)
                written[who] += data
            elif action == "close":
                conn.close(now=pair.now)
            elif action == "abort":
                conn.abort(now=pair.now)
            elif action == "pause":
                conn.pause_reading()
            elif action == "resume":
                conn.resume_reading(now=pair.now)
        except LocalProtocolError:
            assert conn.state is before  # refused calls change nothing
        pair.run(until=pair.now + dt)
    pair.client.resume_reading(now=pair.now)
    pair.server.resume_reading(now=pair.now)
    pair.run(until=pair.now + 600.0)

    for record in pair.records(name="state_updated"):
        if "to" not in record.data:
            continue
        src = STATE_BY_VALUE[record.data["from"]]
        dst = STATE_BY_VALUE[record.data["to"]]
        inp = INPUT_BY_VALUE[record.data["input"]]
        assert TRANSITIONS.get((src, inp)) is dst, record
    for conn in (pair.client, pair.server):
        # after ten quiet minutes nothing is half-way: closed, idle listener, or established
        assert conn.state in (S.CLOSED, S.LISTEN, S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2), conn.state
        if conn.state is S.CLOSED:
            assert conn.get_timer() is None
    # whatever was delivered is a prefix of what the other side wrote, in order
    assert bytes(written["client"]).startswith(pair.data(pair.server))
    assert bytes(written["server"]).startswith(pair.data(pair.client))

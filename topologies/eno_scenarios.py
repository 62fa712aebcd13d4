"""ENO and tcpcrypt scenarios: the SCENARIOS registry (entry point tcplab.scenarios, name eno).

Every scenario runs on the single-path topology (h1 ─ r1 ─ h2) with
:class:`~lab.scenario.eno.EncryptedTransfer` workloads that say what the
negotiation must come to; the transfers' byte streams are SHA-256 checked.
"""

from __future__ import annotations

from lab.eno.extension import EnoConfig
from lab.scenario import Scenario
from lab.scenario.eno import EncryptedTransfer, SimultaneousOpenTransfer
from lab.scenario.middlebox import FlipPayloadBytes, StripTcpOptions
from lab.scenario.moments import (
    MomentSpec,
    aead_failure,
    eno_outcome,
    middlebox_stripped,
    reset_sent,
    session_ids_equal,
    tep_agreed,
    transfer_received,
)
from lab.scenario.outcomes import Expects
from lab.wire.eno import ENO_KIND, EXPERIMENTAL_KIND
from lab.wire.tcpcrypt import (
    TCPCRYPT_ECDHE_CURVE448,
    TCPCRYPT_ECDHE_CURVE25519,
    TCPCRYPT_ECDHE_P256,
    TCPCRYPT_ECDHE_P521,
)

MIB = 1024 * 1024

MANDATORY = EnoConfig(policy="mandatory")
TEP_AGREED = MomentSpec(
    key="tep-agreed",
    caption="{node} reads the SYN-ACK: both ends agree on {tep}, so tcpcrypt encrypts this connection",
    rfc="RFC 8547 §4.4",
    view="eno",
    match=tep_agreed(),
)
SESSION_IDS_EQUAL = MomentSpec(
    key="session-ids-equal",
    caption="{nodes} hold the same session ID {sid}: nobody in between holds the keys",
    rfc="RFC 8548 §3.4",
    view="eno",
    match=session_ids_equal(),
)
ENO_STRIPPED = MomentSpec(
    key="eno-stripped",
    caption="{node} removes the ENO option (kind {kind}) from a SYN on its way through",
    rfc="RFC 8547 §4.5",
    view="eno",
    match=middlebox_stripped(ENO_KIND),
)
ENO_FALLBACK = MomentSpec(
    key="eno-fallback",
    caption="{node}: {detail}; an opportunistic end goes on as plain, unencrypted TCP",
    rfc="RFC 8547 §4.5",
    view="eno",
    match=eno_outcome("fallback"),
)
ENO_REFUSED = MomentSpec(
    key="eno-refused",
    caption="{node}: {detail}; a mandatory end refuses and resets: nothing crosses in the clear",
    rfc="RFC 8547 §4.5",
    view="eno",
    match=eno_outcome("refused"),
    once_per="node",  # a mandatory server and a mandatory client each refuse
)
AEAD_FAILED = MomentSpec(
    key="aead-failure",
    caption="a frame fails AEAD authentication at {node} (stream offset {offset}): it was changed on the way",
    rfc="RFC 8548 §3.6",
    view="eno",
    match=aead_failure(),
)
TAMPER_RESET = MomentSpec(
    key="reset",
    caption="{node} resets the connection ({why}): not one tampered byte reaches the application",
    rfc="RFC 8548 §3.6",
    view="eno",
    match=reset_sent(reason_contains="tcpcrypt"),
)
ENO_DELIVERED = MomentSpec(
    key="delivered",
    caption="{transfer}: all {size} delivered, {check}",
    rfc="RFC 8548 §3.6",
    view="eno",
    match=transfer_received(),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="eno-basic",
            description=(
                "TCP-ENO offers tcpcrypt (X25519, P-256) on the SYN, h2 picks X25519 in its SYN-ACK; "
                "Init1/Init2 follow and 2 MiB travel in AES-128-GCM frames. Both ends show the same session ID."
            ),
            topology="single-path",
            transfers=(EncryptedTransfer(name="encrypted", size_bytes=2 * MIB),),
            moments=(TEP_AGREED, SESSION_IDS_EQUAL, ENO_DELIVERED),
            main_view="eno",
        ),
        Scenario(
            name="eno-mismatch",
            description=(
                "Two connections: partly overlapping TEP lists (h1 offers P-256, X25519, X448; h2 prefers X448, "
                "then P-521) agree on X448; disjoint lists (P-256 against X25519) fall back to plain TCP."
            ),
            topology="single-path",
            transfers=(
                EncryptedTransfer(
                    name="overlap",
                    port=5001,
                    size_bytes=256 * 1024,
                    client=EnoConfig(teps=(TCPCRYPT_ECDHE_P256, TCPCRYPT_ECDHE_CURVE25519, TCPCRYPT_ECDHE_CURVE448)),
                    server=EnoConfig(teps=(TCPCRYPT_ECDHE_CURVE448, TCPCRYPT_ECDHE_P521)),
                    expect="encrypted",
                ),
                EncryptedTransfer(
                    name="disjoint",
                    port=5002,
                    size_bytes=256 * 1024,
                    client=EnoConfig(teps=(TCPCRYPT_ECDHE_P256,)),
                    server=EnoConfig(teps=(TCPCRYPT_ECDHE_CURVE25519,)),
                    expect="fallback",
                ),
            ),
            moments=(TEP_AGREED, ENO_FALLBACK, SESSION_IDS_EQUAL),
            main_view="eno",
            expects=Expects(summary="overlapping TEP lists agree on X448; disjoint ones go on in the clear"),
        ),
        Scenario(
            name="eno-stripped",
            description=(
                "r1 strips ENO options (kinds 69 and 253) from SYNs. Opportunistic ends fall back to plain "
                "TCP and deliver in the clear; a mandatory client resets on the SYN-ACK without ENO, a "
                "mandatory server resets the SYN: no byte crosses in the clear."
            ),
            topology="single-path",
            middleboxes=(("r1", lambda: StripTcpOptions([ENO_KIND, EXPERIMENTAL_KIND], when="syn")),),
            transfers=(
                EncryptedTransfer(name="opportunistic", port=5001, size_bytes=256 * 1024, expect="fallback"),
                EncryptedTransfer(
                    name="mandatory-client", port=5002, size_bytes=64 * 1024, client=MANDATORY, expect="refused"
                ),
                EncryptedTransfer(
                    name="mandatory-server", port=5003, size_bytes=64 * 1024, server=MANDATORY, expect="refused"
                ),
            ),
            moments=(ENO_STRIPPED, ENO_FALLBACK, ENO_REFUSED),
            main_view="eno",
            expects=Expects(
                transfers=(("mandatory-client", "refused"), ("mandatory-server", "refused")),
                errors=(("eno", "no_eno_option"),),
                summary="opportunistic ends deliver in the clear; mandatory ends refuse, so nothing crosses unencrypted",
            ),
        ),
        Scenario(
            name="tcpcrypt-tamper",
            description=(
                "r1 flips one payload byte of the 20th data segment towards h2 (fixing the TCP checksum). "
                "The frame fails AEAD authentication: h2 resets the connection and not one corrupted byte "
                "reaches the application; the transfer cannot complete (compare payload-tamper without ENO)."
            ),
            topology="single-path",
            middleboxes=(("r1", lambda: FlipPayloadBytes(dst_port=5001, nth=20, offset=700)),),
            transfers=(EncryptedTransfer(name="tampered", size_bytes=1 * MIB, expect="aborted"),),
            moments=(TEP_AGREED, AEAD_FAILED, TAMPER_RESET),
            main_view="eno",
            expects=Expects(
                transfers=(("tampered", "aborted"),),
                errors=(("tcpcrypt", "authentication_failed"),),
                summary="the tampered frame fails authentication: h2 aborts, not one corrupted byte is delivered",
            ),
        ),
        Scenario(
            name="eno-simultaneous-open",
            description=(
                "h1 and h2 connect to each other at the same instant. h2 sets the b bit and plays ENO role B, "
                "h1 plays role A; tcpcrypt runs over the simultaneously opened connection."
            ),
            topology="single-path",
            transfers=(
                SimultaneousOpenTransfer(
                    name="simultaneous",
                    size_bytes=256 * 1024,
                    client=EnoConfig(teps=(TCPCRYPT_ECDHE_CURVE25519,)),
                    server=EnoConfig(teps=(TCPCRYPT_ECDHE_CURVE25519, TCPCRYPT_ECDHE_P256), passive_role=True),
                ),
            ),
            moments=(SESSION_IDS_EQUAL, ENO_DELIVERED),
            main_view="eno",
        ),
    )
}

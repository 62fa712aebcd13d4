"""The runs for eno_mandatory: h1 sends a secret to h2 through r1, which strips ENO from SYNs.

Topology ``single-path`` (h1 ─ r1 ─ h2, 20 ms one-way). r1 overwrites TCP
options of kinds 69 and 253 in SYN and SYN-ACK segments with NOPs, as
``eno-stripped`` does, so neither end sees the other's ENO option. h1 sends
64 KiB to h2 on port 5001 with the ENO settings the attendee's
``client_config()`` returns; h2 runs ENO with its defaults (opportunistic).
The grader captures both of r1's interfaces and looks for the secret's bytes
in them. A second run without the middlebox checks that the same settings
still encrypt when nothing is in the way.
"""

from __future__ import annotations

from lab.eno.extension import EnoConfig
from lab.scenario import Scenario
from lab.scenario.eno import EncryptedTransfer
from lab.scenario.middlebox import StripTcpOptions
from lab.wire.eno import ENO_KIND, EXPERIMENTAL_KIND

SEED = 8547
SECRET_BYTES = 64 * 1024
PORT = 5001
TRANSFER = "secret"
ROUTER = "r1"
ROUTER_INTERFACES = ("r1-eth0", "r1-eth1")
CLIENT = "h1"
# the EnoConfig fields client_config() may set
ALLOWED_FIELDS = ("policy", "teps", "application_aware", "require_application_aware", "experimental_encoding")


def stripped(client: EnoConfig) -> Scenario:
    """h1 (with ``client``) to h2 through the stripping r1."""
    return Scenario(
        name="eno-mandatory-stripped",
        description="r1 strips ENO options from SYNs; h1 sends a 64 KiB secret to h2.",
        topology="single-path",
        middleboxes=((ROUTER, lambda: StripTcpOptions([ENO_KIND, EXPERIMENTAL_KIND], when="syn")),),
        transfers=(
            EncryptedTransfer(name=TRANSFER, port=PORT, size_bytes=SECRET_BYTES, client=client, expect="refused"),
        ),
        time_limit_s=10.0,
    )


def clean(client: EnoConfig) -> Scenario:
    """The same transfer with nothing in the way: it must be encrypted."""
    return Scenario(
        name="eno-mandatory-clean",
        description="h1 sends a 64 KiB secret to h2 over an untouched path.",
        topology="single-path",
        transfers=(
            EncryptedTransfer(name=TRANSFER, port=PORT, size_bytes=SECRET_BYTES, client=client, expect="encrypted"),
        ),
        time_limit_s=10.0,
    )

"""tcpcrypt wire formats (RFC 8548 §4), plus the draft-02 values of the tcpcryptd daemon.

After TCP-ENO negotiates a tcpcrypt TEP, host A's byte stream starts with
Init1 and host B's with Init2 (§4.1); every later byte is an encryption frame
(§4.2): ``control(1) | clen(2) | ciphertext(clen)``, whose plaintext is
``flags(1) | [urgent(2)] | data``. The AEAD nonce is built from the frame ID
(§4.2.3) in ``lab.tcpcrypt.keys``.

Public keys: X25519/X448 keys travel as their raw 32/56 bytes. P-256/P-521
keys travel as a compressed point (IEEE 1363 E.2.3) behind a two-byte
big-endian ``pubkey_len`` that counts the whole field, prefix included
(RFC 8548 §5 figure: bytes 0-1 ``pubkey_len = L``, pubkey up to byte L-1).
:class:`Init1` and :class:`Init2` hold the point itself; the codecs add and
strip the prefix.

The section at the end holds what the scslab/tcpcrypt daemon (tcpcryptd,
draft-ietf-tcpinc-tcpcrypt-02 with TCP-ENO draft 03) puts on the wire where
it differs from RFC 8548. It is a separate profile, not RFC mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import DecodeError
from lab.wire.buffer import Buffer
from lab.wire.eno import ENO_EXID, EXPERIMENTAL_KIND

# --- TEP identifiers (RFC 8548 §7, Table 4) and key-agreement parameters (§5) ------------

TCPCRYPT_ECDHE_P256 = 0x21
TCPCRYPT_ECDHE_P521 = 0x22
TCPCRYPT_ECDHE_CURVE25519 = 0x23  # REQUIRED (RFC 8548 §5, Table 2)
TCPCRYPT_ECDHE_CURVE448 = 0x24  # RECOMMENDED

N_A_LEN = 32  # RFC 8548 §5
N_B_LEN = 32
K_LEN = 32
PUBKEY_LEN_FIELD = 2  # the big-endian pubkey_len before a P-256/P-521 point (RFC 8548 §5)


@dataclass(frozen=True, slots=True)
class TepParams:
    """What a tcpcrypt TEP fixes on the wire (RFC 8548 §5)."""

    tep_id: int
    name: str
    point_len: int  # the public key itself: compressed point or raw X25519/X448 key
    length_prefixed: bool  # P-256/P-521 keys carry pubkey_len
    shared_secret_len: int  # ES: x-coordinate (IEEE 1363 ECSVDP-DH) or X25519/X448 output

    @property
    def wire_len(self) -> int:
        """Bytes the public key takes in Init1/Init2."""
        return self.point_len + (PUBKEY_LEN_FIELD if self.length_prefixed else 0)


TEPS: dict[int, TepParams] = {
    TCPCRYPT_ECDHE_P256: TepParams(TCPCRYPT_ECDHE_P256, "TCPCRYPT_ECDHE_P256", 33, True, 32),
    TCPCRYPT_ECDHE_P521: TepParams(TCPCRYPT_ECDHE_P521, "TCPCRYPT_ECDHE_P521", 67, True, 66),
    TCPCRYPT_ECDHE_CURVE25519: TepParams(TCPCRYPT_ECDHE_CURVE25519, "TCPCRYPT_ECDHE_Curve25519", 32, False, 32),
    TCPCRYPT_ECDHE_CURVE448: TepParams(TCPCRYPT_ECDHE_CURVE448, "TCPCRYPT_ECDHE_Curve448", 56, False, 56),
}

# --- AEAD algorithms (RFC 8548 §6 Table 3, §7 Table 5): two-byte identifiers ----------------

AEAD_AES_128_GCM = 0x0001  # REQUIRED
AEAD_AES_256_GCM = 0x0002  # RECOMMENDED
AEAD_CHACHA20_POLY1305 = 0x0010  # RECOMMENDED
AEAD_TAG_LEN = 16  # RFC 5116 §5.1-5.2, RFC 8439 §2.8


@dataclass(frozen=True, slots=True)
class AeadParams:
    aead_id: int
    name: str
    ae_key_len: int
    ae_nonce_len: int
    tag_len: int = AEAD_TAG_LEN


AEADS: dict[int, AeadParams] = {
    AEAD_AES_128_GCM: AeadParams(AEAD_AES_128_GCM, "AEAD_AES_128_GCM", 16, 12),
    AEAD_AES_256_GCM: AeadParams(AEAD_AES_256_GCM, "AEAD_AES_256_GCM", 32, 12),
    AEAD_CHACHA20_POLY1305: AeadParams(AEAD_CHACHA20_POLY1305, "AEAD_CHACHA20_POLY1305", 32, 12),
}

# --- constants (RFC 8548 §4.3, Table 1) --------------------------------------------------------

CONST_NEXTK = 0x01
CONST_SESSID = 0x02
CONST_REKEY = 0x03
CONST_KEY_A = 0x04
CONST_KEY_B = 0x05
CONST_RESUME = 0x06
INIT1_MAGIC = 0x15101A0E
INIT2_MAGIC = 0x097105E0

# RFC 8548 §4.2: control byte and plaintext flags ("bit 0" is the least significant)
CONTROL_REKEY = 0x01
CONTROL_RESERVED_MASK = 0xFE  # cres: send 0, ignore on receive
FLAG_FINP = 0x01
FLAG_URGP = 0x02
FLAGS_RESERVED_MASK = 0xFC  # fres: send 0, ignore on receive
FRAME_HEADER_LEN = 3  # control + clen; also the associated data (§4.2.2)
MAX_CIPHERTEXT_LEN = 0xFFFF  # clen is 16 bits (§3.6: ciphertext < 2^16 bytes)
FRAME_OFFSET_LEN = 8  # §4.2.3

# RFC 8548 §3.5: session resumption suboption data
RESUME_ID_LEN = 18  # resume[i] = CPRF(ss[i], CONST_RESUME, 18)
RESUME_HALF_LEN = 9  # each host sends one half
RESUME_NONCE_MAX = 8  # nonce_a / nonce_b: 0..8 bytes

INIT1_FIXED_LEN = 9  # magic, message_len, nciphers (RFC 8548 §4.1)
INIT2_FIXED_LEN = 10  # magic, message_len, sym_cipher


def tep_params(tep_id: int) -> TepParams:
    """Raises ValueError for a TEP identifier that is not a tcpcrypt TEP."""
    try:
        return TEPS[tep_id]
    except KeyError:
        raise ValueError(f"0x{tep_id:02x} is not a tcpcrypt TEP identifier") from None


def aead_params(aead_id: int) -> AeadParams:
    """Raises ValueError for an unknown AEAD identifier."""
    try:
        return AEADS[aead_id]
    except KeyError:
        raise ValueError(f"0x{aead_id:04x} is not a tcpcrypt AEAD algorithm") from None


# --- key-exchange messages (RFC 8548 §4.1) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Init1:
    """Host A's first bytes: ``INIT1_MAGIC, sym_cipher_list, N_A, Pub_A`` (RFC 8548 §3.3)."""

    sym_cipher_list: tuple[int, ...]
    n_a: bytes
    pub_a: bytes  # the point/key, without pubkey_len
    ignored: bytes = b""  # senders MUST leave it empty; receivers MUST accept and ignore it


@dataclass(frozen=True, slots=True)
class Init2:
    """Host B's first bytes: ``INIT2_MAGIC, sym_cipher, N_B, Pub_B`` (RFC 8548 §3.3)."""

    sym_cipher: int
    n_b: bytes
    pub_b: bytes
    ignored: bytes = b""


def _pull_public_key(buf: Buffer, params: TepParams, field: str, *, end: int) -> bytes:
    if not params.length_prefixed:
        if end - buf.tell() < params.point_len:
            raise DecodeError(f"{params.name} key needs {params.point_len} bytes", field=field, offset=buf.tell())
        return buf.pull_bytes(params.point_len, field)
    start = buf.tell()
    if end - start < PUBKEY_LEN_FIELD:
        raise DecodeError("no room for pubkey_len", field=f"{field}.pubkey_len", offset=start)
    total = buf.pull_u16(f"{field}.pubkey_len")
    if total <= PUBKEY_LEN_FIELD or start + total > end:
        raise DecodeError(
            f"pubkey_len {total} does not fit the message ({end - start} bytes left)",
            field=f"{field}.pubkey_len",
            offset=start,
        )
    return buf.pull_bytes(total - PUBKEY_LEN_FIELD, field)


def _push_public_key(key: bytes, params: TepParams) -> bytes:
    if not params.length_prefixed:
        if len(key) != params.point_len:
            raise ValueError(f"{params.name} key must be {params.point_len} bytes, is {len(key)}")
        return key
    return (len(key) + PUBKEY_LEN_FIELD).to_bytes(2, "big") + key


def _pull_message_len(buf: Buffer, start: int, minimum: int) -> int:
    """message_len, checked against the fixed part and the bytes available; returns the end position."""
    message_len = buf.pull_u32("message_len")
    if message_len < minimum:
        raise DecodeError(f"message_len {message_len} shorter than {minimum}", field="message_len", offset=start + 4)
    if message_len > buf.remaining() + 8:
        raise DecodeError(
            f"truncated: message_len {message_len}, have {buf.remaining() + 8}", field="message_len", offset=start + 4
        )
    return start + message_len


def _pull_init1(buf: Buffer, *, tep: int, cipher_size: int) -> Init1:
    params = tep_params(tep)
    start = buf.tell()
    magic = buf.pull_u32("magic")
    if magic != INIT1_MAGIC:
        raise DecodeError(f"0x{magic:08x} is not INIT1_MAGIC", field="magic", offset=start)
    end = _pull_message_len(buf, start, INIT1_FIXED_LEN + N_A_LEN + params.wire_len)
    nciphers = buf.pull_u8("nciphers")
    if buf.tell() + nciphers * cipher_size + N_A_LEN + params.wire_len > end:
        raise DecodeError(f"{nciphers} ciphers do not fit message_len", field="nciphers", offset=buf.tell() - 1)
    pull = buf.pull_u16 if cipher_size == 2 else buf.pull_u8
    sym_cipher_list = tuple(pull(f"sym_cipher[{i}]") for i in range(nciphers))
    n_a = buf.pull_bytes(N_A_LEN, "n_a")
    pub_a = _pull_public_key(buf, params, "pub_a", end=end)
    ignored = buf.pull_bytes(end - buf.tell(), "ignored")
    return Init1(sym_cipher_list=sym_cipher_list, n_a=n_a, pub_a=pub_a, ignored=ignored)


def _push_init1(msg: Init1, *, tep: int, cipher_size: int) -> bytes:
    params = tep_params(tep)
    if len(msg.n_a) != N_A_LEN:
        raise ValueError(f"N_A must be {N_A_LEN} bytes, is {len(msg.n_a)}")
    if len(msg.sym_cipher_list) > 0xFF:
        raise ValueError(f"{len(msg.sym_cipher_list)} ciphers do not fit nciphers")
    body = b"".join(
        (
            bytes((len(msg.sym_cipher_list),)),
            b"".join(c.to_bytes(cipher_size, "big") for c in msg.sym_cipher_list),
            msg.n_a,
            _push_public_key(msg.pub_a, params),
            msg.ignored,
        )
    )
    return INIT1_MAGIC.to_bytes(4, "big") + (8 + len(body)).to_bytes(4, "big") + body


def _pull_init2(buf: Buffer, *, tep: int, cipher_size: int) -> Init2:
    params = tep_params(tep)
    start = buf.tell()
    magic = buf.pull_u32("magic")
    if magic != INIT2_MAGIC:
        raise DecodeError(f"0x{magic:08x} is not INIT2_MAGIC", field="magic", offset=start)
    end = _pull_message_len(buf, start, 8 + cipher_size + N_B_LEN + params.wire_len)
    sym_cipher = buf.pull_u16("sym_cipher") if cipher_size == 2 else buf.pull_u8("sym_cipher")
    n_b = buf.pull_bytes(N_B_LEN, "n_b")
    pub_b = _pull_public_key(buf, params, "pub_b", end=end)
    ignored = buf.pull_bytes(end - buf.tell(), "ignored")
    return Init2(sym_cipher=sym_cipher, n_b=n_b, pub_b=pub_b, ignored=ignored)


def _push_init2(msg: Init2, *, tep: int, cipher_size: int) -> bytes:
    params = tep_params(tep)
    if len(msg.n_b) != N_B_LEN:
        raise ValueError(f"N_B must be {N_B_LEN} bytes, is {len(msg.n_b)}")
    body = b"".join(
        (
            msg.sym_cipher.to_bytes(cipher_size, "big"),
            msg.n_b,
            _push_public_key(msg.pub_b, params),
            msg.ignored,
        )
    )
    return INIT2_MAGIC.to_bytes(4, "big") + (8 + len(body)).to_bytes(4, "big") + body


def pull_init1(buf: Buffer, *, tep: int) -> Init1:
    """Read Init1 for the negotiated ``tep``, consuming exactly ``message_len`` bytes.

    Raises DecodeError naming ``magic``, ``message_len``, ``nciphers``,
    ``sym_cipher[i]``, ``n_a``, ``pub_a`` or ``pub_a.pubkey_len``; ValueError
    if ``tep`` is not a tcpcrypt TEP.
    """
    return _pull_init1(buf, tep=tep, cipher_size=2)


def push_init1(msg: Init1, *, tep: int) -> bytes:
    """Encode Init1 (message_len computed); raises ValueError for wrong field sizes."""
    return _push_init1(msg, tep=tep, cipher_size=2)


def pull_init2(buf: Buffer, *, tep: int) -> Init2:
    """Read Init2, consuming exactly ``message_len`` bytes; raises DecodeError naming the field."""
    return _pull_init2(buf, tep=tep, cipher_size=2)


def push_init2(msg: Init2, *, tep: int) -> bytes:
    """Encode Init2 (message_len computed); raises ValueError for wrong field sizes."""
    return _push_init2(msg, tep=tep, cipher_size=2)


# --- encryption frames (RFC 8548 §4.2) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """``control | clen | ciphertext``; ``reserved`` is the cres bits as a 7-bit number."""

    ciphertext: bytes
    rekey: bool = False
    reserved: int = 0

    @property
    def control(self) -> int:
        return (self.reserved << 1) | (CONTROL_REKEY if self.rekey else 0)

    @property
    def associated_data(self) -> bytes:
        """The AEAD associated data: ``control | clen`` (RFC 8548 §4.2.2)."""
        return associated_data(self.control, len(self.ciphertext))


def associated_data(control: int, clen: int) -> bytes:
    """RFC 8548 §4.2.2: the frame's control byte and ciphertext length."""
    return bytes((control,)) + clen.to_bytes(2, "big")


def pull_frame(buf: Buffer) -> Frame:
    """Read one frame; raises DecodeError naming ``control``, ``clen`` or ``ciphertext`` (also when truncated)."""
    control = buf.pull_u8("control")
    clen = buf.pull_u16("clen")
    ciphertext = buf.pull_bytes(clen, "ciphertext")
    return Frame(ciphertext=ciphertext, rekey=bool(control & CONTROL_REKEY), reserved=control >> 1)


def push_frame(frame: Frame) -> bytes:
    """Encode a frame; raises ValueError if the ciphertext reaches 2^16 bytes or reserved exceeds 7 bits."""
    if len(frame.ciphertext) > MAX_CIPHERTEXT_LEN:
        raise ValueError(f"ciphertext of {len(frame.ciphertext)} bytes does not fit clen")
    if not 0 <= frame.reserved <= 0x7F:
        raise ValueError(f"control reserved bits {frame.reserved} do not fit 7 bits")
    return bytes((frame.control,)) + len(frame.ciphertext).to_bytes(2, "big") + frame.ciphertext


@dataclass(frozen=True, slots=True)
class Plaintext:
    """What a frame's ciphertext decrypts to (RFC 8548 §4.2.1).

    ``urgent`` is present exactly when URGp is set: the offset from the
    frame's beginning to the last byte of urgent data (§3.7). ``reserved``
    is the fres bits as a 6-bit number.
    """

    data: bytes = b""
    fin: bool = False
    urgent: int | None = None
    reserved: int = 0

    @property
    def flags(self) -> int:
        return (self.reserved << 2) | (FLAG_URGP if self.urgent is not None else 0) | (FLAG_FINP if self.fin else 0)


def pull_plaintext(buf: Buffer) -> Plaintext:
    """Read a decrypted plaintext value; raises DecodeError naming ``flags`` or ``urgent``."""
    flags = buf.pull_u8("flags")
    urgent = buf.pull_u16("urgent") if flags & FLAG_URGP else None
    data = buf.pull_rest()
    return Plaintext(data=data, fin=bool(flags & FLAG_FINP), urgent=urgent, reserved=flags >> 2)


def push_plaintext(plaintext: Plaintext) -> bytes:
    """Encode a plaintext value; raises ValueError for an urgent offset or reserved bits out of range."""
    if not 0 <= plaintext.reserved <= 0x3F:
        raise ValueError(f"flags reserved bits {plaintext.reserved} do not fit 6 bits")
    if plaintext.urgent is not None and not 0 <= plaintext.urgent <= 0xFFFF:
        raise ValueError(f"urgent offset {plaintext.urgent} does not fit 16 bits")
    urgent = plaintext.urgent.to_bytes(2, "big") if plaintext.urgent is not None else b""
    return bytes((plaintext.flags,)) + urgent + plaintext.data


def frame_id(offset: int, ae_nonce_len: int = 12) -> bytes:
    """RFC 8548 §4.2.3: the frame's 8-byte big-endian offset, left-padded with zeros to ae_nonce_len.

    ``offset`` is the zero-indexed position of the frame's first byte in the
    sender's TCP byte stream (RFC 8548 §3.6), i.e. counted from the first
    payload byte after the SYN, Init1/Init2 included. Raises ValueError if it
    does not fit 64 bits.
    """
    if not 0 <= offset < 1 << 64:
        raise ValueError(f"frame offset {offset} does not fit 64 bits")
    return offset.to_bytes(FRAME_OFFSET_LEN, "big").rjust(ae_nonce_len, b"\x00")


# --- the draft-02 profile of the tcpcryptd reference daemon (scslab/tcpcrypt) ---------------------
#
# tcpcryptd (scslab/tcpcrypt, last commit 2016, "Update to eno-03 and tcpcrypt-02")
# differs from RFC 8547/8548 in the points below, read from its src/tcpcrypt.c,
# src/crypto_reg.c and src/crypto_ecdhe.c. Use these only to talk to it.

DRAFT02_ENO_KIND = EXPERIMENTAL_KIND  # always kind 253 ...
DRAFT02_ENO_EXID = ENO_EXID  # ... with ExID 0x454E
DRAFT02_TEP_ECDHE_P256 = 0x21  # the only two TEPs it registers
DRAFT02_TEP_ECDHE_P521 = 0x22
DRAFT02_AEAD_AES_128_GCM = 0x01  # one-byte cipher identifiers in Init1/Init2
DRAFT02_AEAD_AES_256_GCM = 0x02
DRAFT02_CONST_KEY_C = 0x04  # client/server names; RFC 8548 uses roles A/B
DRAFT02_CONST_KEY_S = 0x05
DRAFT02_UNCOMPRESSED_POINT_LEN = {DRAFT02_TEP_ECDHE_P256: 65, DRAFT02_TEP_ECDHE_P521: 133}
# Each SYN's ENO option is followed in the transcript by an empty ENO option.
DRAFT02_TRANSCRIPT_TERMINATOR = bytes((EXPERIMENTAL_KIND, 4, ENO_EXID >> 8, ENO_EXID & 0xFF))


def draft02_transcript(option_a: bytes, option_b: bytes) -> bytes:
    """tcpcryptd's ENO transcript: each SYN's option verbatim, each followed by ``fd 04 45 4e``."""
    return option_a + DRAFT02_TRANSCRIPT_TERMINATOR + option_b + DRAFT02_TRANSCRIPT_TERMINATOR


def pull_draft02_init1(buf: Buffer, *, tep: int) -> Init1:
    """tcpcryptd's Init1: like RFC 8548 but one-byte cipher identifiers and an uncompressed point.

    (The daemon itself rejects any trailing bytes; this parser keeps them in ``ignored``.)
    """
    return _pull_init1(buf, tep=tep, cipher_size=1)


def push_draft02_init1(msg: Init1, *, tep: int) -> bytes:
    return _push_init1(msg, tep=tep, cipher_size=1)


def pull_draft02_init2(buf: Buffer, *, tep: int) -> Init2:
    """tcpcryptd's Init2: one-byte ``sym_cipher``; otherwise as RFC 8548."""
    return _pull_init2(buf, tep=tep, cipher_size=1)


def push_draft02_init2(msg: Init2, *, tep: int) -> bytes:
    return _push_init2(msg, tep=tep, cipher_size=1)

"""ML-KEM encapsulation with given randomness (FIPS 203 Algorithms 14 and 17), in plain Python.

``cryptography`` draws the 32-octet message m of ML-KEM.Encaps from the OS,
so a responder using it produces a different ciphertext every run. The
simulator wants a run to repeat from its seed, so this module implements
the deterministic core, ML-KEM.Encaps_internal(ek, m) (FIPS 203 §6.2,
Algorithm 17), with m drawn from the run's ``random.Random``::

    (K, r) = G(m | H(ek))                 G = SHA3-512, H = SHA3-256
    c      = K-PKE.Encrypt(ek, m, r)      Algorithm 14

    K-PKE.Encrypt: t^ = ByteDecode12(ek[:384k]), rho = ek[384k:]
        A^[i][j] = SampleNTT(rho | j | i)                       Algorithm 7
        y[i]  = CBD_eta1(PRF(r, N++)), e1[i] = CBD_eta2(PRF(r, N++)), e2 = CBD_eta2(PRF(r, N))
        u = NTT^-1(A^T o NTT(y)) + e1,  v = NTT^-1(t^T o NTT(y)) + e2 + Decompress1(m)
        c = ByteEncode_du(Compress_du(u)) | ByteEncode_dv(Compress_dv(v))

Only the responder's encapsulation is here; key generation and
decapsulation stay with ``cryptography`` (which also checks the
encapsulation key first), and its decapsulation of these ciphertexts is
what the tests compare against. Parameters (FIPS 203 §8, Table 2):
ML-KEM-768 k=3, eta1=eta2=2, du=10, dv=4; ML-KEM-1024 k=4, eta1=eta2=2,
du=11, dv=5. About 20 ms per encapsulation.
"""

from __future__ import annotations

import hashlib

Q = 3329
N = 256
ZETA = 17  # a primitive 256th root of unity mod q
PARAMETERS = {36: (3, 2, 2, 10, 4), 37: (4, 2, 2, 11, 5)}  # Transform ID -> (k, eta1, eta2, du, dv)


def _bitrev7(i: int) -> int:
    return int(f"{i:07b}"[::-1], 2)


_ZETAS = [pow(ZETA, _bitrev7(i), Q) for i in range(128)]
_GAMMAS = [pow(ZETA, 2 * _bitrev7(i) + 1, Q) for i in range(128)]
_N_INV = 3303  # 128^-1 mod q


def _ntt(f: list[int]) -> list[int]:
    f = list(f)
    i = 1
    length = 128
    while length >= 2:
        for start in range(0, N, 2 * length):
            zeta = _ZETAS[i]
            i += 1
            for j in range(start, start + length):
                t = zeta * f[j + length] % Q
                f[j + length] = (f[j] - t) % Q
                f[j] = (f[j] + t) % Q
        length //= 2
    return f


def _ntt_inverse(f: list[int]) -> list[int]:
    f = list(f)
    i = 127
    length = 2
    while length <= 128:
        for start in range(0, N, 2 * length):
            zeta = _ZETAS[i]
            i -= 1
            for j in range(start, start + length):
                t = f[j]
                f[j] = (t + f[j + length]) % Q
                f[j + length] = zeta * (f[j + length] - t) % Q
        length *= 2
    return [x * _N_INV % Q for x in f]


def _multiply_ntts(f: list[int], g: list[int]) -> list[int]:
    h = [0] * N
    for i in range(128):
        a0, a1, b0, b1 = f[2 * i], f[2 * i + 1], g[2 * i], g[2 * i + 1]
        h[2 * i] = (a0 * b0 + a1 * b1 * _GAMMAS[i]) % Q
        h[2 * i + 1] = (a0 * b1 + a1 * b0) % Q
    return h


def _add(f: list[int], g: list[int]) -> list[int]:
    return [(a + b) % Q for a, b in zip(f, g, strict=True)]


def _sample_ntt(seed: bytes) -> list[int]:
    """Algorithm 7: rejection sampling from SHAKE128(seed)."""
    want = 840
    while True:
        stream = hashlib.shake_128(seed).digest(want)
        coefficients: list[int] = []
        for pos in range(0, len(stream) - 2, 3):
            c0, c1, c2 = stream[pos], stream[pos + 1], stream[pos + 2]
            for d in (c0 + 256 * (c1 % 16), c1 // 16 + 16 * c2):
                if d < Q and len(coefficients) < N:
                    coefficients.append(d)
            if len(coefficients) == N:
                return coefficients
        want *= 2  # a longer prefix of the same XOF output


def _sample_cbd(data: bytes, eta: int) -> list[int]:
    """Algorithm 8: centred binomial distribution from 64*eta octets."""
    bits = int.from_bytes(data, "little")
    out = []
    for i in range(N):
        chunk = bits >> (2 * i * eta)
        x = (chunk & ((1 << eta) - 1)).bit_count()
        y = ((chunk >> eta) & ((1 << eta) - 1)).bit_count()
        out.append((x - y) % Q)
    return out


def _prf(eta: int, s: bytes, b: int) -> bytes:
    return hashlib.shake_256(s + bytes((b,))).digest(64 * eta)


def _byte_encode(f: list[int], d: int) -> bytes:
    value = 0
    for i, a in enumerate(f):
        value |= a << (d * i)
    return value.to_bytes(32 * d, "little")


def _byte_decode(data: bytes, d: int) -> list[int]:
    value = int.from_bytes(data, "little")
    mask = (1 << d) - 1
    out = [(value >> (d * i)) & mask for i in range(N)]
    return [x % Q for x in out] if d == 12 else out


def _compress(x: int, d: int) -> int:
    return ((x << (d + 1)) + Q) // (2 * Q) % (1 << d)  # round(2^d / q * x) mod 2^d, half up


def _decompress(y: int, d: int) -> int:
    return (y * Q * 2 + (1 << d)) // (1 << (d + 1))  # round(q / 2^d * y), half up


def encapsulate_with(method_id: int, encapsulation_key: bytes, m: bytes) -> tuple[bytes, bytes]:
    """(ciphertext, shared secret K) of ML-KEM.Encaps_internal(ek, m) for Transform ID 36 or 37.

    ``encapsulation_key`` must already have passed FIPS 203 §7.2's checks
    (lab.ike.mlkem does that with ``cryptography``). Raises ValueError for
    another method, a wrong key length or an m that is not 32 octets.
    """
    if method_id not in PARAMETERS:
        raise ValueError(f"no ML-KEM parameters for Transform ID {method_id}")
    k, eta1, eta2, du, dv = PARAMETERS[method_id]
    if len(encapsulation_key) != 384 * k + 32:
        raise ValueError(f"encapsulation key of {len(encapsulation_key)} octets, expected {384 * k + 32}")
    if len(m) != 32:
        raise ValueError(f"m of {len(m)} octets, expected 32")
    g = hashlib.sha3_512(m + hashlib.sha3_256(encapsulation_key).digest()).digest()
    shared_secret, r = g[:32], g[32:]
    t_hat = [_byte_decode(encapsulation_key[384 * i : 384 * (i + 1)], 12) for i in range(k)]
    rho = encapsulation_key[384 * k :]
    a_hat = [[_sample_ntt(rho + bytes((j, i))) for j in range(k)] for i in range(k)]
    counter = 0
    y = []
    for _ in range(k):
        y.append(_sample_cbd(_prf(eta1, r, counter), eta1))
        counter += 1
    e1 = []
    for _ in range(k):
        e1.append(_sample_cbd(_prf(eta2, r, counter), eta2))
        counter += 1
    e2 = _sample_cbd(_prf(eta2, r, counter), eta2)
    y_hat = [_ntt(p) for p in y]
    u = []
    for i in range(k):
        acc = [0] * N
        for j in range(k):
            acc = _add(acc, _multiply_ntts(a_hat[j][i], y_hat[j]))  # A^T: row i of A^T is column i of A
        u.append(_add(_ntt_inverse(acc), e1[i]))
    acc = [0] * N
    for j in range(k):
        acc = _add(acc, _multiply_ntts(t_hat[j], y_hat[j]))
    mu = [_decompress(b, 1) for b in _byte_decode(m, 1)]
    v = _add(_add(_ntt_inverse(acc), e2), mu)
    c1 = b"".join(_byte_encode([_compress(x, du) for x in p], du) for p in u)
    c2 = _byte_encode([_compress(x, dv) for x in v], dv)
    return c1 + c2, shared_secret

"""Independent check of the envelope vectors (docs/test-vectors.json, `envelopes`),
written from docs/formats/envelopes.md alone: CBOR, HKDF, the HPKE key schedule
(RFC 9180), DHKEM(X25519) and X-Wing by hand, over the primitives of the `cryptography`
package (X25519, Ed25519, ChaCha20-Poly1305) and, for ML-KEM-768, the pure-Python
`kyber-py` package. Shares no code with keyd. Used by check_test_vectors.py.
"""
import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

RAW_PUB = dict(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
RAW_PRIV = dict(encoding=serialization.Encoding.Raw, format=serialization.PrivateFormat.Raw,
                encryption_algorithm=serialization.NoEncryption())


# --- CBOR: the subset keyd's formats use (maps, arrays, text, bytes, unsigned),
# definite lengths, shortest heads, map keys in the order written ---

def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
    raise ValueError("too long")


def cbor(value):
    """Encodes a bool, an int, bytes, str, list or dict (in its insertion order)."""
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if value is None:
        raise TypeError("not used by envelopes")
    if isinstance(value, int):
        return _head(0, value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode()
        return _head(3, len(raw)) + raw
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(cbor(v) for v in value)
    if isinstance(value, dict):
        return _head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())
    raise TypeError(type(value))


def uncbor_at(data, start):
    """Decodes the item at `start` of the subset, keeping map order: (value, end). The
    item must be in the canonical encoding (encoding it again gives the same bytes)."""
    def item(i):
        major, info = data[i] >> 5, data[i] & 31
        i += 1
        if info < 24:
            n = info
        else:
            size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
            n = int.from_bytes(data[i:i + size], "big")
            i += size
        if major == 0:
            return n, i
        if major == 7 and info in (20, 21):
            return info == 21, i
        if major in (2, 3):
            raw = data[i:i + n]
            assert len(raw) == n, "truncated"
            return (raw if major == 2 else raw.decode()), i + n
        if major == 4:
            out = []
            for _ in range(n):
                v, i = item(i)
                out.append(v)
            return out, i
        if major == 5:
            out = {}
            for _ in range(n):
                k, i = item(i)
                out[k], i = item(i)
            return out, i
        raise ValueError(f"major type {major} is not used by keyd's formats")
    value, end = item(start)
    assert cbor(value) == data[start:end], "not the canonical encoding"
    return value, end


def uncbor(data):
    """Decodes exactly one item."""
    value, end = uncbor_at(data, 0)
    assert end == len(data), "bytes after the item"
    return value


# --- HKDF and the keys of an epoch key ---

def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk, info, length):
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def key_of(k, label):
    return hkdf_expand(hkdf_extract(b"keyd/v1", k), label, 32)


def key_id(k):
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(key_of(k, b"ed25519"))
    return hashlib.sha256(ed.public_key().public_bytes(**RAW_PUB)).digest()[:16]


# --- HPKE (RFC 9180), base mode, HKDF-SHA256, ChaCha20Poly1305 ---

def labeled_extract(suite, salt, label, ikm):
    return hkdf_extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite, prk, label, info, length):
    return hkdf_expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def hpke_open(kem_id, shared_secret, info, aad, ct):
    suite = b"HPKE" + kem_id.to_bytes(2, "big") + (1).to_bytes(2, "big") + (3).to_bytes(2, "big")
    psk_id_hash = labeled_extract(suite, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(suite, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(suite, shared_secret, b"secret", b"")
    key = labeled_expand(suite, secret, b"key", context, 32)
    nonce = labeled_expand(suite, secret, b"base_nonce", context, 12)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, aad)


def dh_x25519(scalar, point):
    return x25519.X25519PrivateKey.from_private_bytes(scalar).exchange(
        x25519.X25519PublicKey.from_public_bytes(point))


def x25519_public(scalar):
    return x25519.X25519PrivateKey.from_private_bytes(scalar).public_key().public_bytes(**RAW_PUB)


DHKEM = b"KEM" + (0x0020).to_bytes(2, "big")


def dhkem_x25519_decap(sk_r, enc):
    dh = dh_x25519(sk_r, enc)
    context = enc + x25519_public(sk_r)
    prk = labeled_extract(DHKEM, b"", b"eae_prk", dh)
    return labeled_expand(DHKEM, prk, b"shared_secret", context, 32)


def dhkem_x25519_derive(ikm):
    prk = labeled_extract(DHKEM, b"", b"dkp_prk", ikm)
    return labeled_expand(DHKEM, prk, b"sk", b"", 32)


# --- X-Wing (KEM 0x647a): DeriveKeyPair of draft-ietf-hpke-pq-03, the X-Wing KEM ---

XWING_LABEL = b"\\.//^\\"


def xwing_keys(ikm):
    """The X-Wing key pair from the epoch key's X-Wing seed: (ML-KEM dk, X25519 sk, public)."""
    from kyber_py.ml_kem import ML_KEM_768
    shake = hashlib.shake_256(ikm + b"HPKE-v1" + b"KEM" + (0x647a).to_bytes(2, "big")
                              + (13).to_bytes(2, "big") + b"DeriveKeyPair" + (32).to_bytes(2, "big"))
    seed = shake.digest(32)
    expanded = hashlib.shake_256(seed).digest(96)
    ek_m, dk_m = ML_KEM_768._keygen_internal(expanded[0:32], expanded[32:64])
    sk_x = expanded[64:96]
    return dk_m, sk_x, ek_m + x25519_public(sk_x)


def xwing_decap(keys, enc):
    from kyber_py.ml_kem import ML_KEM_768
    dk_m, sk_x, public = keys
    ct_m, ct_x = enc[:1088], enc[1088:]
    ss_m = ML_KEM_768.decaps(dk_m, ct_m)
    ss_x = dh_x25519(sk_x, ct_x)
    return hashlib.sha3_256(ss_m + ss_x + ct_x + public[-32:] + XWING_LABEL).digest()


# --- the envelopes ---

def node_key(vector, field, derive, root):
    if f"{field}_node_key" in vector:
        return bytes.fromhex(vector[f"{field}_node_key"])
    return derive(root, vector[field])[0]


def check_sealed(v, k):
    e = uncbor(bytes.fromhex(v["envelope"]))
    header = {f: e[f] for f in ("v", "key", "kid", "ctx", "salt", "nonce") if f in e}
    assert list(e) == list(header) + ["ct"], "field order"
    assert (e["v"] == 2) == ("kid" in e), "version and key id"
    if "kid" in e:
        assert e["kid"] == key_id(k), "key id"
    key = hkdf_expand(hkdf_extract(e["salt"], key_of(k, b"storage")), b"keyd/v1/seal-envelope", 32)
    return ChaCha20Poly1305(key).decrypt(e["nonce"], e["ct"], cbor(header) + context(v, e))


def context(v, e):
    """The context an envelope was bound to: the associated data is the header's CBOR
    followed by it; the header says `ctx: true` exactly when there is one."""
    given = bytes.fromhex(v.get("context", ""))
    assert e.get("ctx", False) == bool(given), "ctx flag and context"
    assert e.get("ctx", True) is True, "ctx is written only when true"
    return given


def check_encrypted(v, k_recipient, k_sender, xwing_ok):
    e = uncbor(bytes.fromhex(v["envelope"]))
    fields = ("v", "suite", "recipient", "recipient_kid", "sender", "sender_kid", "ctx")
    header = {f: e[f] for f in fields if f in e}
    unsigned = dict(header, enc=e["enc"], ct=e["ct"])
    assert list(e) == list(unsigned) + ["signature"], "field order"
    if e["v"] == 2:
        assert e["recipient_kid"] == key_id(k_recipient) and e["sender_kid"] == key_id(k_sender)
    sender = ed25519.Ed25519PrivateKey.from_private_bytes(key_of(k_sender, b"ed25519")).public_key()
    sender.verify(e["signature"], b"keyd/v1/encrypted\x00" + cbor(unsigned))
    if e["suite"] == "x25519-hkdf-sha256-chacha20poly1305":
        sk = key_of(k_recipient, b"x25519")
        shared = dhkem_x25519_decap(sk, e["enc"])
        if "randomness" in v:  # the ephemeral key is DeriveKeyPair(randomness)
            sk_e = dhkem_x25519_derive(bytes.fromhex(v["randomness"]))
            assert x25519_public(sk_e) == e["enc"], "ephemeral key from the recorded randomness"
        return hpke_open(0x0020, shared, b"keyd/v1/encrypt", cbor(header) + context(v, e), e["ct"])
    assert e["suite"] == "xwing-hkdf-sha256-chacha20poly1305", e["suite"]
    if not xwing_ok:
        return None
    keys = xwing_keys(key_of(k_recipient, b"x-wing"))
    assert keys[2].hex() == v["recipient_x_wing_public"], "X-Wing public key"
    shared = xwing_decap(keys, e["enc"])
    return hpke_open(0x647a, shared, b"keyd/v1/encrypt", cbor(header) + context(v, e), e["ct"])


def check(section, derive):
    """Checks every envelope vector; returns (checked, skipped X-Wing vectors)."""
    try:
        import kyber_py.ml_kem  # noqa: F401
        xwing_ok = True
    except ImportError:
        xwing_ok = False
    root = bytes.fromhex(section["root_hex"])
    checked = skipped = 0
    for v in section["vectors"]:
        want = bytes.fromhex(v["plaintext"])
        if v["kind"] == "sealed":
            got = check_sealed(v, node_key(v, "key", derive, root))
        else:
            got = check_encrypted(v, node_key(v, "recipient", derive, root),
                                  node_key(v, "sender", derive, root), xwing_ok)
        if got is None:
            skipped += 1
            continue
        assert got == want, v["name"]
        checked += 1
    return checked, skipped

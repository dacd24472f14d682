#!/usr/bin/env python3
"""Independent check of docs/test-vectors.json, written from DESIGN.md sections 2 and 4 and
docs/formats/ alone (derivation here, envelopes in check_envelopes.py, chains in
check_chain.py).

Uses only Python's hashlib/hmac, the `cryptography` package (Ed25519, X25519,
ChaCha20-Poly1305) and, for the X-Wing envelopes, the pure-Python `kyber-py` package
(ML-KEM-768), so it shares no code with keyd. Usage:
python3 docs/check_test_vectors.py [docs/test-vectors.json]   (pip install cryptography kyber-py==1.2.0)
Without kyber-py the X-Wing public keys and envelopes are reported as not checked, and
the exit status is 2.
"""
import hashlib
import hmac
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

RAW = dict(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
HARDENED = 0x80000000


def hmac512(key, msg):
    return hmac.new(key, msg, hashlib.sha512).digest()


def hkdf_sha256(ikm, info, salt=b"keyd/v1", length=32):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def parse(path):
    parts = path.split("/")
    assert parts[0] == "m"
    out = []
    for p in parts[1:]:
        assert p.endswith("'")
        out.append(int(p[:-1]))
    return out


def child(k, c, index):
    i = hmac512(c, b"\x00" + k + (index | HARDENED).to_bytes(4, "big"))
    return i[:32], i[32:]


def derive(root, path):
    indexes = parse(path)
    if not indexes:
        i = hmac512(root, b"keyd/v1/root-identity")
        return i[:32], i[32:]
    i = hmac512(root, b"keyd/v1/child" + (indexes[0] | HARDENED).to_bytes(4, "big"))
    k, c = i[:32], i[32:]
    for index in indexes[1:]:
        k, c = child(k, c, index)
    return k, c


def publics(k):
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(hkdf_sha256(k, b"ed25519")).public_key().public_bytes(**RAW)
    x = x25519.X25519PrivateKey.from_private_bytes(hkdf_sha256(k, b"x25519")).public_key().public_bytes(**RAW)
    return ed, x, hashlib.sha256(ed).digest()[:16]


def main():
    doc = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "docs/test-vectors.json"))
    n = 0
    for vector in doc["slip10_ed25519"]["vectors"]:
        seed = bytes.fromhex(vector["seed"])
        master = hmac512(b"ed25519 seed", seed)
        for row in vector["chain"]:
            k, c = master[:32], master[32:]
            for index in parse(row["path"]):
                k, c = child(k, c, index)
            assert k.hex() == row["private"] and c.hex() == row["chain_code"], row["path"]
            pub = ed25519.Ed25519PrivateKey.from_private_bytes(k).public_key().public_bytes(**RAW)
            assert "00" + pub.hex() == row["public"], row["path"]
            n += 1
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import check_bundles
    import check_ceremony
    import check_chain
    import check_envelopes
    try:
        import kyber_py.ml_kem  # noqa: F401
        x_wing = True
    except ImportError:
        x_wing = False
    for root in doc["keyd"]["roots"]:
        secret = bytes.fromhex(root["root_hex"])
        for key in root["keys"]:
            k, c = derive(secret, key["path"])
            ed, x, kid = publics(k)
            got = dict(node_key=k.hex(), chain_code=c.hex(), ed25519_public=ed.hex(),
                       x25519_public=x.hex(), key_id=kid.hex())
            if x_wing:
                # HPKE DeriveKeyPair (KEM 0x647a) of the X-Wing seed HKDF(k, "x-wing").
                xw = check_envelopes.xwing_keys(check_envelopes.key_of(k, b"x-wing"))[2]
                got["x_wing_public"] = xw.hex()
            for field, value in got.items():
                assert key[field] == value, (root["name"], key["path"], field)
            n += 1
    opened, skipped = check_envelopes.check(doc["envelopes"], derive)
    chains = check_chain.check(doc["chain"])
    bundles = check_bundles.check(doc["bundle"])
    first = bytes.fromhex(doc["keyd"]["roots"][0]["root_hex"])
    ceremonies = check_ceremony.check(doc["ceremony"], publics(derive(first, "m")[0]))
    print(f"{n} key vectors, {opened} envelopes, {chains} chains, {bundles} bundle and"
          f" {ceremonies} transcript agree with an independent implementation")
    if skipped or not x_wing:
        print(f"X-Wing public keys and {skipped} X-Wing envelopes not checked: pip install kyber-py")
        sys.exit(2)


if __name__ == "__main__":
    main()

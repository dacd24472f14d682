"""Independent check of the bundle vector (docs/test-vectors.json, `bundle`), written
from docs/formats/bundles.md alone: the chain inside verified by check_chain.py, the
secret opened with the RFC 9180 key schedule and DHKEM(X25519) of check_envelopes.py, and
checked against the certified keys. Shares no code with keyd.
"""
import check_chain
from check_envelopes import (cbor, dhkem_x25519_decap, dhkem_x25519_derive, hpke_open,
                             key_of, uncbor, x25519_public)
from cryptography.hazmat.primitives.asymmetric import ed25519

from check_envelopes import RAW_PUB


def check(v):
    b = uncbor(bytes.fromhex(v["bundle"]))
    fields = ["format", "name", "path", "keys", "install_key", "enc", "sealed", "chain"]
    assert list(b) == fields, "field order"
    assert b["format"] == "keyd-branch-bundle/v1"
    install = bytes.fromhex(v["install_secret"])
    assert b["install_key"] == x25519_public(install), "sealed to this install key"
    _, chain = check_chain.verify_file(b["chain"])
    path = check_chain.parse(b["path"])
    assert chain.key_sets.get(path) == b["keys"], "certified with these keys"
    assert not chain.is_revoked(path), "not revoked"
    aad = cbor({k: b[k] for k in fields[:5]})
    shared = dhkem_x25519_decap(install, b["enc"])
    plain = hpke_open(0x0020, shared, b"keyd/v1/branch-bundle", aad, b["sealed"])
    k, c = plain[:32], plain[32:]
    assert len(plain) == 64 and k.hex() == v["node_key"] and c.hex() == v["chain_code"]
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(key_of(k, b"ed25519"))
    assert ed.public_key().public_bytes(**RAW_PUB) == b["keys"]["ed25519"], "ed25519 of k"
    assert x25519_public(key_of(k, b"x25519")) == b["keys"]["x25519"], "x25519 of k"
    # The ephemeral key is DeriveKeyPair(the recorded randomness).
    assert x25519_public(dhkem_x25519_derive(bytes.fromhex(v["randomness"]))) == b["enc"]
    return 1

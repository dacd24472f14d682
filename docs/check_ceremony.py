"""Independent check of the ceremony vector (docs/test-vectors.json, `ceremony`), written
from docs/formats/ceremony.md alone: root.json follows from the root's keys, and the
transcript's signature verifies over the body in canonical JSON. Shares no code with
keyd. Used by check_test_vectors.py.
"""
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric import ed25519


def canonical(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check(section, root_keys):
    """`root_keys`: (ed25519, x25519, key id) of the vector root's `m`, derived here."""
    r = section["root_json"]
    ed, x, kid = root_keys
    assert list(r) and r["format"] == "keyd-root/v1"
    assert set(r) == {"format", "key_id", "ed25519_public", "x25519_public", "fingerprint",
                      "created_at", "threshold", "shares"}, "root.json members"
    assert r["ed25519_public"] == ed.hex() and r["x25519_public"] == x.hex(), "root keys"
    assert r["key_id"] == kid.hex() == hashlib.sha256(ed).digest()[:16].hex(), "key id"
    assert r["fingerprint"] == hashlib.sha256(ed).hexdigest(), "fingerprint"
    assert 2 <= r["threshold"] <= r["shares"] <= 255
    t = section["transcript"]
    assert set(t) == {"body", "signer_key_id", "signature"}, "transcript members"
    assert t["signer_key_id"] == r["key_id"], "signer"
    signed = canonical(t["body"])
    assert signed == section["signed"].encode(), "canonical JSON of the body"
    key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(r["ed25519_public"]))
    key.verify(bytes.fromhex(t["signature"]), signed)
    altered = dict(t["body"], threshold=t["body"]["threshold"] - 1)
    try:
        key.verify(bytes.fromhex(t["signature"]), canonical(altered))
    except Exception:
        return 1
    raise AssertionError("an altered body verifies")

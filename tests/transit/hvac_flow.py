"""The hvac client driving transit: run against keyd (client certificate, and a token
from `auth/cert/login`) and against `bao server -dev` (its root token) by
tests/transit_clients.rs, which compares what both answer, field by field.

Usage: hvac_flow.py URL OUT.json [--cert CERT --key KEY --ca CA]
Writes {step: the response hvac returned (a dict), or {"error_status": N, "error": text}}.
"""
import base64
import json
import sys

import hvac
from hvac import exceptions


def b64(b):
    return base64.b64encode(b).decode()


def main():
    url, out = sys.argv[1], sys.argv[2]
    opts = dict(zip(sys.argv[3::2], sys.argv[4::2]))
    if "--cert" in opts:
        client = hvac.Client(url=url, cert=(opts["--cert"], opts["--key"]), verify=opts["--ca"])
        login = client.auth.cert.login(cert_pem=opts["--cert"], key_pem=opts["--key"])
        assert client.token == login["auth"]["client_token"], login
    else:
        client = hvac.Client(url=url, token=opts.get("--token", "root"))
    t = client.secrets.transit
    steps = {}

    def step(name, call):
        try:
            r = call()
            steps[name] = r if isinstance(r, dict) else {"status": r.status_code}
        except exceptions.VaultError as e:
            steps[name] = {"error_status": e.__class__.__name__, "error": str(e)}
        return steps[name]

    step("create_aes", lambda: t.create_key("hv"))
    step("create_ed25519", lambda: t.create_key("hs", key_type="ed25519"))
    step("read_aes", lambda: t.read_key("hv"))
    step("read_ed25519", lambda: t.read_key("hs"))
    step("list", lambda: t.list_keys())
    enc = step("encrypt", lambda: t.encrypt_data("hv", plaintext=b64(b"hello hvac")))
    ct1 = enc["data"]["ciphertext"]
    dec = step("decrypt", lambda: t.decrypt_data("hv", ciphertext=ct1))
    assert base64.b64decode(dec["data"]["plaintext"]) == b"hello hvac", dec
    step("encrypt_batch", lambda: t.encrypt_data("hv", plaintext=None, batch_input=[
        {"plaintext": b64(b"one")}, {"plaintext": b64(b"two"), "reference": "r2"}]))
    step("rotate", lambda: t.rotate_key("hv"))
    rw = step("rewrap", lambda: t.rewrap_data("hv", ciphertext=ct1))
    assert rw["data"]["ciphertext"].startswith("vault:v2:"), rw
    dk = step("datakey", lambda: t.generate_data_key("hv", key_type="plaintext"))
    opened = t.decrypt_data("hv", ciphertext=dk["data"]["ciphertext"])
    assert opened["data"]["plaintext"] == dk["data"]["plaintext"]
    step("datakey_wrapped", lambda: t.generate_data_key("hv", key_type="wrapped", bits=512))
    step("config", lambda: t.update_key_configuration("hv", min_decryption_version=2))
    step("decrypt_below_min", lambda: t.decrypt_data("hv", ciphertext=ct1))
    step("decrypt_malformed", lambda: t.decrypt_data("hv", ciphertext="vault:v1"))
    step("decrypt_unknown_key", lambda: t.decrypt_data("nosuch", ciphertext=rw["data"]["ciphertext"]))
    sig = step("sign", lambda: t.sign_data("hs", hash_input=b64(b"release")))
    good = step("verify", lambda: t.verify_signed_data("hs", hash_input=b64(b"release"),
                                                      signature=sig["data"]["signature"]))
    assert good["data"]["valid"] is True, good
    bad = step("verify_wrong", lambda: t.verify_signed_data("hs", hash_input=b64(b"other"),
                                                            signature=sig["data"]["signature"]))
    assert bad["data"]["valid"] is False, bad
    step("sign_batch", lambda: t.sign_data("hs", hash_input=None, batch_input=[
        {"input": b64(b"a")}, {"input": b64(b"b"), "reference": "b"}]))
    step("hmac", lambda: t.generate_hmac("hv", hash_input=b64(b"m"), algorithm="sha2-512"))
    step("hash", lambda: t.hash_data(hash_input=b64(b"hello"), algorithm="sha2-256"))
    step("random", lambda: t.generate_random_bytes(n_bytes=16, output_format="hex"))
    step("read_missing", lambda: t.read_key("nosuch"))
    step("delete_not_allowed", lambda: t.delete_key("hv"))
    json.dump(steps, open(out, "w"), indent=1, sort_keys=True)


if __name__ == "__main__":
    main()

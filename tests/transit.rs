//! The transit-compatible facade over a node's named keys, end to end with a real keyd
//! over TLS: keys (create, read, list, rotate, config, delete), sign and verify (the
//! signature also checked offline against the key the chain publishes), encrypt,
//! decrypt, rewrap, datakey, hmac, random, hash, batches; bad input refused in transit's
//! shapes with nothing changed; a token only with the certificate it was issued to.
//! keyctl and the replayed requests of cosign and go-kms-wrapping: tests/transit_replay.rs.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster};

/// A transit call: the status and the JSON body (`null` for an empty one).
pub fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let r = c.request(method, path, &[], bytes.as_deref())?;
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body)
            .with_context(|| format!("{method} {path}: {}", String::from_utf8_lossy(&r.body)))?
    };
    Ok((r.status, v))
}

/// A call that must answer 200: its `data`.
pub fn ok(c: &Client, method: &str, path: &str, body: Value) -> Result<Value> {
    let (status, v) = call(c, method, path, Some(body))?;
    ensure!(status == 200, "{method} {path}: {status} {v}");
    ensure!(v["errors"].is_null() && v["request_id"].is_string(), "{v}");
    Ok(v["data"].clone())
}

/// A call that must fail with `status`: its first error message.
fn fails(c: &Client, method: &str, path: &str, body: Value, status: u16) -> Result<String> {
    let (got, v) = call(c, method, path, Some(body))?;
    ensure!(got == status, "{method} {path}: {got} {v}, not {status}");
    let errors = v["errors"].as_array().context("errors")?;
    Ok(errors
        .first()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// Applies the default policy plus a rule letting nodes delete their own named keys.
pub fn grant_key_delete(c: &Cluster) -> Result<()> {
    let policy = format!(
        "{}\n[[rule]]\nid = \"nodes-delete-keys\"\neffect = \"allow\"\nprincipals = [\"role:node\"]\noperations = [\"key.delete\"]\ntargets = [\"self\"]\n",
        keyd::policy::DEFAULT
    );
    let (status, v) = c.admin()?.post("/v1/policy", &json!({"text": policy}))?;
    ensure!(status == 200, "{status} {v}");
    Ok(())
}

fn chain_length(c: &Cluster) -> Result<u64> {
    let r = c.admin()?.get_reply("/v1/chain")?;
    Ok(r.header(keyd::chain::LENGTH_HEADER).parse()?)
}

#[test]
fn named_keys_sign_and_verify_and_the_chain_vouches_offline() -> Result<()> {
    let c = Cluster::start()?;
    let (node, _) = c.enrolled_node("app")?;
    let key = ok(
        &node,
        "PUT",
        "/v1/transit/keys/release",
        json!({"type": "ed25519"}),
    )?;
    ensure!(
        key["type"] == "ed25519" && key["latest_version"] == 1,
        "{key}"
    );
    ensure!(key["supports_signing"] == true && key["supports_encryption"] == false);
    let public = B64.decode(
        key["keys"]["1"]["public_key"]
            .as_str()
            .context("public_key")?,
    )?;
    ensure!(public.len() == 32 && key["keys"]["1"]["name"] == "ed25519");
    let path: keyd::derive::KeyPath = key["path"].as_str().context("path")?.parse()?;
    ensure!(
        matches!(path.role(), keyd::derive::PathRole::Named { .. }),
        "{path}"
    );
    // Creating it again changes nothing (as transit), whatever the type.
    let again = ok(
        &node,
        "POST",
        "/v1/transit/keys/release",
        json!({"type": "aes256-gcm96"}),
    )?;
    ensure!(again["type"] == "ed25519" && again["path"] == key["path"]);
    let msg = b"release v1.2.3";
    // The bao CLI sends every parameter as a string.
    let signed = ok(
        &node,
        "PUT",
        "/v1/transit/sign/release/sha2-256",
        json!({"input": b64(msg), "key_version": "0"}),
    )?;
    let signature = signed["signature"].as_str().context("signature")?;
    ensure!(signature.starts_with("vault:v1:") && signed["key_version"] == 1);
    let check = |input: &[u8], sig: &str| -> Result<Value> {
        ok(
            &node,
            "POST",
            "/v1/transit/verify/release",
            json!({"input": b64(input), "signature": sig}),
        )
    };
    ensure!(check(msg, signature)?["valid"] == true);
    ensure!(check(b"another", signature)?["valid"] == false);
    // Offline: the chain publishes version 1 as the named key's epoch 0, certified by
    // the node.
    let chain = keyd::chain::verify_file(&node.get("/v1/chain")?.1)?;
    let v1 = path.epoch_key(0).context("version path")?;
    let record = chain.state().key(&v1).context("version 1 in the chain")?;
    ensure!(record.keys.ed25519.as_slice() == public.as_slice());
    let sig_bytes = B64.decode(signature.trim_start_matches("vault:v1:"))?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&record.keys.ed25519)?;
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_slice(&sig_bytes)?)?;
    let state = chain.state();
    let owner = path.parent_node().context("owner")?;
    ensure!(state.named_key(&owner, "release").map(|(p, _)| p) == Some(&path));
    // Rotation: version 2 signs, version 1 signatures still verify.
    let rotated = ok(
        &node,
        "POST",
        "/v1/transit/keys/release/rotate",
        json!(null),
    )?;
    ensure!(rotated["latest_version"] == 2, "{rotated}");
    let s2 = ok(
        &node,
        "POST",
        "/v1/transit/sign/release",
        json!({"input": b64(msg)}),
    )?;
    ensure!(
        s2["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("vault:v2:"))
    );
    ensure!(check(msg, signature)?["valid"] == true);
    // Batch sign: each item answered, a bad one with its error, 200 overall.
    let batch = ok(
        &node,
        "POST",
        "/v1/transit/sign/release",
        json!({"input": null, "batch_input": [
            {"input": b64(b"a"), "reference": "first"},
            {"input": "not base64!!"},
            {"input": b64(b"c")}]}),
    )?;
    let results = batch["batch_results"].as_array().context("batch_results")?;
    ensure!(
        results.len() == 3 && results[0]["reference"] == "first",
        "{batch}"
    );
    ensure!(
        results[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("base64"))
    );
    ensure!(
        results[2]["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("vault:v2:"))
    );
    // Ed25519 with prehashed input is refused, as community Vault refuses it.
    let e = fails(
        &node,
        "PUT",
        "/v1/transit/sign/release/sha2-256",
        json!({"input": b64(&[0; 32]), "prehashed": "true"}),
        400,
    )?;
    ensure!(e.contains("prehashed"), "{e}");
    // Listing (the LIST method, which hvac sends, is in tests/transit_clients.rs: this
    // client speaks only standard methods).
    let listed = ok(&node, "GET", "/v1/transit/keys?list=true", json!(null))?;
    ensure!(listed["keys"] == json!(["release"]));
    // Another node neither sees nor uses this node's keys.
    let (other, _) = c.enrolled_node("other")?;
    let (status, v) = call(&other, "GET", "/v1/transit/keys/release", None)?;
    ensure!(status == 404 && v["errors"] == json!([]), "{status} {v}");
    fails(
        &other,
        "POST",
        "/v1/transit/sign/release",
        json!({"input": b64(msg)}),
        400,
    )?;
    // Admins have no named keys; a named key is neither a node nor a TLS identity.
    let admin = c.admin()?;
    fails(&admin, "POST", "/v1/transit/keys/x", json!({}), 403)?;
    let nodes = admin.get_json("/v1/nodes")?.to_string();
    ensure!(
        !nodes.contains("release") && !nodes.contains("2'/0'"),
        "{nodes}"
    );
    // Nor is it re-enrolled (a TLS identity), rekeyed or ordered to, or given a suite
    // policy as a node: it rotates through its owner.
    let encoded = path.to_string().replace('/', "%2F");
    for (op, body) in [
        ("reenroll", json!({"mode": "held"})),
        ("rekey", json!({})),
        ("rekey-order", json!({"reason": "rotate"})),
        ("suite", json!({"suite": "any"})),
    ] {
        let (status, v) = admin.post(&format!("/v1/nodes/{encoded}/{op}"), &body)?;
        ensure!(
            status == 403
                && v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("is not a node")),
            "{op} of a named key: {status} {v}"
        );
    }
    // Nor does anyone encrypt to it: envelopes go to nodes.
    let (status, v) = other.post(
        "/v1/encrypt",
        &json!({"to": path.to_string(), "plaintext": b64(b"x"), "suite": "x25519"}),
    )?;
    ensure!(status == 404, "an envelope to a named key: {status} {v}");
    Ok(())
}

#[test]
fn encryption_keys_rotate_rewrap_and_refuse_what_they_must() -> Result<()> {
    let c = Cluster::start()?;
    let (node, _) = c.enrolled_node("app")?;
    // encrypt on a missing key creates it (aes256-gcm96), as transit does.
    let secret = b"database password";
    let ad = b64(b"row 7");
    let e1 = ok(
        &node,
        "PUT",
        "/v1/transit/encrypt/secrets",
        json!({"plaintext": b64(secret), "associated_data": ad}),
    )?;
    let ct1 = e1["ciphertext"].as_str().context("ciphertext")?.to_owned();
    ensure!(
        ct1.split(':').count() == 3 && ct1.starts_with("vault:v1:"),
        "{ct1}"
    );
    let key = ok(&node, "GET", "/v1/transit/keys/secrets", json!(null))?;
    ensure!(
        key["type"] == "aes256-gcm96" && key["keys"]["1"].is_u64(),
        "{key}"
    );
    let open = |ct: &str, ad: &str| {
        call(
            &node,
            "POST",
            "/v1/transit/decrypt/secrets",
            Some(json!({"ciphertext": ct, "associated_data": ad})),
        )
    };
    let (status, d) = open(&ct1, &ad)?;
    ensure!(
        status == 200 && d["data"]["plaintext"] == b64(secret),
        "{d}"
    );
    let (status, d) = open(&ct1, &b64(b"row 8"))?;
    ensure!(
        status == 400 && d["errors"][0].is_string(),
        "wrong associated data: {d}"
    );
    // Rotate, rewrap to the new version, raise the minimum decryption version.
    ok(&node, "PUT", "/v1/transit/keys/secrets/rotate", json!({}))?;
    let rewrapped = ok(
        &node,
        "POST",
        "/v1/transit/rewrap/secrets",
        json!({"ciphertext": ct1, "associated_data": ad}),
    )?;
    let ct2 = rewrapped["ciphertext"]
        .as_str()
        .context("ciphertext")?
        .to_owned();
    ensure!(ct2.starts_with("vault:v2:") && rewrapped["key_version"] == 2);
    let cfg = ok(
        &node,
        "POST",
        "/v1/transit/keys/secrets/config",
        json!({"min_decryption_version": "2", "min_encryption_version": 2}),
    )?;
    ensure!(
        cfg["min_decryption_version"] == 2 && cfg["keys"].get("1").is_none(),
        "{cfg}"
    );
    let before = chain_length(&c)?;
    let (status, d) = open(&ct1, &ad)?;
    ensure!(
        status == 400,
        "a version below the minimum still opens: {d}"
    );
    ensure!(open(&ct2, &ad)?.0 == 200);
    fails(
        &node,
        "POST",
        "/v1/transit/encrypt/secrets",
        json!({"plaintext": b64(b"x"), "key_version": 1}),
        400,
    )?;
    fails(
        &node,
        "POST",
        "/v1/transit/keys/secrets/config",
        json!({"min_decryption_version": 9}),
        400,
    )?;
    // Malformed ciphertexts, each with transit's message; nothing changed.
    for (bad, says) in [
        ("vault:v1", "wrong number of fields"),
        ("vault:vX:abc", "version number could not be decoded"),
        ("foo", "no prefix"),
        ("vault:v2:!!!", "could not decode base64"),
        ("vault:v9:AAAA", "version is too new"),
    ] {
        let e = fails(
            &node,
            "POST",
            "/v1/transit/decrypt/secrets",
            json!({"ciphertext": bad}),
            400,
        )?;
        ensure!(e.contains(says), "{bad}: {e}");
    }
    // A ciphertext of another key (of a version this key has) does not open under it.
    ok(&node, "POST", "/v1/transit/keys/other", json!({}))?;
    ok(&node, "POST", "/v1/transit/keys/other/rotate", json!({}))?;
    let other = ok(
        &node,
        "POST",
        "/v1/transit/encrypt/other",
        json!({"plaintext": b64(b"y")}),
    )?;
    let other_ct = other["ciphertext"].as_str().context("ct")?;
    ensure!(other_ct.starts_with("vault:v2:"), "{other}");
    let not_bound = |(status, v): (u16, Value)| {
        status == 400
            && v["errors"][0]
                .as_str()
                .is_some_and(|e| e.contains("not of version 2"))
    };
    ensure!(
        not_bound(open(other_ct, "")?),
        "another key's ciphertext opens"
    );
    fails(
        &node,
        "POST",
        "/v1/transit/decrypt/nosuch",
        json!({"ciphertext": ct2}),
        400,
    )?;
    ensure!(
        chain_length(&c)? == before + 3,
        "only the new key 'other' and its rotation were added"
    );
    // A version below the minimum decryption version makes nothing new, whatever the
    // minimum encryption version.
    ok(
        &node,
        "POST",
        "/v1/transit/keys/secrets/config",
        json!({"min_encryption_version": 0}),
    )?;
    let e = fails(
        &node,
        "POST",
        "/v1/transit/encrypt/secrets",
        json!({"plaintext": b64(b"x"), "key_version": 1}),
        400,
    )?;
    ensure!(e.contains("minimum decryption version"), "{e}");
    // Batch encrypt with a bad item: 400 with every result, as transit.
    let (status, v) = call(
        &node,
        "POST",
        "/v1/transit/encrypt/secrets",
        Some(json!({"batch_input": [{"plaintext": b64(b"a")}, {"plaintext": "%%"}]})),
    )?;
    let results = v["data"]["batch_results"].as_array().context("results")?;
    ensure!(
        status == 400 && results.len() == 2 && results[1]["error"].is_string(),
        "{v}"
    );
    ensure!(
        results[0]["ciphertext"]
            .as_str()
            .is_some_and(|s| s.starts_with("vault:v2:"))
    );
    // Data keys, HMAC, random, hash.
    let dk = ok(
        &node,
        "POST",
        "/v1/transit/datakey/plaintext/secrets",
        json!({"bits": "512"}),
    )?;
    let plain = B64.decode(dk["plaintext"].as_str().context("plaintext")?)?;
    ensure!(plain.len() == 64);
    let opened = ok(
        &node,
        "POST",
        "/v1/transit/decrypt/secrets",
        json!({"ciphertext": dk["ciphertext"]}),
    )?;
    ensure!(B64.decode(opened["plaintext"].as_str().context("p")?)? == plain);
    let wrapped = ok(
        &node,
        "POST",
        "/v1/transit/datakey/wrapped/secrets",
        json!({}),
    )?;
    ensure!(wrapped["plaintext"].is_null() && wrapped["ciphertext"].is_string());
    fails(
        &node,
        "POST",
        "/v1/transit/datakey/plaintext/secrets",
        json!({"bits": 100}),
        400,
    )?;
    let mac = ok(
        &node,
        "POST",
        "/v1/transit/hmac/secrets/sha2-512",
        json!({"input": b64(b"m")}),
    )?;
    let mac = mac["hmac"].as_str().context("hmac")?.to_owned();
    let valid = ok(
        &node,
        "POST",
        "/v1/transit/verify/secrets/sha2-512",
        json!({"input": b64(b"m"), "hmac": mac}),
    )?;
    ensure!(valid["valid"] == true);
    let random = ok(
        &node,
        "POST",
        "/v1/transit/random/16",
        json!({"format": "hex"}),
    )?;
    ensure!(
        random["random_bytes"]
            .as_str()
            .is_some_and(|r| r.len() == 32)
    );
    let sum = ok(
        &node,
        "POST",
        "/v1/transit/hash",
        json!({"input": b64(b"hello")}),
    )?;
    ensure!(sum["sum"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    fails(
        &node,
        "POST",
        "/v1/transit/sign/secrets",
        json!({"input": b64(b"x")}),
        400,
    )?;
    // Delete: refused by the default policy, then (with a policy granting key.delete)
    // until the key allows it; then done, and the name may be used again.
    fails(
        &node,
        "DELETE",
        "/v1/transit/keys/secrets",
        json!(null),
        403,
    )?;
    grant_key_delete(&c)?;
    let e = fails(
        &node,
        "DELETE",
        "/v1/transit/keys/secrets",
        json!(null),
        400,
    )?;
    ensure!(e.contains("deletion is not allowed"), "{e}");
    ok(
        &node,
        "POST",
        "/v1/transit/keys/secrets/config",
        json!({"deletion_allowed": true}),
    )?;
    let (status, _) = call(&node, "DELETE", "/v1/transit/keys/secrets", None)?;
    ensure!(status == 204);
    let (status, v) = call(&node, "GET", "/v1/transit/keys/secrets", None)?;
    ensure!(status == 404 && v["errors"] == json!([]));
    ensure!(
        open(&ct2, &ad)?.0 == 400,
        "a deleted key's ciphertext opens"
    );
    ok(&node, "POST", "/v1/transit/keys/secrets", json!({}))?;
    ok(&node, "POST", "/v1/transit/keys/secrets/rotate", json!({}))?;
    ensure!(
        not_bound(open(&ct2, &ad)?),
        "a new key of the same name opens the old one's"
    );
    Ok(())
}

#[test]
fn a_token_counts_only_with_the_certificate_it_was_issued_to() -> Result<()> {
    let c = Cluster::start()?;
    let (node, _) = c.enrolled_node("app")?;
    let (other, _) = c.enrolled_node("other")?;
    let (status, v) = call(
        &node,
        "PUT",
        "/v1/auth/cert/login",
        Some(json!({"name": ""})),
    )?;
    ensure!(status == 200, "{v}");
    let token = v["auth"]["client_token"]
        .as_str()
        .context("client_token")?
        .to_owned();
    ensure!(
        v["auth"]["lease_duration"].is_u64() && v["data"].is_null(),
        "{v}"
    );
    ok(&node, "POST", "/v1/transit/keys/k", json!({}))?;
    let with = |client: &Client, token: &str| -> Result<u16> {
        Ok(client
            .request(
                "GET",
                "/v1/transit/keys/k",
                &[("X-Vault-Token", token)],
                None,
            )?
            .status)
    };
    ensure!(with(&node, &token)? == 200);
    let bearer = format!("Bearer {token}");
    let r = node.request(
        "GET",
        "/v1/transit/keys/k",
        &[("Authorization", &bearer)],
        None,
    )?;
    ensure!(r.status == 200);
    // Without its certificate, with another's, or altered: refused.
    ensure!(with(&c.anonymous()?, &token)? == 403);
    ensure!(with(&other, &token)? == 403);
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 2;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    ensure!(with(&node, std::str::from_utf8(&altered)?)? == 403);
    let (status, v) = call(
        &c.anonymous()?,
        "PUT",
        "/v1/auth/cert/login",
        Some(json!({})),
    )?;
    ensure!(status == 400 || status == 403, "{status} {v}");
    ensure!(v["errors"][0].is_string());
    Ok(())
}

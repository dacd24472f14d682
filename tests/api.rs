//! The API surface end to end: CBOR bodies, the HPKE suites, batch forms with per-item
//! errors, and the OpenAPI document, against a real keyd over real TLS.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ciborium::Value as Cbor;
use ed25519_dalek::{Signature, VerifyingKey};
use keyd::chain::verify_file;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster};

const CBOR: &str = "application/cbor";
const JSON: &str = "application/json";

fn cbor(value: &Cbor) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)?;
    Ok(out)
}

fn map(pairs: &[(&str, Cbor)]) -> Cbor {
    Cbor::Map(
        pairs
            .iter()
            .map(|(k, v)| (Cbor::Text((*k).into()), v.clone()))
            .collect(),
    )
}

fn field<'a>(value: &'a Cbor, name: &str) -> Result<&'a Cbor> {
    value
        .as_map()
        .context("not a map")?
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
        .with_context(|| format!("no field {name} in {value:?}"))
}

/// POSTs CBOR asking for CBOR; the response must be CBOR.
fn post_cbor(client: &Client, path: &str, body: &Cbor) -> Result<(u16, Cbor)> {
    let (status, ct, bytes) = client.exchange(path, CBOR, CBOR, cbor(body)?)?;
    ensure!(ct == CBOR, "{path}: content type {ct}");
    Ok((status, ciborium::from_reader(&bytes[..])?))
}

fn error_code(status: u16, ct: &str, body: &[u8]) -> Result<(u16, String)> {
    ensure!(ct == JSON, "errors are JSON, got {ct}");
    let v: Value = serde_json::from_slice(body)?;
    ensure!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    Ok((
        status,
        v["error"]["code"].as_str().context("code")?.to_owned(),
    ))
}

#[test]
fn cbor_requests_and_responses() -> Result<()> {
    let c = Cluster::start()?;
    let (alice, _) = c.enrolled_node("alice")?;
    let (bob, _) = c.enrolled_node("bob")?;

    // Sign in CBOR: byte strings in and out; the signature checks with ed25519-dalek.
    let data = b"cbor all the way".to_vec();
    let (status, signed) = post_cbor(
        &alice,
        "/v1/sign",
        &map(&[("data", Cbor::Bytes(data.clone()))]),
    )?;
    ensure!(status == 200, "{signed:?}");
    let sig: [u8; 64] = field(&signed, "signature")?
        .as_bytes()
        .context("signature is a byte string")?
        .as_slice()
        .try_into()?;
    let path = field(&signed, "path")?
        .as_text()
        .context("path")?
        .to_owned();
    let (_, chain) = c.anonymous()?.get("/v1/chain")?;
    let key = verify_file(&chain)?
        .state()
        .key(&path.parse()?)
        .context("key")?
        .clone();
    VerifyingKey::from_bytes(&key.keys.ed25519)?
        .verify_strict(&data, &Signature::from_bytes(&sig))?;

    // Encrypt in CBOR, decrypt in JSON: the same envelope either way.
    let secret = b"for bob".to_vec();
    let (status, enc) = post_cbor(
        &alice,
        "/v1/encrypt",
        &map(&[
            ("to", Cbor::Text("bob".into())),
            ("plaintext", Cbor::Bytes(secret.clone())),
        ]),
    )?;
    ensure!(status == 200, "{enc:?}");
    let envelope = field(&enc, "envelope")?
        .as_bytes()
        .context("envelope")?
        .clone();
    let (status, dec) = bob.post("/v1/decrypt", &json!({"envelope": B64.encode(&envelope)}))?;
    ensure!(status == 200, "{dec}");
    ensure!(B64.decode(dec["plaintext"].as_str().context("plaintext")?)? == secret);
    // And the other way: CBOR request, JSON answer (no Accept for CBOR).
    let (status, ct, body) = bob.exchange(
        "/v1/decrypt",
        CBOR,
        JSON,
        cbor(&map(&[("envelope", Cbor::Bytes(envelope.clone()))]))?,
    )?;
    ensure!(status == 200 && ct == JSON);
    let dec: Value = serde_json::from_slice(&body)?;
    ensure!(dec["sender"] == path, "{dec}");

    // Bad CBOR: truncated, trailing bytes, wrong field type, unknown field; all JSON errors.
    let good = cbor(&map(&[("data", Cbor::Bytes(data.clone()))]))?;
    let mut trailing = good.clone();
    trailing.push(0);
    let cases = [
        (good[..good.len() - 3].to_vec(), "bad_cbor"),
        (trailing, "bad_cbor"),
        (
            cbor(&map(&[("data", Cbor::Integer(7.into()))]))?,
            "bad_cbor",
        ),
        (
            cbor(&map(&[("data", Cbor::Bytes(data)), ("x", Cbor::Null)]))?,
            "bad_cbor",
        ),
        (
            cbor(&map(&[("data", Cbor::Text("!!".into()))]))?,
            "bad_base64",
        ),
    ];
    for (body, want) in cases {
        let (status, ct, bytes) = alice.exchange("/v1/sign", CBOR, CBOR, body)?;
        let (status, code) = error_code(status, &ct, &bytes)?;
        ensure!(
            status == 400 && code == want,
            "want {want}, got {status} {code}"
        );
    }
    Ok(())
}

#[test]
fn x_wing_by_default_x25519_on_request() -> Result<()> {
    let c = Cluster::start()?;
    let (alice, _) = c.enrolled_node("alice")?;
    let (bob, _) = c.enrolled_node("bob")?;
    let (carol, _) = c.enrolled_node("carol")?;
    let secret = B64.encode(b"hybrid or classic");
    let mut sizes = Vec::new();
    for (suite, want) in [
        (None, "xwing-hkdf-sha256-chacha20poly1305"),
        (Some("x-wing"), "xwing-hkdf-sha256-chacha20poly1305"),
        (Some("x25519"), "x25519-hkdf-sha256-chacha20poly1305"),
    ] {
        let mut req = json!({"to": "bob", "plaintext": secret});
        if let Some(s) = suite {
            req["suite"] = json!(s);
        }
        let (status, enc) = alice.post("/v1/encrypt", &req)?;
        ensure!(status == 200 && enc["suite"] == want, "{suite:?}: {enc}");
        let envelope = &enc["envelope"];
        sizes.push(B64.decode(envelope.as_str().context("envelope")?)?.len());
        let (status, dec) = bob.post("/v1/decrypt", &json!({"envelope": envelope}))?;
        ensure!(status == 200 && dec["plaintext"] == secret, "{dec}");
        for other in [&alice, &carol] {
            let (status, err) = other.post("/v1/decrypt", &json!({"envelope": envelope}))?;
            ensure!(
                status == 403 && err["error"]["code"] == "forbidden",
                "{err}"
            );
        }
    }
    // The X-Wing encapsulation is 1,120 bytes against X25519's 32.
    ensure!(sizes[0] >= sizes[2] + 1088, "{sizes:?}");
    let (status, err) = alice.post(
        "/v1/encrypt",
        &json!({"to": "bob", "plaintext": secret, "suite": "rsa"}),
    )?;
    ensure!(
        status == 400 && err["error"]["code"] == "bad_suite",
        "{err}"
    );
    Ok(())
}

/// Each batch form answers every item in order, a bad item with its own error naming
/// it, and the good items regardless.
#[test]
fn batch_forms_answer_each_item() -> Result<()> {
    let c = Cluster::start()?;
    let (alice, _) = c.enrolled_node("alice")?;
    let (bob, _) = c.enrolled_node("bob")?;
    let (_, chain_before) = c.anonymous()?.get("/v1/chain")?;
    let results = |client: &Client, op: &str, items: Value| -> Result<Vec<Value>> {
        let (status, body) = client.post(&format!("/v1/batch/{op}"), &json!({"items": items}))?;
        ensure!(status == 200, "{op}: {body}");
        Ok(body["results"].as_array().context("results")?.clone())
    };
    let code = |item: &Value| item["error"]["code"].as_str().unwrap_or("").to_owned();
    let message = |item: &Value| item["error"]["message"].as_str().unwrap_or("").to_owned();

    let enc = results(
        &alice,
        "encrypt",
        json!([
            {"to": "bob", "plaintext": B64.encode("one")},
            {"to": "nobody", "plaintext": B64.encode("two")},
            {"to": "bob", "plaintext": "??"},
            {"to": "bob", "plaintext": B64.encode("four"), "suite": "x25519"},
        ]),
    )?;
    ensure!(enc.len() == 4);
    ensure!(
        code(&enc[1]) == "not_found" && code(&enc[2]) == "bad_base64",
        "{enc:?}"
    );
    ensure!(message(&enc[2]).contains("items[2].plaintext"), "{enc:?}");
    let dec = results(
        &bob,
        "decrypt",
        json!([
            {"envelope": enc[0]["envelope"]},
            {"envelope": B64.encode("junk")},
            {"envelope": enc[3]["envelope"]},
        ]),
    )?;
    ensure!(
        dec.len() == 3 && dec[0]["plaintext"] == B64.encode("one"),
        "{dec:?}"
    );
    ensure!(dec[0]["sender"] == dec[2]["sender"] && dec[0]["sender"].is_string());
    ensure!(
        code(&dec[1]) == "bad_envelope" && dec[2]["plaintext"] == B64.encode("four"),
        "{dec:?}"
    );

    // An item of the wrong shape makes the whole body invalid, as in the single form.
    let (status, err) = alice.post(
        "/v1/batch/seal",
        &json!({"items": [{"plaintext": B64.encode("a")}, {"plaintext": 5}]}),
    )?;
    ensure!(status == 400 && err["error"]["code"] == "bad_json", "{err}");

    let sealed = results(
        &alice,
        "seal",
        json!([{"plaintext": B64.encode("a")}, {"plaintext": B64.encode("b")}]),
    )?;
    let opened = results(
        &alice,
        "unseal",
        json!([{"envelope": sealed[1]["envelope"]}, {"envelope": "AAAA"}, {"envelope": sealed[0]["envelope"]}]),
    )?;
    ensure!(
        opened[0]["plaintext"] == B64.encode("b") && opened[2]["plaintext"] == B64.encode("a"),
        "{opened:?}"
    );
    ensure!(code(&opened[1]) == "bad_envelope", "{opened:?}");
    let at_bob = results(&bob, "unseal", json!([{"envelope": sealed[0]["envelope"]}]))?;
    ensure!(code(&at_bob[0]) == "forbidden", "{at_bob:?}");
    let rewrapped = results(
        &alice,
        "rewrap",
        json!([{"envelope": sealed[0]["envelope"]}, {"envelope": ""}]),
    )?;
    ensure!(
        rewrapped[0]["envelope"].is_string() && code(&rewrapped[1]) == "bad_envelope",
        "{rewrapped:?}"
    );
    let keys = results(&alice, "datakey", json!([{}, {}]))?;
    ensure!(keys.len() == 2 && keys[0]["key"].is_string() && keys[0]["key"] != keys[1]["key"]);
    // Nothing in any of that touched the chain.
    let (_, chain_after) = c.anonymous()?.get("/v1/chain")?;
    ensure!(chain_before == chain_after);
    Ok(())
}

/// The OpenAPI document lists every route, and every route it lists answers: GETs with
/// 200, POSTs with a wrong content type with 415 (the handler parsed the body).
#[test]
fn openapi_lists_every_route() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin()?;
    let (status, doc) = c.anonymous()?.get("/v1/openapi.json")?;
    ensure!(status == 200);
    let doc: Value = serde_json::from_slice(&doc)?;
    ensure!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().context("paths")?;
    let mut listed = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().context("path item")?.keys() {
            listed.push(format!("{method} {path}"));
        }
    }
    listed.sort();
    let mut want: Vec<String> = [
        "get /healthz",
        "get /readyz",
        "get /metrics",
        "get /v1/openapi.json",
        "get /v1/ca",
        "get /v1/jwks.json",
        "get /v1/keys/{name}",
        "get /v1/chain",
        "post /v1/chain/root",
        "get /v1/chain/succession",
        "post /v1/trust/invite",
        "post /v1/trust/accept",
        "get /v1/trust/sessions/{id}",
        "post /v1/trust/sessions/{id}/consent",
        "post /v1/trust/sessions/{id}/confirm",
        "post /v1/trust/rendezvous",
        "get /v1/trust/clusters",
        "get /v1/trust/clusters/{root}/chain",
        "post /v1/trust/clusters/{root}/revoke",
        "post /v1/trust/clusters/{root}/reset",
        "post /v1/trust/reset",
        "post /v1/trust/clusters/{root}/introduce",
        "post /v1/trust/introduce",
        "post /v1/trust/introduced",
        "post /v1/trust/sync",
        "post /v1/chain/pull",
        "post /v1/enroll",
        "post /v1/renew",
        "post /v1/nodes",
        "get /v1/nodes",
        "get /v1/nodes/{name}",
        "post /v1/nodes/{name}/revoke",
        "post /v1/nodes/{name}/rekey",
        "post /v1/rekey",
        "get /v1/admins",
        "post /v1/admins/{name}/revoke",
        "post /v1/admins/{name}/credentials/revoke",
        "post /v1/nodes/{name}/credentials/revoke",
        "post /v1/nodes/{name}/reenroll",
        "post /v1/nodes/{name}/suite",
        "get /v1/policy",
        "post /v1/policy",
        "post /v1/policy/check",
        "get /v1/audit",
        "post /v1/nodes/{name}/min-epoch",
        "post /v1/nodes/{name}/extend",
        "post /v1/admin/recover",
        "post /v1/admin/replicas",
        "get /v1/admin/replicas",
        "post /v1/admin/replicas/{name}/remove",
        "post /v1/nodes/{name}/rekey-order",
        "post /v1/auth/cert/login",
        "get /v1/transit/keys",
        "post /v1/transit/keys/{name}",
        "post /v1/transit/keys/{name}/rotate",
        "post /v1/transit/keys/{name}/config",
        "post /v1/transit/sign/{name}",
        "post /v1/transit/verify/{name}",
        "post /v1/transit/encrypt/{name}",
        "post /v1/transit/decrypt/{name}",
        "post /v1/transit/rewrap/{name}",
        "post /v1/transit/datakey/{kind}/{name}",
        "post /v1/transit/hmac/{name}",
        "post /v1/transit/random",
        "post /v1/transit/hash",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        [
            "sign", "verify", "encrypt", "decrypt", "seal", "unseal", "rewrap", "datakey",
        ]
        .iter()
        .flat_map(|op| [format!("post /v1/{op}"), format!("post /v1/batch/{op}")]),
    )
    .collect();
    want.sort();
    ensure!(listed == want, "listed {listed:?}\nwant {want:?}");
    // A known route with the wrong method: a JSON 405.
    let (status, body) = admin.get("/v1/sign")?;
    let (status, code) = error_code(status, JSON, &body)?;
    ensure!(
        status == 405 && code == "method_not_allowed",
        "{status} {code}"
    );
    // POSTs go anonymous with a wrong content type: a route that needs a client
    // certificate refuses the caller (401) before reading the body; the public one with
    // a body (enroll) refuses the body (415).
    let anon = c.anonymous()?;
    for route in &listed {
        let (method, path) = route.split_once(' ').context("route")?;
        // The transit facade answers in transit's shapes (tests/transit.rs).
        if path.starts_with("/v1/transit/") || path == "/v1/auth/cert/login" {
            continue;
        }
        let called = path.replace("{name}", "nobody");
        if method == "get" {
            // The branch itself is a node: dc1. A keyd that never replaced its root
            // keeps no previous chain: 404.
            let called = path
                .replace("{name}", "dc1")
                .replace("{id}", "00000000000000000000000000000000")
                .replace("{root}", &"0".repeat(64));
            let (status, _) = admin.get(&called)?;
            // Nothing to show yet: no previous root, no session, no trusted cluster.
            let found = if path == "/v1/chain/succession"
                || path.contains("{id}")
                || path.contains("{root}")
            {
                404
            } else {
                200
            };
            ensure!(status == found, "{route}: {status}");
            let public = [
                "/healthz",
                "/readyz",
                "/metrics",
                "/v1/openapi.json",
                "/v1/ca",
                "/v1/keys/{name}",
                "/v1/jwks.json",
                "/v1/chain",
                "/v1/chain/succession",
            ];
            let (status, _) = anon.get(&called)?;
            let want = if public.contains(&path) { found } else { 401 };
            ensure!(status == want, "anonymous {route}: {status}");
            continue;
        }
        let (status, ct, body) = anon.exchange(&called, "text/plain", JSON, b"{}".to_vec())?;
        let (status, code) = error_code(status, &ct, &body)?;
        let want = if [
            "/v1/enroll",
            "/v1/trust/rendezvous",
            "/v1/trust/reset",
            "/v1/trust/introduce",
            "/v1/trust/introduced",
        ]
        .contains(&path)
        {
            ensure!(paths[path][method].get("requestBody").is_some());
            (415, "unsupported_media_type")
        } else {
            (401, "unauthenticated")
        };
        ensure!((status, code.as_str()) == want, "{route}: {status} {code}");
    }
    Ok(())
}

/// Every request gets an id, echoed in `x-request-id` and on its access log line; the
/// log records state changes and never what a client sent: no token, no plaintext, no
/// key. Operations are counted by kind and outcome, batch items one each.
#[test]
fn request_ids_logs_without_secrets_and_operation_metrics() -> Result<()> {
    let c = Cluster::start()?;
    let (status, added) = c.admin()?.post("/v1/nodes", &json!({"name": "n1"}))?;
    ensure!(status == 201, "{added}");
    let token = added["token"].as_str().context("token")?.to_owned();
    let (node, _) = c.enroll(&token)?;
    let secret = "the launch code is 0000";
    let signed = node.reply(
        "/v1/sign",
        JSON,
        JSON,
        serde_json::to_vec(&json!({"data": B64.encode(secret)}))?,
    )?;
    ensure!(signed.status == 200);
    let id = signed.header("x-request-id");
    ensure!(!id.is_empty());
    let (status, enc) = node.post(
        "/v1/encrypt",
        &json!({"to": "n1", "plaintext": B64.encode(secret)}),
    )?;
    ensure!(status == 200, "{enc}");
    let (status, dec) = node.post("/v1/decrypt", &json!({"envelope": enc["envelope"]}))?;
    ensure!(
        status == 200 && dec["plaintext"] == B64.encode(secret),
        "{dec}"
    );
    let (status, _) = node.post(
        "/v1/batch/seal",
        &json!({"items": [{"plaintext": B64.encode(secret)}, {"plaintext": "??"}, {"plaintext": ""}]}),
    )?;
    ensure!(status == 200);
    let next = node.reply("/v1/sign", JSON, JSON, b"{\"data\":\"\"}".to_vec())?;
    ensure!(next.header("x-request-id") != id, "ids are unique");

    let (_, metrics) = c.anonymous()?.get("/metrics")?;
    let metrics = String::from_utf8(metrics)?;
    for want in [
        "keyd_operations_total{op=\"sign\",outcome=\"ok\"} 2",
        "keyd_operations_total{op=\"encrypt\",outcome=\"ok\"} 1",
        "keyd_operations_total{op=\"decrypt\",outcome=\"ok\"} 1",
        "keyd_operations_total{op=\"seal\",outcome=\"ok\"} 2",
        "keyd_operations_total{op=\"seal\",outcome=\"error\"} 1",
    ] {
        ensure!(metrics.contains(want), "{want} not in:\n{metrics}");
    }

    let log = c.log()?;
    let access = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("keyd::access"))
        .with_context(|| format!("no access line for {id} in:\n{log}"))?;
    ensure!(
        access.contains("/v1/sign") && access.contains("status=200"),
        "{access}"
    );
    ensure!(
        log.contains("chain: appended") && log.contains("enrolled"),
        "{log}"
    );
    for leaked in [token.as_str(), secret, &B64.encode(secret), "PRIVATE KEY"] {
        ensure!(!log.contains(leaked), "the log holds {leaked:?}:\n{log}");
    }
    Ok(())
}

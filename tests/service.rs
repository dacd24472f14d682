//! keyd end to end: a real keyd process over real TLS on 127.0.0.1 with a real SoftHSM2
//! seal token; results cross-checked outside keyd.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use keyd::chain::{KeyStatus, verify_file};
use keyd::derive::KeyPath;
use serde_json::json;

use crate::cluster::Cluster;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn enroll_sign_verify_revoke() -> Result<()> {
    let c = Cluster::start()?;
    let (status, body) = c.anonymous()?.get("/healthz")?;
    ensure!(status == 200 && body == br#"{"status":"ok"}"#);

    let (node, enrolled) = c.enrolled_node("web-1")?;
    ensure!(enrolled["path"] == "m/1'/1'/0'", "{enrolled}");
    let data = b"hello keyd";
    let (status, signed) = node.post("/v1/sign", &json!({"data": B64.encode(data)}))?;
    ensure!(status == 200, "{signed}");
    ensure!(signed["path"] == "m/1'/1'/0'/0'/0'" && signed["epoch"] == 0);

    // Offline: fetch the chain, verify it with the library, and check the signature
    // with ed25519-dalek against the epoch key the chain publishes.
    let (status, chain) = c.anonymous()?.get("/v1/chain")?;
    ensure!(status == 200);
    let v = verify_file(&chain)?;
    ensure!(
        v.head(&"m/1'".parse::<KeyPath>()?).is_some() && v.logs().count() == 2,
        "keyd serves the root log and its branch log, each with its head"
    );
    let epoch_path: KeyPath = "m/1'/1'/0'/0'/0'".parse()?;
    let record = v.state().key(&epoch_path).context("epoch key in chain")?;
    ensure!(record.key_id.to_string() == signed["key_id"]);
    let sig: [u8; 64] = B64
        .decode(signed["signature"].as_str().context("sig")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("signature length"))?;
    VerifyingKey::from_bytes(&record.keys.ed25519)?
        .verify_strict(data, &Signature::from_bytes(&sig))?;

    let verify_body = json!({
        "data": B64.encode(data),
        "signature": signed["signature"],
        "public_key": hex::encode(record.keys.ed25519),
    });
    let (status, verdict) = node.post("/v1/verify", &verify_body)?;
    ensure!(
        status == 200 && verdict["valid"] == true && verdict["status"] == "valid",
        "{verdict}"
    );
    let mut tampered = verify_body.clone();
    tampered["data"] = json!(B64.encode(b"hello keyD"));
    let (_, verdict) = node.post("/v1/verify", &tampered)?;
    ensure!(
        verdict["valid"] == false && verdict["signature_ok"] == false,
        "{verdict}"
    );

    // A node is not an admin.
    let (status, err) = node.post("/v1/nodes", &json!({"name": "x"}))?;
    ensure!(
        status == 403 && err["error"]["code"] == "forbidden",
        "{err}"
    );

    // Revocation takes effect on the very next request.
    let (status, revoked) = c
        .admin()?
        .post("/v1/nodes/web-1/revoke", &json!({"reason": "compromised"}))?;
    ensure!(status == 200, "{revoked}");
    ensure!(
        revoked["revoked"] == json!(["m/1'/1'/0'", "m/1'/1'/0'/0'/0'"]),
        "{revoked}"
    );
    let (status, err) = node.post("/v1/sign", &json!({"data": B64.encode(data)}))?;
    ensure!(
        status == 401 && err["error"]["code"] == "key_not_valid",
        "{err}"
    );
    ensure!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("revoked by m/1'")),
        "{err}"
    );
    let (_, verdict) = c.admin()?.post("/v1/verify", &verify_body)?;
    ensure!(
        verdict["valid"] == false
            && verdict["status"] == "revoked"
            && verdict["signature_ok"] == true,
        "{verdict}"
    );

    // The fetched chain says the same, offline.
    let (_, chain) = c.anonymous()?.get("/v1/chain")?;
    let v = verify_file(&chain)?;
    ensure!(matches!(
        v.state().status_at(&epoch_path, unix_now()),
        KeyStatus::Revoked { .. }
    ));
    // Prometheus metrics count requests by route and status, errors by code, latency.
    let (status, metrics) = c.anonymous()?.get("/metrics")?;
    let metrics = String::from_utf8(metrics)?;
    ensure!(status == 200);
    for want in [
        "keyd_requests_total{route=\"/v1/sign\",status=\"200\"} 1",
        "keyd_requests_total{route=\"/v1/sign\",status=\"401\"} 1",
        "keyd_errors_total{code=\"key_not_valid\"} 1",
        "keyd_request_duration_seconds_count{route=\"/v1/sign\"} 2",
    ] {
        ensure!(metrics.contains(want), "{want} not in:\n{metrics}");
    }
    // Incremental fetch: entries from seq 3 on, with the head.
    let (_, tail) = c.anonymous()?.get("/v1/chain?since=3")?;
    ensure!(tail.len() < chain.len());
    Ok(())
}

#[test]
fn tokens_are_single_use_and_bad_input_gets_stable_codes() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin()?;
    let (status, added) = admin.post("/v1/nodes", &json!({"name": "db-1"}))?;
    ensure!(status == 201, "{added}");
    let token = added["token"].as_str().context("token")?.to_owned();
    let (node, _) = c.enroll(&token)?;
    let err = c.enroll(&token).err().context("replayed token must fail")?;
    ensure!(err.to_string().contains("bad_token"), "{err}");

    let err = c.enroll("00").err().context("unknown token must fail")?;
    ensure!(err.to_string().contains("bad_token"), "{err}");
    let anon = c.anonymous()?;
    let cases: Vec<(u16, &str, (u16, serde_json::Value))> = vec![
        (
            401,
            "unauthenticated",
            anon.post("/v1/sign", &json!({"data": "aGk="}))?,
        ),
        (
            400,
            "bad_base64",
            node.post("/v1/sign", &json!({"data": "!!"}))?,
        ),
        (
            400,
            "bad_json",
            node.post("/v1/sign", &json!({"dataa": "aGk="}))?,
        ),
        (
            400,
            "bad_json",
            node.post_raw("/v1/sign", "application/json", b"{\"data\":".to_vec())?,
        ),
        (
            415,
            "unsupported_media_type",
            node.post_raw("/v1/sign", "text/plain", b"{}".to_vec())?,
        ),
        (
            413,
            "too_large",
            node.post_raw("/v1/sign", "application/json", vec![b' '; 5 * 1024 * 1024])?,
        ),
        (
            400,
            "bad_batch",
            node.post("/v1/batch/sign", &json!({"items": []}))?,
        ),
        (
            400,
            "bad_batch",
            node.post(
                "/v1/batch/sign",
                &json!({"items": vec![json!({"data": ""}); 1001]}),
            )?,
        ),
        (
            400,
            "bad_length",
            node.post(
                "/v1/verify",
                &json!({"data": "", "signature": "aGk=", "public_key": "00"}),
            )?,
        ),
        (
            400,
            "bad_hex",
            node.post(
                "/v1/verify",
                &json!({"data": "", "signature": B64.encode([0u8; 64]), "public_key": "zz"}),
            )?,
        ),
        (
            404,
            "not_found",
            admin.post("/v1/nodes/nope/revoke", &json!({"reason": "x"}))?,
        ),
        (404, "not_found", admin.post("/v1/nowhere", &json!({}))?),
        (
            400,
            "bad_request",
            admin.post("/v1/nodes", &json!({"name": "bad name"}))?,
        ),
        (
            409,
            "chain_refused",
            admin.post("/v1/nodes", &json!({"name": "db-1"}))?,
        ),
        (
            401,
            "bad_token",
            anon.post("/v1/enroll", &json!({"token": "00", "csr": "not a csr"}))?,
        ),
        (
            400,
            "bad_query",
            anon.get("/v1/chain?since=x")
                .map(|(s, b)| (s, serde_json::from_slice(&b).unwrap_or_default()))?,
        ),
    ];
    for (want_status, want_code, (status, body)) in cases {
        ensure!(
            status == want_status && body["error"]["code"] == want_code,
            "want {want_status} {want_code}, got {status} {body}"
        );
        ensure!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // None of that changed anything: db-1 is still the only node added.
    let (_, chain) = anon.get("/v1/chain")?;
    ensure!(verify_file(&chain)?.state().find("db-1").is_some());
    ensure!(
        verify_file(&chain)?.len() == 5,
        "genesis and dc1 in the root log; anchor, db-1 certify and epoch in dc1's log"
    );
    Ok(())
}

#[test]
fn kill_9_loses_nothing_acknowledged() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin()?;
    let mut tokens = Vec::new();
    for i in 0..5 {
        let (status, added) = admin.post("/v1/nodes", &json!({"name": format!("n{i}")}))?;
        ensure!(status == 201, "{added}");
        tokens.push(added["token"].as_str().context("token")?.to_owned());
    }
    let (status, _) = admin.post("/v1/nodes/n4/revoke", &json!({"reason": "test"}))?;
    ensure!(status == 200);
    let (_, before) = c.anonymous()?.get("/v1/chain")?;
    c.kill9()?;
    c.serve()?;
    let (_, after) = c.anonymous()?.get("/v1/chain")?;
    let (b, a) = (verify_file(&before)?, verify_file(&after)?);
    ensure!(
        all_entries(&a) == all_entries(&b),
        "every acknowledged entry survived kill -9"
    );
    // Acknowledged tokens still work after the restart; revoked n4 stays revoked.
    let (node, _) = c.enroll(&tokens[0])?;
    let (status, _) = node.post("/v1/sign", &json!({"data": "aGk="}))?;
    ensure!(status == 200);
    let err = c.enroll(&tokens[4]).err().context("n4 is revoked")?;
    ensure!(err.to_string().contains("key_not_valid"), "{err}");
    Ok(())
}

#[test]
fn encrypt_decrypt_seal_unseal() -> Result<()> {
    let c = Cluster::start()?;
    let (alice, _) = c.enrolled_node("alice")?;
    let (bob, _) = c.enrolled_node("bob")?;
    let (carol, _) = c.enrolled_node("carol")?;
    let secret = b"the launch code is 0000";

    // Public-key: alice -> bob opens at bob only, and names alice as the sender.
    let (status, enc) = alice.post(
        "/v1/encrypt",
        &json!({"to": "bob", "plaintext": B64.encode(secret)}),
    )?;
    ensure!(status == 200, "{enc}");
    ensure!(enc["recipient"] == "m/1'/1'/1'/0'/0'", "{enc}");
    let envelope = enc["envelope"].clone();
    let (status, dec) = bob.post("/v1/decrypt", &json!({"envelope": envelope}))?;
    ensure!(status == 200, "{dec}");
    ensure!(B64.decode(dec["plaintext"].as_str().context("plaintext")?)? == secret);
    ensure!(dec["sender"] == "m/1'/1'/0'/0'/0'", "{dec}");
    for other in [&carol, &alice] {
        let (status, err) = other.post("/v1/decrypt", &json!({"envelope": envelope}))?;
        ensure!(
            status == 403 && err["error"]["code"] == "forbidden",
            "{err}"
        );
    }
    // Not readable in the envelope; tampering is caught.
    let raw = B64.decode(envelope.as_str().context("envelope")?)?;
    ensure!(!raw.windows(secret.len()).any(|w| w == secret));
    let mut tampered = raw.clone();
    let n = tampered.len();
    tampered[n - 70] ^= 1;
    let (status, err) = bob.post("/v1/decrypt", &json!({"envelope": B64.encode(&tampered)}))?;
    ensure!(
        status == 400 && err["error"]["code"] == "bad_envelope",
        "{err}"
    );
    let (status, err) = bob.post("/v1/decrypt", &json!({"envelope": B64.encode(b"junk")}))?;
    ensure!(
        status == 400 && err["error"]["code"] == "bad_envelope",
        "{err}"
    );
    let (status, err) = alice.post("/v1/encrypt", &json!({"to": "nobody", "plaintext": "aGk="}))?;
    ensure!(
        status == 404 && err["error"]["code"] == "not_found",
        "{err}"
    );

    // Symmetric: alice seals for herself; nobody else unseals.
    let (status, sealed) = alice.post("/v1/seal", &json!({"plaintext": B64.encode(secret)}))?;
    ensure!(status == 200, "{sealed}");
    let (status, opened) = alice.post("/v1/unseal", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(
        status == 200 && B64.decode(opened["plaintext"].as_str().context("pt")?)? == secret,
        "{opened}"
    );
    let (status, err) = bob.post("/v1/unseal", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(status == 403, "{err}");

    // A revoked sender's envelopes no longer decrypt.
    let (status, _) = c
        .admin()?
        .post("/v1/nodes/alice/revoke", &json!({"reason": "left"}))?;
    ensure!(status == 200);
    let (status, err) = bob.post("/v1/decrypt", &json!({"envelope": envelope}))?;
    ensure!(
        status == 400 && err["error"]["code"] == "key_not_valid",
        "{err}"
    );
    Ok(())
}

#[test]
fn rekey_rewrap_datakey() -> Result<()> {
    let c = Cluster::start()?;
    let (node, _) = c.enrolled_node("app")?;
    let (_, sealed) = node.post("/v1/seal", &json!({"plaintext": B64.encode(b"old data")}))?;
    let (status, rekeyed) = node.post("/v1/rekey", &json!({}))?;
    ensure!(
        status == 200 && rekeyed["key"] == "m/1'/1'/0'/0'/1'",
        "{rekeyed}"
    );
    // Signing moves to the new epoch; the old epoch still opens what it sealed.
    let (_, signed) = node.post("/v1/sign", &json!({"data": "aGk="}))?;
    ensure!(signed["epoch"] == 1, "{signed}");
    let (status, opened) = node.post("/v1/unseal", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(
        status == 200 && B64.decode(opened["plaintext"].as_str().context("pt")?)? == b"old data"
    );
    // Rewrap moves it to the current epoch.
    let (status, rewrapped) = node.post("/v1/rewrap", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(status == 200, "{rewrapped}");
    let raw = B64.decode(rewrapped["envelope"].as_str().context("env")?)?;
    let env = keyd::envelope::Sealed::from_cbor(&raw)?;
    ensure!(env.key == "m/1'/1'/0'/0'/1'".parse::<KeyPath>()?);
    // Admin rekeys a node by name; a node may not rekey another.
    let (status, r) = c.admin()?.post("/v1/nodes/app/rekey", &json!({}))?;
    ensure!(status == 200 && r["key"] == "m/1'/1'/0'/0'/2'", "{r}");
    let (status, _) = node.post("/v1/nodes/app/rekey", &json!({}))?;
    ensure!(status == 403);
    // The chain shows epoch 0 and 1 superseded, 2 current.
    let (_, chain) = c.anonymous()?.get("/v1/chain")?;
    let v = verify_file(&chain)?;
    let (current, _) = v
        .state()
        .current_epoch(&"m/1'/1'/0'".parse()?)
        .context("epoch")?;
    ensure!(current == 2);
    // A data key comes with its sealed form, which unseals to the same key.
    let (status, dk) = node.post("/v1/datakey", &json!({}))?;
    ensure!(status == 200, "{dk}");
    let (_, opened) = node.post("/v1/unseal", &json!({"envelope": dk["envelope"]}))?;
    ensure!(opened["plaintext"] == dk["key"]);
    ensure!(B64.decode(dk["key"].as_str().context("key")?)?.len() == 32);
    Ok(())
}

#[test]
fn batch_sign_and_verify() -> Result<()> {
    let c = Cluster::start()?;
    let (node, _) = c.enrolled_node("batcher")?;
    let items: Vec<_> = (0..1000)
        .map(|i| json!({"data": B64.encode(format!("item {i}"))}))
        .collect();
    let (status, signed) = node.post("/v1/batch/sign", &json!({"items": items}))?;
    ensure!(status == 200, "{signed}");
    let results = signed["results"].as_array().context("results")?;
    ensure!(results.len() == 1000);
    let (_, chain) = c.anonymous()?.get("/v1/chain")?;
    let v = verify_file(&chain)?;
    let key = v
        .state()
        .key(&results[0]["path"].as_str().context("path")?.parse()?)
        .context("key")?;
    let vk = VerifyingKey::from_bytes(&key.keys.ed25519)?;
    let mut checks = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let sig: [u8; 64] = B64
            .decode(r["signature"].as_str().context("sig")?)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("length"))?;
        vk.verify_strict(format!("item {i}").as_bytes(), &Signature::from_bytes(&sig))?;
        checks.push(json!({"data": B64.encode(format!("item {i}")), "signature": r["signature"], "public_key": hex::encode(key.keys.ed25519)}));
    }
    checks[7]["data"] = json!(B64.encode("forged"));
    let (status, verdicts) = node.post("/v1/batch/verify", &json!({"items": checks}))?;
    ensure!(status == 200, "{verdicts}");
    let verdicts = verdicts["results"].as_array().context("results")?;
    ensure!(
        verdicts
            .iter()
            .enumerate()
            .all(|(i, v)| v["valid"] == (i != 7))
    );
    Ok(())
}

/// keyctl against a running keyd: node add/list/revoke with the admin credential; sign,
/// verify, encrypt, decrypt and chain fetch with node credentials.
#[test]
fn keyctl_drives_keyd() -> Result<()> {
    use std::process::Command;
    let c = Cluster::start()?;
    let dir = c.dir.path();
    let keyctl = |args: &[&str]| -> Result<serde_json::Value> {
        let out = Command::new(&crate::helpers::bins().keyctl)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "keyctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)
            .unwrap_or(json!(String::from_utf8_lossy(&out.stdout))))
    };
    let data = c.data();
    let config = |name: &str, cert: &str, key: &str| -> Result<String> {
        let p = dir.join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "url = \"{}\"\nca = \"{}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n",
                c.addr,
                data.join("ca.pem").display()
            ),
        )?;
        Ok(p.to_string_lossy().into_owned())
    };
    let admin = config(
        "admin",
        &data.join("admin.pem").to_string_lossy(),
        &data.join("admin.key").to_string_lossy(),
    )?;
    // Two nodes, enrolled with keys and CSRs made here.
    let mut node_configs = Vec::new();
    for name in ["alpha", "beta"] {
        let added = keyctl(&["node", "add", name, "--config", &admin])?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)?
            .pem()?;
        let (status, enrolled) = c
            .anonymous()?
            .post("/v1/enroll", &json!({"token": added["token"], "csr": csr}))?;
        ensure!(status == 200, "{enrolled}");
        let cert_file = dir.join(format!("{name}.pem"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(
            &cert_file,
            enrolled["certificate"].as_str().context("cert")?,
        )?;
        std::fs::write(&key_file, key.serialize_pem())?;
        node_configs.push(config(
            name,
            &cert_file.to_string_lossy(),
            &key_file.to_string_lossy(),
        )?);
    }
    let (alpha, beta) = (&node_configs[0], &node_configs[1]);
    let msg = dir.join("msg.txt");
    std::fs::write(&msg, "signed by alpha")?;
    let m = msg.to_string_lossy().into_owned();
    let signed = keyctl(&["sign", "--config", alpha, "--in", &m])?;
    let chain_file = dir.join("fetched.cbor");
    // Two entries a page: keyctl pulls page after page, each verified.
    let fetched = keyctl(&[
        "chain",
        "fetch",
        "--config",
        beta,
        "--out",
        &chain_file.to_string_lossy(),
        "--page",
        "2",
    ])?;
    ensure!(fetched["verifies"] == true, "{fetched}");
    let v = verify_file(&std::fs::read(&chain_file)?)?;
    let key = v
        .state()
        .key(&signed["path"].as_str().context("path")?.parse()?)
        .context("key")?;
    let verdict = keyctl(&[
        "verify",
        "--config",
        beta,
        "--in",
        &m,
        "--signature",
        signed["signature"].as_str().context("sig")?,
        "--public-key",
        &hex::encode(key.keys.ed25519),
    ])?;
    ensure!(verdict["valid"] == true, "{verdict}");
    let env = dir.join("msg.env");
    let opened = dir.join("msg.out");
    keyctl(&[
        "encrypt",
        "--config",
        alpha,
        "--to",
        "beta",
        "--in",
        &m,
        "--out",
        &env.to_string_lossy(),
    ])?;
    let dec = keyctl(&[
        "decrypt",
        "--config",
        beta,
        "--in",
        &env.to_string_lossy(),
        "--out",
        &opened.to_string_lossy(),
    ])?;
    ensure!(std::fs::read(&opened)? == b"signed by alpha");
    ensure!(dec["sender"] == signed["path"], "{dec}");
    let list = keyctl(&["node", "list", "--config", &admin])?;
    ensure!(
        list["nodes"].as_array().is_some_and(|n| n.len() == 3),
        "{list}"
    );
    keyctl(&[
        "node", "revoke", "alpha", "--reason", "test", "--config", &admin,
    ])?;
    let out = Command::new(&crate::helpers::bins().keyctl)
        .args(["sign", "--config", alpha, "--in", &m])
        .output()?;
    // Exit 3: keyd refused (1 is kept for errors of keyctl's own).
    ensure!(out.status.code() == Some(3), "{}", out.status);
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        err.contains("key_not_valid") && err.contains("try:"),
        "{err}"
    );
    // Fetching again brings the chain file up to date with only what it lacked (the
    // revocation), verified incrementally; the result is the full chain.
    let fetched = keyctl(&[
        "chain",
        "fetch",
        "--config",
        beta,
        "--out",
        &chain_file.to_string_lossy(),
    ])?;
    ensure!(fetched["new_entries"] == 1, "{fetched}");
    let (_, full) = c.anonymous()?.get("/v1/chain")?;
    let (mine, theirs) = (
        verify_file(&std::fs::read(&chain_file)?)?,
        verify_file(&full)?,
    );
    ensure!(all_entries(&mine) == all_entries(&theirs));
    ensure!(
        !mine
            .state()
            .status_at(&"m/1'/1'/0'".parse()?, unix_now())
            .is_valid()
    );
    Ok(())
}

/// Every entry of every log, root log first.
fn all_entries(v: &keyd::chain::Chain) -> Vec<keyd::chain::Entry> {
    v.logs().flat_map(|(_, l)| l.entries.clone()).collect()
}

//! Attacks on a running keyd and the fixes that stop them (issue: hardening). Each test
//! performs the attack against a real keyd over mTLS and sees it fail.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hpke::{Deserializable, Kem, OpModeS, Serializable};
use keyd::chain::verify_file;
use keyd::derive::{KeyId, KeyPath};
use keyd::envelope::{ENVELOPE_VERSION, Encrypted, HPKE_INFO, SUITE_X25519};
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster};

pub(crate) fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The current epoch key of `node` in the chain keyd serves: path, key id, X25519 key.
fn epoch_of(c: &Cluster, node: &str) -> Result<(KeyPath, [u8; 16], [u8; 32])> {
    let chain = verify_file(&c.anonymous()?.get("/v1/chain")?.1)?;
    let state = chain.state();
    let (path, _) = state.find(node).context("node in the chain")?;
    let (epoch, record) = state.current_epoch(path).context("an epoch key")?;
    Ok((
        path.epoch_key(epoch).context("epoch path")?,
        KeyId::of_bytes(&record.keys.ed25519).0,
        record.keys.x25519,
    ))
}

fn sign(node: &Client, data: &[u8]) -> Result<(u16, Value)> {
    node.post("/v1/sign", &json!({"data": B64.encode(data)}))
}

#[test]
fn sign_refuses_keyds_own_domains_so_envelopes_cannot_be_forged() -> Result<()> {
    let c = Cluster::start()?;
    // web's application signs whatever its users send it (a common, legitimate use of
    // /v1/sign); the attacker wants db to believe a message comes from web.
    let (web, _) = c.enrolled_node("web")?;
    let (db, _) = c.enrolled_node("db")?;
    let (web_epoch, web_kid, _) = epoch_of(&c, "web")?;
    let (db_epoch, db_kid, db_x25519) = epoch_of(&c, "db")?;

    // The attacker builds an envelope to db "from web": HPKE to db's public X25519 key
    // (published in the chain), with web named as the sender in the associated data.
    let mut forged = Encrypted {
        v: ENVELOPE_VERSION,
        suite: SUITE_X25519.to_owned(),
        recipient: db_epoch,
        recipient_kid: Some(db_kid),
        sender: web_epoch,
        sender_kid: Some(web_kid),
        ctx: false,
        enc: Vec::new(),
        ct: Vec::new(),
        signature: [0; 64],
    };
    let pk = <hpke::kem::X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&db_x25519)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (enc, ct) = hpke::single_shot_seal::<
        hpke::aead::ChaCha20Poly1305,
        hpke::kdf::HkdfSha256,
        hpke::kem::X25519HkdfSha256,
    >(
        &OpModeS::Base,
        &pk,
        HPKE_INFO,
        b"wire 1,000,000 to account 666",
        &forged.aad(&[]),
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    forged.enc = enc.to_bytes().to_vec();
    forged.ct = ct;

    // The attack: have web's application sign the envelope's signed bytes.
    let (status, v) = sign(&web, &forged.signed_bytes())?;
    ensure!(
        status == 400 && code(&v) == "reserved_prefix",
        "web signed keyd's envelope domain: {status} {v}"
    );
    let (status, v) = web.post(
        "/v1/batch/sign",
        &json!({"items": [
            {"data": B64.encode(forged.signed_bytes())},
            {"data": B64.encode(b"keyd/")},
            {"data": B64.encode(b"an ordinary document")},
        ]}),
    )?;
    ensure!(status == 200, "{v}");
    let items = v["results"].as_array().context("results")?;
    ensure!(
        code(&items[0]) == "reserved_prefix"
            && code(&items[1]) == "reserved_prefix"
            && items[2]["signature"].is_string(),
        "{v}"
    );
    // Unsigned, the forged envelope is refused by db.
    let (status, v) = db.post(
        "/v1/decrypt",
        &json!({"envelope": B64.encode(forged.to_cbor())}),
    )?;
    ensure!(status == 400 && code(&v) == "bad_envelope", "{status} {v}");
    // Data that merely looks alike is signed: the rule is the prefix "keyd/".
    for ok in [
        &b"keyd"[..],
        b"keyd-v1/encrypted",
        b"KEYD/v1/encrypted",
        b" keyd/",
    ] {
        let (status, v) = sign(&web, ok)?;
        ensure!(
            status == 200,
            "{:?}: {status} {v}",
            String::from_utf8_lossy(ok)
        );
    }
    Ok(())
}

#[test]
fn envelope_senders_and_recipients_must_be_in_good_standing() -> Result<()> {
    let c = Cluster::start_with("sender_grace_seconds = 2\n")?;
    let (web, _) = c.enrolled_node("web")?;
    let (db, _) = c.enrolled_node("db")?;
    let admin = c.admin()?;
    let encrypt = |from: &Client, to: &str| -> Result<(u16, Value)> {
        from.post(
            "/v1/encrypt",
            &json!({"to": to, "plaintext": B64.encode(b"hello"), "suite": "x25519"}),
        )
    };
    let decrypt = |envelope: &str| db.post("/v1/decrypt", &json!({"envelope": envelope}));
    let (status, sent) = encrypt(&web, "db")?;
    ensure!(status == 200, "{sent}");
    let envelope = sent["envelope"].as_str().context("envelope")?.to_owned();

    // A sender's identity key never sends: an envelope naming it is refused before its
    // signature is even looked at.
    let mut as_identity = Encrypted::from_cbor(&B64.decode(&envelope)?)?;
    as_identity.sender = "m/1'/1'/0'".parse()?;
    let (status, v) = decrypt(&B64.encode(as_identity.to_cbor()))?;
    ensure!(
        status == 400 && code(&v) == "key_not_valid" && v.to_string().contains("never send"),
        "{status} {v}"
    );

    // web moves to its next epoch: its old epoch key still sends within the grace...
    let (status, v) = admin.post("/v1/nodes/web/rekey", &json!({}))?;
    ensure!(status == 200, "{v}");
    let (status, v) = decrypt(&envelope)?;
    ensure!(
        status == 200 && v["sender"] == "m/1'/1'/0'/0'/0'",
        "{status} {v}"
    );
    // ...and not after it: a stolen superseded key cannot keep writing as web.
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let (status, v) = decrypt(&envelope)?;
    ensure!(
        status == 400 && code(&v) == "key_not_valid" && v.to_string().contains("sender_grace"),
        "{status} {v}"
    );

    // A recipient whose validity window ended is not encrypted to.
    let (status, added) = admin.post("/v1/nodes", &json!({"name": "temp", "valid_seconds": 2}))?;
    ensure!(status == 201, "{added}");
    let (status, v) = encrypt(&web, "temp")?;
    ensure!(status == 200, "{status} {v}");
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let (status, v) = encrypt(&web, "temp")?;
    ensure!(
        status == 400 && code(&v) == "key_not_valid" && v.to_string().contains("recipient"),
        "{status} {v}"
    );
    let (status, v) = admin.post("/v1/nodes", &json!({"name": "forever", "valid_seconds": 0}))?;
    ensure!(status == 400, "{status} {v}");
    Ok(())
}

#[test]
fn keyds_files_on_disk_are_private() -> Result<()> {
    let c = Cluster::start()?;
    let mode = |p: &std::path::Path| crate::helpers::mode(p);
    ensure!(mode(&c.data())? == 0o700, "data directory");
    ensure!(mode(&c.data().join("keyd.redb"))? == 0o600, "the store");
    ensure!(mode(&c.data().join("admin.key"))? == 0o600, "the admin key");
    Ok(())
}

/// A client with a certificate and key stolen from another client: the same files.
fn copy_of(c: &Cluster, cert: &str, key: &str) -> Result<Client> {
    c.client(cert, key)
}

#[test]
fn a_copied_credential_dies_with_credentials_revoke_and_reenrollment() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin()?;
    // web enrolls; a thief copies its certificate and key.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let csr = |k: &rcgen::KeyPair| -> Result<String> {
        Ok(rcgen::CertificateParams::default()
            .serialize_request(k)?
            .pem()?)
    };
    let (status, added) = admin.post("/v1/nodes", &json!({"name": "web"}))?;
    ensure!(status == 201, "{added}");
    let (status, enrolled) = c.anonymous()?.post(
        "/v1/enroll",
        &json!({"token": added["token"], "csr": csr(&key)?}),
    )?;
    ensure!(status == 200, "{enrolled}");
    let cert = enrolled["certificate"]
        .as_str()
        .context("certificate")?
        .to_owned();
    let web = c.client(&cert, &key.serialize_pem())?;
    let thief = copy_of(&c, &cert, &key.serialize_pem())?;
    ensure!(sign(&thief, b"x")?.0 == 200, "the copy works until revoked");
    // The thief renews with a key of its own: still the same credential generation.
    let thief_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let (status, renewed) = thief.post("/v1/renew", &json!({"csr": csr(&thief_key)?}))?;
    ensure!(status == 200, "{renewed}");
    let thief_renewed = c.client(
        renewed["certificate"].as_str().context("certificate")?,
        &thief_key.serialize_pem(),
    )?;
    ensure!(sign(&thief_renewed, b"x")?.0 == 200);

    // The admin ends every credential of web at once; web's keys are untouched.
    let (status, v) = admin.post(
        "/v1/nodes/web/credentials/revoke",
        &json!({"reason": "laptop stolen"}),
    )?;
    ensure!(
        status == 200 && v["credentials"]["revoked"]["by"] == "admin",
        "{v}"
    );
    for (who, client) in [
        ("web", &web),
        ("copy", &thief),
        ("renewed copy", &thief_renewed),
    ] {
        let (status, v) = sign(client, b"x")?;
        ensure!(
            status == 401 && code(&v) == "key_not_valid" && v.to_string().contains("revoked"),
            "{who}: {status} {v}"
        );
        let (status, v) = client.post("/v1/renew", &json!({"csr": csr(&thief_key)?}))?;
        ensure!(status == 401, "{who} renews: {status} {v}");
    }
    // Across a restart too.
    c.kill9()?;
    c.serve()?;
    let thief = copy_of(&c, &cert, &key.serialize_pem())?;
    ensure!(
        sign(&thief, b"x")?.0 == 401,
        "the copy came back after a restart"
    );
    let admin = c.admin()?;

    // Only an admin's re-enrollment gives web a credential again: a new generation, in
    // which no copy of an older one counts.
    let (status, again) = admin.post("/v1/nodes/web/reenroll", &json!({}))?;
    ensure!(status == 201 && again["path"] == "m/1'/1'/0'", "{again}");
    let new_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let (status, enrolled) = c.anonymous()?.post(
        "/v1/enroll",
        &json!({"token": again["token"], "csr": csr(&new_key)?}),
    )?;
    ensure!(status == 200, "{enrolled}");
    let web = c.client(
        enrolled["certificate"].as_str().context("certificate")?,
        &new_key.serialize_pem(),
    )?;
    ensure!(sign(&web, b"x")?.0 == 200, "re-enrolled web signs");
    ensure!(sign(&thief, b"x")?.0 == 401, "the old copy stays dead");
    // Re-enrollment of something that is not a valid node of the branch is refused.
    for (name, want) in [("nope", 404), ("dc1", 403)] {
        let (status, v) = admin.post(&format!("/v1/nodes/{name}/reenroll"), &json!({}))?;
        ensure!(status == want, "{name}: {status} {v}");
    }
    // Nodes cannot revoke credentials; an admin not its own.
    let (status, _) = web.post("/v1/nodes/web/credentials/revoke", &json!({"reason": ""}))?;
    ensure!(status == 403);
    let (status, v) = admin.post(
        "/v1/admins/admin/credentials/revoke",
        &json!({"reason": ""}),
    )?;
    ensure!(status == 403, "{status} {v}");
    Ok(())
}

#[test]
fn a_credential_ends_after_its_maximum_life() -> Result<()> {
    let c = Cluster::start_with("credential_max_seconds = 2\nclient_cert_seconds = 5\n")?;
    let (node, _) = c.enrolled_node("web")?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)?
        .pem()?;
    let (status, renewed) = node.post("/v1/renew", &json!({"csr": csr}))?;
    ensure!(status == 200, "renewal within the maximum life: {renewed}");
    // (Times are whole seconds: more than 3 s is surely more than 2.)
    std::thread::sleep(std::time::Duration::from_millis(3200));
    // Older than credential_max: renewal is refused (a copy cannot keep itself alive)...
    let (status, v) = node.post("/v1/renew", &json!({"csr": csr}))?;
    ensure!(
        status == 401 && code(&v) == "key_not_valid" && v.to_string().contains("credential_max"),
        "{status} {v}"
    );
    // ...the certificate it holds still works until it expires, then nothing does.
    ensure!(sign(&node, b"x")?.0 == 200);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let (status, v) = sign(&node, b"x")?;
    ensure!(
        status == 401 && code(&v) == "certificate_expired",
        "{status} {v}"
    );
    Ok(())
}

#[test]
fn admin_credentials_end_at_once_and_break_glass_starts_a_new_generation() -> Result<()> {
    let mut c = Cluster::start()?;
    let dir = c.dir.path().join("creds");
    let out = dir.to_str().context("path")?.to_owned();
    c.kill9()?;
    c.keyd(&["admin", "issue", "ops", "--out", &out])?;
    c.serve()?;
    let ops = crate::nodes::credential(&c, &dir, "ops")?;
    let admin = c.admin()?;
    ensure!(admin.get("/v1/nodes")?.0 == 200);
    // ops ends every credential of admin (say its key leaked).
    let (status, v) = ops.post(
        "/v1/admins/admin/credentials/revoke",
        &json!({"reason": "key leaked"}),
    )?;
    ensure!(status == 200, "{v}");
    let (status, body) = admin.get("/v1/nodes")?;
    ensure!(status == 401, "{status} {}", String::from_utf8_lossy(&body));
    // Break glass: a new credential for admin, offline; the old one stays dead.
    c.kill9()?;
    let dir2 = c.dir.path().join("creds2");
    c.keyd(&[
        "admin",
        "issue",
        "admin",
        "--out",
        dir2.to_str().context("path")?,
    ])?;
    c.serve()?;
    let admin2 = crate::nodes::credential(&c, &dir2, "admin")?;
    ensure!(
        admin2.get("/v1/nodes")?.0 == 200,
        "the new admin credential works"
    );
    ensure!(
        c.admin()?.get("/v1/nodes")?.0 == 401,
        "the old one stays dead"
    );
    Ok(())
}

/// keyd's resident memory, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

#[test]
fn slow_bodies_are_cut_off_and_cannot_hold_keyds_memory() -> Result<()> {
    use std::io::{Read, Write};

    let c = Cluster::start_with("body_timeout_seconds = 2\nmax_connections_per_ip = 2000\n")?;
    let pid = c.pid().context("keyd runs")?;
    let (node, _) = c.enrolled_node("web")?;
    let before = rss_kib(pid)?;
    // 1,000 anonymous clients each announce the largest enrollment body, send half of
    // it, and stall.
    let head = "POST /v1/enroll HTTP/1.1\r\nHost: keyd\r\nContent-Type: application/json\r\nContent-Length: 16000\r\n\r\n";
    let mut stalled = Vec::new();
    for _ in 0..1000 {
        let mut tls = c.raw_tls()?;
        tls.write_all(head.as_bytes())?;
        tls.write_all(&[b' '; 8000])?;
        tls.flush()?;
        stalled.push(tls);
    }
    let during = rss_kib(pid)?;
    // keyd still serves.
    ensure!(sign(&node, b"still here")?.0 == 200);
    // Every stalled client gets 408 body_timeout and its connection is closed.
    let mut cut = 0;
    for tls in &mut stalled {
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        if answer.starts_with("HTTP/1.1 408") && answer.contains("body_timeout") {
            cut += 1;
        }
    }
    let after = rss_kib(pid)?;
    eprintln!(
        "keyd RSS: {before} KiB before, {during} KiB with 1,000 stalled 16 KB bodies, {after} KiB after they were cut off"
    );
    ensure!(cut == 1000, "{cut} of 1,000 stalled clients were cut off");
    ensure!(
        during < before + 128 * 1024,
        "keyd grew from {before} to {during} KiB"
    );
    // Nor does an anonymous client get more than 16 KiB buffered.
    let big = json!({"token": "x".repeat(20_000), "csr": ""});
    let (status, v) = c.anonymous()?.post("/v1/enroll", &big)?;
    ensure!(status == 413 && code(&v) == "too_large", "{status} {v}");
    Ok(())
}

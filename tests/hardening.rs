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

fn code(v: &Value) -> &str {
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
        &forged.aad(),
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

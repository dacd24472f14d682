//! Store integrity: someone who can write keyd's data directory (but not use its seal
//! token) plants an enrollment token, un-revokes a credential and removes a credential
//! record while keyd is down. keyd refuses each, logs it, and nothing else changes.

use anyhow::{Context, Result, ensure};
use redb::{Database, ReadableTable, TableDefinition};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cluster::{Client, Cluster};

const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
const GENERATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("generations");
const TAG: usize = 32;

fn csr(key: &rcgen::KeyPair) -> Result<String> {
    Ok(rcgen::CertificateParams::default()
        .serialize_request(key)?
        .pem()?)
}

/// Adds and enrolls node `name`: its certificate and key PEM.
fn enroll(c: &Cluster, name: &str) -> Result<(String, String)> {
    let (status, added) = c.admin()?.post("/v1/nodes", &json!({"name": name}))?;
    ensure!(status == 201, "{added}");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let (status, enrolled) = c.anonymous()?.post(
        "/v1/enroll",
        &json!({"token": added["token"], "csr": csr(&key)?}),
    )?;
    ensure!(status == 200, "{enrolled}");
    let cert = enrolled["certificate"].as_str().context("certificate")?;
    Ok((cert.to_owned(), key.serialize_pem()))
}

fn sign(node: &Client) -> Result<(u16, Value)> {
    node.post("/v1/sign", &json!({"data": "aGk="}))
}

#[test]
fn rows_planted_or_edited_in_the_data_directory_are_refused() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin()?;
    // web: an unused enrollment token. api: enrolled, then its credentials revoked.
    // db: enrolled, in good standing.
    let (status, web) = admin.post("/v1/nodes", &json!({"name": "web"}))?;
    ensure!(status == 201, "{web}");
    let web_token = web["token"].as_str().context("token")?.to_owned();
    let api = enroll(&c, "api")?;
    let db = enroll(&c, "db")?;
    let (status, v) = admin.post(
        "/v1/nodes/api/credentials/revoke",
        &json!({"reason": "copied"}),
    )?;
    ensure!(status == 200, "{v}");
    ensure!(sign(&c.client(&api.0, &api.1)?)?.0 == 401);
    ensure!(sign(&c.client(&db.0, &db.1)?)?.0 == 200);
    c.kill9()?;

    // The attacker, with write access to the data directory:
    let planted = "ab".repeat(32);
    let file = c.data().join("keyd.redb");
    {
        let store = Database::open(&file)?;
        let tx = store.begin_write()?;
        {
            let mut tokens = tx.open_table(TOKENS)?;
            // 1. a token of their own, with the record (and tag) of web's real token
            let web_hash = Sha256::digest(web_token.as_bytes());
            let web_row = tokens
                .get(web_hash.as_slice())?
                .context("web's token row")?
                .value()
                .to_vec();
            let planted_hash = Sha256::digest(planted.as_bytes());
            tokens.insert(planted_hash.as_slice(), web_row.as_slice())?;
            // ... and one more with a record of their own and a made-up tag
            let mut forged = web_row[..web_row.len() - TAG].to_vec();
            forged.extend_from_slice(&[0u8; TAG]);
            let other = Sha256::digest(b"cd".repeat(32));
            tokens.insert(other.as_slice(), forged.as_slice())?;
        }
        {
            let mut generations = tx.open_table(GENERATIONS)?;
            // 2. api's revocation edited away (the record is CBOR; the tag kept)
            let key = "keyd:node:m/1'/1'/1'";
            let row = generations
                .get(key)?
                .context("api's generation row")?
                .value()
                .to_vec();
            let (record, tag) = row.split_at(row.len() - TAG);
            let mut value: ciborium::Value = ciborium::from_reader(record)?;
            let map = value.as_map_mut().context("a map")?;
            for (k, v) in map.iter_mut() {
                if k.as_text() == Some("revoked") {
                    *v = ciborium::Value::Null;
                }
            }
            let mut edited = Vec::new();
            ciborium::into_writer(&value, &mut edited)?;
            edited.extend_from_slice(tag);
            generations.insert(key, edited.as_slice())?;
            // 3. db's credential record removed
            ensure!(generations.remove("keyd:node:m/1'/1'/2'")?.is_some());
        }
        tx.commit()?;
    }

    c.serve()?;
    // The planted tokens do not enroll.
    for token in [planted.clone(), "cd".repeat(32)] {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let (status, v) = c
            .anonymous()?
            .post("/v1/enroll", &json!({"token": token, "csr": csr(&key)?}))?;
        ensure!(
            status == 401 && v["error"]["code"] == "bad_token",
            "{status} {v}"
        );
    }
    // The un-revoked credential stays revoked; the one whose record was removed counts
    // for nothing (fail closed).
    let (status, v) = sign(&c.client(&api.0, &api.1)?)?;
    ensure!(
        status == 401 && v.to_string().contains("integrity"),
        "{status} {v}"
    );
    let (status, v) = sign(&c.client(&db.0, &db.1)?)?;
    ensure!(
        status == 401 && v.to_string().contains("no credential record"),
        "{status} {v}"
    );
    let log = c.log()?;
    ensure!(
        log.matches("fails its integrity tag").count() >= 3,
        "each refused row is logged:\n{log}"
    );
    // What keyd wrote itself still works: web's real token enrolls, and an admin's
    // re-enrollment gives api and db credentials again.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let (status, v) = c.anonymous()?.post(
        "/v1/enroll",
        &json!({"token": web_token, "csr": csr(&key)?}),
    )?;
    ensure!(status == 200, "{status} {v}");
    for name in ["api", "db"] {
        let (status, again) = c
            .admin()?
            .post(&format!("/v1/nodes/{name}/reenroll"), &json!({}))?;
        ensure!(status == 201, "{name}: {again}");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let (status, enrolled) = c.anonymous()?.post(
            "/v1/enroll",
            &json!({"token": again["token"], "csr": csr(&key)?}),
        )?;
        ensure!(status == 200, "{name}: {enrolled}");
        let node = c.client(
            enrolled["certificate"].as_str().context("certificate")?,
            &key.serialize_pem(),
        )?;
        ensure!(sign(&node)?.0 == 200, "{name} signs after re-enrollment");
    }
    ensure!(
        sign(&c.client(&api.0, &api.1)?)?.0 == 401,
        "the old api copy stays dead"
    );
    Ok(())
}

const LOGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("logs");

/// The branch log's rows as the chain pulled from keyd gives them.
fn pulled(c: &Cluster) -> Result<Vec<u8>> {
    let (status, bytes) = c.anonymous()?.get("/v1/chain")?;
    ensure!(status == 200, "GET /v1/chain: {status}");
    keyd::chain::verify_file(&bytes)?;
    Ok(bytes)
}

/// keyd keeps its logs' entries in its store and serves them from there: someone who can
/// write the data directory rewrites one entry of the branch log in another encoding of
/// the same entry, then changes a byte of it. keyd refuses to start on either, naming the
/// entry; with the row as keyd wrote it, keyd serves the very chain it served before.
#[test]
fn a_log_row_rewritten_in_the_data_directory_is_refused() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin()?;
    for name in ["web", "api", "db"] {
        let (status, v) = admin.post("/v1/nodes", &json!({"name": name}))?;
        ensure!(status == 201, "{v}");
    }
    let before = pulled(&c)?;
    c.kill9()?;

    let file = c.data().join("keyd.redb");
    let row = |edit: &dyn Fn(&[u8]) -> Vec<u8>| -> Result<Vec<u8>> {
        let store = Database::open(&file)?;
        let tx = store.begin_write()?;
        let original = {
            let mut logs = tx.open_table(LOGS)?;
            let original = logs
                .get(("m/1'", 2))?
                .context("entry 2 of the branch log")?
                .value()
                .to_vec();
            logs.insert(("m/1'", 2), edit(&original).as_slice())?;
            original
        };
        tx.commit()?;
        Ok(original)
    };
    // 1. The entry's seq (2) written in two bytes (0x18 0x02): valid CBOR of the same entry.
    let original = row(&|r| {
        let at = r
            .windows(5)
            .position(|w| w == [0x63, b's', b'e', b'q', 0x02])
            .unwrap_or(r.len());
        let mut longer = r.to_vec();
        longer.splice(at + 4..at + 5, [0x18, 0x02]);
        longer
    })?;
    let err = c.serve().expect_err("a rewritten row must not serve");
    ensure!(err.to_string().contains("did not start"), "{err:#}");
    let log = c.log()?;
    ensure!(
        log.contains("log m/1' entry 3") && log.contains("prev does not match"),
        "keyd names the entry whose link breaks:\n{log}"
    );
    // 2. A byte of its signature changed instead.
    row(&|_| {
        let mut changed = original.clone();
        let at = changed
            .windows(9)
            .position(|w| w == b"signature")
            .unwrap_or(0);
        changed[at + 9 + 2 + 7] ^= 0x01;
        changed
    })?;
    ensure!(c.serve().is_err(), "a changed row must not serve");
    // 3. As keyd wrote it: the same chain as before, served from the store.
    row(&|_| original.clone())?;
    c.serve()?;
    ensure!(
        pulled(&c)? == before,
        "the chain served from the store is the one served before"
    );
    Ok(())
}

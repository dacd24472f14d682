//! The ceremony vectors of docs/test-vectors.json (`ceremony`; format:
//! docs/formats/ceremony.md): root.json reads and checks, the transcript verifies
//! against it, its signed bytes are the canonical JSON the page describes, and signing
//! the body again with the vector root gives the same signature — so a serde_json
//! feature (say `preserve_order`) or an escaping change that alters the signed bytes
//! fails here. Also checked independently by docs/check_test_vectors.py.
//!
//! `cargo test -p keyctl --test ceremony_vectors -- --ignored --nocapture` prints the
//! section afresh (the committed vector must not change). The committed transcript
//! stores the body's members in reverse order, on purpose: a reader that signed the
//! body as stored instead of in canonical order (serde_json with `preserve_order`)
//! fails.

use anyhow::{Context, Result, ensure};
use keyctl::ceremony::RootJson;
use keyctl::ceremony::transcript;
use keyd::derive::{KeyPath, SoftwareRoot, derive_node};
use serde_json::{Value, json};

fn doc() -> Result<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors.json");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(serde_json::from_str(&text)?)
}

/// The vector root: the first root of the `keyd` vectors.
fn root(doc: &Value) -> Result<SoftwareRoot> {
    let hex_root = doc["keyd"]["roots"][0]["root_hex"]
        .as_str()
        .context("root_hex")?;
    Ok(SoftwareRoot::danger_from_bytes(&hex::decode(hex_root)?))
}

fn write(dir: &std::path::Path, name: &str, v: &Value) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v)?)?;
    Ok(path)
}

#[test]
fn root_json_and_the_transcript_verify_and_sign_again_to_the_same_bytes() -> Result<()> {
    let doc = doc()?;
    let v = &doc["ceremony"];
    let dir = tempfile::tempdir()?;
    let root_json = RootJson::read(&write(dir.path(), "root.json", &v["root_json"])?)?;
    let file = write(dir.path(), "transcript.json", &v["transcript"])?;
    let body = transcript::read_verified(&file, &root_json)?;
    ensure!(body == v["transcript"]["body"], "the verified body");
    let signed = transcript::signed_bytes(&body)?;
    ensure!(
        signed == v["signed"].as_str().context("signed")?.as_bytes(),
        "the signed bytes are the canonical JSON of the body"
    );
    let again = dir.path().join("again.json");
    transcript::write(&again, &root(&doc)?, body)?;
    let again: Value = serde_json::from_slice(&std::fs::read(&again)?)?;
    ensure!(
        again["signature"] == v["transcript"]["signature"],
        "signature"
    );
    ensure!(
        again["signer_key_id"] == v["transcript"]["signer_key_id"],
        "signer"
    );
    // One byte of the body changed: refused.
    let mut altered = v["transcript"].clone();
    altered["body"]["threshold"] = json!(2);
    let file = write(dir.path(), "altered.json", &altered)?;
    ensure!(
        transcript::read_verified(&file, &root_json).is_err(),
        "altered body"
    );
    Ok(())
}

/// Prints the `ceremony` section of docs/test-vectors.json.
#[test]
#[ignore = "prints the vector; run by hand when a ceremony file format changes"]
fn print_ceremony_vector() -> Result<()> {
    let doc = doc()?;
    let root = root(&doc)?;
    let keys = derive_node(&root, &KeyPath::root())?.public_keys();
    let fingerprint = keyd::chain::fingerprint(keys.ed25519.as_bytes());
    let root_json = json!({
        "format": "keyd-root/v1",
        "key_id": keys.key_id.to_string(),
        "ed25519_public": hex::encode(keys.ed25519.as_bytes()),
        "x25519_public": hex::encode(keys.x25519.as_bytes()),
        "fingerprint": fingerprint,
        "created_at": "2026-11-30T00:00:00Z",
        "threshold": 3,
        "shares": 5,
    });
    // Members out of order, nesting, escapes and non-ASCII: what canonical JSON settles.
    let body = json!({
        "format": "keyd-transcript/v1",
        "ceremony": "init",
        "cluster": "zürich/dc-1",
        "at": "2026-11-30T00:00:00Z",
        "root": {"key_id": keys.key_id.to_string(), "fingerprint": fingerprint,
            "ed25519_public": hex::encode(keys.ed25519.as_bytes())},
        "threshold": 3,
        "shares": 5,
        "share_commitments": ["0a", "0b", "0c", "0d", "0e"],
        "steps": ["a \"quoted\" step\twith a tab\nand a new line", "back\\slash, \u{1} and /"],
    });
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("transcript.json");
    transcript::write(&file, &root, body.clone())?;
    let transcript: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    let signed = String::from_utf8(transcript::signed_bytes(&body)?)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "root_json": root_json, "transcript": transcript, "signed": signed,
        }))?
    );
    Ok(())
}

//! keyctl's named-key commands, and the exact requests of cosign and go-kms-wrapping
//! (which cannot be installed here) replayed from fixtures recorded from their sources
//! (tests/fixtures/transit/replay, each naming its repository, path and commit).

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster};
use crate::transit::{call, ok};

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// A replayed request: `fixture` (under tests/fixtures/transit/replay) with the key
/// name replaced; the response's fields that client reads.
fn replay(node: &Client, fixture: &str, key: &str) -> Result<(u16, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/transit/replay");
    let f: Value = serde_json::from_slice(&std::fs::read(dir.join(fixture))?)?;
    let path = f["path"].as_str().context("path")?;
    let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
    // /v1/transit/OP/KEY[/HASH]: the key is the fourth segment.
    if parts.len() > 4 {
        parts[4] = key.to_owned();
    }
    let body = Some(f["request"].clone()).filter(|b| !b.is_null());
    call(
        node,
        f["method"].as_str().context("method")?,
        &parts.join("/"),
        body,
    )
}

#[test]
fn cosign_and_go_kms_wrapping_requests_replayed() -> Result<()> {
    let c = Cluster::start()?;
    let (node, _) = c.enrolled_node("ci")?;
    // cosign reads the key: latest_version a JSON number, keys[latest] with name and a
    // raw base64 public_key for ed25519.
    ok(
        &node,
        "PUT",
        "/v1/transit/keys/cosign",
        json!({"type": "ed25519"}),
    )?;
    let (status, v) = replay(&node, "cosign-read-key-ed25519.json", "cosign")?;
    ensure!(status == 200, "{v}");
    let latest = v["data"]["latest_version"]
        .as_u64()
        .context("latest_version")?;
    let entry = &v["data"]["keys"][latest.to_string()];
    ensure!(entry["name"] == "ed25519");
    ensure!(
        B64.decode(entry["public_key"].as_str().context("public_key")?)?
            .len()
            == 32
    );
    // cosign signs the whole message with an Ed25519 key (prehashed=false, no hash in
    // the path, key_version "0"), reads the signature after `vault:vN:`, and verifies
    // with the signature prefixed by the latest version.
    let (status, v) = replay(&node, "cosign-sign-ed25519.json", "cosign")?;
    let sig = v["data"]["signature"].as_str().context("signature")?;
    ensure!(status == 200 && sig.starts_with("vault:v1:"), "{v}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/transit/replay");
    let verify: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cosign-verify-ed25519.json"))?)?;
    let mut body = verify["request"].clone();
    body["signature"] = json!(sig);
    let valid = ok(&node, "PUT", "/v1/transit/verify/cosign", body.clone())?;
    ensure!(valid["valid"] == true, "{valid}");
    body["input"] = json!(b64(b"another payload"));
    ensure!(ok(&node, "PUT", "/v1/transit/verify/cosign", body)?["valid"] == false);
    // go-kms-wrapping: the probe encrypt, then encrypt and decrypt; the key id is the
    // middle of three colon-separated parts.
    ok(&node, "POST", "/v1/transit/keys/wrap", json!({}))?;
    let (status, v) = replay(&node, "go-kms-wrapping-encrypt-probe.json", "wrap")?;
    ensure!(status == 200, "{v}");
    let (status, v) = replay(&node, "go-kms-wrapping-encrypt.json", "wrap")?;
    let ct = v["data"]["ciphertext"].as_str().context("ciphertext")?;
    let parts: Vec<&str> = ct.split(':').collect();
    ensure!(
        status == 200 && parts.len() == 3 && parts[1] == "v1",
        "{ct}"
    );
    let f: Value =
        serde_json::from_slice(&std::fs::read(dir.join("go-kms-wrapping-encrypt.json"))?)?;
    let opened = ok(
        &node,
        "PUT",
        "/v1/transit/decrypt/wrap",
        json!({"ciphertext": ct}),
    )?;
    ensure!(opened["plaintext"] == f["request"]["plaintext"], "{opened}");
    Ok(())
}

#[test]
fn keyctl_creates_lists_shows_and_rotates_named_keys() -> Result<()> {
    use crate::cluster::{keyctl, keyctl_fails};
    let c = Cluster::start()?;
    crate::enroll::add_and_enroll(&c, &c.admin_config()?, "app", false)?;
    let config = c.dir.path().join("app/keyctl.toml");
    let config = config.to_str().context("path")?;
    let empty = keyctl(&["key", "list", "--config", config], &[])?;
    ensure!(empty["keys"] == json!([]), "{empty}");
    let created = keyctl(
        &[
            "key", "create", "signing", "--type", "ed25519", "--config", config,
        ],
        &[],
    )?;
    ensure!(
        created["type"] == "ed25519" && created["latest_version"] == 1,
        "{created}"
    );
    keyctl(&["key", "create", "backups", "--config", config], &[])?;
    let listed = keyctl(&["key", "list", "--config", config], &[])?;
    ensure!(listed["keys"] == json!(["backups", "signing"]), "{listed}");
    let rotated = keyctl(&["key", "rotate", "backups", "--config", config], &[])?;
    ensure!(rotated["latest_version"] == 2, "{rotated}");
    let shown = keyctl(&["key", "show", "backups", "--config", config], &[])?;
    ensure!(
        shown["type"] == "aes256-gcm96" && shown["keys"]["2"].is_u64(),
        "{shown}"
    );
    let err = keyctl_fails(&["key", "show", "nosuch", "--config", config], &[])?;
    ensure!(err.contains("nosuch"), "{err}");
    let err = keyctl_fails(&["key", "create", "bad name", "--config", config], &[])?;
    ensure!(err.contains("name"), "{err}");
    // An admin has no named keys.
    let err = keyctl_fails(&["key", "list", "--config", &c.admin_config()?], &[])?;
    ensure!(err.contains("permission denied"), "{err}");
    Ok(())
}

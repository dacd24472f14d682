//! keyctl commands that need no token: `vectors`, and argument errors.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::helpers::bins;

fn keyctl(args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(&bins().keyctl).args(args).output()?)
}

/// `keyctl vectors` prints exactly the published vectors.
#[test]
fn vectors_command_matches_published_vectors() -> Result<()> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/test-vectors.json"
    ))?;
    let doc: Value = serde_json::from_str(&text)?;
    let root = &doc["keyd"]["roots"][1];
    let root_hex = root["root_hex"].as_str().context("root_hex")?;
    for key in root["keys"].as_array().context("keys")? {
        let path = key["path"].as_str().context("path")?;
        let out = keyctl(&["vectors", "--root-hex", root_hex, "--path", path])?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout)?;
        let fields = got.as_object().context("object")?;
        ensure!(
            fields.len() == 4,
            "exactly path, key_id, ed25519_public, x25519_public: {got}"
        );
        for field in ["path", "key_id", "ed25519_public", "x25519_public"] {
            ensure!(got[field] == key[field], "{field} at {path}: {got}");
        }
    }
    Ok(())
}

#[test]
fn bad_paths_and_hex_are_named() -> Result<()> {
    let root = "00".repeat(64);
    let cases: &[(&[&str], &str)] = &[
        (
            &["vectors", "--root-hex", &root, "--path", "m/1'/2"],
            "component 2 (2) is not hardened",
        ),
        (
            &["vectors", "--root-hex", &root, "--path", "1'/2'"],
            "must start with \"m\"",
        ),
        (
            &["vectors", "--root-hex", &root, "--path", "m/x'"],
            "component 1 (\"x'\")",
        ),
        (
            &["vectors", "--root-hex", "abc", "--path", "m"],
            "--root-hex: expected 128 hex digits",
        ),
        (
            &["vectors", "--root-hex", &"zz".repeat(64), "--path", "m"],
            "--root-hex",
        ),
        (
            &["vectors", "--root-hex", &"00".repeat(32), "--path", "m"],
            "--root-hex: expected 128 hex digits",
        ),
    ];
    for (args, want) in cases {
        let out = keyctl(args)?;
        ensure!(out.status.code() == Some(1), "{args:?}: {}", out.status);
        let err = String::from_utf8(out.stderr)?;
        ensure!(err.contains(want), "{args:?}: {err}");
        ensure!(out.stdout.is_empty(), "{args:?} printed output");
    }
    Ok(())
}

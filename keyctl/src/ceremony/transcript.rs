//! Signed, human-readable ceremony transcripts.
//!
//! A transcript file is `{"body": {...}, "signer_key_id": ..., "signature": ...}`; the
//! signature is Ed25519 by the root identity key over the body serialised as compact
//! JSON with sorted keys (serde_json's default map order), so anyone can re-serialise
//! the body and verify it.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use keyd::derive::{self, KeyPath, RootSecret};
use serde_json::{Value, json};

use super::RootJson;
use crate::error::CtlError;
use crate::files;

/// Largest transcript read.
const MAX_TRANSCRIPT: u64 = 1024 * 1024;

/// Signs `body` with the root identity key and writes the transcript to `path` (0600,
/// new file).
pub fn write(path: &Path, root: &dyn RootSecret, body: Value) -> Result<(), CtlError> {
    let material = derive::derive_node(root, &KeyPath::root())?.material();
    let signed = signed_bytes(&body)?;
    let signature = material.signing_key().sign(&signed);
    let file = json!({
        "body": body,
        "signer_key_id": material.public_keys().key_id.to_string(),
        "signature": hex::encode(signature.to_bytes()),
    });
    Ok(files::write_private(path, &files::pretty_json(&file)?)?)
}

/// The bytes a transcript signature covers.
pub fn signed_bytes(body: &Value) -> Result<Vec<u8>, CtlError> {
    Ok(serde_json::to_vec(body)?)
}

/// Reads a transcript and checks its signature by the root of `root`; returns the body.
pub fn read_verified(path: &Path, root: &RootJson) -> Result<Value, CtlError> {
    use std::io::Read;
    let bad =
        |message: String| CtlError::Mismatch(format!("transcript {}: {message}", path.display()));
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TRANSCRIPT).read_to_string(&mut text))
        .map_err(CtlError::io("cannot read", path))?;
    let file: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let body = file
        .get("body")
        .cloned()
        .ok_or_else(|| bad("no body".into()))?;
    let signature = file
        .get("signature")
        .and_then(Value::as_str)
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| bad("no 64-byte hex signature".into()))?;
    let mut public = [0u8; 32];
    hex::decode_to_slice(&root.ed25519_public, &mut public)
        .map_err(|_| bad("root.json has no Ed25519 key".into()))?;
    let key = VerifyingKey::from_bytes(&public)
        .map_err(|_| bad("root.json has no Ed25519 key".into()))?;
    key.verify_strict(&signed_bytes(&body)?, &signature)
        .map_err(|_| {
            bad(format!(
                "the signature is not root {}'s: the transcript was altered or is of another root",
                root.key_id
            ))
        })?;
    Ok(body)
}

//! Signed, human-readable ceremony transcripts.
//!
//! A transcript file is `{"body": {...}, "signer_key_id": ..., "signature": ...}`; the
//! signature is Ed25519 by the root identity key over the body serialised as compact
//! JSON with sorted keys (serde_json's default map order), so anyone can re-serialise
//! the body and verify it.

use std::path::Path;

use ed25519_dalek::Signer;
use keyd::derive::{self, KeyPath, RootSecret};
use serde_json::{Value, json};

use crate::error::CtlError;
use crate::files;

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
    files::write_private(path, &files::pretty_json(&file)?)
}

/// The bytes a transcript signature covers.
pub fn signed_bytes(body: &Value) -> Result<Vec<u8>, CtlError> {
    Ok(serde_json::to_vec(body)?)
}

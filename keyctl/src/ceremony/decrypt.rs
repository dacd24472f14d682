//! `keyctl ceremony decrypt`: the root opens any envelope of its cluster, offline.

use std::path::{Path, PathBuf};

use keyd::derive::{self, KeyPath};
use keyd::envelope::{EnvelopeError, RecoverError, open_as_ancestor};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::CtlError;
use crate::files;

/// Opens every envelope in `inputs` with keys derived through the root token, then
/// writes each plaintext to `out/NAME.plain` (0600): all of them, or none when one does
/// not open (the error names it).
pub fn decrypt(
    uri: &str,
    inputs: &[PathBuf],
    context: Option<&str>,
    out: &Path,
) -> Result<Value, CtlError> {
    if !files::is_absent_or_empty(out) {
        return Err(CtlError::OutExists(out.to_owned()));
    }
    let envelopes = inputs
        .iter()
        .map(|f| std::fs::read(f).map_err(CtlError::io("cannot read", f)))
        .collect::<Result<Vec<_>, _>>()?;
    let hsm = super::open(uri)?;
    let root = hsm.root()?;
    let derive = |p: &KeyPath| {
        derive::derive_node(&root, p)
            .map(|n| n.material())
            .map_err(|e| e.to_string())
    };
    let context = context.unwrap_or_default().as_bytes();
    let mut opened = Vec::with_capacity(inputs.len());
    for (file, bytes) in inputs.iter().zip(&envelopes) {
        let r = open_as_ancestor(bytes, context, derive, |p| {
            derive(p).map(|m| m.signing_key().verifying_key())
        })
        .map_err(|e| refused(file, e))?;
        opened.push((file, r));
    }
    files::create_private_dir(out).or_else(|e| if out.is_dir() { Ok(()) } else { Err(e) })?;
    let mut report = Vec::with_capacity(opened.len());
    for (file, r) in opened {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "envelope".into());
        let target = out.join(format!("{name}.plain"));
        files::write_private(&target, &r.plaintext)?;
        let plaintext: Zeroizing<Vec<u8>> = r.plaintext;
        let mut line = json!({
            "in": file.display().to_string(),
            "kind": r.kind,
            "key": r.key.to_string(),
            "bytes": plaintext.len(),
            "out": target.display().to_string(),
        });
        if let Some(sender) = r.sender {
            line["sender"] = sender.to_string().into();
        }
        report.push(line);
    }
    Ok(json!({ "opened": report }))
}

/// Why `file` did not open, in the words an operator needs.
fn refused(file: &Path, e: RecoverError) -> CtlError {
    match e {
        RecoverError::Envelope(e @ EnvelopeError::KeyId { .. }) => CtlError::Mismatch(format!(
            "{}: {e}: not an envelope of this root's cluster (or of a key it never made)",
            file.display()
        )),
        RecoverError::Envelope(EnvelopeError::Signature) => CtlError::Mismatch(format!(
            "{}: the sender's signature does not verify with the sender's key under this root: not from this cluster, or altered",
            file.display()
        )),
        other => CtlError::Arg {
            flag: "--in",
            message: format!("{}: {other}", file.display()),
        },
    }
}

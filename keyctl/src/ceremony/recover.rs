//! `keyctl ceremony recover`: rebuild the root from shares into a fresh token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keyd::derive::SoftwareRoot;
use serde_json::{Value, json};

use super::custodian::Keys;
use super::shares::Committed;
use super::{RootJson, now, root_identity, shares, transcript};
use crate::error::CtlError;

/// Rebuilds `R` from `share_files` and imports it into the token, after checking
/// everything that can be checked without touching the token: the init transcript's
/// signature by this root, every share file (opened with `keys` when encrypted to its
/// custodian) against its commitment there, that the shares are distinct, of this root
/// and enough, and that they rebuild the root identity in `expect`. Then proves the
/// import by re-deriving the root identity through the token (and destroys the import
/// if that fails).
pub fn run(
    uri: &str,
    share_files: &[PathBuf],
    keys: &Keys,
    expect: &Path,
    init_transcript: &Path,
    transcript_path: Option<&Path>,
) -> Result<RootJson, CtlError> {
    let root = RootJson::read(expect)?;
    let committed = commitments(init_transcript, &root)?;
    let mut loaded = Vec::with_capacity(share_files.len());
    let progress = crate::progress::steps(share_files.len() as u64 + 1);
    for file in share_files {
        progress.set_message(format!("opening {}", file.display()));
        loaded.push((file.clone(), shares::read(file, keys)?));
        progress.inc(1);
    }
    progress.set_message("rebuilding the root and importing it into the token");
    let secret = shares::combine(&loaded, &root.root_ref(), Some(&committed))?;
    let rebuilt = root_identity(&SoftwareRoot::danger_from_bytes(&secret))?;
    if !root.matches(&rebuilt) {
        return Err(CtlError::Mismatch(format!(
            "the shares rebuild root {}, not root {} of {}; nothing was written to the token",
            rebuilt.key_id,
            root.key_id,
            expect.display()
        )));
    }
    if let Some(t) = transcript_path.filter(|t| t.exists()) {
        return Err(CtlError::OutExists(t.to_owned()));
    }

    let hsm = super::open(uri)?;
    hsm.import_root(&secret)?;
    drop(secret);
    progress.inc(1);
    progress.finish_and_clear();
    let proved = (|| {
        let hsm_root = hsm.root()?;
        if !root.matches(&root_identity(&hsm_root)?) {
            return Err(CtlError::Mismatch(
                "the token derives a different root identity than the rebuilt secret".into(),
            ));
        }
        if let Some(t) = transcript_path {
            let body = json!({
                "format": "keyd-transcript/v1",
                "ceremony": "recover",
                "at": now(),
                "token": hsm.token_label(),
                "object": hsm.root_label(),
                "root": {"key_id": root.key_id, "fingerprint": root.fingerprint},
                "shares_used": loaded.iter().map(|(_, s)| s.index).collect::<Vec<_>>(),
                "steps": [
                    "the init transcript's signature checked against root.json",
                    "every share opened, its checksum, root fingerprint and index checked, and its commitment in the init transcript matched",
                    "R rebuilt and its root identity matched root.json before the token was touched",
                    "R imported non-extractable; the root identity re-derived through the token matched",
                ],
            });
            transcript::write(t, &hsm_root, body)?;
        }
        Ok(())
    })();
    if let Err(e) = proved {
        let _ = hsm.danger_destroy_root();
        return Err(e);
    }
    Ok(root)
}

/// The share commitments of a signed `init` transcript of `root`.
fn commitments(path: &Path, root: &RootJson) -> Result<BTreeMap<u8, Committed>, CtlError> {
    let body = transcript::read_verified(path, root)?;
    let bad = |m: &str| CtlError::Mismatch(format!("transcript {}: {m}", path.display()));
    if body.get("ceremony").and_then(Value::as_str) != Some("init") {
        return Err(bad("not the transcript of `ceremony init`"));
    }
    let list = body
        .get("share_commitments")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("holds no share commitments (made by an older keyctl?)"))?;
    let mut out = BTreeMap::new();
    for item in list {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| u8::try_from(i).ok())
            .ok_or_else(|| bad("a share commitment has no index"))?;
        let commitment = item
            .get("commitment")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a share commitment has no commitment"))?
            .to_owned();
        let custodian = item
            .get("custodian")
            .and_then(Value::as_str)
            .map(str::to_owned);
        out.insert(
            index,
            Committed {
                commitment,
                custodian,
            },
        );
    }
    Ok(out)
}

//! Following a root rekey from a held chain: when keyd serves the chain of another root
//! than the one a held chain file has, keyctl asks keyd for the previous root's chain
//! (`GET /v1/chain/succession`), checks that it extends the held chain and ends in a
//! succession naming exactly the root keyd now serves, and only then replaces the file
//! (keeping the old chain beside it as `FILE.succeeded`). Anything else is refused: a
//! root the old root did not name is another cluster.

use std::path::Path;

use keyd::chain::Chain;
use keyd::client::Client;
use serde_json::{Value, json};

use crate::error::CtlError;
use crate::files;

/// Tries to follow a succession from the chain held in `out` to the chain keyd serves:
/// the new chain and what the report adds, or none when keyd keeps no previous root.
pub fn follow(keyd: &Client, out: &Path, page: usize) -> Result<Option<(Chain, Value)>, CtlError> {
    let Some(bytes) = keyd.succession()? else {
        return Ok(None);
    };
    let mismatch = |m: String| CtlError::Mismatch(format!("{}: {m}", out.display()));
    let mut old = crate::chain_cmd::load(out)?;
    let old_root = old
        .state()
        .root_keys()
        .map(|k| keyd::chain::fingerprint(&k.ed25519))
        .unwrap_or_default();
    old.update(&bytes).map_err(|e| {
        mismatch(format!(
            "keyd's previous root chain does not extend this chain ({e}): it is not the chain of this cluster"
        ))
    })?;
    let successor = *old.state().successor().ok_or_else(|| {
        mismatch(
            "keyd serves another root, and its previous root's chain names no successor".into(),
        )
    })?;
    let mut new = Chain::new();
    keyd.fetch_chain(&mut new, page, |_, _| {})
        .map_err(|e| match e {
            keyd::client::ChainFetchError::Client(e) => e.into(),
            keyd::client::ChainFetchError::Chain(error) => CtlError::Chain {
                file: out.to_owned(),
                error,
            },
        })?;
    if new.state().root_keys() != Some(&successor) {
        return Err(mismatch(format!(
            "keyd serves a root the old root did not name (it named {}): refused",
            keyd::chain::fingerprint(&successor.ed25519)
        )));
    }
    let kept = out.with_extension("succeeded");
    files::replace_atomic(&kept, &old.to_file(), 0o644)?;
    let new_root = keyd::chain::fingerprint(&successor.ed25519);
    let trusted: Vec<String> = old
        .state()
        .trusted()
        .map(|(_, t)| t.cluster.clone())
        .collect();
    Ok(Some((
        new,
        json!({
            "succession": {
                "old_root": old_root,
                "new_root": new_root,
                "old_chain": kept.display().to_string(),
                "trust_to_reestablish": trusted,
                "note": "the cluster's root was replaced: keys of the old root vouch for nothing; trust given to or by other clusters under the old root must be established again",
            }
        }),
    )))
}

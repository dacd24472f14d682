//! `keyctl ceremony rebuild`: a lost keyd's branch, sealed again from the root to a new
//! keyd's install key, with the cluster chain (the root log and that branch's log as a
//! peer keyd or a node holds them): the new keyd continues the branch log — every node,
//! epoch and revocation in it — and never starts it again.

use std::path::Path;

use keyd::bundle::BranchBundle;
use keyd::chain::{Body, KeyKind};
use keyd::derive::{self, KeyPath};

use crate::error::CtlError;
use crate::files;

/// What `rebuild` sealed.
#[derive(Debug)]
pub struct Rebuilt {
    /// The branch.
    pub path: KeyPath,
    /// Its name.
    pub name: String,
    /// Entries of its log in the chain, and its head's seq and time.
    pub entries: usize,
    /// The branch log's head: seq and when it was signed.
    pub head: Option<(u64, u64)>,
}

/// Seals branch `m/index'` of the token's root to `install_key`, with the chain of
/// `chain_file` (verified, of this root, holding the branch certified and not revoked),
/// into `out` (a new file).
pub fn rebuild(
    uri: &str,
    chain_file: &Path,
    index: u32,
    install_key: &str,
    out: &Path,
) -> Result<Rebuilt, CtlError> {
    let (install, path, hsm) = super::branch::branch_target(uri, index, install_key, out)?;
    let (chain, _) = super::branch::load_for(&hsm, chain_file)?;
    let state = chain.state();
    let name = match state.key(&path).map(|r| &r.kind) {
        Some(KeyKind::Node { name, .. }) => name.clone(),
        _ => {
            return Err(CtlError::Mismatch(format!(
                "{} does not certify branch {path} (issue it with `keyctl ceremony issue`)",
                chain_file.display()
            )));
        }
    };
    if let Some((revoked, r)) = state.revocation(&path) {
        return Err(CtlError::Mismatch(format!(
            "branch {path} is revoked ({revoked} by {} at seq {}: {:?}): a revoked branch is not rebuilt",
            r.by, r.seq, r.reason
        )));
    }
    let entries = chain.entries(&path);
    if !entries
        .first()
        .is_some_and(|e| matches!(e.statement.body, Body::Anchor(_)))
    {
        return Err(CtlError::Mismatch(format!(
            "{} holds no log of branch {path}: fetch it from a peer keyd or a node (`keyctl chain fetch`), or, if the branch never served, issue it afresh",
            chain_file.display()
        )));
    }
    let root = hsm.root()?;
    let branch = derive::derive_node(&root, &path)?;
    let head = chain.head(&path).map(|h| (h.seq, h.signed_at));
    let carried = chain.file_of([&KeyPath::root(), &path]);
    let sealed = BranchBundle::seal(&name, &path, &branch, &install, carried)?;
    files::write_private(out, &sealed.to_cbor())?;
    Ok(Rebuilt {
        path,
        name,
        entries: entries.len(),
        head,
    })
}

//! `keyctl ceremony trust` and `untrust`: cluster-wide trust in another cluster's root,
//! signed by this root in the root log (keyds take it with `keyctl chain push`). Where
//! a keyd's branch log also trusts that root (an exchange), the root's word wins for
//! what is granted; the keyd's exchange still gives the other cluster's chain.

use std::path::Path;

use keyd::chain::{Body, Statement, Trust, TrustLevel, Untrust};
use keyd::derive::KeyPath;

use super::RootJson;
use crate::chain_cmd::unix_now;
use crate::error::CtlError;
use crate::files;

/// Chain files are public.
const CHAIN_MODE: u32 = 0o644;

/// The other root's Ed25519 key, from its root.json.
fn other_root(root_json: &Path) -> Result<[u8; 32], CtlError> {
    let other = RootJson::read(root_json)?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(&other.ed25519_public, &mut key).map_err(|_| CtlError::RootFile {
        path: root_json.to_owned(),
        message: "ed25519_public is not 64 hex digits".into(),
    })?;
    Ok(key)
}

/// Appends a root-signed statement to `chain_file`'s root log.
fn append(uri: &str, chain_file: &Path, body: Body) -> Result<u64, CtlError> {
    let hsm = super::open(uri)?;
    let (mut w, key) = super::branch::load_for(&hsm, chain_file)?;
    super::branch::append(
        &mut w,
        Statement::sign(body, KeyPath::root(), unix_now(), &key),
    )?;
    let seq = w.state().link(&KeyPath::root()).next_seq - 1;
    files::replace_atomic(
        chain_file,
        &super::branch::chain_bytes(&mut w, &key)?,
        CHAIN_MODE,
    )?;
    Ok(seq)
}

/// `ceremony trust`: the root trusts the cluster `cluster` of `root_json`.
pub fn trust(
    uri: &str,
    chain_file: &Path,
    (cluster, root_json): (&str, &Path),
    (level, permissions, expires_at): (TrustLevel, Vec<String>, u64),
) -> Result<u64, CtlError> {
    let root = other_root(root_json)?;
    append(
        uri,
        chain_file,
        Body::Trust(Trust {
            cluster: cluster.to_owned(),
            root,
            level,
            permissions,
            expires_at,
            introduced_by: None,
        }),
    )
}

/// `ceremony untrust`: the root ends its trust in the cluster of `root_json`.
pub fn untrust(
    uri: &str,
    chain_file: &Path,
    root_json: &Path,
    reason: &str,
) -> Result<u64, CtlError> {
    let root = other_root(root_json)?;
    append(
        uri,
        chain_file,
        Body::Untrust(Untrust {
            root,
            reason: reason.to_owned(),
        }),
    )
}

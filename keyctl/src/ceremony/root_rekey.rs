//! `keyctl ceremony root-rekey`: the root replaced. A new root is made on a fresh token
//! (new secret, new shares: `init`), the old root signs a `succession` naming it — the
//! last word of the old root log — and every live level-1 branch is certified again
//! under the new root (same index, name and validity, new keys) and sealed to its keyd's
//! install key. Each keyd then moves its tree with `keyd root-rekey`.
//!
//! Nothing is left half-done: every argument is checked and every branch accounted for
//! before the new token is touched; if a later step fails, the new root is destroyed
//! again and the output directory removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keyd::bundle::{self, BranchBundle};
use keyd::chain::{Body, Certify, Chain, KeyKind, Statement, Succession};
use keyd::derive::{self, KeyPath};
use serde_json::json;

use super::init::{InitOutcome, ShareTo};
use super::{fingerprint, now, transcript};
use crate::chain_cmd::{self, unix_now};
use crate::error::CtlError;
use crate::files;

/// A re-issued branch.
#[derive(Debug)]
pub struct Reissued {
    /// Its path.
    pub path: KeyPath,
    /// Its name.
    pub name: String,
    /// Its new key id.
    pub key_id: String,
    /// Its bundle.
    pub bundle: PathBuf,
}

/// What `root-rekey` did.
#[derive(Debug)]
pub struct RootRekeyed {
    /// The old root's fingerprint.
    pub old_fingerprint: String,
    /// The new root (as `init` made it, in `out/new-root`).
    pub new: InitOutcome,
    /// Seq of the succession in the old root log.
    pub succession_seq: u64,
    /// The old root log ending in the succession.
    pub succession_file: PathBuf,
    /// The branches re-issued.
    pub branches: Vec<Reissued>,
    /// The clusters the old chain trusts: that trust was given under the old root and
    /// must be established again.
    pub trust_ended: Vec<String>,
}

/// Parses `--branch I=INSTALL_PUBLIC_KEY`.
fn parse_branch(arg: &str) -> Result<(u32, [u8; 32]), CtlError> {
    let bad = |message: String| CtlError::Arg {
        flag: "--branch",
        message,
    };
    let (index, key) = arg
        .split_once('=')
        .ok_or_else(|| bad(format!("{arg:?}: expected I=INSTALL_PUBLIC_KEY")))?;
    let index: u32 = index
        .parse()
        .ok()
        .filter(|i| *i < 1 << 31)
        .ok_or_else(|| bad(format!("{index:?} is not a branch index below 2^31")))?;
    let key = bundle::parse_install_public(key)
        .map_err(|e| bad(format!("install key of branch {index}: {e}")))?;
    Ok((index, key))
}

/// The live level-1 branches of `chain`: path → (name, role, not_after).
fn live_branches(chain: &Chain) -> BTreeMap<KeyPath, (String, String, u64)> {
    let state = chain.state();
    state
        .keys()
        .filter(|(p, _)| p.depth() == 1 && state.revocation(p).is_none())
        .filter_map(|(p, r)| match &r.kind {
            KeyKind::Node {
                name,
                role,
                not_after,
                ..
            } => Some((p.clone(), (name.clone(), role.clone(), *not_after))),
            _ => None,
        })
        .collect()
}

/// Runs the ceremony; see the module documentation.
pub fn run(
    old_uri: &str,
    new_uri: &str,
    chain_file: &Path,
    share_to: &ShareTo,
    threshold: u8,
    branch_args: &[String],
    out: &Path,
) -> Result<RootRekeyed, CtlError> {
    let mut wanted = BTreeMap::new();
    for arg in branch_args {
        let (index, key) = parse_branch(arg)?;
        if wanted.insert(index, key).is_some() {
            return Err(CtlError::Arg {
                flag: "--branch",
                message: format!("branch {index} is named twice"),
            });
        }
    }
    if !files::is_absent_or_empty(out) {
        return Err(CtlError::OutExists(out.to_owned()));
    }
    let old_hsm = super::open(old_uri)?;
    let (mut old_chain, old_key) = super::branch::load_for(&old_hsm, chain_file)?;
    let state = old_chain.state();
    if let Some(next) = state.successor() {
        return Err(CtlError::Mismatch(format!(
            "{} already names a successor of its root ({}): a root is replaced once",
            chain_file.display(),
            keyd::chain::fingerprint(&next.ed25519)
        )));
    }
    let cluster = match state.key(&KeyPath::root()).map(|r| &r.kind) {
        Some(KeyKind::Root { cluster }) => cluster.clone(),
        _ => return Err(CtlError::Mismatch("the chain has no genesis".into())),
    };
    let branches = live_branches(&old_chain);
    let named: Vec<u32> = wanted.keys().copied().collect();
    let live: Vec<u32> = branches.keys().filter_map(|p| p.indexes().next()).collect();
    if named != live {
        return Err(CtlError::Arg {
            flag: "--branch",
            message: format!(
                "the live branches of the chain are {live:?}, and --branch names {named:?}: name each live branch once, with its keyd's install key (a branch to drop is revoked first: `keyctl ceremony revoke`)"
            ),
        });
    }
    let trust_ended = state
        .trusted()
        .map(|(root, t)| format!("{} ({})", t.cluster, keyd::chain::fingerprint(root)))
        .collect();
    let old_fingerprint = fingerprint(&old_key.verifying_key());

    std::fs::create_dir_all(out).map_err(CtlError::io("cannot create directory", out))?;
    let new_dir = out.join("new-root");
    let new = super::init::run(new_uri, share_to, threshold, &cluster, &new_dir)?;
    let new_hsm = super::open(new_uri)?;
    let done = (|| {
        let new_root = new_hsm.root()?;
        let new_key = super::branch::root_signing_key(&new_root)?;
        let new_chain_file = new_dir.join("chain.cbor");
        let mut new_chain = chain_cmd::load(&new_chain_file)?;
        let now_s = unix_now();
        let mut sealed = Vec::new();
        for (path, (name, role, not_after)) in &branches {
            let index = path.indexes().next().unwrap_or_default();
            let branch = derive::derive_node(&new_root, path)?;
            let body = Body::Certify(Certify {
                path: path.clone(),
                name: name.clone(),
                role: role.clone(),
                keys: (&branch.public_keys()).into(),
                not_before: now_s.saturating_sub(300),
                not_after: (*not_after).max(now_s + 86_400),
            });
            super::branch::append(
                &mut new_chain,
                Statement::sign(body, KeyPath::root(), now_s, &new_key),
            )?;
            sealed.push((index, path.clone(), name.clone(), branch));
        }
        let new_root_log = super::branch::chain_bytes(&mut new_chain, &new_key)?;
        let mut reissued = Vec::new();
        for (index, path, name, branch) in sealed {
            let install = wanted.get(&index).copied().unwrap_or_default();
            let file = out.join(format!("branch-{index}.bundle"));
            let b = BranchBundle::seal(&name, &path, &branch, &install, new_root_log.clone())?;
            files::write_private(&file, &b.to_cbor())?;
            reissued.push(Reissued {
                path,
                name,
                key_id: branch.public_keys().key_id.to_string(),
                bundle: file,
            });
        }
        files::replace_atomic(&new_chain_file, &new_root_log, 0o644)?;

        // The old root's last word: its successor.
        let new_keys = super::root_identity(&new_root)?;
        super::branch::append(
            &mut old_chain,
            Statement::sign(
                Body::Succession(Succession {
                    new_root: (&new_keys).into(),
                }),
                KeyPath::root(),
                unix_now(),
                &old_key,
            ),
        )?;
        let succession_seq = old_chain.state().link(&KeyPath::root()).next_seq - 1;
        let succession_hash = old_chain.state().link(&KeyPath::root()).last_hash;
        let succession_file = out.join("succession.cbor");
        files::write_private(
            &succession_file,
            &super::branch::chain_bytes(&mut old_chain, &old_key)?,
        )?;
        let body = json!({
            "format": "keyd-transcript/v1",
            "ceremony": "root-rekey",
            "cluster": cluster,
            "at": now(),
            "old_root": {"fingerprint": old_fingerprint, "token": old_hsm.token_label()},
            "new_root": {
                "fingerprint": new.root.fingerprint,
                "key_id": new.root.key_id,
                "token": new_hsm.token_label(),
                "threshold": new.root.threshold,
                "shares": new.root.shares,
            },
            "succession": {"seq": succession_seq, "entry": hex::encode(succession_hash)},
            "branches": reissued.iter().map(|b| json!({
                "path": b.path.to_string(), "name": b.name, "key_id": b.key_id,
                "bundle": b.bundle.file_name().map(|n| n.to_string_lossy().into_owned()),
            })).collect::<Vec<_>>(),
            "steps": [
                "new root made on the new token as by `ceremony init` (new-root/transcript.json)",
                "every live level-1 branch certified under the new root, same index, name and role, sealed (HPKE) to its keyd's install key",
                "succession naming the new root identity signed by the old root: the last entry of the old root log (succession.cbor)",
            ],
        });
        let old_root = old_hsm.root()?;
        transcript::write(&out.join("transcript.json"), &old_root, body)?;
        Ok((succession_seq, succession_file, reissued))
    })();
    match done {
        Ok((succession_seq, succession_file, branches)) => Ok(RootRekeyed {
            old_fingerprint,
            new,
            succession_seq,
            succession_file,
            branches,
            trust_ended,
        }),
        Err(e) => {
            let _ = new_hsm.danger_destroy_root();
            let _ = std::fs::remove_dir_all(out);
            Err(e)
        }
    }
}

//! `keyctl ceremony issue` and `keyctl ceremony revoke`: root-signed statements about
//! level-1 branches, appended to the root log (the ceremony's chain file holds the root
//! log only: branch logs are written by the keyds).

use std::path::Path;

use ed25519_dalek::SigningKey;
use keyd::bundle::{self, BranchBundle};
use keyd::chain::{Body, Certify, Chain, Revoke, Statement};
use keyd::derive::{self, KeyPath, RootSecret};
use keyd::hsm::Hsm;

use crate::chain_cmd::{self, unix_now};
use crate::error::CtlError;
use crate::files;

/// Chain files are public.
const CHAIN_MODE: u32 = 0o644;

/// The root identity's signing key, derived through the token.
pub fn root_signing_key(root: &dyn RootSecret) -> Result<SigningKey, CtlError> {
    Ok(derive::derive_node(root, &KeyPath::root())?
        .material()
        .signing_key()
        .clone())
}

/// Loads the chain (its root log is what a ceremony extends) and checks it belongs to
/// the token's root.
pub(super) fn load_for(hsm: &Hsm, chain_file: &Path) -> Result<(Chain, SigningKey), CtlError> {
    let verified = chain_cmd::load(chain_file)?;
    let root = hsm.root()?;
    let key = root_signing_key(&root)?;
    if verified.state().root_keys().map(|k| k.ed25519) != Some(key.verifying_key().to_bytes()) {
        return Err(CtlError::Mismatch(format!(
            "{} is the chain of another root than the one in token {:?}",
            chain_file.display(),
            hsm.token_label()
        )));
    }
    Ok((verified, key))
}

/// Appends a root-signed statement to the root log.
pub(super) fn append(w: &mut Chain, st: Statement) -> Result<(), CtlError> {
    let kind = st.body.kind();
    w.append(&KeyPath::root(), st, unix_now())
        .map(drop)
        .map_err(|rule| CtlError::Refused {
            kind,
            rule: Box::new(rule),
        })
}

/// Signs the root log's head now and returns the root log as a file.
pub(super) fn chain_bytes(w: &mut Chain, key: &SigningKey) -> Result<Vec<u8>, CtlError> {
    let root = KeyPath::root();
    w.sign_head(&root, key, unix_now())
        .map_err(|rule| CtlError::Refused {
            kind: "head",
            rule: Box::new(rule),
        })?;
    Ok(w.file_of([&root]))
}

/// What sealing branch `m/index'` to `install_key` into `out` starts from: the install
/// key, the branch path and the root token; refused before the token is opened when an
/// argument is wrong or `out` exists.
pub(super) fn branch_target(
    uri: &str,
    index: u32,
    install_key: &str,
    out: &Path,
) -> Result<([u8; 32], KeyPath, Hsm), CtlError> {
    let install = bundle::parse_install_public(install_key)?;
    let path = KeyPath::root().child(index).ok_or_else(|| CtlError::Arg {
        flag: "--index",
        message: format!("{index} is not below 2^31"),
    })?;
    if out.exists() {
        return Err(CtlError::OutExists(out.to_owned()));
    }
    let hsm = super::open(uri)?;
    Ok((install, path, hsm))
}

/// What `issue` did.
#[derive(Debug)]
pub struct Issued {
    /// The branch path.
    pub path: KeyPath,
    /// Its key id.
    pub key_id: String,
    /// Seq of the root-log entry certifying it.
    pub seq: u64,
}

/// Certifies branch `m/index'` named `name`, valid for `days`, and writes the bundle
/// sealed to `install_key` to `out` (a new file) and the extended chain to `chain_file`.
pub fn issue(
    uri: &str,
    chain_file: &Path,
    name: &str,
    index: u32,
    days: u64,
    install_key: &str,
    out: &Path,
) -> Result<Issued, CtlError> {
    let (install, path, hsm) = branch_target(uri, index, install_key, out)?;
    let (mut w, key) = load_for(&hsm, chain_file)?;
    let root = hsm.root()?;
    let branch = derive::derive_node(&root, &path)?;
    let now = unix_now();
    let body = Body::Certify(Certify {
        path: path.clone(),
        name: name.to_owned(),
        role: "keyd".to_owned(),
        keys: (&branch.public_keys()).into(),
        not_before: now.saturating_sub(300),
        not_after: now.saturating_add(days.saturating_mul(86_400)),
    });
    append(&mut w, Statement::sign(body, KeyPath::root(), now, &key))?;
    let chain = chain_bytes(&mut w, &key)?;
    let bundle = BranchBundle::seal(name, &path, &branch, &install, chain.clone())?;
    files::write_private(out, &bundle.to_cbor())?;
    if let Err(e) = files::replace_atomic(chain_file, &chain, CHAIN_MODE) {
        let _ = std::fs::remove_file(out);
        return Err(e.into());
    }
    Ok(Issued {
        path,
        key_id: branch.public_keys().key_id.to_string(),
        seq: w.state().link(&KeyPath::root()).next_seq - 1,
    })
}

/// Appends a root-signed revocation of `target` to `chain_file`, returning the keys it
/// cuts off.
pub fn revoke(
    uri: &str,
    chain_file: &Path,
    target: &str,
    reason: &str,
) -> Result<Vec<KeyPath>, CtlError> {
    let hsm = super::open(uri)?;
    let (mut w, key) = load_for(&hsm, chain_file)?;
    let target = match w.state().find(target) {
        Some((p, _)) => p.clone(),
        None => target.parse::<KeyPath>()?,
    };
    let body = Body::Revoke(Revoke {
        target: target.clone(),
        reason: reason.to_owned(),
    });
    append(
        &mut w,
        Statement::sign(body, KeyPath::root(), unix_now(), &key),
    )?;
    files::replace_atomic(chain_file, &chain_bytes(&mut w, &key)?, CHAIN_MODE)?;
    Ok(w.state().cut_off_by(&target))
}

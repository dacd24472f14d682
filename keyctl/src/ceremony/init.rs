//! `keyctl ceremony init`: create the root.

use std::path::{Path, PathBuf};

use keyd::chain::{Body, Chain, Genesis, Statement};
use keyd::derive::{KeyPath, SoftwareRoot};
use keyd::hsm::{Hsm, ROOT_SECRET_LEN};
use serde_json::json;
use zeroize::Zeroizing;

use super::custodian::Custodian;
use super::shares::{self, RootRef};
use super::{RootJson, fingerprint, now, root_identity, transcript};
use crate::error::CtlError;
use crate::files;

/// What `init` wrote.
#[derive(Debug)]
pub struct InitOutcome {
    /// The root's public identity.
    pub root: RootJson,
    /// The output directory.
    pub out: PathBuf,
    /// The share files, in index order.
    pub share_files: Vec<PathBuf>,
}

/// Where the shares go.
#[derive(Debug)]
pub enum ShareTo {
    /// One share per custodian, each encrypted to its custodian (age).
    Custodians(Vec<Custodian>),
    /// This many shares in clear JSON (`--plain-shares`).
    Plain(u8),
}

impl ShareTo {
    /// Where the command line sends the shares.
    pub fn from_args(args: &super::args::ShareArgs) -> Result<ShareTo, CtlError> {
        match (args.plain_shares, args.shares) {
            (true, Some(n)) => Ok(ShareTo::Plain(n)),
            _ if args.custodians.is_empty() => Err(CtlError::Arg {
                flag: "--custodian",
                message: "give one --custodian NAME=RECIPIENT per share (each share is encrypted to its custodian), or --plain-shares --shares N for clear shares".into(),
            }),
            _ => Ok(ShareTo::Custodians(
                args.custodians
                    .iter()
                    .map(|c| Custodian::parse(c))
                    .collect::<Result<_, _>>()?,
            )),
        }
    }

    fn count(&self) -> Result<u8, CtlError> {
        match self {
            ShareTo::Plain(n) => Ok(*n),
            ShareTo::Custodians(c) => u8::try_from(c.len()).map_err(|_| CtlError::Arg {
                flag: "--custodian",
                message: format!("{} custodians: at most 255 shares", c.len()),
            }),
        }
    }

    fn custodian(&self, index: u8) -> Option<&Custodian> {
        match self {
            ShareTo::Custodians(c) => c.get(usize::from(index).checked_sub(1)?),
            ShareTo::Plain(_) => None,
        }
    }
}

/// Checks the threshold and share count.
pub fn check_split(threshold: u8, shares: u8) -> Result<(), CtlError> {
    if threshold < 2 {
        return Err(CtlError::Arg {
            flag: "--threshold",
            message: format!(
                "{threshold} is too small: at least 2 shares must be needed to rebuild the root"
            ),
        });
    }
    if threshold > shares {
        return Err(CtlError::Arg {
            flag: "--threshold",
            message: format!("{threshold} is more than the {shares} shares made (--shares)"),
        });
    }
    Ok(())
}

/// Runs the ceremony. Nothing is left half-done: shares and root.json are written to a
/// staging directory that is renamed to `out` only once the token holds the root and
/// has proved it by re-deriving the root identity; on any failure after the import the
/// root is destroyed again.
pub fn run(
    uri: &str,
    share_to: &ShareTo,
    threshold: u8,
    cluster: &str,
    out: &Path,
) -> Result<InitOutcome, CtlError> {
    let shares = share_to.count()?;
    if let ShareTo::Custodians(c) = share_to {
        super::custodian::check_distinct(c)?;
    }
    check_split(threshold, shares)?;
    keyd::chain::check_name(cluster).map_err(|message| CtlError::Arg {
        flag: "--cluster",
        message,
    })?;
    if !files::is_absent_or_empty(out) {
        return Err(CtlError::OutExists(out.to_owned()));
    }
    let hsm = super::open(uri)?;
    if hsm.has_root()? {
        return Err(keyd::hsm::HsmError::RootExists {
            label: hsm.token_label().to_owned(),
            object: hsm.root_label().to_owned(),
        }
        .into());
    }

    // R = OS randomness XOR HSM randomness: uniform if either source is.
    let mut secret = Zeroizing::new([0u8; ROOT_SECRET_LEN]);
    getrandom::fill(secret.as_mut()).map_err(|e| CtlError::Random(e.to_string()))?;
    let from_hsm = hsm.random(ROOT_SECRET_LEN)?;
    for (s, h) in secret.iter_mut().zip(from_hsm.iter()) {
        *s ^= h;
    }

    let identity = root_identity(&SoftwareRoot::danger_from_bytes(secret.as_ref()))?;
    let root = RootJson {
        format: super::ROOT_FORMAT.to_owned(),
        key_id: identity.key_id.to_string(),
        ed25519_public: hex::encode(identity.ed25519.as_bytes()),
        x25519_public: hex::encode(identity.x25519.as_bytes()),
        fingerprint: fingerprint(&identity.ed25519),
        created_at: now(),
        threshold,
        shares,
    };
    let share_set = shares::split(
        secret.as_ref(),
        threshold,
        shares,
        &RootRef {
            fingerprint: root.fingerprint.clone(),
            key_id: root.key_id.clone(),
        },
    );

    let staging = staging_dir(out)?;
    let result = write_and_import(
        &hsm,
        &staging,
        secret.as_ref(),
        &root,
        (&share_set, share_to),
        cluster,
    );
    drop(secret);
    match result {
        Ok(share_names) => {
            if let Err(e) = std::fs::rename(&staging, out).and_then(|()| keyd::sync_dir(out)) {
                let _ = hsm.danger_destroy_root();
                let _ = std::fs::remove_dir_all(&staging);
                return Err(CtlError::io("cannot move the outputs to", out)(e));
            }
            Ok(InitOutcome {
                root,
                out: out.to_owned(),
                share_files: share_names.into_iter().map(|n| out.join(n)).collect(),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn write_and_import(
    hsm: &Hsm,
    staging: &Path,
    secret: &[u8],
    root: &RootJson,
    (share_set, share_to): (&[shares::ShareFile], &ShareTo),
    cluster: &str,
) -> Result<Vec<String>, CtlError> {
    let mut names = Vec::with_capacity(share_set.len());
    let mut committed = Vec::with_capacity(share_set.len());
    // Each share, then the import and its proof (a passphrase share costs a second).
    let progress = crate::progress::steps(share_set.len() as u64 + 2);
    for share in share_set {
        progress.set_message(match share_to.custodian(share.index) {
            Some(c) => format!("sealing share {} to {}", share.index, c.name),
            None => format!("writing share {}", share.index),
        });
        let clear = zeroize::Zeroizing::new(files::pretty_json(share)?);
        let mut record = json!({
            "index": share.index,
            "checksum": share.checksum,
            "commitment": share.commitment(),
        });
        let name = match share_to.custodian(share.index) {
            Some(custodian) => {
                let name = format!("share-{}-{}.age", share.index, custodian.name);
                files::write_private(&staging.join(&name), &custodian.seal(&clear)?)?;
                record["custodian"] = json!(custodian.name);
                record["recipient"] = json!(custodian.recipient_text());
                name
            }
            None => {
                let name = format!("share-{}.json", share.index);
                files::write_private(&staging.join(&name), &clear)?;
                name
            }
        };
        committed.push(record);
        names.push(name);
        progress.inc(1);
    }
    let encrypted = matches!(share_to, ShareTo::Custodians(_));
    files::write_private(&staging.join("root.json"), &files::pretty_json(root)?)?;

    progress.set_message("importing the root into the token");
    hsm.import_root(secret)?;
    progress.inc(1);
    progress.set_message("deriving the root identity through the token");
    // From here on, undo the import on failure.
    let proved = (|| {
        let hsm_root = hsm.root()?;
        let through_hsm = root_identity(&hsm_root)?;
        if !root.matches(&through_hsm) {
            return Err(CtlError::Mismatch(
                "the token derives a different root identity than the imported secret; the token's HMAC is not what keyd expects".into(),
            ));
        }
        // The chain starts with the self-signed genesis statement.
        let key = super::branch::root_signing_key(&hsm_root)?;
        let unix = crate::chain_cmd::unix_now();
        let genesis = Body::Genesis(Genesis {
            cluster: cluster.to_owned(),
            keys: (&through_hsm).into(),
        });
        let mut chain = Chain::new();
        super::branch::append(
            &mut chain,
            Statement::sign(genesis, KeyPath::root(), unix, &key),
        )?;
        let chain_file = super::branch::chain_bytes(&mut chain, &key)?;
        files::write_private(&staging.join("chain.cbor"), &chain_file)?;
        let body = json!({
            "format": "keyd-transcript/v1",
            "ceremony": "init",
            "cluster": cluster,
            "chain_head": hex::encode(chain.state().link(&KeyPath::root()).last_hash),
            "at": now(),
            "token": hsm.token_label(),
            "object": hsm.root_label(),
            "root": {
                "key_id": root.key_id,
                "fingerprint": root.fingerprint,
                "ed25519_public": root.ed25519_public,
            },
            "threshold": root.threshold,
            "shares": root.shares,
            "share_commitments": committed,
            "steps": [
                "R = 64 bytes of OS randomness XOR 64 bytes of C_GenerateRandom from the token",
                format!("R split {}-of-{} with Shamir's scheme over GF(2^8), polynomial 0x11d, x = 1..{} (docs/formats/shares.md)", root.threshold, root.shares, root.shares),
                if encrypted {
                    "each share encrypted to its custodian with age (X25519 or scrypt passphrase recipient)"
                } else {
                    "shares written in clear (--plain-shares)"
                },
                "each share's commitment recorded here: SHA-256 over its tag, root fingerprint, threshold, count, index and value",
                "R imported as CKK_GENERIC_SECRET: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN only",
                "root identity re-derived through C_Sign(CKM_SHA512_HMAC) and matched the secret",
                "genesis statement signed by the root identity: chain.cbor",
            ],
        });
        transcript::write(&staging.join("transcript.json"), &hsm_root, body)
    })();
    progress.inc(1);
    progress.finish_and_clear();
    if let Err(e) = proved {
        let _ = hsm.danger_destroy_root();
        return Err(e);
    }
    Ok(names)
}

fn staging_dir(out: &Path) -> Result<PathBuf, CtlError> {
    let name = out
        .file_name()
        .ok_or_else(|| CtlError::Arg {
            flag: "--out",
            message: format!("{} has no directory name", out.display()),
        })?
        .to_string_lossy()
        .into_owned();
    let mut tag = [0u8; 6];
    getrandom::fill(&mut tag).map_err(|e| CtlError::Random(e.to_string()))?;
    let staging = out.with_file_name(format!(".{name}.partial-{}", hex::encode(tag)));
    if let Some(parent) = staging.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(CtlError::io("cannot create directory", parent))?;
    }
    files::create_private_dir(&staging)?;
    Ok(staging)
}

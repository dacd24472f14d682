//! `keyd init`, `keyd import` and `keyd admin issue`: the offline steps that provision a
//! keyd, each answering a [`Report`].

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use keyd::bundle::{BranchBundle, InstallKey};
use keyd::chain::{Anchor, Body, Chain, Statement};
use keyd::config::Config;
use keyd::derive::{KeyPath, NodeSecret};
use keyd::hsm::Hsm;
use keyd::identity::Ca;
use keyd::store::{Store, key};
use serde_json::json;
use zeroize::{Zeroize, Zeroizing};

use super::report::{Refusal, Report};

const INSTALL_AAD: &[u8] = b"keyd/v1/install-key";

pub(super) fn branch_aad(path: &KeyPath) -> Vec<u8> {
    format!("keyd/v1/branch-secret {path}").into_bytes()
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    keyd::sync_dir(path)
        .with_context(|| format!("cannot sync the directory of {}", path.display()))?;
    Ok(())
}

/// `keyd init`.
pub fn init(config: &Config) -> Result<Report> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let hsm = Hsm::open(&config.seal_hsm)?;
    let db = config.db_path();
    let store = Store::create(&db)?;
    let mut generated = false;
    let done = (|| -> Result<[u8; 32]> {
        hsm.generate_seal_key()?;
        generated = true;
        let install = InstallKey::generate();
        let sealed = hsm.seal(INSTALL_AAD, install.danger_secret())?;
        store.set_meta(&[
            (key::INSTALL_SEALED, &sealed),
            (key::INSTALL_PUBLIC, &install.public()),
        ])?;
        // The row integrity key, sealed beside the install key.
        store.unlock(&hsm)?;
        Ok(install.public())
    })();
    match done {
        Ok(public) => {
            let public = hex::encode(public);
            Ok(Report {
                text: format!(
                    "keyd initialised: {}\ninstall public key: {public}\nnext: keyctl ceremony issue … --to {public} --out BUNDLE, then keyd import BUNDLE",
                    db.display()
                ),
                json: json!({"store": db, "install_public_key": public}),
            })
        }
        Err(e) => {
            // Leave nothing behind: no store, no seal key (nothing is sealed under it).
            drop(store);
            let _ = std::fs::remove_file(&db);
            // Only a key this run made: an existing one may seal another store.
            if generated && let Err(undo) = hsm.danger_destroy_seal_key() {
                eprintln!("keyd: could not remove the new seal key: {undo}");
            }
            Err(e)
        }
    }
}

/// `keyd install-key`.
pub fn install_key(config: &Config) -> Result<Report> {
    let store = config.open_store()?;
    let public = store
        .meta(key::INSTALL_PUBLIC)?
        .context("the store has no install key; run keyd init")?;
    let public = hex::encode(public);
    Ok(Report {
        text: format!("install public key: {public}"),
        json: json!({"install_public_key": public}),
    })
}

pub(super) fn unseal_install(store: &Store, hsm: &Hsm) -> Result<InstallKey> {
    let sealed = store
        .meta(key::INSTALL_SEALED)?
        .context("the store has no install key; run keyd init")?;
    let secret = hsm.unseal(INSTALL_AAD, &sealed)?;
    let bytes: [u8; 32] = secret.as_slice().try_into().context("install key length")?;
    let bytes = Zeroizing::new(bytes);
    Ok(InstallKey::from_secret(&bytes)?)
}

/// The root fingerprint `--expect-root` names: read from a root.json file, or given.
fn expected_root(arg: &str) -> Result<String> {
    let path = Path::new(arg);
    if !path.is_file() {
        return keyd::config::check_fingerprint(arg).map_err(|m| {
            Refusal::error(
                "bad_argument",
                format!("--expect-root: {m} (or name the ceremony's root.json)"),
            )
        });
    }
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let fingerprint = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["fingerprint"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            Refusal::error(
                "bad_argument",
                format!(
                    "--expect-root: {} is not a root.json with a fingerprint",
                    path.display()
                ),
            )
        })?;
    keyd::config::check_fingerprint(&fingerprint).map_err(|m| {
        Refusal::error(
            "bad_argument",
            format!("--expect-root: {}: {m}", path.display()),
        )
    })
}

/// `keyd import`.
pub fn import(config: &Config, bundle_file: &Path, expect_root: Option<&str>) -> Result<Report> {
    let expected = match (expect_root, &config.root_fingerprint) {
        (Some(f), _) => expected_root(f)?,
        (None, Some(f)) => f.clone(),
        (None, None) => {
            return Err(Refusal::with_hint(
                "no_expected_root",
                "keyd imports a bundle only of the root it expects, and none is named",
                "--expect-root ROOT_JSON (the ceremony's root.json) or root_fingerprint in keyd.toml",
            ));
        }
    };
    let store = config.open_store()?;
    if store.meta(key::BRANCH_SEALED)?.is_some() {
        return Err(Refusal::error(
            "branch_exists",
            "this keyd already holds a branch; a keyd instance serves one branch",
        ));
    }
    let hsm = Hsm::open(&config.seal_hsm)?;
    let install = unseal_install(&store, &hsm)?;
    store.unlock(&hsm)?;
    let bytes = std::fs::read(bundle_file)
        .with_context(|| format!("cannot read {}", bundle_file.display()))?;
    let bundle = BranchBundle::from_cbor(&bytes)?;
    let (branch, mut chain) = bundle.open(&install)?;
    if store.shared().is_some() {
        store.unlock_group(&branch);
    }
    let carried = chain
        .state()
        .root_keys()
        .map(|k| keyd::chain::fingerprint(&k.ed25519))
        .context("the bundle's chain has no root")?;
    if carried != expected {
        return Err(Refusal::error(
            "wrong_root",
            format!(
                "the bundle was issued from root {carried}, not from the expected root {expected}: refused (check the bundle and the fingerprint in root.json)"
            ),
        ));
    }
    // A replica joining a group (the branch's log is in etcd already).
    if store.shared().is_some() && store.shared_sizes()?.contains_key(&bundle.path.to_string()) {
        return join(config, &store, &hsm, &bundle, &branch, install.public());
    }
    // A rebuilt keyd (`keyctl ceremony rebuild`) continues the branch log the bundle
    // carries, never opens it again: every node, epoch and revocation in it stands.
    let continued = match chain.head(&bundle.path).map(|h| (h.seq, h.signed_at)) {
        None if chain.entries(&bundle.path).is_empty() => {
            open_branch_log(&mut chain, &bundle.path, &branch)?;
            None
        }
        None => bail!("the bundle's branch log {} has no head", bundle.path),
        Some(head) => {
            chain.sign_head(
                &bundle.path,
                branch.material().signing_key(),
                keyd::unix_now(),
            )?;
            Some(head)
        }
    };
    // The group's first replica records itself in the branch log.
    if let Some(settings) = &config.etcd {
        let material = branch.material();
        let now = keyd::service::unix_now();
        let st = Statement::sign(
            Body::Replica(keyd::chain::Replica {
                name: settings.store.replica.clone(),
                install_key: install.public(),
                action: "add".into(),
            }),
            bundle.path.clone(),
            now,
            material.signing_key(),
        );
        chain.append(&bundle.path, st, now)?;
        chain.sign_head(&bundle.path, material.signing_key(), now)?;
    }
    let sealed = seal_branch(&hsm, &bundle.path, &branch)?;
    let ca = Ca::from_branch(&branch.material(), &bundle.name, &bundle.path)?;
    let (admin_cert, admin_key) =
        keyd::service::credentials::issue_admin(&store, &ca, "admin", config.client_cert_seconds)?;
    let admin_cert = admin_cert.pem;
    // The files are written under temporary names and moved into place, then the store
    // takes the branch in one transaction; if that fails, the files go again: a failure
    // leaves no half-imported keyd behind.
    let dir = &config.data_dir;
    let files = [
        ("ca.pem", ca.cert_pem().as_bytes(), 0o644),
        ("admin.pem", admin_cert.as_bytes(), 0o600),
        ("admin.key", admin_key.as_bytes(), 0o600),
    ];
    for (name, _, _) in &files {
        if dir.join(name).exists() {
            bail!(
                "{} exists already; remove it first",
                dir.join(name).display()
            );
        }
    }
    let staged: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|(name, _, _)| (dir.join(format!(".{name}.new")), dir.join(name)))
        .collect();
    let written = files
        .iter()
        .zip(&staged)
        .try_for_each(|((_, contents, mode), (tmp, _))| {
            let _ = std::fs::remove_file(tmp);
            write_file(tmp, contents, *mode)
        })
        .and_then(|()| {
            staged.iter().try_for_each(|(tmp, path)| {
                std::fs::rename(tmp, path)
                    .and_then(|()| keyd::sync_dir(path))
                    .with_context(|| format!("cannot move {} into place", path.display()))
            })
        })
        .and_then(|()| {
            let root = KeyPath::root();
            let entries: Vec<_> = [&root, &bundle.path]
                .into_iter()
                .flat_map(|l| chain.entries(l).iter().cloned())
                .collect();
            let heads: Vec<_> = [&root, &bundle.path]
                .into_iter()
                .filter_map(|l| chain.head(l))
                .collect();
            Ok(store.import(
                &entries,
                &heads,
                &[
                    (key::BRANCH_PATH, bundle.path.to_string().as_bytes()),
                    (key::BRANCH_NAME, bundle.name.as_bytes()),
                    (key::BRANCH_SEALED, &sealed),
                ],
            )?)
        });
    if let Err(e) = written {
        for (tmp, path) in &staged {
            let _ = std::fs::remove_file(tmp);
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    let head = chain
        .head(&bundle.path)
        .context("the branch log has no head")?;
    hsm.write_mark(&keyd::chain::cbor_bytes(head))?;
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("admin.pem"),
        dir.join("admin.key"),
    );
    Ok(Report {
        text: format!(
            "branch {} ({}) of root {expected} imported; root log of {} entries and branch log {} stored{}\nCA certificate:   {}\nadmin credential: {} and {}",
            bundle.path,
            bundle.name,
            chain.entries(&KeyPath::root()).len(),
            bundle.path,
            match continued {
                Some((seq, at)) => format!(
                    "\nrebuilt: the branch log continues after seq {seq} (head signed at {}); whatever the lost keyd wrote after that head is not in it",
                    keyd::rfc3339(at)
                ),
                None => String::new(),
            },
            ca_file.display(),
            cert_file.display(),
            key_file.display()
        ),
        json: json!({
            "branch": bundle.path.to_string(),
            "name": bundle.name,
            "root": expected,
            "root_entries": chain.entries(&KeyPath::root()).len(),
            "continued": continued.map(|(seq, at)| json!({"seq": seq, "signed_at": at})),
            "ca": ca_file,
            "admin_cert": cert_file,
            "admin_key": key_file,
        }),
    })
}

/// Opens the branch's log: its anchor to the root-log entry that certified the branch,
/// signed by the branch key, and a head.
pub(super) fn open_branch_log(
    chain: &mut Chain,
    path: &KeyPath,
    branch: &NodeSecret,
) -> Result<()> {
    let (root_seq, root_entry) = chain
        .entries(&KeyPath::root())
        .iter()
        .find(|e| matches!(&e.statement.body, Body::Certify(c) if c.path == *path))
        .map(|e| (e.seq, e.hash()))
        .with_context(|| format!("the bundle's root log does not certify {path}"))?;
    let material = branch.material();
    let now = keyd::service::unix_now();
    let anchor = Statement::sign(
        Body::Anchor(Anchor {
            root_seq,
            root_entry,
        }),
        path.clone(),
        now,
        material.signing_key(),
    );
    chain.append(path, anchor, now)?;
    chain.sign_head(path, material.signing_key(), now)?;
    Ok(())
}

/// The branch secret `k || c` of `path`, sealed by the seal token.
pub(super) fn seal_branch(hsm: &Hsm, path: &KeyPath, branch: &NodeSecret) -> Result<Vec<u8>> {
    let mut secret = Zeroizing::new([0u8; 64]);
    secret[..32].copy_from_slice(branch.danger_key());
    secret[32..].copy_from_slice(branch.danger_chain_code());
    Ok(hsm.seal(&branch_aad(path), secret.as_ref())?)
}

/// A branch secret sealed by [`seal_branch`], unsealed.
pub(super) fn unseal_branch_secret(hsm: &Hsm, path: &KeyPath, sealed: &[u8]) -> Result<NodeSecret> {
    let secret = hsm.unseal(&branch_aad(path), sealed)?;
    if secret.len() != 64 {
        bail!("the stored branch secret has the wrong length");
    }
    let mut k = [0u8; 32];
    let mut c = [0u8; 32];
    k.copy_from_slice(&secret[..32]);
    c.copy_from_slice(&secret[32..]);
    let branch = NodeSecret::danger_from_parts(k, c);
    k.zeroize();
    c.zeroize();
    Ok(branch)
}

/// `keyd import` of a replica joining its group: the branch the group's log certifies,
/// sealed under this replica's seal token; the logs stay as etcd holds them. Admin
/// credentials are the group's (every replica has the same CA).
fn join(
    config: &Config,
    store: &Store,
    hsm: &Hsm,
    bundle: &BranchBundle,
    branch: &NodeSecret,
    install: [u8; 32],
) -> Result<Report> {
    let chain = keyd::service::restore_chain(store).context("the group's chain in etcd")?;
    // Only under the name an admin approved, with this install key, not removed.
    let me = config
        .etcd
        .as_ref()
        .map(|e| e.store.replica.as_str())
        .unwrap_or_default();
    let approved = chain
        .state()
        .replicas(&bundle.path)
        .any(|(n, r)| n == me && r.install_key == install && r.removed.is_none());
    if !approved {
        return Err(Refusal::with_hint(
            "replica_not_approved",
            format!(
                "the branch log of {} records no replica {me:?} with this install key ({}) that is not removed",
                bundle.path,
                hex::encode(install)
            ),
            "keyctl replica add NAME --install-key KEY at a running replica, NAME as [etcd] replica here",
        ));
    }
    let certified = chain.state().key(&bundle.path).map(|r| r.keys);
    if certified != Some(keyd::chain::KeySet::from(&branch.public_keys())) {
        return Err(Refusal::error(
            "wrong_branch",
            format!(
                "the group's log does not certify this bundle's branch {} key: refused",
                bundle.path
            ),
        ));
    }
    let head = chain
        .head(&bundle.path)
        .context("the group's branch log has no head")?;
    let sealed = seal_branch(hsm, &bundle.path, branch)?;
    let ca = Ca::from_branch(&branch.material(), &bundle.name, &bundle.path)?;
    let ca_file = config.data_dir.join("ca.pem");
    if !ca_file.exists() {
        write_file(&ca_file, ca.cert_pem().as_bytes(), 0o644)?;
    }
    store.set_meta(&[
        (key::BRANCH_PATH, bundle.path.to_string().as_bytes()),
        (key::BRANCH_NAME, bundle.name.as_bytes()),
        (key::BRANCH_SEALED, &sealed),
    ])?;
    hsm.write_mark(&keyd::chain::cbor_bytes(head))?;
    let replica = store
        .shared()
        .map(|e| e.replica().to_owned())
        .unwrap_or_default();
    Ok(Report {
        text: format!(
            "replica {replica} joined the group of branch {} ({}): its log as etcd holds it ends at seq {}\nCA certificate: {} (the group's; admins use their credentials at any replica)",
            bundle.path,
            bundle.name,
            head.seq,
            ca_file.display()
        ),
        json: json!({
            "branch": bundle.path.to_string(),
            "name": bundle.name,
            "replica": replica,
            "joined": true,
            "ca": ca_file,
        }),
    })
}

/// The imported branch, unsealed through the seal token: the store, the branch name,
/// path and secret, and the token.
pub fn unseal_branch(config: &Config) -> Result<(Store, String, KeyPath, NodeSecret, Hsm)> {
    let store = config.open_store()?;
    let hsm = Hsm::open(&config.seal_hsm)?;
    let path: KeyPath = String::from_utf8(
        store
            .meta(key::BRANCH_PATH)?
            .context("no branch imported; run keyd import BUNDLE")?,
    )?
    .parse()?;
    let name = String::from_utf8(
        store
            .meta(key::BRANCH_NAME)?
            .context("branch name missing")?,
    )?;
    let sealed = store
        .meta(key::BRANCH_SEALED)?
        .context("branch secret missing")?;
    let branch = unseal_branch_secret(&hsm, &path, &sealed)?;
    if store.shared().is_some() {
        store.unlock_group(&branch);
    } else {
        store.unlock(&hsm)?;
    }
    Ok((store, name, path, branch, hsm))
}

/// `keyd admin issue`.
pub fn issue_admin(config: &Config, name: &str, out: &Path) -> Result<Report> {
    keyd::chain::check_name(name).map_err(|e| anyhow::anyhow!("admin name {name:?}: {e}"))?;
    let (store, branch_name, path, branch, hsm) = unseal_branch(config)?;
    // After a root rekey and until the old root is retired, TLS is the old tree's.
    let branch = match store.meta(key::RETIRED_BRANCH_SEALED)? {
        Some(sealed) => unseal_branch_secret(&hsm, &path, &sealed)?,
        None => branch,
    };
    if store
        .revoked_admins()?
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Err(Refusal::error(
            "admin_revoked",
            format!(
                "admin {name} was revoked; a revoked name is never issued again: choose another"
            ),
        ));
    }
    let ca = Ca::from_branch(&branch.material(), &branch_name, &path)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let (cert_file, key_file) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
    );
    if cert_file.exists() || key_file.exists() {
        bail!(
            "{} or {} exists already; choose another --out or remove them",
            cert_file.display(),
            key_file.display()
        );
    }
    // A new credential generation for the name: every earlier credential of it ends
    // (only once the files can be written).
    let (cert, key) =
        keyd::service::credentials::issue_admin(&store, &ca, name, config.client_cert_seconds)?;
    let cert = cert.pem;
    write_file(&key_file, key.as_bytes(), 0o600)?;
    write_file(&cert_file, cert.as_bytes(), 0o600)?;
    Ok(Report {
        text: format!(
            "admin credential for {name}: {} and {} (valid {} s; renew with keyctl renew)",
            cert_file.display(),
            key_file.display(),
            config.client_cert_seconds
        ),
        json: json!({
            "name": name,
            "cert": cert_file,
            "key": key_file,
            "valid_seconds": config.client_cert_seconds,
        }),
    })
}

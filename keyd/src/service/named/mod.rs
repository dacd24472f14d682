//! Named keys (DESIGN.md section 2): what transit users call keys. A node creates
//! them at `P/2'/n'` (certified by the node in the branch log with its name and a role
//! `key:<type>`), uses them, rotates them (a version is an epoch: version `v` is epoch
//! `v - 1`), limits which versions decrypt and encrypt, and deletes them (a revocation
//! by the node, only when the key allows deletion and the policy grants `key.delete`).
//! Only their owner uses them; they never hold a TLS identity.

mod ops;

pub use ops::HmacAlg;

use super::commit::Built;
use super::lifecycle::KeyLimits;
use super::{Service, ServiceError, unix_now};
use crate::chain::Statement;
use crate::chain::{self, Body, Certify, ChainState, Epoch, KeyKind, NAMED_ROLE_PREFIX, Revoke};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::Op;

/// The type of a named key: its chain role is `key:<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519 signing (transit `ed25519`).
    Ed25519,
    /// keyd's sealed envelope under the version's storage key (transit
    /// `aes256-gcm96`: encrypt, decrypt, rewrap, data keys).
    Aes256Gcm96,
}

impl KeyType {
    /// Its name, as transit names it.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Aes256Gcm96 => "aes256-gcm96",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Result<KeyType, ServiceError> {
        match name {
            "ed25519" => Ok(KeyType::Ed25519),
            "aes256-gcm96" => Ok(KeyType::Aes256Gcm96),
            other => Err(ServiceError::BadRequest(format!(
                "type: {other:?} is not a key type keyd offers (ed25519, aes256-gcm96)"
            ))),
        }
    }

    fn of_role(role: &str) -> Option<KeyType> {
        KeyType::parse(role.strip_prefix(NAMED_ROLE_PREFIX)?).ok()
    }

    /// Whether it signs (else it encrypts).
    pub fn signs(self) -> bool {
        self == KeyType::Ed25519
    }
}

/// One version of a named key.
#[derive(Clone, Debug)]
pub struct KeyVersion {
    /// The version (epoch + 1).
    pub version: u32,
    /// Its key path (`P/2'/n'/0'/e'`).
    pub path: KeyPath,
    /// When the chain certified it (Unix seconds).
    pub created_at: u64,
    /// Its Ed25519 public key.
    pub ed25519: [u8; 32],
}

/// A named key as its owner sees it.
#[derive(Clone, Debug)]
pub struct NamedKey {
    /// Its name.
    pub name: String,
    /// Its path.
    pub path: KeyPath,
    /// Its type.
    pub key_type: KeyType,
    /// Its versions not revoked, oldest first.
    pub versions: Vec<KeyVersion>,
    /// The newest version.
    pub latest_version: u32,
    /// The oldest version that decrypts (and verifies).
    pub min_decryption_version: u32,
    /// The oldest version that may encrypt or sign when asked by number (0: any).
    pub min_encryption_version: u32,
    /// Whether it may be deleted.
    pub deletion_allowed: bool,
}

/// A change to a named key's configuration; `None` leaves a value as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyConfigChange {
    /// New oldest version that decrypts.
    pub min_decryption_version: Option<u32>,
    /// New oldest version that encrypts (0: any).
    pub min_encryption_version: Option<u32>,
    /// Whether it may be deleted.
    pub deletion_allowed: Option<bool>,
}

/// The most versions one named key has (its epochs).
const MAX_VERSION: u32 = 1 << 30;

pub(super) fn not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("no key {name:?}"))
}

impl Service {
    /// The node a principal is, for named keys.
    pub(super) fn key_owner(principal: &Principal) -> Result<&KeyPath, ServiceError> {
        match principal {
            Principal::Node(p) => Ok(p),
            Principal::Admin(_) => Err(ServiceError::Forbidden(
                "named keys belong to nodes; an admin has none".into(),
            )),
        }
    }

    /// The named key at `path` as the state holds it.
    fn describe_named(&self, state: &ChainState, path: &KeyPath) -> Option<NamedKey> {
        let record = state.key(path)?;
        let KeyKind::Node {
            name, role, epochs, ..
        } = &record.kind
        else {
            return None;
        };
        let key_type = KeyType::of_role(role)?;
        let versions: Vec<KeyVersion> = epochs
            .iter()
            .filter_map(|&e| {
                let p = path.epoch_key(e)?;
                let r = state.key(&p)?;
                r.revoked.is_none().then(|| KeyVersion {
                    version: e + 1,
                    path: p,
                    created_at: r.published_at,
                    ed25519: r.keys.ed25519,
                })
            })
            .collect();
        let limits = self.key_limits(path);
        Some(NamedKey {
            name: name.clone(),
            path: path.clone(),
            key_type,
            latest_version: versions.last().map_or(0, |v| v.version),
            min_decryption_version: limits.min_decrypt.saturating_add(1),
            min_encryption_version: limits.min_encrypt,
            deletion_allowed: limits.deletion_allowed,
            versions,
        })
    }

    /// The owner's live named key `name`.
    pub(super) fn find_named(&self, owner: &KeyPath, name: &str) -> Result<NamedKey, ServiceError> {
        let chain = self.read_chain();
        let state = chain.state();
        let (path, _) = state
            .named_key(owner, name)
            .ok_or_else(|| not_found(name))?;
        if state.revocation(path).is_some() {
            return Err(not_found(name));
        }
        self.describe_named(state, path)
            .ok_or_else(|| not_found(name))
    }

    /// Creates the caller's named key `name` of `key_type` with its first version:
    /// the key, and whether it was created (false: it existed already, of any type).
    pub fn create_named_key(
        &self,
        principal: &Principal,
        name: &str,
        key_type: KeyType,
    ) -> Result<(NamedKey, bool), ServiceError> {
        let owner = Self::key_owner(principal)?.clone();
        self.authorize_on(principal, Op::KeyCreate, &owner)?;
        chain::check_name(name).map_err(ServiceError::BadRequest)?;
        // As transit: creating a key that exists changes nothing (whatever the type).
        if let Ok(existing) = self.find_named(&owner, name) {
            return Ok((existing, false));
        }
        let (audited, key_name) = (owner.to_string(), name.to_owned());
        let path = self.append(move |svc, w| {
            let state = w.state();
            if state
                .named_key(&owner, &key_name)
                .is_some_and(|(p, _)| state.revocation(p).is_none())
            {
                return Err(ServiceError::BadRequest(format!(
                    "key {key_name:?} was created meanwhile"
                )));
            }
            let path = owner
                .named_key(state.next_named_index(&owner))
                .filter(|p| state.key(p).is_none())
                .ok_or_else(|| ServiceError::BadRequest("no free named-key index".into()))?;
            let version = path
                .epoch_key(0)
                .ok_or_else(|| ServiceError::BadRequest("path too deep".into()))?;
            let (owner_key, key, first) = (
                svc.derived(&owner)?,
                svc.derived(&path)?,
                svc.derived(&version)?,
            );
            let now = unix_now();
            // Valid from a little before now: the group's entries carry the commit's time,
            // which may be a second behind this one, and replicas' clocks differ.
            let not_before = now.saturating_sub(300);
            let certify = Statement::sign(
                Body::Certify(Certify {
                    path: path.clone(),
                    name: key_name.clone(),
                    role: format!("{NAMED_ROLE_PREFIX}{}", key_type.name()),
                    keys: (&key.public_keys()).into(),
                    not_before,
                    not_after: u64::MAX,
                }),
                owner.clone(),
                now,
                owner_key.signing_key(),
            );
            let epoch = Statement::sign(
                Body::Epoch(Epoch {
                    node: path.clone(),
                    epoch: 0,
                    keys: (&first.public_keys()).into(),
                }),
                path.clone(),
                now,
                key.signing_key(),
            );
            Ok(Built {
                statements: vec![certify, epoch],
                token: None,
                value: path,
            })
        })?;
        let detail = Some(format!("named key {name} ({}) at {path}", key_type.name()));
        self.audit_event(
            &principal.uri(),
            Op::KeyCreate.name(),
            Some(audited),
            detail,
        );
        let created = self.find_named(Self::key_owner(principal)?, name)?;
        Ok((created, true))
    }

    /// The names of the caller's live named keys, sorted.
    pub fn named_key_names(&self, principal: &Principal) -> Result<Vec<String>, ServiceError> {
        let owner = Self::key_owner(principal)?;
        self.authorize_on(principal, Op::KeyRead, owner)?;
        let chain = self.read_chain();
        Ok(chain
            .state()
            .named_keys(owner)
            .map(|(n, _)| n.to_owned())
            .collect())
    }

    /// Whether the caller has a live named key `name` (a lookup, nothing built: for
    /// transit's encrypt, which creates a missing key).
    pub fn has_named_key(&self, principal: &Principal, name: &str) -> bool {
        let Ok(owner) = Self::key_owner(principal) else {
            return false;
        };
        let chain = self.read_chain();
        let state = chain.state();
        state
            .named_key(owner, name)
            .is_some_and(|(p, _)| state.revocation(p).is_none())
    }

    /// The caller's named key `name`.
    pub fn read_named_key(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<NamedKey, ServiceError> {
        let owner = Self::key_owner(principal)?;
        self.authorize_on(principal, Op::KeyRead, owner)?;
        self.find_named(owner, name)
    }

    /// Moves the caller's named key `name` to a new version.
    pub fn rotate_named_key(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<NamedKey, ServiceError> {
        let owner = Self::key_owner(principal)?;
        self.authorize_on(principal, Op::KeyRotate, owner)?;
        let key = self.find_named(owner, name)?;
        if key.latest_version >= MAX_VERSION {
            return Err(ServiceError::BadRequest(format!(
                "key {name:?} has {MAX_VERSION} versions, the most keyd makes"
            )));
        }
        let path = self.next_epoch(key.path.clone(), None)?;
        self.audit_event(
            &principal.uri(),
            Op::KeyRotate.name(),
            Some(owner.to_string()),
            Some(format!("named key {name}: new version {path}")),
        );
        self.find_named(owner, name)
    }

    /// Changes the configuration of the caller's named key `name`. The minimum
    /// decryption version lies between 1 and the latest version; the minimum encryption
    /// version between 0 (any) and the latest, and not below the minimum decryption
    /// version unless 0.
    pub fn configure_named_key(
        &self,
        principal: &Principal,
        name: &str,
        change: KeyConfigChange,
    ) -> Result<NamedKey, ServiceError> {
        let owner = Self::key_owner(principal)?;
        self.authorize_on(principal, Op::KeyConfig, owner)?;
        let key = self.find_named(owner, name)?;
        let latest = key.latest_version;
        let min_dec = change
            .min_decryption_version
            .unwrap_or(key.min_decryption_version);
        // A configuration that failed its integrity tag (held closed) is set anew.
        let tampered = key.min_decryption_version > latest;
        let min_enc = change.min_encryption_version.unwrap_or(if tampered {
            0
        } else {
            key.min_encryption_version
        });
        if !(1..=latest).contains(&min_dec) {
            return Err(ServiceError::BadRequest(format!(
                "min_decryption_version: {min_dec}; it lies between 1 and the latest version {latest}"
            )));
        }
        if min_enc > latest || (min_enc != 0 && min_enc < min_dec) {
            return Err(ServiceError::BadRequest(format!(
                "min_encryption_version: {min_enc}; it lies between min_decryption_version {min_dec} and the latest version {latest}, or is 0 (any)"
            )));
        }
        let limits = KeyLimits {
            min_decrypt: min_dec - 1,
            min_encrypt: min_enc,
            deletion_allowed: change.deletion_allowed.unwrap_or(key.deletion_allowed),
        };
        self.put_key_limits(&key.path, limits, true)?;
        self.audit_event(
            &principal.uri(),
            Op::KeyConfig.name(),
            Some(owner.to_string()),
            Some(format!(
                "named key {name}: min_decryption_version {min_dec}, min_encryption_version {min_enc}, deletion_allowed {}",
                limits.deletion_allowed
            )),
        );
        self.find_named(owner, name)
    }

    /// Deletes the caller's named key `name`: a revocation signed by the node. Only when
    /// its configuration allows deletion.
    pub fn delete_named_key(&self, principal: &Principal, name: &str) -> Result<(), ServiceError> {
        let owner = Self::key_owner(principal)?.clone();
        self.authorize_on(principal, Op::KeyDelete, &owner)?;
        let key = self.find_named(&owner, name)?;
        if !key.deletion_allowed {
            return Err(ServiceError::BadRequest(
                "deletion is not allowed for this key".into(),
            ));
        }
        let (path, signer) = (key.path.clone(), owner.clone());
        self.append(move |svc, w| {
            if w.state().revocation(&path).is_some() {
                return Err(ServiceError::NotFound(format!("{path} is already deleted")));
            }
            let st = Statement::sign(
                Body::Revoke(Revoke {
                    target: path.clone(),
                    reason: "named key deleted".into(),
                }),
                signer.clone(),
                unix_now(),
                svc.derived(&signer)?.signing_key(),
            );
            Ok(Built {
                statements: vec![st],
                token: None,
                value: (),
            })
        })?;
        self.audit_event(
            &principal.uri(),
            Op::KeyDelete.name(),
            Some(owner.to_string()),
            Some(format!("named key {name} at {} deleted", key.path)),
        );
        Ok(())
    }
}

//! Statements: every change to the key tree, signed by the key with authority over it.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::cbor::{self, CborError};
use crate::derive::{KeyId, KeyPath, PublicKeys};

/// Statement format version.
pub const STATEMENT_VERSION: u8 = 1;
/// Largest encoded statement.
pub const MAX_STATEMENT_BYTES: usize = 4096;
/// Longest name (of a node or a cluster), in bytes.
pub const MAX_NAME: usize = 64;
/// Longest role, in bytes.
pub const MAX_ROLE: usize = 32;
/// Longest revocation or untrust reason, in bytes.
pub const MAX_REASON: usize = 256;

/// Checks a text field: at most `max` bytes, no control characters, and not empty unless
/// `allow_empty`; the error names `field`.
pub fn check_text(field: &str, v: &str, max: usize, allow_empty: bool) -> Result<(), String> {
    if v.len() > max {
        return Err(format!(
            "{field} is {} bytes, at most {max} allowed",
            v.len()
        ));
    }
    if !allow_empty && v.is_empty() {
        return Err(format!("{field} is empty"));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{field} contains control characters"));
    }
    Ok(())
}
/// Most permissions in a trust statement.
pub const MAX_PERMISSIONS: usize = 32;
/// Longest permission, in bytes.
pub const MAX_PERMISSION: usize = 64;
/// Domain separation for statement signatures.
pub const STATEMENT_DOMAIN: &[u8] = b"keyd/v1/statement\0";

/// The public keys a statement publishes for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySet {
    /// Ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub ed25519: [u8; 32],
    /// X25519 public key.
    #[serde(with = "serde_bytes")]
    pub x25519: [u8; 32],
}

impl KeySet {
    /// The key id of the Ed25519 key.
    pub fn key_id(&self) -> KeyId {
        KeyId::of_bytes(&self.ed25519)
    }

    /// The Ed25519 key, if it is a valid point.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.ed25519).ok()
    }
}

impl From<&PublicKeys> for KeySet {
    fn from(p: &PublicKeys) -> Self {
        KeySet {
            ed25519: p.ed25519.to_bytes(),
            x25519: p.x25519.to_bytes(),
        }
    }
}

/// The trust a cluster gives another cluster's root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub enum TrustLevel {
    /// Full trust.
    Full,
    /// Trust limited to the listed permissions.
    Limited,
    /// Trust until the expiry only.
    Temporary,
}

/// `genesis`: the self-signed root of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Cluster name.
    pub cluster: String,
    /// The root identity keys.
    pub keys: KeySet,
}

/// `certify`: a parent certifies a child identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certify {
    /// The child's node path (`m/i'` or `P/1'/n'`).
    pub path: KeyPath,
    /// Its name, unique among live keys.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its identity keys.
    pub keys: KeySet,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds).
    pub not_after: u64,
}

/// `extend`: a parent renews a child node's validity, moving its end later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    /// The child's node path.
    pub node: KeyPath,
    /// Its new end of validity (Unix seconds): after the current one.
    pub not_after: u64,
}

/// `rekey_order`: an ancestor orders a descendant node to move to a new epoch. The
/// order stands until the node certifies an epoch after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyOrder {
    /// The node ordered to rekey.
    pub node: KeyPath,
    /// Why (0–256 bytes).
    pub reason: String,
}

/// `replica`: the branch records a replica of its keyd group (etcd) being added (its
/// install key approved: the branch was sealed to it) or removed (its install key
/// revoked). In the branch's own log, signed by the branch key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    /// The replica's name (1–64 bytes of `A-Z a-z 0-9 _ -`).
    pub name: String,
    /// Its install public key (X25519).
    #[serde(with = "serde_bytes")]
    pub install_key: [u8; 32],
    /// `add` or `remove`.
    pub action: String,
}

/// `epoch`: a node's identity key certifies its epoch `e` key (`node/0'/e'`): rekey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Epoch {
    /// The node path.
    pub node: KeyPath,
    /// The epoch number; only moves forward.
    pub epoch: u32,
    /// The epoch key's public keys.
    pub keys: KeySet,
}

/// `revoke`: a key and its whole subtree, irreversibly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The revoked key (a node or an epoch key).
    pub target: KeyPath,
    /// Why.
    pub reason: String,
}

/// `trust`: this cluster trusts another cluster's root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// The other cluster's name.
    pub cluster: String,
    /// The other cluster's root identity Ed25519 key.
    #[serde(with = "serde_bytes")]
    pub root: [u8; 32],
    /// Trust level.
    pub level: TrustLevel,
    /// Permissions granted.
    pub permissions: Vec<String>,
    /// Expiry (Unix seconds).
    pub expires_at: u64,
    /// The cluster that introduced this one (its root fingerprint, hex), when the
    /// trust came from an introduction; absent otherwise (and then not encoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced_by: Option<String>,
}

/// `untrust`: end the trust in another cluster's root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Untrust {
    /// The other cluster's root identity Ed25519 key.
    #[serde(with = "serde_bytes")]
    pub root: [u8; 32],
    /// Why.
    pub reason: String,
}

/// `succession`: the old root names a new root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Succession {
    /// The new root's identity keys.
    pub new_root: KeySet,
}

/// `anchor`: the first entry of a branch log, signed by the branch key, naming the
/// root-log entry that certified the branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Seq of the root-log entry that certified the branch.
    pub root_seq: u64,
    /// That entry's hash.
    #[serde(with = "serde_bytes")]
    pub root_entry: [u8; 32],
}

/// What a statement says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// See [`Genesis`].
    Genesis(Genesis),
    /// See [`Certify`].
    Certify(Certify),
    /// See [`Epoch`].
    Epoch(Epoch),
    /// See [`Revoke`].
    Revoke(Revoke),
    /// See [`Trust`].
    Trust(Trust),
    /// See [`Untrust`].
    Untrust(Untrust),
    /// See [`Succession`].
    Succession(Succession),
    /// See [`Anchor`].
    Anchor(Anchor),
    /// See [`Extend`].
    Extend(Extend),
    /// See [`RekeyOrder`].
    RekeyOrder(RekeyOrder),
    /// See [`Replica`].
    Replica(Replica),
}

impl Body {
    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Genesis(_) => "genesis",
            Body::Certify(_) => "certify",
            Body::Epoch(_) => "epoch",
            Body::Revoke(_) => "revoke",
            Body::Trust(_) => "trust",
            Body::Untrust(_) => "untrust",
            Body::Succession(_) => "succession",
            Body::Anchor(_) => "anchor",
            Body::Extend(_) => "extend",
            Body::RekeyOrder(_) => "rekey_order",
            Body::Replica(_) => "replica",
        }
    }

    /// Checks the bounds on sizes and counts, naming the field.
    pub fn check_bounds(&self) -> Result<(), String> {
        let text = check_text;
        match self {
            Body::Genesis(g) => text("cluster", &g.cluster, MAX_NAME, false),
            Body::Certify(c) => {
                check_name(&c.name)?;
                text("role", &c.role, MAX_ROLE, true)?;
                let key_role = c.role.starts_with(super::NAMED_ROLE_PREFIX);
                let fits = match c.path.role() {
                    crate::derive::PathRole::Named { .. } => key_role,
                    crate::derive::PathRole::Node => !key_role,
                    _ => true, // not certifiable at all: refused as NotNode
                };
                if !fits {
                    return Err(format!(
                        "role {:?} does not fit {}: named keys (P/2'/n') and only they have a role key:<type>",
                        c.role, c.path
                    ));
                }
                if c.not_before >= c.not_after {
                    return Err("not_before must be before not_after".into());
                }
                Ok(())
            }
            Body::Epoch(_) | Body::Succession(_) | Body::Anchor(_) | Body::Extend(_) => Ok(()),
            Body::Revoke(r) => text("reason", &r.reason, MAX_REASON, true),
            Body::RekeyOrder(o) => text("reason", &o.reason, MAX_REASON, true),
            Body::Trust(t) => {
                text("cluster", &t.cluster, MAX_NAME, false)?;
                if t.permissions.len() > MAX_PERMISSIONS {
                    return Err(format!(
                        "{} permissions, at most {MAX_PERMISSIONS} allowed",
                        t.permissions.len()
                    ));
                }
                if let Some(by) = &t.introduced_by
                    && (by.len() != 64 || !by.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err("introduced_by is not a root fingerprint (64 hex digits)".into());
                }
                t.permissions
                    .iter()
                    .try_for_each(|p| text("permission", p, MAX_PERMISSION, false))
            }
            Body::Untrust(u) => text("reason", &u.reason, MAX_REASON, true),
            Body::Replica(r) => {
                check_replica_name(&r.name)?;
                match r.action.as_str() {
                    "add" | "remove" => Ok(()),
                    other => Err(format!("replica action {other:?}: add or remove")),
                }
            }
        }
    }
}

/// Replica names (a keyd group's replicas): 1-64 of `A-Z a-z 0-9 _ -`.
pub fn check_replica_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "replica name {name:?}: 1 to 64 bytes of A-Z a-z 0-9 _ -"
        ))
    }
}

/// Node names: 1-64 of `A-Z a-z 0-9 . _ -`, not `m` (so a name never reads as a path).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "m"
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1-{MAX_NAME} characters of A-Z a-z 0-9 . _ - and not \"m\""
        ))
    }
}

/// A signed statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// [`STATEMENT_VERSION`].
    pub v: u8,
    /// What it says.
    pub body: Body,
    /// Path of the signing key.
    pub signer: KeyPath,
    /// When it was signed (Unix seconds).
    pub issued_at: u64,
    /// Ed25519 signature over [`Statement::signed_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

#[derive(Serialize)]
struct Unsigned<'a> {
    v: u8,
    body: &'a Body,
    signer: &'a KeyPath,
    issued_at: u64,
}

impl Statement {
    /// Signs `body` with the key at `signer`.
    pub fn sign(body: Body, signer: KeyPath, issued_at: u64, key: &SigningKey) -> Statement {
        let mut s = Statement {
            v: STATEMENT_VERSION,
            body,
            signer,
            issued_at,
            signature: [0; 64],
        };
        s.signature = key.sign(&s.signed_bytes()).to_bytes();
        s
    }

    /// The bytes the signature covers: a domain tag and the canonical CBOR of every
    /// field but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = STATEMENT_DOMAIN.to_vec();
        out.extend(cbor::to_vec(&Unsigned {
            v: self.v,
            body: &self.body,
            signer: &self.signer,
            issued_at: self.issued_at,
        }));
        out
    }

    /// Verifies the signature under `key` (strict RFC 8032 verification).
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        key.verify_strict(
            &self.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .is_ok()
    }

    /// Canonical CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor::to_vec(self)
    }

    /// Decodes canonical CBOR (exactly one statement, bounded in size).
    pub fn from_cbor(bytes: &[u8]) -> Result<Statement, CborError> {
        cbor::decode_exact(bytes, MAX_STATEMENT_BYTES)
    }
}

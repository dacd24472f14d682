//! Offline root ceremonies: the only code that touches the root token.
//!
//! - [`init`]: make `R`, split it into shares (each encrypted to its custodian, see
//!   [`custodian`]), import it non-extractable, write `root.json` and a signed transcript
//!   that commits to every share.
//! - [`recover`]: rebuild `R` from shares into a fresh token and prove it.
//! - [`fn@derive`]: public keys of any path through the token.
//! - [`branch`]: `issue` (certify and seal a level-1 branch) and `revoke`.
//! - [`root_rekey`]: a new root succeeding the old one, every branch re-issued under it.

pub mod args;
pub mod branch;
pub mod custodian;
pub mod decrypt;
pub mod init;
pub mod rebuild;
pub mod recover;
pub mod root_rekey;
pub mod shares;
pub mod transcript;
pub mod trust;

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use keyd::derive::{self, KeyPath, PublicKeys, RootSecret};
use keyd::hsm::{Hsm, Pkcs11Uri};
use serde::{Deserialize, Serialize};

use crate::error::CtlError;
use crate::public::PublicJson;

/// Format tag of root.json.
pub const ROOT_FORMAT: &str = "keyd-root/v1";

/// `root.json`: the public identity of a root, for custodians and for `recover --expect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootJson {
    /// [`ROOT_FORMAT`].
    pub format: String,
    /// Key id of the root identity key.
    pub key_id: String,
    /// Root identity Ed25519 public key, hex.
    pub ed25519_public: String,
    /// Root identity X25519 public key, hex.
    pub x25519_public: String,
    /// SHA-256 of the Ed25519 public key, hex: what custodians compare.
    pub fingerprint: String,
    /// When the root was made (RFC 3339, UTC).
    pub created_at: String,
    /// Shares needed to rebuild it.
    pub threshold: u8,
    /// Shares made.
    pub shares: u8,
}

impl RootJson {
    /// Reads and checks a root.json.
    pub fn read(path: &Path) -> Result<Self, CtlError> {
        let text = std::fs::read_to_string(path).map_err(CtlError::io("cannot read", path))?;
        let bad = |message: String| CtlError::RootFile {
            path: path.to_owned(),
            message,
        };
        let root: RootJson = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if root.format != ROOT_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {ROOT_FORMAT:?}",
                root.format
            )));
        }
        let public = decode_public(&root.ed25519_public).ok_or_else(|| {
            bad("ed25519_public is not a 32-byte Ed25519 public key in hex".into())
        })?;
        if fingerprint(&public) != root.fingerprint {
            return Err(bad("fingerprint does not match ed25519_public".into()));
        }
        Ok(root)
    }

    /// Whether `keys` are this root's identity keys.
    pub fn matches(&self, keys: &PublicKeys) -> bool {
        self.key_id == keys.key_id.to_string()
            && self.ed25519_public == hex::encode(keys.ed25519.as_bytes())
            && self.x25519_public == hex::encode(keys.x25519.as_bytes())
    }

    /// The shares' view of this root.
    pub fn root_ref(&self) -> shares::RootRef {
        shares::RootRef {
            fingerprint: self.fingerprint.clone(),
            key_id: self.key_id.clone(),
        }
    }
}

/// SHA-256 of an Ed25519 public key, hex.
pub fn fingerprint(key: &VerifyingKey) -> String {
    keyd::chain::fingerprint(key.as_bytes())
}

fn decode_public(text: &str) -> Option<VerifyingKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Opens the token a `--hsm` URI names.
pub fn open(uri: &str) -> Result<Hsm, CtlError> {
    let uri: Pkcs11Uri = uri.parse()?;
    Ok(Hsm::open(&uri)?)
}

/// The root identity's public keys under `root`.
pub fn root_identity(root: &dyn RootSecret) -> Result<PublicKeys, CtlError> {
    Ok(derive::derive_node(root, &KeyPath::root())?.public_keys())
}

/// `keyctl ceremony derive`: public keys of `path` through the token's root.
pub fn derive(uri: &str, path: &str) -> Result<PublicJson, CtlError> {
    let path: KeyPath = path.parse()?;
    let hsm = open(uri)?;
    let root = hsm.root()?;
    let node = derive::derive_node(&root, &path)?;
    Ok(PublicJson::new(&path, &node.public_keys()))
}

/// Now, RFC 3339 UTC.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_owned())
}

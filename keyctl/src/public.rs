//! The public description of a key, as `keyctl vectors` and `keyctl ceremony derive`
//! print it.

use keyd::derive::{KeyPath, PublicKeys};
use serde::{Deserialize, Serialize};

/// `{"path","key_id","ed25519_public","x25519_public"}`, hex strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJson {
    /// The key path.
    pub path: String,
    /// The key id.
    pub key_id: String,
    /// Ed25519 public key, hex.
    pub ed25519_public: String,
    /// X25519 public key, hex.
    pub x25519_public: String,
}

impl PublicJson {
    /// Describes the keys at `path`.
    pub fn new(path: &KeyPath, keys: &PublicKeys) -> Self {
        PublicJson {
            path: path.to_string(),
            key_id: keys.key_id.to_string(),
            ed25519_public: hex::encode(keys.ed25519.as_bytes()),
            x25519_public: hex::encode(keys.x25519.as_bytes()),
        }
    }
}

/// `keyctl key export`: the key `key` (node name or path) of the chain file `chain`,
/// verified first, in `format`.
pub fn export(
    chain: &std::path::Path,
    key: &str,
    format: crate::cli::KeyFormat,
    key_use: crate::cli::KeyUse,
) -> Result<Vec<u8>, crate::error::CtlError> {
    use crate::cli::{KeyFormat, KeyUse};
    use keyd::export::{Format, Use};
    let verified = crate::chain_cmd::load(chain)?;
    let (path, record) = keyd::export::resolve(verified.state(), key)?;
    let format = match format {
        KeyFormat::Pem => Format::Pem,
        KeyFormat::Jwk => Format::Jwk,
        KeyFormat::Openssh => Format::OpenSsh,
        KeyFormat::Raw => Format::Raw,
    };
    let usage = match key_use {
        KeyUse::Sig => Use::Sig,
        KeyUse::Enc => Use::Enc,
    };
    Ok(keyd::export::encode(path, record, usage, format)?)
}

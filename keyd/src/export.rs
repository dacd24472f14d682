//! Public keys of the cluster in the formats other tools read: PEM SubjectPublicKeyInfo
//! (RFC 8410, what `openssl pkey -pubin` takes), JWK (RFC 8037, for JOSE libraries, and
//! a JWKS of many), OpenSSH (RFC 8709, Ed25519 only) and the raw 32 bytes. Everything
//! here is public and comes from a verified chain alone.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use thiserror::Error;

use crate::chain::{ChainState, KeyKind, KeyRecord};
use crate::derive::KeyPath;

/// Which of a key's two public keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// The Ed25519 key: signatures.
    Sig,
    /// The X25519 key: encryption to the node.
    Enc,
}

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `-----BEGIN PUBLIC KEY-----`: DER SubjectPublicKeyInfo (RFC 8410) in PEM.
    Pem,
    /// One JSON Web Key (RFC 8037, `kty` `OKP`).
    Jwk,
    /// An OpenSSH public key line (`ssh-ed25519 AAAA… comment`, RFC 8709).
    OpenSsh,
    /// The 32 bytes.
    Raw,
}

/// A key that cannot be exported as asked.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExportError {
    /// No key of that name or path in the chain.
    #[error("no key {0:?} in the chain")]
    NotFound(String),
    /// A node without a valid epoch key.
    #[error("{0} has no valid epoch key (revoked, expired, or every epoch superseded)")]
    NoEpoch(KeyPath),
    /// OpenSSH has no X25519 keys.
    #[error("OpenSSH has no X25519 keys: export the signing key (use sig), or another format")]
    SshEnc,
}

/// The key a name or path stands for: a node's current epoch key (what signs and what
/// is encrypted to now), or the exact key a path names (an epoch, a branch, the root).
pub fn resolve<'a>(
    state: &'a ChainState,
    name_or_path: &str,
) -> Result<(&'a KeyPath, &'a KeyRecord), ExportError> {
    let (path, record) = state
        .find(name_or_path)
        .ok_or_else(|| ExportError::NotFound(name_or_path.to_owned()))?;
    let is_node_name =
        matches!(record.kind, KeyKind::Node { .. }) && path.depth() > 1 && path.is_node();
    if !is_node_name {
        return Ok((path, record));
    }
    let (epoch, _) = state
        .current_epoch(path)
        .ok_or_else(|| ExportError::NoEpoch(path.clone()))?;
    let epoch_path = path
        .epoch_key(epoch)
        .ok_or_else(|| ExportError::NoEpoch(path.clone()))?;
    state
        .find(&epoch_path.to_string())
        .ok_or(ExportError::NoEpoch(epoch_path))
}

/// RFC 8410 section 4: the DER SubjectPublicKeyInfo of an Ed25519 (OID 1.3.101.112) or
/// X25519 (OID 1.3.101.110) key is this fixed prefix, then the 32 key bytes.
fn spki_der(key: &[u8; 32], usage: Use) -> Vec<u8> {
    let oid_last = match usage {
        Use::Sig => 0x70,
        Use::Enc => 0x6e,
    };
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, oid_last, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(key);
    der
}

/// The JWK of a key (RFC 8037): `kid` is its key id.
pub fn jwk(record: &KeyRecord, usage: Use) -> Value {
    match usage {
        Use::Sig => json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(record.keys.ed25519),
            "kid": record.key_id.to_string(),
            "use": "sig",
            "alg": "EdDSA",
        }),
        Use::Enc => json!({
            "kty": "OKP",
            "crv": "X25519",
            "x": URL_SAFE_NO_PAD.encode(record.keys.x25519),
            "kid": record.key_id.to_string(),
            "use": "enc",
        }),
    }
}

/// The JWKS (`{"keys": [...]}`) of every valid node's current signing key, each with
/// its key id as `kid`: what a JOSE library needs to check a JWS made with
/// `POST /v1/sign`.
pub fn jwks(state: &ChainState, now: u64) -> Value {
    let keys: Vec<Value> = state
        .keys()
        .filter(|(p, r)| p.depth() > 1 && p.is_node() && matches!(r.kind, KeyKind::Node { .. }))
        .map(|(p, _)| p)
        .filter(|p| state.status_at(p, now).is_valid())
        .filter_map(|p| resolve(state, &p.to_string()).ok())
        .map(|(_, r)| jwk(r, Use::Sig))
        .collect();
    json!({ "keys": keys })
}

/// The key in `format`: the bytes of the file to write.
pub fn encode(
    path: &KeyPath,
    record: &KeyRecord,
    usage: Use,
    format: Format,
) -> Result<Vec<u8>, ExportError> {
    let key = match usage {
        Use::Sig => record.keys.ed25519,
        Use::Enc => record.keys.x25519,
    };
    Ok(match format {
        Format::Raw => key.to_vec(),
        Format::Pem => pem::encode(&pem::Pem::new("PUBLIC KEY", spki_der(&key, usage)))
            .replace("\r\n", "\n")
            .into_bytes(),
        Format::Jwk => {
            let mut text = jwk(record, usage).to_string();
            text.push('\n');
            text.into_bytes()
        }
        Format::OpenSsh => {
            if usage == Use::Enc {
                return Err(ExportError::SshEnc);
            }
            // RFC 4253 section 6.6 / RFC 8709: string "ssh-ed25519", string key.
            let mut blob = Vec::with_capacity(51);
            for field in [b"ssh-ed25519".as_slice(), key.as_slice()] {
                blob.extend_from_slice(&u32::try_from(field.len()).unwrap_or(0).to_be_bytes());
                blob.extend_from_slice(field);
            }
            format!("ssh-ed25519 {} keyd:{path}\n", STANDARD.encode(blob)).into_bytes()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_prefix_is_rfc_8410s() {
        // RFC 8410 section 10.1's example Ed25519 public key, byte for byte.
        let key: [u8; 32] =
            hex::decode("19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1")
                .unwrap_or_default()
                .try_into()
                .unwrap_or([0; 32]);
        let der = spki_der(&key, Use::Sig);
        assert_eq!(
            hex::encode(der),
            "302a300506032b657003210019bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
        );
    }
}

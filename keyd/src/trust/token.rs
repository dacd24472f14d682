//! The invitation token: where the inviter's keyd is, which session, the secret that
//! admits one responder, and the fingerprint of the inviter keyd's CA certificate (so
//! the responder's keyd reaches that keyd and no other). Given out of band as a link
//! (`keyd-trust:BASE64URL`) or a QR code of the same text.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The scheme of an invitation link.
pub const SCHEME: &str = "keyd-trust:";

/// A token that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a keyd trust invitation: {0}")]
pub struct TokenError(pub String);

/// An invitation.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    /// Format version (1).
    pub v: u8,
    /// The inviter keyd's URL.
    pub url: String,
    /// The session id.
    #[serde(with = "serde_bytes")]
    pub session: [u8; 16],
    /// The secret that admits the responder (once).
    #[serde(with = "serde_bytes")]
    pub secret: [u8; 32],
    /// SHA-256 of the inviter keyd's CA certificate (DER).
    #[serde(with = "serde_bytes")]
    pub ca: [u8; 32],
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("url", &self.url)
            .field("session", &hex::encode(self.session))
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Drop for Invitation {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl Invitation {
    /// The link text.
    pub fn to_link(&self) -> String {
        format!("{SCHEME}{}", B64URL.encode(crate::chain::cbor_bytes(self)))
    }

    /// Parses a link (with or without its scheme).
    pub fn parse(text: &str) -> Result<Invitation, TokenError> {
        let body = text.trim();
        let body = body.strip_prefix(SCHEME).unwrap_or(body);
        let bytes = B64URL
            .decode(body)
            .map_err(|e| TokenError(format!("not base64url: {e}")))?;
        let inv: Invitation =
            crate::chain::decode_exact(&bytes, 4096).map_err(|e| TokenError(e.to_string()))?;
        if inv.v != 1 {
            return Err(TokenError(format!("version {}, this keyd reads 1", inv.v)));
        }
        if !inv.url.starts_with("https://") {
            return Err(TokenError(format!("{:?} is not an https URL", inv.url)));
        }
        Ok(inv)
    }

    /// The session id, hex.
    pub fn session_id(&self) -> String {
        hex::encode(self.session)
    }

    /// The proof a responder sends: HMAC of the session under the secret (the secret
    /// itself never travels).
    pub fn proof(&self) -> [u8; 32] {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"keyd/v1/trust/join\0");
        mac.update(&self.session);
        mac.finalize().into_bytes().into()
    }

    /// SHA-256 of a CA certificate (DER), as the token carries it.
    pub fn ca_fingerprint(der: &[u8]) -> [u8; 32] {
        Sha256::digest(der).into()
    }
}

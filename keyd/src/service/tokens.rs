//! Transit login tokens (`POST /v1/auth/cert/login`): opaque, short-lived, stateless
//! strings for clients that insist on a token. A token is an expiry and an HMAC-SHA256,
//! under the branch's HMAC key, over that expiry, the fingerprint of the client
//! certificate it was issued to and that certificate's principal: every replica of the
//! branch checks it alike, nothing is stored, and it is accepted only on a connection
//! presenting the same certificate (the certificate stays the authentication).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use super::{Service, ServiceError, unix_now};
use crate::identity::Principal;

/// How long a token is good for.
pub const TOKEN_SECONDS: u64 = 3600;
/// What every token starts with.
const TOKEN_PREFIX: &str = "kd.";
const TOKEN_DOMAIN: &[u8] = b"keyd/v1/transit-token\0";

impl Service {
    fn token_mac(
        &self,
        expires: u64,
        principal: &Principal,
        fingerprint: &[u8; 32],
    ) -> Result<[u8; 32], ServiceError> {
        let key = self.material(&self.branch_path)?;
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.hmac_key())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(TOKEN_DOMAIN);
        mac.update(&expires.to_be_bytes());
        mac.update(fingerprint);
        mac.update(principal.uri().as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }

    /// A token for the certificate with `fingerprint` naming `principal`, and its
    /// lifetime in seconds.
    pub fn transit_token(
        &self,
        principal: &Principal,
        fingerprint: &[u8; 32],
    ) -> Result<(String, u64), ServiceError> {
        let expires = unix_now().saturating_add(TOKEN_SECONDS);
        let mac = self.token_mac(expires, principal, fingerprint)?;
        let mut raw = expires.to_be_bytes().to_vec();
        raw.extend_from_slice(&mac);
        Ok((
            format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)),
            TOKEN_SECONDS,
        ))
    }

    /// Whether `token` was issued to this certificate and has not expired.
    pub fn check_transit_token(
        &self,
        token: &str,
        principal: &Principal,
        fingerprint: &[u8; 32],
    ) -> bool {
        let Some(raw) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        else {
            return false;
        };
        let Some((expires, mac)) = raw.split_first_chunk::<8>() else {
            return false;
        };
        let expires = u64::from_be_bytes(*expires);
        if expires < unix_now() || mac.len() != 32 {
            return false;
        }
        self.token_mac(expires, principal, fingerprint)
            .is_ok_and(|want| bool::from(want.ct_eq(mac)))
    }
}

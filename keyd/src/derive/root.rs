//! The root secret `R` as an HMAC-SHA512 oracle.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;
use zeroize::Zeroizing;

use super::DeriveError;

/// 64-byte output of `HSM(x) = HMAC-SHA512(R, x)`.
pub type HmacOutput = Zeroizing<[u8; 64]>;

/// Computes `HMAC-SHA512(R, msg)` without ever exposing `R`.
///
/// In production `R` stays inside a PKCS#11 token ([`crate::hsm::HsmRoot`]).
pub trait RootSecret {
    /// `HMAC-SHA512(R, msg)`.
    fn hmac_sha512(&self, msg: &[u8]) -> Result<HmacOutput, DeriveError>;
}

/// `R` held in process memory.
///
/// Only for published test vectors and for checking, inside a ceremony, a secret that is
/// already in memory (freshly generated or rebuilt from shares) before it is imported
/// into a token. A running keyd never holds one.
pub struct SoftwareRoot {
    secret: Zeroizing<Vec<u8>>,
}

impl SoftwareRoot {
    /// Wraps a root secret. keyd roots are 64 bytes; other lengths are accepted so
    /// that HMAC key handling can be tested, but no ceremony produces them.
    pub fn danger_from_bytes(secret: &[u8]) -> Self {
        let mut buf = Zeroizing::new(Vec::with_capacity(secret.len()));
        buf.extend_from_slice(secret);
        SoftwareRoot { secret: buf }
    }
}

impl RootSecret for SoftwareRoot {
    fn hmac_sha512(&self, msg: &[u8]) -> Result<HmacOutput, DeriveError> {
        Ok(hmac_sha512(&self.secret, &[msg]))
    }
}

impl fmt::Debug for SoftwareRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SoftwareRoot([REDACTED])")
    }
}

/// HMAC-SHA512 of the concatenation of `parts` under `key`.
pub(crate) fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> HmacOutput {
    // HMAC accepts keys of any length: new_from_slice cannot fail for Hmac<Sha512>.
    let mut mac = match <Hmac<Sha512> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

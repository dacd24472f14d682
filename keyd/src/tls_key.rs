//! A client's TLS key and its certificate signing request: what a node sends keyd to
//! enroll (`POST /v1/enroll`) or to renew its certificate (`POST /v1/renew`).
//!
//! The key is Ed25519 in PKCS#8 v1 (RFC 8410), which every TLS client reads (OpenSSL
//! refuses the v2 form some libraries write). TLS keys are transient, non-derived keys
//! (DESIGN.md section 3): the node's tree keys never sign TLS handshakes.

use rcgen::{CertificateParams, KeyPair};
use thiserror::Error;
use zeroize::Zeroizing;

/// Why a TLS key or CSR cannot be made or read.
#[derive(Debug, Error)]
pub enum TlsKeyError {
    /// No randomness.
    #[error("randomness: {0}")]
    Random(String),
    /// Not a PEM Ed25519 private key.
    #[error("not a PEM Ed25519 PKCS#8 private key: {0}")]
    Key(String),
    /// rcgen refused.
    #[error("certificate signing request: {0}")]
    Csr(#[from] rcgen::Error),
}

/// An Ed25519 TLS key (PKCS#8 v1 DER), zeroized on drop.
pub struct TlsKey {
    der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsKey(..)")
    }
}

/// PKCS#8 v1 encoding of an Ed25519 seed (RFC 8410 section 7).
pub(crate) fn ed25519_pkcs8(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&PREFIX);
    der.extend_from_slice(seed);
    der
}

impl TlsKey {
    /// A fresh key from the OS random generator.
    pub fn generate() -> Result<TlsKey, TlsKeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| TlsKeyError::Random(e.to_string()))?;
        Ok(TlsKey {
            der: ed25519_pkcs8(&seed),
        })
    }

    /// Reads a PEM `PRIVATE KEY` (Ed25519 PKCS#8).
    pub fn from_pem(text: &str) -> Result<TlsKey, TlsKeyError> {
        let block = pem::parse(text).map_err(|e| TlsKeyError::Key(e.to_string()))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(TlsKeyError::Key(format!("a {} block", block.tag())));
        }
        let key = TlsKey {
            der: Zeroizing::new(block.into_contents()),
        };
        key.key_pair()?;
        Ok(key)
    }

    /// The rcgen key pair.
    pub fn key_pair(&self) -> Result<KeyPair, TlsKeyError> {
        let pair =
            KeyPair::try_from(self.der.as_slice()).map_err(|e| TlsKeyError::Key(e.to_string()))?;
        if pair.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(TlsKeyError::Key("not an Ed25519 key".into()));
        }
        Ok(pair)
    }

    /// The key as PEM, for a 0600 file.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            self.der.as_slice().to_vec(),
        )))
    }

    /// A PEM PKCS#10 request for this key. keyd names the principal in the certificate
    /// itself; the request only proves possession of the key.
    pub fn csr_pem(&self) -> Result<String, TlsKeyError> {
        Ok(CertificateParams::default()
            .serialize_request(&self.key_pair()?)?
            .pem()?)
    }
}

/// The Ed25519 public key of a PEM (or DER) certificate: for keyd's CA certificate, the
/// branch identity key. `None` when it is not a certificate with an Ed25519 key.
pub fn certificate_ed25519_key(pem_or_der: &[u8]) -> Option<[u8; 32]> {
    with_certificate(pem_or_der, |cert| {
        cert.public_key()
            .subject_public_key
            .data
            .as_ref()
            .try_into()
            .ok()
    })
}

/// The validity of a PEM (or DER) certificate: `notBefore` and `notAfter`, Unix
/// seconds (a client renews its certificate before the second). `None` when it is not
/// a certificate.
pub fn certificate_validity(pem_or_der: &[u8]) -> Option<(u64, u64)> {
    with_certificate(pem_or_der, |cert| {
        let v = cert.validity();
        let not_before = u64::try_from(v.not_before.timestamp()).unwrap_or(0);
        let not_after = u64::try_from(v.not_after.timestamp()).ok()?;
        Some((not_before, not_after))
    })
}

/// The node a PEM (or DER) client certificate names (its `keyd:node:PATH` URI), if it
/// names one.
pub fn certificate_node(pem_or_der: &[u8]) -> Option<crate::derive::KeyPath> {
    with_certificate(pem_or_der, |cert| {
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => {
                u.strip_prefix("keyd:node:")?.parse().ok()
            }
            _ => None,
        })
    })
}

fn with_certificate<T>(
    pem_or_der: &[u8],
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> Option<T>,
) -> Option<T> {
    let der = match pem::parse(pem_or_der) {
        Ok(p) => p.into_contents(),
        Err(_) => pem_or_der.to_vec(),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    f(&cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_pem_round_trip_and_csr() {
        let key = TlsKey::generate().expect("key");
        let again = TlsKey::from_pem(&key.to_pem()).expect("pem");
        assert_eq!(key.der, again.der);
        assert_eq!(key.der.len(), 48, "PKCS#8 v1");
        let csr = again.csr_pem().expect("csr");
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).expect("parse");
        use rcgen::PublicKeyData;
        assert_eq!(
            parsed.public_key.der_bytes(),
            key.key_pair().expect("pair").der_bytes()
        );
        assert!(format!("{key:?}") == "TlsKey(..)");
        assert!(
            TlsKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(TlsKey::from_pem("junk").is_err());
    }
}

//! TLS identities issued from keyd's branch: the CA certificate (the branch identity key
//! itself, self-signed, byte-identical across restarts), the server certificate, and
//! short-lived client certificates for nodes (from a CSR) and admins.
//!
//! A client certificate names its principal in a URI SAN: `keyd:node:<path>` or
//! `keyd:admin:<name>`, and its credential generation in another: `keyd:generation:<n>`
//! (a new generation starts at each enrollment; revoking a principal's credentials ends
//! its generation). The chain, not the certificate, says whether a node is still valid:
//! every request checks it.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, SanType,
    SerialNumber,
};
use rustls::pki_types::PrivatePkcs8KeyDer;
use thiserror::Error;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::derive::{KeyMaterial, KeyPath};
use crate::tls_key::ed25519_pkcs8;

/// An rcgen key pair whose serialized secret is zeroized on drop (rcgen's `zeroize`
/// feature): the CA's branch identity key and every fresh certificate key.
struct SecretKeyPair(KeyPair);

impl Drop for SecretKeyPair {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl rcgen::PublicKeyData for SecretKeyPair {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl rcgen::SigningKey for SecretKeyPair {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

/// Certificate failures.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// rcgen refused.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A CSR that cannot be used.
    #[error("the certificate signing request is not usable: {0}")]
    Csr(String),
}

/// Who a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A node of the tree.
    Node(KeyPath),
    /// An administrator.
    Admin(String),
}

impl Principal {
    /// The URI SAN text.
    pub fn uri(&self) -> String {
        match self {
            Principal::Node(p) => format!("keyd:node:{p}"),
            Principal::Admin(n) => format!("keyd:admin:{n}"),
        }
    }

    /// Parses a URI SAN.
    pub fn from_uri(uri: &str) -> Option<Principal> {
        if let Some(p) = uri.strip_prefix("keyd:node:") {
            return p.parse().ok().map(Principal::Node);
        }
        uri.strip_prefix("keyd:admin:")
            .filter(|n| crate::chain::check_name(n).is_ok())
            .map(|n| Principal::Admin(n.to_owned()))
    }

    /// The principal a DER certificate names, if any, with the certificate's `notAfter`
    /// and credential generation.
    pub fn of_certificate(der: &[u8]) -> Option<Presented> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let uris = || {
            san.value.general_names.iter().filter_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => Some(*u),
                _ => None,
            })
        };
        let principal = uris().find_map(Principal::from_uri)?;
        let generation = uris()
            .find_map(|u| u.strip_prefix(GENERATION_URI)?.parse().ok())
            .unwrap_or(0);
        Some(Presented {
            principal,
            not_after: cert.validity().not_after.timestamp(),
            generation,
            fingerprint: sha2::Digest::finalize(sha2::Digest::chain_update(
                <sha2::Sha256 as sha2::Digest>::new(),
                der,
            ))
            .into(),
        })
    }

    /// The key of the principal's credential record: its URI, admin names in lowercase
    /// (they compare without regard to case).
    pub fn credential_key(&self) -> String {
        match self {
            Principal::Node(_) => self.uri(),
            Principal::Admin(n) => format!("keyd:admin:{}", n.to_lowercase()),
        }
    }
}

/// The URI SAN prefix naming a certificate's credential generation.
const GENERATION_URI: &str = "keyd:generation:";

/// What a client certificate presents: its principal, its `notAfter` (Unix seconds) and
/// its credential generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The principal.
    pub principal: Principal,
    /// Its `notAfter`.
    pub not_after: i64,
    /// The credential generation it belongs to.
    pub generation: u32,
    /// SHA-256 of the certificate (DER): what a transit token is bound to.
    pub fingerprint: [u8; 32],
}

/// A client certificate keyd issued: PEM, serial (hex) and `notAfter` (Unix seconds).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub pem: String,
    /// Its serial number, lowercase hex.
    pub serial: String,
    /// Its `notAfter`.
    pub not_after: u64,
}

/// The certificate authority: keyd's branch identity key.
pub struct Ca {
    issuer: Issuer<'static, SecretKeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "keyd");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl Ca {
    /// The CA of branch `path` named `name`, signing with the branch identity key.
    pub fn from_branch(
        branch: &KeyMaterial,
        name: &str,
        path: &KeyPath,
    ) -> Result<Ca, IdentityError> {
        let pkcs8 = ed25519_pkcs8(&branch.signing_key().to_bytes());
        let key = SecretKeyPair(KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            &PKCS_ED25519,
        )?);
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("keyd {name} ({path})"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // Fixed fields: the same key always gives the same CA certificate.
        params.not_before = at(1_735_689_600); // 2025-01-01
        params.not_after = at(4_891_363_200); // 2125-01-01
        params.serial_number = Some(SerialNumber::from_slice(&branch.public_keys().key_id.0));
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    fn leaf(
        common_name: &str,
        sans: Vec<SanType>,
        seconds: u64,
        server: bool,
    ) -> (CertificateParams, String, u64) {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let t = now();
        params.not_before = at(t - 300);
        params.not_after = at(t + seconds as i64);
        params.use_authority_key_identifier_extension = true;
        // A fresh serial per certificate (RFC 5280: positive, at most 20 bytes).
        let mut serial = [0u8; 16];
        if getrandom::fill(&mut serial).is_ok() {
            serial[0] &= 0x7f;
            params.serial_number = Some(SerialNumber::from_slice(&serial));
        }
        let not_after = u64::try_from(t.saturating_add(seconds as i64)).unwrap_or(0);
        (params, hex::encode(serial), not_after)
    }

    /// The SANs of a client certificate: its principal and its generation.
    fn client_sans(principal: &Principal, generation: u32) -> Result<Vec<SanType>, IdentityError> {
        Ok(vec![
            SanType::URI(principal.uri().try_into()?),
            SanType::URI(format!("{GENERATION_URI}{generation}").try_into()?),
        ])
    }

    /// A server certificate for `names` (DNS names or IP addresses) with a fresh key:
    /// `(certificate DER, PKCS#8 key DER)`.
    pub fn server_cert(
        &self,
        names: &[String],
        seconds: u64,
    ) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), IdentityError> {
        let key = SecretKeyPair(KeyPair::generate_for(&PKCS_ED25519)?);
        let mut sans = Vec::new();
        for n in names {
            sans.push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into()?),
            });
        }
        let cert = Self::leaf("keyd server", sans, seconds, true)
            .0
            .signed_by(&key, &self.issuer)?;
        Ok((cert.der().to_vec(), Zeroizing::new(key.0.serialize_der())))
    }

    /// A client certificate of credential `generation` for `principal`, for the key in
    /// `csr_pem`; the CSR's own names and extensions are ignored.
    pub fn client_cert_from_csr(
        &self,
        csr_pem: &str,
        principal: &Principal,
        generation: u32,
        common_name: &str,
        seconds: u64,
    ) -> Result<Issued, IdentityError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| IdentityError::Csr(e.to_string()))?;
        let (params, serial, not_after) = Self::leaf(
            common_name,
            Self::client_sans(principal, generation)?,
            seconds,
            false,
        );
        Ok(Issued {
            pem: params.signed_by(&csr.public_key, &self.issuer)?.pem(),
            serial,
            not_after,
        })
    }

    /// A client certificate of credential `generation` and a fresh key for `principal`:
    /// the certificate and the key PEM.
    pub fn client_credential(
        &self,
        principal: &Principal,
        generation: u32,
        common_name: &str,
        seconds: u64,
    ) -> Result<(Issued, Zeroizing<String>), IdentityError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|e| IdentityError::Csr(format!("randomness: {e}")))?;
        // PKCS#8 v1, which every TLS client (OpenSSL included) reads.
        let der = ed25519_pkcs8(&seed);
        let key = SecretKeyPair(KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(der.as_slice()),
            &PKCS_ED25519,
        )?);
        let (params, serial, not_after) = Self::leaf(
            common_name,
            Self::client_sans(principal, generation)?,
            seconds,
            false,
        );
        let cert = params.signed_by(&key, &self.issuer)?;
        let block = pem::Pem::new("PRIVATE KEY", der.to_vec());
        let key_pem = Zeroizing::new(pem::encode(&block));
        drop(Zeroizing::new(block.into_contents()));
        Ok((
            Issued {
                pem: cert.pem(),
                serial,
                not_after,
            },
            key_pem,
        ))
    }
}

//! keyd's TLS server configuration: its server certificate from the branch CA, and the
//! client-certificate verifier.
//!
//! Client certificates are optional at the TLS layer (enrollment, the chain and the CA
//! are public) and must chain to keyd's CA. One deliberate leniency: a certificate that
//! is valid but *expired* is let through the handshake, so that the API can answer
//! `401 certificate_expired` (and say how to renew) instead of a bare TLS alert. Every
//! authenticated request checks expiry itself (`api::principal`); an expired certificate
//! authenticates nothing.
//!
//! The server certificate names `server_names` (config) and is short-lived: keyd issues a
//! fresh one from its CA when half of the current one's lifetime has passed, so a keyd
//! that runs for months never serves an expired certificate.

use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::Ca;

/// Lifetime of each server certificate; a new one is issued at half of it.
pub const SERVER_CERT_SECONDS: u64 = 30 * 86_400;

/// The server configuration: server certificates for `names` (renewed as they age), and
/// the client verifier.
pub fn server_config(ca: Arc<Ca>, names: Vec<String>) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().to_vec().into())?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let now = crate::service::unix_now();
    let certs = ServerCerts::new(ca, names, provider.clone(), SERVER_CERT_SECONDS, now)?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(ExpiredReachesTheApi(inner)))
        .with_cert_resolver(Arc::new(certs)))
}

/// keyd's server certificate, issued again from the CA when half its lifetime is gone.
pub struct ServerCerts {
    ca: Arc<Ca>,
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
    seconds: u64,
    /// The certificate served and when to replace it (Unix seconds).
    current: RwLock<(Arc<CertifiedKey>, u64)>,
}

impl std::fmt::Debug for ServerCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCerts")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ServerCerts {
    /// Issues the first certificate for `names` at `now` (Unix seconds), each
    /// certificate living `seconds`.
    pub fn new(
        ca: Arc<Ca>,
        names: Vec<String>,
        provider: Arc<CryptoProvider>,
        seconds: u64,
        now: u64,
    ) -> anyhow::Result<ServerCerts> {
        let first = issue(&ca, &names, &provider, seconds)?;
        let renew_at = now + seconds / 2;
        Ok(ServerCerts {
            ca,
            names,
            provider,
            seconds,
            current: RwLock::new((first, renew_at)),
        })
    }

    /// The certificate to serve at `now` (Unix seconds): the current one, or a new one
    /// once it is due. A failed renewal keeps serving the current one, says so, and is
    /// tried again a minute later.
    pub fn at(&self, now: u64) -> Arc<CertifiedKey> {
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if now < current.1 {
                return current.0.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if now >= current.1 {
            match issue(&self.ca, &self.names, &self.provider, self.seconds) {
                Ok(fresh) => {
                    *current = (fresh, now + self.seconds / 2);
                    tracing::info!(seconds = self.seconds, "server certificate renewed");
                }
                Err(e) => {
                    current.1 = now + 60;
                    tracing::error!(error = %e, "server certificate renewal failed");
                }
            }
        }
        current.0.clone()
    }
}

impl ResolvesServerCert for ServerCerts {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.at(crate::service::unix_now()))
    }
}

fn issue(
    ca: &Ca,
    names: &[String],
    provider: &CryptoProvider,
    seconds: u64,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let (cert, key) = ca.server_cert(names, seconds)?;
    if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) {
        let not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
        crate::api::metrics().server_certificate(not_after);
    }
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.to_vec().into()))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.into()], key)))
}

/// WebPKI client verification, except that an expired certificate passes (see the
/// module documentation).
#[derive(Debug)]
struct ExpiredReachesTheApi(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ExpiredReachesTheApi {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.0.verify_client_cert(end_entity, intermediates, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => {
                // Expired: check everything else at a time within its validity.
                let (_, cert) = x509_parser::parse_x509_certificate(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                let not_after = cert.validity().not_after.timestamp();
                let then = u64::try_from(not_after).unwrap_or(0);
                self.0.verify_client_cert(
                    end_entity,
                    intermediates,
                    UnixTime::since_unix_epoch(std::time::Duration::from_secs(then)),
                )
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::KeyMaterial;

    #[test]
    fn the_server_certificate_names_what_is_configured_and_is_renewed_at_half_life() {
        let ca = Ca::from_branch(
            &KeyMaterial::from_node_key(&[3; 32]),
            "dc1",
            &"m/1'".parse().expect("path"),
        )
        .expect("ca");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let names = vec!["keyd.example.internal".to_owned(), "10.0.0.7".to_owned()];
        let now = crate::service::unix_now();
        let certs = ServerCerts::new(Arc::new(ca), names, provider, 100, now).expect("certs");
        let first = certs.at(now);
        let (_, cert) = x509_parser::parse_x509_certificate(first.cert[0].as_ref()).expect("der");
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .expect("san")
            .expect("present")
            .value
            .general_names
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            sans,
            ["DNSName(keyd.example.internal)", "IPAddress(0a:00:00:07)"]
        );
        let lifetime = cert.validity().not_after.timestamp() - now as i64;
        assert!((99..=101).contains(&lifetime), "{lifetime}");
        assert!(Arc::ptr_eq(&first, &certs.at(now + 49)));
        let second = certs.at(now + 50);
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&second, &certs.at(now + 99)));
    }
}

//! keyd's TLS server configuration: its server certificate from the branch CA, and the
//! client-certificate verifier.
//!
//! Client certificates are optional at the TLS layer (enrollment, the chain and the CA
//! are public) and must chain to keyd's CA. One deliberate leniency: a certificate that
//! is valid but *expired* is let through the handshake, so that the API can answer
//! `401 certificate_expired` (and say how to renew) instead of a bare TLS alert. Every
//! authenticated request checks expiry itself (`api::principal`); an expired certificate
//! authenticates nothing.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::Ca;

/// Lifetime of the server certificate made at each start.
const SERVER_CERT_SECONDS: u64 = 30 * 86_400;

/// The server configuration: a fresh server certificate for the loopback names, and
/// the client verifier.
pub fn server_config(ca: &Ca) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().to_vec().into())?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let (cert, key) = ca.server_cert(
        &["127.0.0.1".into(), "localhost".into(), "::1".into()],
        SERVER_CERT_SECONDS,
    )?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(ExpiredReachesTheApi(inner)))
        .with_single_cert(vec![cert.into()], PrivateKeyDer::Pkcs8(key.to_vec().into()))?)
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

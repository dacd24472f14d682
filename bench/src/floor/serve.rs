//! An empty answer through the stack keyd serves on.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

/// Reads the body, as keyd does, and answers nothing.
async fn floor(body: web::Bytes) -> HttpResponse {
    std::hint::black_box(body);
    HttpResponse::Ok().finish()
}

/// Reads the body and answers it back: the payload both ways, with no work on it.
async fn echo(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(std::hint::black_box(body))
}

fn tls(client_ca: &Path, write_ca: &Path) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let pem =
        std::fs::read(client_ca).with_context(|| format!("cannot read {}", client_ca.display()))?;
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: CertificateDer = cert.context("client CA: not a PEM certificate")?;
        roots.add(cert)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    // Our own CA and a server certificate for 127.0.0.1 (Ed25519, as keyd's).
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &issuer)?;
    std::fs::write(write_ca, ca_cert.pem())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.der().clone()], der)?)
}

/// Serves until killed.
pub fn run(client_ca: &Path, write_ca: &Path) -> Result<()> {
    let config = tls(client_ca, write_ca)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(|| {
        App::new()
            .route("/floor", web::post().to(floor))
            .route("/floor/echo", web::post().to(echo))
    })
    .listen_rustls_0_23(listener, config)?;
    println!("keyd-floor listening on https://{addr}");
    std::io::stdout().flush()?;
    actix_rt::System::new().block_on(server.run())?;
    Ok(())
}

//! A node joining keyd: enrollment with a one-time token, and certificate renewal.

use std::path::Path;

use keyd::bundle::{BranchBundle, InstallKey};
use keyd::tls_key::TlsKey;
use serde_json::{Value, json};
use ureq::tls::{Certificate, ClientCert, PrivateKey};
use zeroize::Zeroizing;

use crate::client::{Client, ClientConfig};
use crate::error::CtlError;
use crate::files;
use crate::remote::field;

/// Where the token comes from when no `--token-file` is given.
const TOKEN_ENV: &str = "KEYD_ENROLL_TOKEN";

fn token(file: Option<&Path>) -> Result<Zeroizing<String>, CtlError> {
    let text = match file {
        Some(f) => {
            Zeroizing::new(std::fs::read_to_string(f).map_err(CtlError::io("cannot read", f))?)
        }
        None => Zeroizing::new(std::env::var(TOKEN_ENV).map_err(|_| CtlError::Arg {
            flag: "--token-file",
            message: format!("give the enrollment token in a file, or in {TOKEN_ENV}"),
        })?),
    };
    Ok(Zeroizing::new(text.trim().to_owned()))
}

fn text(v: &Value, name: &str) -> Result<String, CtlError> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CtlError::Http(format!("keyd's answer has no {name}")))
}

/// Enrolls: a fresh TLS key and CSR (and in exported mode an install key), the token
/// redeemed, and DIR written: `node.key` (0600), `node.pem`, `ca.pem`, `keyctl.toml`,
/// and in exported mode `node.bundle` (the identity secret, sealed) and `install.key`
/// (0600, opens it). The bundle is opened and checked against its chain before
/// anything is written.
pub fn enroll(
    url: &str,
    ca: &Path,
    token_file: Option<&Path>,
    out: &Path,
) -> Result<Value, CtlError> {
    let token = token(token_file)?;
    if !files::is_absent_or_empty(out) {
        return Err(CtlError::OutExists(out.to_owned()));
    }
    let client = Client::new(url, ca, None)?;
    let key = TlsKey::generate()?;
    let install = InstallKey::generate();
    let request = |install_key: Option<String>| {
        let mut body = json!({"token": token.as_str(), "csr": key.csr_pem()?});
        if let Some(k) = install_key {
            body["install_key"] = k.into();
        }
        client.post("/v1/enroll", &body)
    };
    // An exported-mode token says so (keyd::EXPORTED_TOKEN_PREFIX): the install key goes
    // with the first request. A token from a keyd before that prefix is learned from
    // keyd's wrong_mode answer, and the request repeated with the key (a refused request
    // does not spend the token).
    let resp = if token.starts_with(keyd::EXPORTED_TOKEN_PREFIX) {
        request(Some(hex::encode(install.public())))?
    } else {
        match request(None) {
            Err(CtlError::Api { code, .. }) if code == "wrong_mode" => {
                request(Some(hex::encode(install.public())))?
            }
            other => other?,
        }
    };
    let path = text(&resp, "path")?;
    let mode = text(&resp, "mode")?;
    // The chain keyd sent must verify and certify this node.
    let chain = field(&resp, "chain")?;
    let verified = keyd::chain::verify_file(&chain).map_err(|error| CtlError::Chain {
        file: out.join("chain.cbor"),
        error: Box::new(error),
    })?;
    if !verified.state().find(&path).is_some_and(|(p, _)| {
        verified
            .state()
            .status_at(p, crate::chain_cmd::unix_now())
            .is_valid()
    }) {
        return Err(CtlError::Mismatch(format!(
            "the chain keyd sent does not hold {path} valid"
        )));
    }
    let bundle = if mode == "exported" {
        let bytes = field(&resp, "bundle")?;
        let bundle = BranchBundle::from_cbor(&bytes)?;
        let secret = bundle.open_node(&install, &verified)?;
        if bundle.path.to_string() != path {
            return Err(CtlError::Mismatch(format!(
                "keyd sent the secret of {}, not of {path}",
                bundle.path
            )));
        }
        drop(secret);
        Some(bytes)
    } else {
        None
    };
    files::create_private_dir(out)?;
    files::write_private(&out.join("node.key"), key.to_pem().as_bytes())?;
    files::replace_atomic(
        &out.join("node.pem"),
        text(&resp, "certificate")?.as_bytes(),
        0o644,
    )?;
    files::replace_atomic(&out.join("ca.pem"), text(&resp, "ca")?.as_bytes(), 0o644)?;
    files::replace_atomic(&out.join("chain.cbor"), &chain, 0o644)?;
    let config = format!(
        "url = {url:?}\nca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\nchain = \"chain.cbor\"\n"
    );
    files::replace_atomic(&out.join("keyctl.toml"), config.as_bytes(), 0o644)?;
    let mut report = json!({
        "path": path,
        "mode": mode,
        "config": out.join("keyctl.toml").display().to_string(),
        "chain": out.join("chain.cbor").display().to_string(),
        "chain_entries": verified.len(),
    });
    if let Some(bytes) = bundle {
        files::write_private(&out.join("install.key"), install.danger_secret())?;
        files::write_private(&out.join("node.bundle"), &bytes)?;
        report["bundle"] = out.join("node.bundle").display().to_string().into();
        report["install_key"] = out.join("install.key").display().to_string().into();
    }
    Ok(report)
}

/// Renews the certificate of a keyctl.toml for the same key, replacing the certificate
/// file atomically (the key file is untouched, so a crash leaves a working pair).
pub fn renew(config: &Path) -> Result<Value, CtlError> {
    let cfg = ClientConfig::read(config)?;
    let key_pem = Zeroizing::new(
        std::fs::read_to_string(&cfg.key).map_err(CtlError::io("cannot read", &cfg.key))?,
    );
    let key = TlsKey::from_pem(&key_pem)?;
    let resp = Client::from_config(config)?.post("/v1/renew", &json!({"csr": key.csr_pem()?}))?;
    let cert = text(&resp, "certificate")?;
    // Check the new certificate reads and is for this key before replacing the old one.
    Certificate::from_pem(cert.as_bytes())
        .and_then(|c| {
            PrivateKey::from_pem(key_pem.as_bytes()).map(|k| ClientCert::new_with_certs(&[c], k))
        })
        .map_err(|e| CtlError::Http(format!("keyd returned an unusable certificate: {e}")))?;
    files::replace_atomic(&cfg.cert, cert.as_bytes(), 0o644)?;
    Ok(json!({"certificate": cfg.cert.display().to_string()}))
}

//! A node joining keyd: enrollment with a one-time token, and certificate renewal.
//!
//! [`enroll`] redeems the token and checks everything keyd sent (the chain verifies and
//! holds the node valid; in exported mode the bundle opens, against that chain, to the
//! node's own secret) before [`Enrollment::save`] writes the node's directory:
//! `node.key` (0600), `node.pem`, `ca.pem`, `chain.cbor`, `keyctl.toml`, and in exported
//! mode `node.bundle` (the identity secret, sealed) and `install.key` (0600, opens it).

use std::path::{Path, PathBuf};

use super::{Client, ClientConfig, ClientError};
use crate::bundle::{BranchBundle, InstallKey};
use crate::chain::{self, Chain};
use crate::files;
use crate::tls_key::TlsKey;
use crate::wire::{EnrollMode, EnrollRequest};

/// What enrollment gave, checked, not yet written.
pub struct Enrollment {
    url: String,
    key: TlsKey,
    install: InstallKey,
    /// The node's path.
    pub path: String,
    /// Its mode.
    pub mode: EnrollMode,
    /// Its client certificate (PEM).
    pub certificate: String,
    /// keyd's CA certificate (PEM).
    pub ca: String,
    /// The chain keyd sent (CBOR), verified.
    pub chain_file: Vec<u8>,
    /// That chain.
    pub chain: Chain,
    /// Exported mode: the bundle sealing the node's identity secret to `install`.
    pub bundle: Option<Vec<u8>>,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The files [`Enrollment::save`] wrote.
#[derive(Debug)]
pub struct Saved {
    /// The keyctl config (`keyctl.toml`), for [`Client::from_config`].
    pub config: PathBuf,
    /// The chain (`chain.cbor`).
    pub chain: PathBuf,
    /// Exported mode: the sealed identity secret and the install key that opens it.
    pub bundle: Option<(PathBuf, PathBuf)>,
}

/// Enrolls at keyd `url` (CA certificate in `ca`) with a one-time `token`: a fresh TLS
/// key and CSR (and in exported mode an install key), the token redeemed, and keyd's
/// answer checked.
pub fn enroll(url: &str, ca: &Path, token: &str) -> Result<Enrollment, ClientError> {
    let client = Client::anonymous(url, ca)?;
    let key = TlsKey::generate()?;
    let install = InstallKey::generate();
    let request = |install_key: Option<String>| -> Result<_, ClientError> {
        client.enroll(&EnrollRequest {
            token: token.to_owned(),
            csr: key.csr_pem()?,
            install_key,
        })
    };
    // An exported-mode token says so (crate::EXPORTED_TOKEN_PREFIX): the install key
    // goes with the first request. A token from a keyd before that prefix is learned
    // from keyd's wrong_mode answer, and the request repeated with the key (a refused
    // request does not spend the token).
    let resp = if token.starts_with(crate::EXPORTED_TOKEN_PREFIX) {
        request(Some(hex::encode(install.public())))?
    } else {
        match request(None) {
            Err(ClientError::Api { code, .. }) if code == "wrong_mode" => {
                request(Some(hex::encode(install.public())))?
            }
            other => other?,
        }
    };
    // The chain keyd sent must verify and certify this node.
    let chain_file = resp.chain.as_slice().to_vec();
    let verified = chain::verify_file(&chain_file).map_err(|error| ClientError::Chain {
        file: PathBuf::from("the chain keyd sent"),
        error: Box::new(error),
    })?;
    let now = crate::unix_now();
    if !verified
        .state()
        .find(&resp.path)
        .is_some_and(|(p, _)| verified.state().status_at(p, now).is_valid())
    {
        return Err(ClientError::Mismatch(format!(
            "the chain keyd sent does not hold {} valid",
            resp.path
        )));
    }
    let bundle = match (resp.mode, resp.bundle) {
        (EnrollMode::Exported, Some(bytes)) => {
            let bundle = BranchBundle::from_cbor(bytes.as_slice())?;
            drop(bundle.open_node(&install, &verified)?);
            if bundle.path.to_string() != resp.path {
                return Err(ClientError::Mismatch(format!(
                    "keyd sent the secret of {}, not of {}",
                    bundle.path, resp.path
                )));
            }
            Some(bytes.as_slice().to_vec())
        }
        (EnrollMode::Exported, None) => {
            return Err(ClientError::Mismatch(
                "keyd enrolled an exported node without its bundle".into(),
            ));
        }
        (EnrollMode::Held, _) => None,
    };
    Ok(Enrollment {
        url: url.to_owned(),
        key,
        install,
        path: resp.path,
        mode: resp.mode,
        certificate: resp.certificate,
        ca: resp.ca,
        chain_file,
        chain: verified,
        bundle,
    })
}

impl Enrollment {
    /// Writes the node's directory `dir` (new, or empty): secret files 0600, the rest
    /// replaced atomically, `keyctl.toml` naming them relative to `dir`.
    pub fn save(&self, dir: &Path) -> Result<Saved, ClientError> {
        if !files::is_absent_or_empty(dir) {
            return Err(ClientError::OutExists(dir.to_owned()));
        }
        if !dir.exists() {
            files::create_private_dir(dir)?;
        }
        files::write_private(&dir.join("node.key"), self.key.to_pem().as_bytes())?;
        files::replace_atomic(&dir.join("node.pem"), self.certificate.as_bytes(), 0o644)?;
        files::replace_atomic(&dir.join("ca.pem"), self.ca.as_bytes(), 0o644)?;
        let chain = dir.join("chain.cbor");
        files::replace_atomic(&chain, &self.chain_file, 0o644)?;
        let config = dir.join("keyctl.toml");
        let text = format!(
            "url = {:?}\nca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\nchain = \"chain.cbor\"\n",
            self.url
        );
        files::replace_atomic(&config, text.as_bytes(), 0o644)?;
        let bundle = match &self.bundle {
            Some(bytes) => {
                let (bundle, install) = (dir.join("node.bundle"), dir.join("install.key"));
                files::write_private(&install, self.install.danger_secret())?;
                files::write_private(&bundle, bytes)?;
                Some((bundle, install))
            }
            None => None,
        };
        Ok(Saved {
            config,
            chain,
            bundle,
        })
    }
}

/// The certificate of the config file `config`: its `notBefore` and `notAfter`.
pub fn certificate_validity(config: &Path) -> Result<(u64, u64), ClientError> {
    let cfg = ClientConfig::read(config)?;
    let pem = std::fs::read(&cfg.cert).map_err(files::io("cannot read", &cfg.cert))?;
    crate::tls_key::certificate_validity(&pem).ok_or_else(|| ClientError::Config {
        file: cfg.cert.clone(),
        message: "not a certificate".into(),
    })
}

/// Whether the certificate of `config` should be renewed at `now`: when less than a
/// third of its lifetime is left (so a client that checks now and then renews well
/// before it expires).
pub fn renewal_due(config: &Path, now: u64) -> Result<bool, ClientError> {
    let (not_before, not_after) = certificate_validity(config)?;
    let lifetime = not_after.saturating_sub(not_before);
    Ok(not_after.saturating_sub(now) < lifetime / 3)
}

/// Renews the certificate of `config` for the same key, replacing the certificate file
/// atomically (the key file is untouched, so a crash leaves a working pair). Returns
/// the certificate file.
pub fn renew(config: &Path) -> Result<PathBuf, ClientError> {
    let cfg = ClientConfig::read(config)?;
    let key_pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(&cfg.key).map_err(files::io("cannot read", &cfg.key))?,
    );
    let key = TlsKey::from_pem(&key_pem)?;
    let cert = Client::from_config(config)?
        .renew(&key.csr_pem()?)?
        .certificate;
    // Check the new certificate reads and is for this key before replacing the old one.
    let ours = key.key_pair()?.public_key_raw().to_vec();
    if crate::tls_key::certificate_ed25519_key(cert.as_bytes()).map(Vec::from) != Some(ours) {
        return Err(ClientError::Mismatch(
            "keyd returned a certificate that is not for this key".into(),
        ));
    }
    files::replace_atomic(&cfg.cert, cert.as_bytes(), 0o644)?;
    Ok(cfg.cert)
}

//! The REST client for a running keyd: mTLS with the credential named in a keyctl
//! config file.
//!
//! ```toml
//! url = "https://127.0.0.1:8443"
//! ca = "/var/lib/keyd/ca.pem"
//! cert = "/var/lib/keyd/admin.pem"   # or a node's certificate
//! key = "/var/lib/keyd/admin.key"
//! chain = "chain.cbor"               # optional: the node refuses a keyd whose branch it
//!                                    # sees revoked in this chain file
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::error::CtlError;

/// keyctl.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// keyd's URL.
    pub url: String,
    /// keyd's CA certificate (relative to the config file's directory).
    pub ca: PathBuf,
    /// The client certificate.
    pub cert: PathBuf,
    /// Its key (0600).
    pub key: PathBuf,
    /// A chain file the node holds (written by `keyctl enroll`, kept current with
    /// `keyctl chain fetch`): keyctl refuses a keyd whose branch it shows revoked.
    #[serde(default)]
    pub chain: Option<PathBuf>,
}

impl ClientConfig {
    /// Reads a config file; relative paths in it are made relative to its directory.
    pub fn read(file: &Path) -> Result<ClientConfig, CtlError> {
        let text = std::fs::read_to_string(file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CtlError::NoConfig(file.to_owned()),
            _ => CtlError::io("cannot read", file)(e),
        })?;
        let mut cfg: ClientConfig = toml::from_str(&text).map_err(|e| CtlError::Arg {
            flag: "--config",
            message: format!("{}: {e}", file.display()),
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.ca, &mut cfg.cert, &mut cfg.key]
            .into_iter()
            .chain(cfg.chain.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }
}

/// Refuses a keyd whose branch the chain file shows revoked: the keyd's CA key is its
/// branch key, so the branch is found in the chain by that key. A stolen keyd may never
/// learn of its revocation; its nodes learn it from the chain they fetch elsewhere.
fn refuse_revoked_keyd(chain: &Path, ca: &Path) -> Result<(), CtlError> {
    let v = crate::chain_cmd::load(chain)?;
    let pem = read(ca)?;
    let key = keyd::tls_key::certificate_ed25519_key(&pem).ok_or_else(|| CtlError::Arg {
        flag: "--config",
        message: format!("{}: not a keyd CA certificate", ca.display()),
    })?;
    let state = v.state();
    let Some(branch) = state.path_of(&keyd::derive::KeyId::of_bytes(&key)) else {
        return Ok(());
    };
    match state.revocation(branch) {
        Some((revoked, r)) => Err(CtlError::KeydRevoked {
            chain: chain.to_owned(),
            branch: branch.clone(),
            why: format!(
                "{revoked} revoked by {} at seq {}: {:?}",
                r.by, r.seq, r.reason
            ),
        }),
        None => Ok(()),
    }
}

/// A client of one keyd, as one principal.
pub struct Client {
    agent: ureq::Agent,
    url: String,
}

fn read(path: &Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(CtlError::io("cannot read", path))
}

impl Client {
    /// Reads the config file and its certificate files.
    pub fn from_config(file: &Path) -> Result<Client, CtlError> {
        let cfg = ClientConfig::read(file)?;
        let bad = |what: &str, e: ureq::Error| CtlError::Arg {
            flag: "--config",
            message: format!("{}: {what}: {e}", file.display()),
        };
        if let Some(chain) = &cfg.chain {
            refuse_revoked_keyd(chain, &cfg.ca)?;
        }
        let cert = Certificate::from_pem(&read(&cfg.cert)?).map_err(|e| bad("cert", e))?;
        let key = PrivateKey::from_pem(&read(&cfg.key)?).map_err(|e| bad("key", e))?;
        Client::new(
            &cfg.url,
            &cfg.ca,
            Some(ClientCert::new_with_certs(&[cert], key)),
        )
    }

    /// A client of keyd at `url`, trusting the CA in `ca`, with an optional client
    /// certificate.
    pub fn new(url: &str, ca: &Path, client: Option<ClientCert>) -> Result<Client, CtlError> {
        let ca_cert = Certificate::from_pem(&read(ca)?).map_err(|e| CtlError::Arg {
            flag: "--ca",
            message: format!("{}: {e}", ca.display()),
        })?;
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[ca_cert]))
            .client_cert(client)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Ok(Client {
            agent,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    fn decode(
        &self,
        path: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<Value, CtlError> {
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| CtlError::Http(format!("{path}: {e}")))?;
        let body: Value = serde_json::from_str(&text).map_err(|_| {
            CtlError::Http(format!("{path}: {status} with a body that is not JSON"))
        })?;
        if !(200..300).contains(&status) {
            return Err(CtlError::Api {
                status,
                code: body["error"]["code"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned(),
                message: body["error"]["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(body)
    }

    /// POSTs JSON.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CtlError> {
        let resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .send_json(body)
            .map_err(|e| CtlError::Http(format!("{}{path}: {e}", self.url)))?;
        self.decode(path, resp)
    }

    /// GETs JSON.
    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        let resp = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(|e| CtlError::Http(format!("{}{path}: {e}", self.url)))?;
        self.decode(path, resp)
    }

    /// POSTs CBOR bytes; the answer is JSON.
    pub fn post_cbor(&self, path: &str, body: Vec<u8>) -> Result<Value, CtlError> {
        let resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/cbor")
            .send(&body[..])
            .map_err(|e| CtlError::Http(format!("{}{path}: {e}", self.url)))?;
        self.decode(path, resp)
    }

    /// GETs raw bytes, and whether keyd says (for chain records) that every log reached
    /// its head.
    pub fn get_chain(&self, path: &str) -> Result<(Vec<u8>, bool), CtlError> {
        self.get_chain_page(path)
            .map(|(bytes, complete, _)| (bytes, complete))
    }

    /// A page of `GET /v1/chain`: its bytes, whether every log reached its head, and the
    /// number of entries keyd holds over all logs (when it says).
    pub fn get_chain_page(&self, path: &str) -> Result<(Vec<u8>, bool, Option<u64>), CtlError> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(|e| CtlError::Http(format!("{}{path}: {e}", self.url)))?;
        if resp.status() != 200 {
            return self.decode(path, resp).map(|_| (Vec::new(), false, None));
        }
        let complete = resp
            .headers()
            .get(keyd::chain::COMPLETE_HEADER)
            .is_some_and(|v| v.as_bytes() == b"true");
        let total = resp
            .headers()
            .get(keyd::chain::LENGTH_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| CtlError::Http(format!("{path}: {e}")))?;
        Ok((body, complete, total))
    }

    /// GETs raw bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, CtlError> {
        self.get_chain(path).map(|(bytes, _)| bytes)
    }
}

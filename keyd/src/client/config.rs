//! The keyctl config file, and the chain a node keeps beside it.

use std::path::{Path, PathBuf};

use super::ClientError;
use crate::chain::{self, Chain};
use crate::derive::KeyId;
use crate::files;

/// A keyctl config file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// keyd's URL.
    pub url: String,
    /// keyd's CA certificate.
    pub ca: PathBuf,
    /// The client certificate.
    pub cert: PathBuf,
    /// Its key (0600).
    pub key: PathBuf,
    /// A chain file the node holds (written at enrollment, kept current with
    /// `keyctl chain fetch`): the client refuses a keyd whose branch it shows revoked.
    #[serde(default)]
    pub chain: Option<PathBuf>,
}

impl ClientConfig {
    /// Reads a config file; relative paths in it are made relative to its directory.
    pub fn read(file: &Path) -> Result<ClientConfig, ClientError> {
        let text = std::fs::read_to_string(file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ClientError::NoConfig(file.to_owned()),
            _ => files::io("cannot read", file)(e).into(),
        })?;
        let mut cfg: ClientConfig = toml::from_str(&text).map_err(|e| ClientError::Config {
            file: file.to_owned(),
            message: e.to_string(),
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

pub(super) fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    Ok(std::fs::read(path).map_err(files::io("cannot read", path))?)
}

/// Reads and verifies a chain file.
pub fn load_chain(file: &Path) -> Result<Chain, ClientError> {
    let bytes = read(file)?;
    chain::verify_file(&bytes).map_err(|error| {
        // Not one record decodes: not a damaged chain, something else altogether.
        if error.position == 0 && matches!(error.rule, chain::Rule::Decode(_)) {
            ClientError::NotAChain {
                file: file.to_owned(),
                detail: error.rule.to_string(),
            }
        } else {
            ClientError::Chain {
                file: file.to_owned(),
                error: Box::new(error),
            }
        }
    })
}

/// Refuses a keyd whose branch the chain file shows revoked: keyd's CA key is its
/// branch key, so the branch is found in the chain by that key. A stolen keyd may never
/// learn of its revocation; its nodes learn it from the chain they fetch elsewhere.
pub(super) fn refuse_revoked_keyd(chain: &Path, ca: &Path) -> Result<(), ClientError> {
    let v = load_chain(chain)?;
    let pem = read(ca)?;
    let key = crate::tls_key::certificate_ed25519_key(&pem).ok_or_else(|| ClientError::Config {
        file: ca.to_owned(),
        message: "not a keyd CA certificate".into(),
    })?;
    let state = v.state();
    let Some(branch) = state.path_of(&KeyId::of_bytes(&key)) else {
        return Ok(());
    };
    match state.revocation(branch) {
        Some((revoked, r)) => Err(ClientError::KeydRevoked {
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

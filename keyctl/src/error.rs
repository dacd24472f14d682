//! keyctl's errors: what went wrong, then what to try.

use std::path::PathBuf;

use keyd::client::ClientError;
use keyd::derive::{DeriveError, PathError};
use keyd::hsm::{HsmError, UriError};
use thiserror::Error;

use crate::ceremony::shares::ShareError;

/// Everything a keyctl command can fail with.
#[derive(Debug, Error)]
pub enum CtlError {
    /// A key path argument is invalid.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A PKCS#11 URI argument is invalid.
    #[error("--hsm: {0}")]
    Uri(#[from] UriError),
    /// The token failed or refused.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// A derivation failed.
    #[error(transparent)]
    Derive(#[from] DeriveError),
    /// A share is invalid.
    #[error(transparent)]
    Share(#[from] ShareError),
    /// A command-line value is invalid.
    #[error("{flag}: {message}")]
    Arg {
        /// The flag.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// root.json is missing fields or malformed.
    #[error("{path} is not a keyd root.json: {message}")]
    RootFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The secret rebuilt or imported is not the expected root.
    #[error("{0}")]
    Mismatch(String),
    /// The output directory exists and is not empty.
    #[error(
        "{0} already exists and is not empty; choose a new --out directory (keyctl never overwrites what it wrote)"
    )]
    OutExists(PathBuf),
    /// OS randomness failed.
    #[error("the OS random generator failed: {0}")]
    Random(String),
    /// A chain file does not verify.
    #[error("{file}: {error}")]
    Chain {
        /// The file.
        file: PathBuf,
        /// The first bad entry and the rule it breaks.
        error: Box<keyd::chain::ChainError>,
    },
    /// The chain refuses a statement the ceremony would append.
    #[error("the chain refuses this {kind}: {rule}")]
    Refused {
        /// The statement kind.
        kind: &'static str,
        /// The rule it would break.
        rule: Box<keyd::chain::Rule>,
    },
    /// The node's chain shows the keyd it talks to revoked.
    #[error(
        "keyd's branch {branch} is revoked in {} ({why}): this node refuses to use that keyd",
        chain.display()
    )]
    KeydRevoked {
        /// The node's chain file.
        chain: PathBuf,
        /// keyd's branch.
        branch: keyd::derive::KeyPath,
        /// The revocation.
        why: String,
    },
    /// A key that cannot be exported as asked.
    #[error(transparent)]
    Export(#[from] keyd::export::ExportError),
    /// A branch bundle problem.
    #[error(transparent)]
    Bundle(#[from] keyd::bundle::BundleError),
    /// A TLS key or CSR problem.
    #[error(transparent)]
    TlsKey(#[from] keyd::tls_key::TlsKeyError),
    /// keyd answered with an error.
    #[error("keyd refused: {code} ({status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// keyd's message.
        message: String,
    },
    /// keyd could not be reached or answered garbage.
    #[error("cannot talk to keyd: {0}")]
    Http(String),
    /// JSON encoding failed.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A file given as a chain file is not one.
    #[error("{file} is not a keyd chain file ({detail})")]
    NotAChain {
        /// The file.
        file: PathBuf,
        /// What the decoder said of its first record.
        detail: String,
    },
    /// No keyctl.toml where keyctl looked.
    #[error("no keyctl config at {0}")]
    NoConfig(PathBuf),
    /// `keyctl verify`: the signature, or the key that made it, is not valid.
    #[error("not valid: {0}")]
    NotValid(String),
}

impl From<keyd::files::FileError> for CtlError {
    fn from(e: keyd::files::FileError) -> Self {
        CtlError::Io {
            what: e.what,
            path: e.path,
            source: e.source,
        }
    }
}

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NoConfig(file) => CtlError::NoConfig(file),
            ClientError::Config { file, message } => CtlError::Arg {
                flag: "--config",
                message: format!("{}: {message}", file.display()),
            },
            ClientError::Ca { file, message } => CtlError::Arg {
                flag: "--ca",
                message: format!("{}: {message}", file.display()),
            },
            ClientError::File(e) => e.into(),
            ClientError::Chain { file, error } => CtlError::Chain { file, error },
            ClientError::NotAChain { file, detail } => CtlError::NotAChain { file, detail },
            ClientError::KeydRevoked { chain, branch, why } => {
                CtlError::KeydRevoked { chain, branch, why }
            }
            ClientError::Api {
                status,
                code,
                message,
            } => CtlError::Api {
                status,
                code,
                message,
            },
            ClientError::Http(m) => CtlError::Http(m),
            ClientError::Mismatch(m) => CtlError::Mismatch(m),
            ClientError::OutExists(dir) => CtlError::OutExists(dir),
            ClientError::Bundle(e) => CtlError::Bundle(e),
            ClientError::TlsKey(e) => CtlError::TlsKey(e),
        }
    }
}

impl CtlError {
    /// A closure wrapping an I/O error with what was done to which file.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CtlError::Io { what, path, source }
    }

    /// A stable code naming the kind of failure, as `--output json` reports it (keyd's
    /// own code when keyd refused).
    pub fn code(&self) -> &str {
        match self {
            CtlError::Path(_) => "bad_path",
            CtlError::Uri(_) => "bad_uri",
            CtlError::Hsm(_) => "hsm",
            CtlError::Derive(_) => "derive",
            CtlError::Share(_) => "bad_share",
            CtlError::Arg { .. } => "bad_argument",
            CtlError::Io { .. } => "io",
            CtlError::RootFile { .. } => "bad_root_file",
            CtlError::Mismatch(_) => "mismatch",
            CtlError::OutExists(_) => "out_exists",
            CtlError::Random(_) => "random",
            CtlError::Chain { .. } => "chain_invalid",
            CtlError::Refused { .. } => "refused",
            CtlError::KeydRevoked { .. } => "keyd_revoked",
            CtlError::Export(_) => "cannot_export",
            CtlError::Bundle(_) => "bad_bundle",
            CtlError::TlsKey(_) => "tls_key",
            CtlError::Api { code, .. } => code,
            CtlError::Http(_) => "unreachable",
            CtlError::Json(_) => "json",
            CtlError::NotAChain { .. } => "not_a_chain",
            CtlError::NoConfig(_) => "no_config",
            CtlError::NotValid(_) => "not_valid",
        }
    }

    /// The exit status: 3 when keyd refused the request or the answer is "not valid"
    /// (so `keyctl verify … && deploy` is safe), 1 for every other failure. (Usage
    /// errors exit with 2, from the argument parser.)
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Api { .. } | CtlError::NotValid(_) | CtlError::Refused { .. } => 3,
            _ => 1,
        }
    }

    /// What to try next, when there is something specific to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            CtlError::Hsm(HsmError::TokenNotFound { .. }) => Some(
                "list tokens with `hsm-sim status --dir DIR`, or provision one with `hsm-sim init --dir DIR --label LABEL`",
            ),
            CtlError::Hsm(HsmError::ModuleNotFound { .. }) => {
                Some("then pass its path as module-path= in the --hsm URI")
            }
            CtlError::Hsm(HsmError::RootExists { .. }) => Some(
                "provision a fresh token (`hsm-sim init --dir NEWDIR --label LABEL`) and pass its URI",
            ),
            CtlError::Path(_) => Some("paths look like m/1'/0'/2' (every component hardened)"),
            CtlError::Chain { .. } => Some(
                "the file was changed or damaged; restore it from the ceremony's copy, or re-fetch it from keyd",
            ),
            CtlError::Http(m) if m.contains("not valid for name") => Some(
                "the host in url must be one of keyd's server_names (keyd.toml; default: the loopback names)",
            ),
            CtlError::Http(_) => Some(
                "check url in the --config file and that keyd serve is running; the CA in the config must be keyd's ca.pem",
            ),
            CtlError::Api { code, .. } if code == "unauthenticated" || code == "key_not_valid" => {
                Some(
                    "the certificate in the --config file is not accepted: enroll again or ask an admin",
                )
            }
            CtlError::KeydRevoked { .. } => Some(
                "enroll this node with another keyd of the cluster (its chain shows this one's branch revoked)",
            ),
            CtlError::NotAChain { .. } => Some(
                "give a chain file: the chain.cbor of `keyctl ceremony init`, `keyctl enroll` or `keyctl chain fetch`",
            ),
            CtlError::NoConfig(_) => Some(
                "pass --config DIR/keyctl.toml (`keyctl enroll --out DIR` writes it), set KEYCTL_CONFIG, or copy it to ~/.config/keyctl/config.toml",
            ),
            CtlError::Share(_) => Some(
                "bring the share files exactly as written by `keyctl ceremony init`; nothing was written to the token",
            ),
            _ => None,
        }
    }
}

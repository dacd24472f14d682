//! The client's errors.

use std::path::PathBuf;

use crate::chain::ChainError;
use crate::derive::KeyPath;
use crate::files::FileError;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No config file where it was looked for.
    #[error("no keyctl config at {0}")]
    NoConfig(PathBuf),
    /// The config file, or a certificate or key it names, is unusable.
    #[error("{}: {message}", file.display())]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The CA certificate given is unusable.
    #[error("{}: {message}", file.display())]
    Ca {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A chain (a file, or what keyd sent) does not verify.
    #[error("{}: {error}", file.display())]
    Chain {
        /// The file (or where it would be kept).
        file: PathBuf,
        /// The first bad entry and the rule it breaks.
        error: Box<ChainError>,
    },
    /// A file given as a chain file is not one at all.
    #[error("{} is not a keyd chain file ({detail})", file.display())]
    NotAChain {
        /// The file.
        file: PathBuf,
        /// What the decoder said of its first record.
        detail: String,
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
        branch: KeyPath,
        /// The revocation.
        why: String,
    },
    /// keyd answered with an error.
    #[error("keyd refused: {code} ({status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// keyd's stable error code.
        code: String,
        /// keyd's message.
        message: String,
    },
    /// keyd could not be reached, or answered what is not its API.
    #[error("cannot talk to keyd: {0}")]
    Http(String),
    /// keyd's answer is well formed but not what was asked for.
    #[error("{0}")]
    Mismatch(String),
    /// A bundle keyd sent does not open.
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// The directory to write is there and not empty.
    #[error(
        "{} already exists and is not empty; choose a new directory (nothing is overwritten)",
        .0.display()
    )]
    OutExists(PathBuf),
    /// A TLS key or CSR problem.
    #[error(transparent)]
    TlsKey(#[from] crate::tls_key::TlsKeyError),
}

/// Why a chain fetch stopped: keyd, or a page that does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ChainFetchError {
    /// keyd failed or refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A page does not verify against the chain held.
    #[error(transparent)]
    Chain(#[from] Box<ChainError>),
}

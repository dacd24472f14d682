//! Errors of the derivation layer.

use thiserror::Error;

/// A path string that is not a valid keyd key path.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `m`.
    #[error("key path {input:?} must start with \"m\" (for example m/1'/0'/2')")]
    MissingRoot {
        /// The rejected input.
        input: String,
    },
    /// A component is not a number with an optional `'` or `h` suffix.
    #[error(
        "key path {input:?}: component {position} ({component:?}) is not a child number below 2^31"
    )]
    BadComponent {
        /// The rejected input.
        input: String,
        /// 1-based position of the component after `m`.
        position: usize,
        /// The component text.
        component: String,
    },
    /// A component is not hardened: keyd derives hardened children only.
    #[error(
        "key path {input:?}: component {position} ({component}) is not hardened; keyd derives hardened keys only, write {component}'"
    )]
    NotHardened {
        /// The rejected input.
        input: String,
        /// 1-based position of the component after `m`.
        position: usize,
        /// The component text.
        component: String,
    },
    /// The path is deeper than keyd allows.
    #[error("key path {input:?} has {depth} levels; at most {max} are allowed")]
    TooDeep {
        /// The rejected input.
        input: String,
        /// Its depth.
        depth: usize,
        /// The limit.
        max: usize,
    },
}

/// A derivation that could not be carried out.
#[derive(Debug, Error)]
pub enum DeriveError {
    /// The root secret (an HSM) failed to compute `HSM(x)`.
    #[error("the root secret failed: {0}")]
    Root(#[from] crate::hsm::HsmError),
}

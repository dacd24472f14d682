//! The key tree (DESIGN.md section 2).
//!
//! - [`KeyPath`]: hardened-only BIP32-style paths (`m/3'/7'/0'/2'`).
//! - [`RootSecret`]: the HMAC-SHA512 oracle over the root secret `R`; the HSM implements
//!   it in production ([`crate::hsm::HsmRoot`]), [`SoftwareRoot`] for test vectors only.
//! - [`derive_node`]: root node and level 1 through the root, SLIP-0010 Ed25519 hardened
//!   derivation below level 1.
//! - [`KeyMaterial`] / [`PublicKeys`]: the per-node keys drawn by HKDF-SHA256 from `k`.

mod error;
mod material;
mod node;
mod path;
pub(crate) mod root;

pub use error::{DeriveError, PathError};
pub use material::{KeyId, KeyMaterial, PublicKeys};
pub use node::{NodeSecret, derive_node};
pub use path::{CHILD_BRANCH, EPOCH_BRANCH, KeyPath, MAX_DEPTH, NAMED_BRANCH, PathRole};
pub use root::{RootSecret, SoftwareRoot};

/// Label the root node's `I` is computed over: `I = HSM("keyd/v1/root-identity")`.
pub const ROOT_IDENTITY_LABEL: &[u8] = b"keyd/v1/root-identity";
/// Prefix of a level-1 child's label: `I = HSM("keyd/v1/child" || ser32(i))`.
pub const LEVEL1_LABEL_PREFIX: &[u8] = b"keyd/v1/child";
/// HKDF-SHA256 salt for every per-node key.
pub const HKDF_SALT: &[u8] = b"keyd/v1";

//! keyd: hierarchical key management rooted in a PKCS#11 HSM.
//!
//! The library is the protocol: the key tree and its derivation ([`mod@derive`]) and the
//! PKCS#11 adapter that holds the root secret ([`hsm`]). Nodes may depend on it to
//! check keys offline; `keyctl` uses it for the root ceremonies.

#[cfg(feature = "server")]
pub mod api;
pub mod bundle;
pub mod chain;
#[cfg(feature = "server")]
pub mod config;
pub mod derive;
pub mod envelope;
pub mod hsm;
#[cfg(feature = "server")]
pub mod identity;
#[cfg(feature = "server")]
pub mod peers;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "client")]
pub mod tls_key;

#[doc(hidden)]
pub mod fuzzing;

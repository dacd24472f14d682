//! `keyctl` as a library: the modules of the keyctl binary, so that fuzz targets and
//! tests reach the same parsers (share files, age-encrypted shares) the CLI uses.

pub mod audit_cmd;
pub mod ceremony;
pub mod chain_cmd;
pub mod cli;
pub mod enroll;
pub mod error;
pub mod files;
pub mod key_cmd;
pub mod policy_cmd;
pub mod progress;
pub mod public;
pub mod remote;
pub mod replica_cmd;
pub mod succession;
pub mod trust_cmd;

/// Fuzzing entry points: parse untrusted bytes the way keyctl does, never panicking.
pub mod fuzzing {
    use std::path::Path;

    use crate::ceremony::custodian::{self, Keys};

    /// A share file as `ceremony recover` reads it: clear JSON, or an age file opened
    /// with an X25519 identity (header, stanzas and payload parsed; it must fail
    /// cleanly).
    pub fn share(data: &[u8]) {
        thread_local! {
            static KEYS: Keys = Keys::from_x25519(age::x25519::Identity::generate());
        }
        let file = Path::new("fuzz-share");
        if custodian::is_sealed(data) {
            KEYS.with(|keys| {
                if let Ok(plain) = custodian::open(file, data, keys) {
                    let _ = crate::ceremony::shares::parse(file, &plain);
                }
            });
        } else if let Ok(share) = crate::ceremony::shares::parse(file, data) {
            let _ = share.commitment();
        }
    }
}

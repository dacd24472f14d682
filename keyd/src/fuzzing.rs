//! Entry points for the fuzz targets in `fuzz/` (one-line calls into these). Each
//! checks the invariants that must hold for any input: no panic, and whatever decodes
//! re-encodes to the very same bytes.

use crate::chain::{self, Statement};
use crate::derive::KeyPath;

/// Verifies arbitrary bytes as a chain file; a chain that verifies must re-encode to
/// its input.
pub fn chain_file(data: &[u8]) {
    if let Ok(v) = chain::verify_file(data) {
        assert_eq!(v.to_file(), data);
    }
}

/// Decodes arbitrary bytes as a statement; a decoded statement re-encodes to its input.
pub fn statement(data: &[u8]) {
    if let Ok(st) = Statement::from_cbor(data) {
        assert_eq!(st.to_cbor(), data);
        let _ = st.body.check_bounds();
    }
}

/// Parses arbitrary text as a key path and a PKCS#11 URI; a parsed path prints back to
/// a string that parses to the same path.
pub fn text(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = s.parse::<KeyPath>() {
        assert_eq!(p.to_string().parse::<KeyPath>().ok(), Some(p.clone()));
        let _ = p.role();
    }
    if let Ok(u) = s.parse::<crate::hsm::Pkcs11Uri>() {
        assert_eq!(u.to_string().parse::<crate::hsm::Pkcs11Uri>().ok(), Some(u));
    }
}

/// Decodes arbitrary bytes as both kinds of envelope: whatever decodes re-encodes to its
/// input, and opening it with a fixed key fails cleanly (no forged envelope opens).
pub fn envelope(data: &[u8]) {
    use crate::envelope::{Encrypted, Sealed};
    let key = crate::derive::KeyMaterial::from_node_key(&[7; 32]);
    if let Ok(s) = Sealed::from_cbor(data) {
        assert_eq!(s.to_cbor(), data);
        assert!(s.open(&key).is_err(), "a forged sealed envelope opened");
    }
    if let Ok(e) = Encrypted::from_cbor(data) {
        assert_eq!(e.to_cbor(), data);
        let _ = e.suite();
        let sender = key.signing_key().verifying_key();
        assert!(
            e.verify_sender(&sender).is_err(),
            "a forged signature verified"
        );
        // Opening runs the X-Wing or X25519 decapsulation on attacker bytes.
        assert!(e.open(&key).is_err(), "a forged envelope opened");
    }
}

/// Decodes arbitrary bytes as a branch bundle; a decoded bundle re-encodes to its input,
/// and opening it (which verifies the chain inside) never panics.
pub fn bundle(data: &[u8]) {
    if let Ok(b) = crate::bundle::BranchBundle::from_cbor(data) {
        assert_eq!(b.to_cbor(), data);
        if let Ok(install) = crate::bundle::InstallKey::from_secret(&[7; 32]) {
            let _ = b.open_node(&install);
        }
    }
}

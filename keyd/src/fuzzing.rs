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
            let _ = b.open(&install);
            if let Ok(chain) = crate::chain::verify_file(&b.chain) {
                let _ = b.open_node(&install, &chain);
            }
        }
    }
}

/// Decodes arbitrary bytes as every API request body, JSON and CBOR: never panics.
#[cfg(feature = "server")]
pub fn api_body(data: &[u8]) {
    crate::api::fuzz_bodies(data);
}

/// Arbitrary bytes as the two certificate inputs keyd takes from clients: a PEM CSR
/// (enroll, renew) signed into a client certificate, and a presented DER certificate
/// read for its principal. Neither panics; a certificate keyd issues from any CSR names
/// exactly the principal and generation keyd chose, whatever the CSR asked for.
#[cfg(feature = "server")]
pub fn csr(data: &[u8]) {
    use crate::identity::{Ca, Principal};
    thread_local! {
        static CA: Option<Ca> = {
            let key = crate::derive::KeyMaterial::from_node_key(&[7; 32]);
            "m/1'".parse().ok().and_then(|p| Ca::from_branch(&key, "fuzz", &p).ok())
        };
    }
    let _ = Principal::of_certificate(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(node) = "m/1'/1'".parse() else {
        return;
    };
    let principal = Principal::Node(node);
    CA.with(|ca| {
        let Some(ca) = ca else { return };
        if let Ok(issued) = ca.client_cert_from_csr(text, &principal, 3, "fuzz", 3600) {
            let der = pem::parse(&issued.pem).map(pem::Pem::into_contents);
            let presented = der.ok().and_then(|d| Principal::of_certificate(&d));
            assert!(
                presented.is_some_and(|p| p.principal == principal && p.generation == 3),
                "an issued certificate names another principal"
            );
        }
    });
}

//! Envelope tests.
use super::*;

fn node(n: u8) -> (KeyPath, KeyMaterial) {
    let path: KeyPath = format!("m/1'/{n}'/0'/0'").parse().expect("path");
    (path, KeyMaterial::from_node_key(&[n; 32]))
}

#[test]
fn both_suites_open_at_the_recipient_only() {
    let (to, bob) = node(2);
    let (from, alice) = node(1);
    let (_, carol) = node(3);
    for suite in [Suite::XWing, Suite::X25519] {
        let e = Encrypted::encrypt(suite, &to, &bob, &from, alice.signing_key(), b"hi")
            .expect("encrypt");
        let e = Encrypted::from_cbor(&e.to_cbor()).expect("round trip");
        assert_eq!(e.suite(), Ok(suite));
        e.verify_sender(&alice.signing_key().verifying_key())
            .expect("sender");
        assert!(matches!(
            e.verify_sender(&carol.signing_key().verifying_key()),
            Err(EnvelopeError::KeyId { .. })
        ));
        assert_eq!(e.recipient_kid, Some(bob.public_keys().key_id.0));
        assert_eq!(e.sender_kid, Some(alice.public_keys().key_id.0));
        assert_eq!(e.open(&bob).expect("open").as_slice(), b"hi");
        assert!(matches!(e.open(&carol), Err(EnvelopeError::KeyId { .. })));
        // Carol pretending to be the recipient: the key id is signed and bound.
        let mut c = e.clone();
        c.recipient_kid = Some(carol.public_keys().key_id.0);
        assert_eq!(c.open(&carol), Err(EnvelopeError::Open));
        let mut t = e.clone();
        t.ct[0] ^= 1;
        assert_eq!(t.open(&bob), Err(EnvelopeError::Open));
        assert_eq!(
            t.verify_sender(&alice.signing_key().verifying_key()),
            Err(EnvelopeError::Signature)
        );
    }
}

#[test]
fn the_suite_cannot_be_swapped() {
    let (to, bob) = node(2);
    let (from, alice) = node(1);
    let mut e = Encrypted::encrypt(Suite::XWing, &to, &bob, &from, alice.signing_key(), b"x")
        .expect("encrypt");
    e.suite = SUITE_X25519.into();
    // The suite is signed and bound as AAD: neither the signature nor HPKE accepts it.
    assert_eq!(
        e.verify_sender(&alice.signing_key().verifying_key()),
        Err(EnvelopeError::Signature)
    );
    assert_eq!(e.open(&bob), Err(EnvelopeError::Open));
    e.suite = "rot13".into();
    assert_eq!(e.open(&bob), Err(EnvelopeError::Suite("rot13".into())));
}

#[test]
fn x_wing_keys_are_derived_deterministically() {
    let (_, a) = node(7);
    let (_, b) = node(7);
    let (_, c) = node(8);
    assert_eq!(a.x_wing().1.to_bytes(), b.x_wing().1.to_bytes());
    assert_ne!(a.x_wing().1.to_bytes(), c.x_wing().1.to_bytes());
    assert_eq!(a.x_wing().1.to_bytes().len(), 1216);
}

#[test]
fn plaintexts_over_the_limit_are_refused_and_the_largest_envelope_opens() {
    let (to, bob) = node(2);
    let (from, alice) = node(1);
    let big = vec![7u8; MAX_PLAINTEXT + 1];
    assert_eq!(
        Sealed::seal(&to, &bob, &big, [1; 32], [2; 12]),
        Err(EnvelopeError::TooLarge(MAX_PLAINTEXT + 1))
    );
    assert_eq!(
        Encrypted::encrypt(Suite::XWing, &to, &bob, &from, alice.signing_key(), &big),
        Err(EnvelopeError::TooLarge(MAX_PLAINTEXT + 1))
    );
    let most = &big[..MAX_PLAINTEXT];
    let s = Sealed::seal(&to, &bob, most, [1; 32], [2; 12]).expect("seal");
    let s = Sealed::from_cbor(&s.to_cbor()).expect("the largest sealed envelope decodes");
    assert_eq!(s.open(&bob).expect("open").len(), MAX_PLAINTEXT);
    let e = Encrypted::encrypt(Suite::XWing, &to, &bob, &from, alice.signing_key(), most)
        .expect("encrypt");
    let e = Encrypted::from_cbor(&e.to_cbor()).expect("the largest envelope decodes");
    assert_eq!(e.open(&bob).expect("open").len(), MAX_PLAINTEXT);
}

/// Envelopes written by keyd before key ids (version 1) still open, and keep their
/// format (re-encoding gives the same bytes).
#[test]
fn legacy_envelopes_still_open() {
    let fixture = include_str!("../../tests/data/legacy-envelopes.txt");
    let get = |name: &str| -> Vec<u8> {
        let line = fixture
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .expect("fixture line");
        hex::decode(line.trim()).expect("hex")
    };
    let (_, m4) = node(4);
    let bytes = get("sealed");
    let s = Sealed::from_cbor(&bytes).expect("legacy sealed");
    assert_eq!((s.v, s.kid), (LEGACY_VERSION, None));
    assert_eq!(s.to_cbor(), bytes);
    assert_eq!(
        s.open(&m4).expect("open").as_slice(),
        b"sealed before key ids"
    );
    let (_, bob) = node(2);
    let (_, alice) = node(1);
    for (name, suite, text) in [
        ("x_wing", Suite::XWing, &b"x-wing before key ids"[..]),
        ("x25519", Suite::X25519, &b"x25519 before key ids"[..]),
    ] {
        let bytes = get(name);
        let e = Encrypted::from_cbor(&bytes).expect("legacy encrypted");
        assert_eq!(
            (e.v, e.recipient_kid, e.sender_kid),
            (LEGACY_VERSION, None, None)
        );
        assert_eq!(e.suite(), Ok(suite));
        assert_eq!(e.to_cbor(), bytes);
        e.verify_sender(&alice.signing_key().verifying_key())
            .expect("sender");
        assert_eq!(e.open(&bob).expect("open").as_slice(), text);
    }
    // A version that does not match its fields is refused.
    let mut mixed = s.clone();
    mixed.kid = Some([0; 16]);
    assert!(matches!(
        Sealed::from_cbor(&mixed.to_cbor()),
        Err(EnvelopeError::Malformed(_))
    ));
    mixed.v = ENVELOPE_VERSION;
    mixed.kid = None;
    assert!(matches!(
        Sealed::from_cbor(&mixed.to_cbor()),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn suite_names() {
    for (name, suite) in [
        ("x-wing", Suite::XWing),
        ("xwing", Suite::XWing),
        (SUITE_X_WING, Suite::XWing),
        ("x25519", Suite::X25519),
        (SUITE_X25519, Suite::X25519),
    ] {
        assert_eq!(Suite::parse(name), Ok(suite));
        assert_eq!(Suite::parse(suite.name()), Ok(suite));
    }
    assert_eq!(Suite::default(), Suite::XWing);
    assert!(Suite::parse("X25519 ").is_err());
}

#[test]
fn sealed_round_trip_and_junk() {
    let (path, m) = node(4);
    let (_, other) = node(5);
    let s = Sealed::seal(&path, &m, b"mine", [1; 32], [2; 12]).expect("seal");
    let s = Sealed::from_cbor(&s.to_cbor()).expect("round trip");
    assert_eq!(s.kid, Some(m.public_keys().key_id.0));
    assert_eq!(s.open(&m).expect("open").as_slice(), b"mine");
    assert!(matches!(s.open(&other), Err(EnvelopeError::KeyId { .. })));
    // A changed key id is caught by the AEAD as well.
    let mut t = s.clone();
    t.kid = Some(other.public_keys().key_id.0);
    assert_eq!(t.open(&other), Err(EnvelopeError::Open));
    assert!(matches!(
        Sealed::from_cbor(b"junk"),
        Err(EnvelopeError::Malformed(_))
    ));
    assert!(matches!(
        Encrypted::from_cbor(&s.to_cbor()),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn a_context_must_be_given_again_and_cannot_be_stripped() {
    let (path, m) = node(6);
    let s = Sealed::seal_in(&path, &m, b"row 7", b"table=users", [3; 32], [4; 12]).expect("seal");
    let s = Sealed::from_cbor(&s.to_cbor()).expect("round trip");
    assert!(s.ctx);
    assert_eq!(
        s.open_in(&m, b"table=users").expect("open").as_slice(),
        b"row 7"
    );
    assert_eq!(s.open_in(&m, b"table=admins"), Err(EnvelopeError::Open));
    assert_eq!(s.open(&m), Err(EnvelopeError::ContextRequired));
    // The flag cleared: the associated data changes, nothing opens.
    let mut stripped = s.clone();
    stripped.ctx = false;
    assert_eq!(stripped.open(&m), Err(EnvelopeError::Open));
    let plain = Sealed::seal(&path, &m, b"x", [3; 32], [4; 12]).expect("seal");
    assert!(!plain.ctx);
    assert_eq!(
        plain.open_in(&m, b"ctx"),
        Err(EnvelopeError::ContextUnexpected)
    );
    // Without a context the encoding is the one of before contexts (no ctx field).
    assert_eq!(
        Sealed::from_cbor(&plain.to_cbor()).map(|x| x.to_cbor()),
        Ok(plain.to_cbor())
    );

    let (to, bob) = node(2);
    let (from, alice) = node(1);
    for suite in [Suite::XWing, Suite::X25519] {
        let e = Encrypted::encrypt_in(
            suite,
            (&to, &bob, &from, alice.signing_key()),
            b"hi",
            b"invoice 42",
            &mut UnwrapErr(SysRng),
        )
        .expect("encrypt");
        let e = Encrypted::from_cbor(&e.to_cbor()).expect("round trip");
        assert!(e.ctx);
        assert_eq!(
            e.open_in(&bob, b"invoice 42").expect("open").as_slice(),
            b"hi"
        );
        assert_eq!(e.open_in(&bob, b"invoice 43"), Err(EnvelopeError::Open));
        assert_eq!(e.open(&bob), Err(EnvelopeError::ContextRequired));
        let mut stripped = e.clone();
        stripped.ctx = false;
        assert_eq!(
            stripped.verify_sender(&alice.signing_key().verifying_key()),
            Err(EnvelopeError::Signature),
            "the flag is signed"
        );
        assert_eq!(stripped.open(&bob), Err(EnvelopeError::Open));
    }
}

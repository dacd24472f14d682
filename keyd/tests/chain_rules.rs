//! Every chain rule, each with a test that breaks it.

mod common;

use common::{NOW, Tree, p};
use keyd::chain::{
    Body, ChainError, ChainWriter, Entry, Head, KeyStatus, Record, Rule, Statement, Trust,
    TrustLevel, Untrust, encode_file, verify_file,
};
use keyd::derive::KeyPath;

/// genesis, m/1' (branch), m/1'/1'/0' (node a), m/1'/1'/1' (node b), epochs for a.
fn base(tree: &Tree) -> ChainWriter {
    let mut w = ChainWriter::new();
    for st in [
        tree.genesis(),
        tree.certify(&p("m/1'"), "branch"),
        tree.certify(&p("m/1'/1'/0'"), "a"),
        tree.certify(&p("m/1'/1'/1'"), "b"),
        tree.epoch(&p("m/1'/1'/0'"), 0),
    ] {
        w.append(st, NOW).expect("base chain is valid");
    }
    w
}

fn file(w: &ChainWriter, tree: &Tree) -> Vec<u8> {
    w.to_file(KeyPath::root(), &tree.signing_key(&KeyPath::root()))
        .expect("head")
}

/// Appends `st` to a copy of the base chain without the writer's checks and returns
/// the verifier's verdict on the file.
fn verdict_with(tree: &Tree, st: Statement) -> Result<(), ChainError> {
    let w = base(tree);
    let mut entries = w.entries().to_vec();
    let last = entries.last().expect("entries");
    entries.push(Entry {
        seq: last.seq + 1,
        prev: last.hash(),
        statement: st,
        appended_at: NOW,
    });
    verdict(tree, &entries)
}

/// Verifies raw entries with a root-signed head over the last one.
fn verdict(tree: &Tree, entries: &[Entry]) -> Result<(), ChainError> {
    let last = entries.last().expect("entries");
    let head = Head::sign(
        last.seq,
        last.hash(),
        KeyPath::root(),
        &tree.signing_key(&KeyPath::root()),
    );
    verify_file(&encode_file(entries, &head)).map(drop)
}

fn rule(r: Result<(), ChainError>) -> Rule {
    r.expect_err("the chain must be refused").rule
}

#[test]
fn valid_chain_verifies_and_round_trips() {
    let tree = Tree::new(1);
    let w = base(&tree);
    let bytes = file(&w, &tree);
    let v = verify_file(&bytes).expect("valid");
    assert_eq!(v.entries.len(), 5);
    assert_eq!(v.head.seq, 4);
    // Decode-then-encode is byte-identical.
    assert_eq!(encode_file(&v.entries, &v.head), bytes);
    for e in &v.entries {
        let st = e.statement.to_cbor();
        assert_eq!(Statement::from_cbor(&st).expect("decodes").to_cbor(), st);
    }
    assert!(
        v.state
            .status_of_key(&tree.keyset(&p("m/1'/1'/0'")).ed25519, NOW)
            .is_valid()
    );
}

#[test]
fn forged_signature() {
    let tree = Tree::new(1);
    let mut st = tree.certify(&p("m/1'/1'/2'"), "c");
    st.signature[0] ^= 1;
    assert_eq!(
        rule(verdict_with(&tree, st)),
        Rule::BadSignature { signer: p("m/1'") }
    );
    // Signed by another tree's key claiming to be m/1'.
    let other = Tree::new(2);
    let st = Statement::sign(
        tree.certify_body(&p("m/1'/1'/2'"), "c"),
        p("m/1'"),
        NOW,
        &other.signing_key(&p("m/1'")),
    );
    assert!(matches!(
        rule(verdict_with(&tree, st)),
        Rule::BadSignature { .. }
    ));
}

#[test]
fn signer_without_authority() {
    let tree = Tree::new(1);
    // A sibling certifies: only the parent may.
    let st = tree.sign(
        tree.certify_body(&p("m/1'/1'/0'/1'/5'"), "c"),
        &p("m/1'/1'/1'"),
    );
    assert!(matches!(
        rule(verdict_with(&tree, st)),
        Rule::NoAuthority {
            kind: "certify",
            ..
        }
    ));
    // The grandparent certifies: still only the parent may.
    let st = tree.sign(tree.certify_body(&p("m/1'/1'/0'/1'/5'"), "c"), &p("m/1'"));
    assert!(matches!(
        rule(verdict_with(&tree, st)),
        Rule::NoAuthority { .. }
    ));
    // Another node certifies a's epoch.
    let mut st = tree.epoch(&p("m/1'/1'/0'"), 1);
    st = Statement::sign(
        st.body,
        p("m/1'/1'/1'"),
        NOW,
        &tree.signing_key(&p("m/1'/1'/1'")),
    );
    assert!(matches!(
        rule(verdict_with(&tree, st)),
        Rule::NoAuthority { kind: "epoch", .. }
    ));
    // An epoch key signs a certify.
    let st = tree.sign(
        tree.certify_body(&p("m/1'/1'/0'/1'/5'"), "c"),
        &p("m/1'/1'/0'/0'/0'"),
    );
    assert!(matches!(
        rule(verdict_with(&tree, st)),
        Rule::NoAuthority { .. }
    ));
    // A key that is not in the chain.
    let st = tree.sign(tree.certify_body(&p("m/2'/1'/0'"), "c"), &p("m/2'"));
    assert_eq!(
        rule(verdict_with(&tree, st)),
        Rule::UnknownSigner { signer: p("m/2'") }
    );
    // Trust given by a node below level 1.
    let st = tree.sign(
        Body::Trust(Trust {
            cluster: "x".into(),
            root: Tree::new(9).keyset(&KeyPath::root()).ed25519,
            level: TrustLevel::Full,
            permissions: vec![],
            expires_at: NOW + 10,
        }),
        &p("m/1'/1'/0'"),
    );
    assert!(matches!(
        rule(verdict_with(&tree, st)),
        Rule::NoAuthority { kind: "trust", .. }
    ));
}

#[test]
fn signer_revoked_before_it_signed() {
    let tree = Tree::new(1);
    let mut w = base(&tree);
    w.append(tree.revoke(&p("m/1'/1'/0'"), &p("m/1'")), NOW)
        .expect("revoke");
    // a, revoked, then certifies a child: refused.
    let err = w
        .append(tree.certify(&p("m/1'/1'/0'/1'/0'"), "c"), NOW)
        .expect_err("revoked signer");
    assert!(
        matches!(err, Rule::SignerRevoked { ref revoked, .. } if *revoked == p("m/1'/1'/0'")),
        "{err}"
    );
    // An ancestor's revocation cuts the signer off too.
    let mut w = base(&tree);
    w.append(tree.certify(&p("m/1'/1'/0'/1'/0'"), "c"), NOW)
        .expect("c");
    w.append(tree.revoke(&p("m/1'/1'/0'"), &p("m/1'")), NOW)
        .expect("revoke a");
    let err = w
        .append(tree.epoch(&p("m/1'/1'/0'/1'/0'"), 0), NOW)
        .expect_err("ancestor revoked");
    assert!(
        matches!(err, Rule::SignerRevoked { ref signer, ref revoked, .. }
        if *signer == p("m/1'/1'/0'/1'/0'") && *revoked == p("m/1'/1'/0'"))
    );
}

#[test]
fn expired_signer() {
    let tree = Tree::new(1);
    let mut w = base(&tree);
    let late = NOW + 2_000_000;
    let err = w
        .append(tree.certify(&p("m/1'/1'/0'/1'/0'"), "c"), late)
        .expect_err("expired");
    assert!(matches!(err, Rule::SignerExpired { .. }), "{err}");
    assert!(matches!(
        w.state().status_at(&p("m/1'/1'/0'"), late),
        KeyStatus::Expired { .. }
    ));
}

fn entries(tree: &Tree) -> Vec<Entry> {
    base(tree).entries().to_vec()
}

#[test]
fn gap_reorder_duplicate_and_wrong_prev() {
    let tree = Tree::new(1);
    let mut gap = entries(&tree);
    gap.remove(2);
    assert_eq!(
        rule(verdict(&tree, &gap)),
        Rule::OutOfOrder {
            expected: 2,
            found: 3
        }
    );

    let mut reorder = entries(&tree);
    reorder.swap(2, 3);
    assert_eq!(
        rule(verdict(&tree, &reorder)),
        Rule::OutOfOrder {
            expected: 2,
            found: 3
        }
    );

    let mut dup = entries(&tree);
    dup.insert(3, dup[2].clone());
    let err = verdict(&tree, &dup).expect_err("duplicate");
    assert_eq!(
        err.rule,
        Rule::Duplicate {
            expected: 3,
            found: 2
        }
    );
    assert_eq!(err.seq, Some(2));
    assert!(
        err.to_string().starts_with("entry 3 (seq 2): duplicate"),
        "{err}"
    );

    let mut prev = entries(&tree);
    prev[3].prev[0] ^= 1;
    assert_eq!(rule(verdict(&tree, &prev)), Rule::BadPrev);

    // A changed statement breaks the next entry's prev.
    let mut edited = entries(&tree);
    edited[2].appended_at += 1;
    assert_eq!(rule(verdict(&tree, &edited)), Rule::BadPrev);

    let mut time = entries(&tree);
    time[4].appended_at = NOW - 1;
    let head_fix = time.clone();
    assert!(matches!(
        rule(verdict(&tree, &head_fix)),
        Rule::TimeBackwards { .. }
    ));
}

#[test]
fn duplicate_statements() {
    let tree = Tree::new(1);
    let err = verdict_with(&tree, tree.certify(&p("m/1'/1'/0'"), "a2")).expect_err("recertify");
    assert!(matches!(err.rule, Rule::AlreadyCertified { .. }));
    assert!(matches!(
        rule(verdict_with(&tree, tree.genesis())),
        Rule::SecondGenesis
    ));
    let mut w = base(&tree);
    w.append(tree.revoke(&p("m/1'/1'/1'"), &p("m/1'")), NOW)
        .expect("revoke");
    assert!(matches!(
        w.append(tree.revoke(&p("m/1'/1'/1'"), &p("m")), NOW),
        Err(Rule::AlreadyRevoked { .. })
    ));
}

#[test]
fn truncated_and_trailing_bytes() {
    let tree = Tree::new(1);
    let bytes = file(&base(&tree), &tree);
    let err = verify_file(&bytes[..bytes.len() - 10]).expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = verify_file(&bytes[..bytes.len() / 2]).expect_err("truncated");
    assert!(matches!(err.rule, Rule::Decode(_)), "{err}");
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(&[0x00, 0x01]);
    let err = verify_file(&trailing).expect_err("trailing");
    assert_eq!(err.rule, Rule::AfterHead, "{err}");
    // A chain without its head.
    let w = base(&tree);
    let mut no_head = Vec::new();
    for e in w.entries() {
        no_head.extend(ciborium_vec(&Record::Entry(e.clone())));
    }
    assert_eq!(
        verify_file(&no_head).expect_err("no head").rule,
        Rule::NoHead
    );
    assert_eq!(verify_file(&[]).expect_err("empty").rule, Rule::NoHead);
    // A statement with trailing bytes.
    let mut st = tree.genesis().to_cbor();
    st.push(0);
    assert!(Statement::from_cbor(&st).is_err());
}

fn ciborium_vec<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("encode");
    out
}

#[test]
fn unknown_kind_and_non_canonical_encodings() {
    let tree = Tree::new(1);
    let w = base(&tree);
    let mut value: ciborium::Value =
        ciborium::from_reader(ciborium_vec(&Record::Entry(w.entries()[1].clone())).as_slice())
            .expect("value");
    // Rename the body's variant: certify -> delegate.
    fn rename(v: &mut ciborium::Value) -> bool {
        match v {
            ciborium::Value::Map(m) => m.iter_mut().any(|(k, val)| {
                if k.as_text() == Some("certify") {
                    *k = ciborium::Value::Text("delegate".into());
                    return true;
                }
                rename(val)
            }),
            _ => false,
        }
    }
    assert!(rename(&mut value));
    let mut bytes = ciborium_vec(&Record::Entry(w.entries()[0].clone()));
    bytes.extend(ciborium_vec(&value));
    let err = verify_file(&bytes).expect_err("unknown kind");
    assert_eq!(err.rule, Rule::UnknownKind("delegate".into()), "{err}");

    // appended_at as a non-minimal 8-byte integer instead of 4 bytes.
    let genesis = ciborium_vec(&Record::Entry(w.entries()[0].clone()));
    let key = b"appended_at";
    let at = genesis
        .windows(key.len())
        .position(|x| x == key)
        .expect("field")
        + key.len();
    assert_eq!(genesis[at], 0x1a, "4-byte unsigned");
    let mut long = genesis[..at].to_vec();
    long.extend([0x1b, 0, 0, 0, 0]);
    long.extend(&genesis[at + 1..]);
    let err = verify_file(&long).expect_err("non-canonical");
    assert!(err.to_string().contains("non-canonical"), "{err}");

    // The same statement with its path written m/1h instead of m/1'.
    let st = w.entries()[1].statement.to_cbor();
    let needle = b"m/1'";
    let pos = st.windows(4).position(|x| x == needle).expect("path text");
    let mut alt = st.clone();
    alt[pos + 3] = b'h';
    assert!(matches!(
        Statement::from_cbor(&alt),
        Err(keyd::chain::CborError::NonCanonical)
    ));
}

#[test]
fn epoch_going_backwards() {
    let tree = Tree::new(1);
    let mut w = base(&tree);
    w.append(tree.epoch(&p("m/1'/1'/0'"), 3), NOW)
        .expect("forward");
    for e in [3, 2, 0] {
        let err = w
            .append(tree.epoch(&p("m/1'/1'/0'"), e), NOW)
            .expect_err("backwards");
        assert_eq!(
            err,
            Rule::EpochBackwards {
                node: p("m/1'/1'/0'"),
                epoch: e,
                latest: 3
            }
        );
    }
    // The root has no epochs.
    let st = tree.sign(
        Body::Epoch(keyd::chain::Epoch {
            node: KeyPath::root(),
            epoch: 0,
            keys: tree.keyset(&p("m/0'/0'")),
        }),
        &KeyPath::root(),
    );
    assert_eq!(w.append(st, NOW).expect_err("root epoch"), Rule::RootEpoch);
}

#[test]
fn reused_name() {
    let tree = Tree::new(1);
    let err = verdict_with(&tree, tree.certify(&p("m/1'/1'/7'"), "a")).expect_err("name taken");
    assert_eq!(
        err.rule,
        Rule::NameTaken {
            name: "a".into(),
            path: p("m/1'/1'/0'")
        }
    );
    // Once a's holder is revoked, the name is free again.
    let mut w = base(&tree);
    w.append(tree.revoke(&p("m/1'/1'/0'"), &p("m/1'")), NOW)
        .expect("revoke");
    w.append(tree.certify(&p("m/1'/1'/7'"), "a"), NOW)
        .expect("name reused after revocation");
    assert_eq!(
        w.state().find("a").map(|(p, _)| p.clone()),
        Some(p("m/1'/1'/7'"))
    );
    // Bad names.
    for bad in ["", "m", "a/b", "x y", &"n".repeat(65)] {
        let err = verdict_with(&tree, tree.certify(&p("m/1'/1'/9'"), bad)).expect_err("bad name");
        assert!(matches!(err.rule, Rule::Bounds(_)), "{bad:?}: {err}");
    }
}

#[test]
fn revocation_from_below_and_of_the_root() {
    let tree = Tree::new(1);
    let err =
        verdict_with(&tree, tree.revoke(&p("m/1'"), &p("m/1'/1'/0'"))).expect_err("from below");
    assert!(
        matches!(err.rule, Rule::NoAuthority { kind: "revoke", .. }),
        "{err}"
    );
    let err =
        verdict_with(&tree, tree.revoke(&p("m/1'/1'/1'"), &p("m/1'/1'/0'"))).expect_err("sibling");
    assert!(matches!(err.rule, Rule::NoAuthority { .. }));
    let err =
        verdict_with(&tree, tree.revoke(&KeyPath::root(), &KeyPath::root())).expect_err("root");
    assert_eq!(err.rule, Rule::RootRevoke);
    let err = verdict_with(&tree, tree.revoke(&p("m/1'/1'/5'"), &p("m/1'"))).expect_err("unknown");
    assert!(matches!(err.rule, Rule::UnknownTarget { .. }));
    // The key itself may revoke itself.
    let mut w = base(&tree);
    w.append(tree.revoke(&p("m/1'/1'/1'"), &p("m/1'/1'/1'")), NOW)
        .expect("self revoke");
    w.append(
        tree.revoke(&p("m/1'/1'/0'/0'/0'"), &p("m/1'/1'/0'/0'/0'")),
        NOW,
    )
    .expect("epoch self revoke");
}

#[test]
fn revocation_cascades_and_reports_why() {
    let tree = Tree::new(1);
    let mut w = base(&tree);
    w.append(tree.certify(&p("m/1'/1'/0'/1'/0'"), "c"), NOW)
        .expect("c");
    w.append(tree.epoch(&p("m/1'/1'/0'/1'/0'"), 0), NOW)
        .expect("c epoch");
    let seq = w.state().next_seq();
    w.append(tree.revoke(&p("m/1'/1'/0'"), &KeyPath::root()), NOW)
        .expect("root revokes a");
    let s = w.state();
    let deep = tree.keyset(&p("m/1'/1'/0'/1'/0'/0'/0'")).ed25519;
    match s.status_of_key(&deep, NOW) {
        KeyStatus::Revoked {
            path,
            revoked,
            by,
            seq: at,
            ..
        } => {
            assert_eq!(path, p("m/1'/1'/0'/1'/0'/0'/0'"));
            assert_eq!(revoked, p("m/1'/1'/0'"));
            assert_eq!(by, KeyPath::root());
            assert_eq!(at, seq);
        }
        other => panic!("expected revoked, got {other:?}"),
    }
    assert_eq!(
        s.cut_off_by(&p("m/1'/1'/0'")),
        vec![
            p("m/1'/1'/0'"),
            p("m/1'/1'/0'/0'/0'"),
            p("m/1'/1'/0'/1'/0'"),
            p("m/1'/1'/0'/1'/0'/0'/0'")
        ]
    );
    assert!(
        s.status_at(&p("m/1'/1'/1'"), NOW).is_valid(),
        "siblings stay valid"
    );
    assert_eq!(
        s.status_of_key(&Tree::new(7).keyset(&p("m/1'")).ed25519, NOW),
        KeyStatus::Unknown
    );
}

#[test]
fn current_epoch_is_the_highest_live_one() {
    let tree = Tree::new(1);
    let node = p("m/1'/1'/0'");
    let mut w = base(&tree);
    w.append(tree.epoch(&node, 1), NOW).expect("e1");
    w.append(tree.epoch(&node, 5), NOW).expect("e5");
    assert_eq!(w.state().current_epoch(&node).map(|(e, _)| e), Some(5));
    assert_eq!(
        w.state().status_at(&p("m/1'/1'/0'/0'/1'"), NOW),
        KeyStatus::Superseded {
            path: p("m/1'/1'/0'/0'/1'"),
            epoch: 1,
            current: 5
        }
    );
    w.append(tree.revoke(&p("m/1'/1'/0'/0'/5'"), &node), NOW)
        .expect("revoke e5");
    assert_eq!(w.state().current_epoch(&node).map(|(e, _)| e), Some(1));
    assert!(w.state().status_at(&p("m/1'/1'/0'/0'/1'"), NOW).is_valid());
    // Epochs still only move forward past the revoked one.
    assert!(matches!(
        w.append(tree.epoch(&node, 4), NOW),
        Err(Rule::EpochBackwards { .. })
    ));
}

#[test]
fn trust_untrust_succession() {
    let tree = Tree::new(1);
    let other = Tree::new(2).keyset(&KeyPath::root()).ed25519;
    let trust = |root| {
        Body::Trust(Trust {
            cluster: "other".into(),
            root,
            level: TrustLevel::Limited,
            permissions: vec!["verify".into()],
            expires_at: NOW + 100,
        })
    };
    let mut w = base(&tree);
    w.append(tree.sign(trust(other), &p("m/1'")), NOW)
        .expect("branch trusts");
    assert_eq!(w.state().trusted().count(), 1);
    assert!(matches!(
        w.append(tree.sign(trust(other), &KeyPath::root()), NOW),
        Err(Rule::AlreadyTrusted(_))
    ));
    let own = tree.keyset(&KeyPath::root()).ed25519;
    assert_eq!(
        w.append(tree.sign(trust(own), &KeyPath::root()), NOW)
            .expect_err("self"),
        Rule::SelfTrust
    );
    let untrust = Body::Untrust(Untrust {
        root: other,
        reason: "ended".into(),
    });
    w.append(tree.sign(untrust.clone(), &KeyPath::root()), NOW)
        .expect("untrust");
    assert!(matches!(
        w.append(tree.sign(untrust, &KeyPath::root()), NOW),
        Err(Rule::NotTrusted(_))
    ));
    let succ = Body::Succession(keyd::chain::Succession {
        new_root: Tree::new(3).keyset(&KeyPath::root()),
    });
    assert!(matches!(
        w.append(tree.sign(succ.clone(), &p("m/1'")), NOW),
        Err(Rule::NoAuthority { .. })
    ));
    w.append(tree.sign(succ.clone(), &KeyPath::root()), NOW)
        .expect("succession");
    assert!(matches!(
        w.append(tree.sign(succ, &KeyPath::root()), NOW),
        Err(Rule::SecondSuccession(_))
    ));
}

#[test]
fn heads() {
    let tree = Tree::new(1);
    let w = base(&tree);
    let es = w.entries().to_vec();
    let root_key = tree.signing_key(&KeyPath::root());
    let check = |head: Head| verify_file(&encode_file(&es, &head)).map(drop);
    let good = Head::sign(4, es[4].hash(), KeyPath::root(), &root_key);
    check(good.clone()).expect("good head");
    assert!(matches!(
        check(Head::sign(3, es[3].hash(), KeyPath::root(), &root_key))
            .expect_err("old")
            .rule,
        Rule::HeadMismatch { .. }
    ));
    assert_eq!(
        check(Head::sign(4, es[3].hash(), KeyPath::root(), &root_key))
            .expect_err("hash")
            .rule,
        Rule::HeadHash
    );
    let node = p("m/1'/1'/0'");
    assert_eq!(
        check(Head::sign(
            4,
            es[4].hash(),
            node.clone(),
            &tree.signing_key(&node)
        ))
        .expect_err("signer")
        .rule,
        Rule::HeadSigner(node)
    );
    // The branch key may sign heads (keyd in service).
    check(Head::sign(
        4,
        es[4].hash(),
        p("m/1'"),
        &tree.signing_key(&p("m/1'")),
    ))
    .expect("branch head");
    let mut forged = good;
    forged.signature[5] ^= 4;
    assert!(matches!(
        check(forged).expect_err("forged").rule,
        Rule::BadSignature { .. }
    ));
}

#[test]
fn no_genesis_and_genesis_signer() {
    let tree = Tree::new(1);
    let es = entries(&tree);
    let mut first = es[1].clone();
    first.seq = 0;
    first.prev = [0; 32];
    assert_eq!(rule(verdict(&tree, &[first])), Rule::NoGenesis);
    let mut g = tree.genesis();
    g.signer = p("m/1'");
    let e = Entry {
        seq: 0,
        prev: [0; 32],
        statement: g,
        appended_at: NOW,
    };
    assert_eq!(rule(verdict(&tree, &[e])), Rule::GenesisSigner);
}

#[test]
fn refused_entries_leave_the_state_unchanged() {
    let tree = Tree::new(1);
    let mut w = base(&tree);
    let before = (w.state().next_seq(), w.state().last_hash(), w.state().len());
    // Valid signature, broken rule (name taken), after a check that would have mutated.
    assert!(w.append(tree.certify(&p("m/1'/1'/8'"), "b"), NOW).is_err());
    assert!(w.append(tree.epoch(&p("m/1'/1'/0'"), 0), NOW).is_err());
    assert_eq!(
        (w.state().next_seq(), w.state().last_hash(), w.state().len()),
        before
    );
    assert!(w.state().key(&p("m/1'/1'/8'")).is_none());
}

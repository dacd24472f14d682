//! Every chain rule, each with a test that breaks it.

mod common;

use std::collections::BTreeMap;

use common::{NOW, Tree, m, next_entry, p};
use keyd::chain::{
    Anchor, Body, Chain, ChainError, Entry, Head, KeyStatus, Record, Rule, Statement, Trust,
    TrustLevel, Untrust, encode_log, verify_file,
};
use keyd::derive::KeyPath;

/// The root log: genesis, certify m/1' (branch), certify m/2' (branch2). The log of
/// m/1': its anchor, m/1'/1'/0' (node a), m/1'/1'/1' (node b), a's epoch 0. No heads.
fn base(tree: &Tree) -> Chain {
    let mut c = tree.root_and_branch();
    c.append(&m(), tree.certify(&p("m/2'"), "branch2"), NOW)
        .expect("certify m/2'");
    for st in [
        tree.certify(&p("m/1'/1'/0'"), "a"),
        tree.certify(&p("m/1'/1'/1'"), "b"),
        tree.epoch(&p("m/1'/1'/0'"), 0),
    ] {
        c.append(&p("m/1'"), st, NOW).expect("base chain is valid");
    }
    c
}

/// The chain as a file, every log closed by a head signed at NOW.
fn file(c: &Chain, tree: &Tree) -> Vec<u8> {
    let mut c = c.clone();
    tree.close(&mut c, NOW);
    c.to_file()
}

/// Raw logs: per log, its entries (in file order).
type Logs = Vec<(KeyPath, Vec<Entry>)>;

fn logs(c: &Chain) -> Logs {
    c.logs()
        .map(|(log, l)| (log.clone(), l.entries.clone()))
        .collect()
}

fn entries_of<'a>(logs: &'a mut Logs, log: &KeyPath) -> &'a mut Vec<Entry> {
    let i = logs.iter().position(|(l, _)| l == log).expect("log held");
    &mut logs[i].1
}

/// Raw logs as a file, each section closed by a head of its log signed by the log's
/// authority over the section's last entry.
fn raw_file(tree: &Tree, logs: &[(KeyPath, Vec<Entry>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (log, entries) in logs {
        let head = tree.head(log, entries, NOW);
        encode_log(&mut out, entries, Some(&head));
    }
    out
}

/// Verifies raw logs, each with a head by its authority.
fn verdict(tree: &Tree, logs: &[(KeyPath, Vec<Entry>)]) -> Result<Chain, ChainError> {
    verify_file(&raw_file(tree, logs))
}

/// Appends `st` to `log` of a copy of the base chain without the engine's checks (a new
/// section when the base has no such log) and returns the verifier's verdict on the
/// file.
fn verdict_in(tree: &Tree, log: &KeyPath, st: Statement) -> Result<Chain, ChainError> {
    let mut ls = logs(&base(tree));
    match ls.iter_mut().find(|(l, _)| l == log) {
        Some((_, entries)) => {
            let e = next_entry(log, entries, st, NOW);
            entries.push(e);
        }
        None => ls.push((log.clone(), vec![next_entry(log, &[], st, NOW)])),
    }
    verdict(tree, &ls)
}

/// [`verdict_in`] in the log of m/1'.
fn verdict_with(tree: &Tree, st: Statement) -> Result<Chain, ChainError> {
    verdict_in(tree, &p("m/1'"), st)
}

fn rule<T>(r: Result<T, ChainError>) -> Rule {
    match r {
        Ok(_) => panic!("the chain must be refused"),
        Err(e) => e.rule,
    }
}

fn refusal<T>(r: Result<T, ChainError>) -> ChainError {
    match r {
        Ok(_) => panic!("the chain must be refused"),
        Err(e) => e,
    }
}

#[test]
fn valid_chain_verifies_and_round_trips() {
    let tree = Tree::new(1);
    let bytes = file(&base(&tree), &tree);
    let v = verify_file(&bytes).expect("valid");
    assert_eq!(v.len(), 7);
    assert_eq!(v.entries(&m()).len(), 3);
    assert_eq!(v.entries(&p("m/1'")).len(), 4);
    assert_eq!(v.head(&m()).map(|h| h.seq), Some(2));
    assert_eq!(v.head(&p("m/1'")).map(|h| h.seq), Some(3));
    v.check_complete().expect("complete");
    // Decode-then-encode is byte-identical.
    assert_eq!(v.to_file(), bytes);
    // The same as the raw encoding, log by log.
    assert_eq!(raw_file(&tree, &logs(&v)), bytes);
    for (_, l) in v.logs() {
        for e in &l.entries {
            let st = e.statement.to_cbor();
            assert_eq!(Statement::from_cbor(&st).expect("decodes").to_cbor(), st);
        }
    }
    let s = v.state();
    assert!(
        s.status_of_key(&tree.keyset(&p("m/1'/1'/0'")).ed25519, NOW)
            .is_valid()
    );
    let a = s.key(&p("m/1'/1'/0'")).expect("a");
    assert_eq!(
        (keyd::chain::log_of(&p("m/1'/1'/0'")), a.seq),
        (p("m/1'"), 1)
    );
    assert!(s.key(&p("m/2'")).is_some());
    assert_eq!(keyd::chain::log_of(&p("m/2'")), m());
    assert_eq!(s.find("a").map(|(p, _)| p.clone()), Some(p("m/1'/1'/0'")));
    assert_eq!(s.link(&p("m/1'")).next_seq, 4);
    assert_eq!(v.positions(), BTreeMap::from([(m(), 3), (p("m/1'"), 4)]));
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
    // In the root log too.
    let mut st = tree.certify(&p("m/3'"), "c");
    st.signature[63] ^= 0x10;
    assert_eq!(
        rule(verdict_in(&tree, &m(), st)),
        Rule::BadSignature { signer: m() }
    );
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
    // The root certifies a deeper node (in the root log): only the parent may.
    let st = tree.sign(tree.certify_body(&p("m/1'/1'/5'"), "c"), &m());
    assert!(matches!(
        rule(verdict_in(&tree, &m(), st)),
        Rule::NoAuthority {
            kind: "certify",
            ..
        }
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
    // A key of the branch that is not in the chain.
    let st = tree.sign(
        tree.certify_body(&p("m/1'/1'/5'/1'/0'"), "c"),
        &p("m/1'/1'/5'"),
    );
    assert_eq!(
        rule(verdict_with(&tree, st)),
        Rule::UnknownSigner {
            signer: p("m/1'/1'/5'")
        }
    );
    // Trust given by a node below level 1.
    let st = tree.sign(
        Body::Trust(Trust {
            cluster: "x".into(),
            root: Tree::new(9).keyset(&KeyPath::root()).ed25519,
            level: TrustLevel::Full,
            permissions: vec![],
            expires_at: NOW + 10,
            introduced_by: None,
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
    let b1 = p("m/1'");
    let mut c = base(&tree);
    c.append(&b1, tree.revoke(&p("m/1'/1'/0'"), &b1), NOW)
        .expect("revoke");
    // a, revoked, then certifies a child: refused.
    let err = c
        .append(&b1, tree.certify(&p("m/1'/1'/0'/1'/0'"), "c"), NOW)
        .expect_err("revoked signer");
    assert!(
        matches!(err, Rule::SignerRevoked { ref revoked, .. } if *revoked == p("m/1'/1'/0'")),
        "{err}"
    );
    // An ancestor's revocation cuts the signer off too.
    let mut c = base(&tree);
    c.append(&b1, tree.certify(&p("m/1'/1'/0'/1'/0'"), "c"), NOW)
        .expect("c");
    c.append(&b1, tree.revoke(&p("m/1'/1'/0'"), &b1), NOW)
        .expect("revoke a");
    let err = c
        .append(&b1, tree.epoch(&p("m/1'/1'/0'/1'/0'"), 0), NOW)
        .expect_err("ancestor revoked");
    assert!(
        matches!(err, Rule::SignerRevoked { ref signer, ref revoked, ref by, seq }
        if *signer == p("m/1'/1'/0'/1'/0'") && *revoked == p("m/1'/1'/0'") && *by == b1 && seq == 5),
        "{err}"
    );
    // The same, read from a file.
    let mut ls = logs(&c);
    let es = entries_of(&mut ls, &b1);
    let e = next_entry(&b1, es, tree.epoch(&p("m/1'/1'/0'/1'/0'"), 0), NOW);
    es.push(e);
    let e = refusal(verdict(&tree, &ls));
    assert!(matches!(e.rule, Rule::SignerRevoked { .. }), "{e}");
    assert_eq!((e.log, e.seq), (Some(b1), Some(6)));
}

#[test]
fn expired_signer() {
    let tree = Tree::new(1);
    let mut c = base(&tree);
    let late = NOW + 2_000_000;
    let err = c
        .append(&p("m/1'"), tree.certify(&p("m/1'/1'/0'/1'/0'"), "c"), late)
        .expect_err("expired");
    assert!(matches!(err, Rule::SignerExpired { .. }), "{err}");
    assert!(matches!(
        c.state().status_at(&p("m/1'/1'/0'"), late),
        KeyStatus::Expired { .. }
    ));
}

#[test]
fn gap_reorder_duplicate_and_wrong_prev() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    // The log of m/1': anchor, a, b, epoch.
    let with = |f: &dyn Fn(&mut Vec<Entry>)| {
        let mut ls = logs(&base(&tree));
        f(entries_of(&mut ls, &b1));
        verdict(&tree, &ls)
    };

    let e = refusal(with(&|es| {
        es.remove(1);
    }));
    assert_eq!(
        e.rule,
        Rule::OutOfOrder {
            expected: 1,
            found: 2
        }
    );
    assert_eq!((&e.log, e.seq), (&Some(b1.clone()), Some(2)));

    let e = refusal(with(&|es| es.swap(1, 2)));
    assert_eq!(
        e.rule,
        Rule::OutOfOrder {
            expected: 1,
            found: 2
        }
    );

    let e = refusal(with(&|es| {
        let again = es[1].clone();
        es.insert(2, again);
    }));
    assert_eq!(
        e.rule,
        Rule::Duplicate {
            expected: 2,
            found: 1
        }
    );
    assert_eq!(e.seq, Some(1));
    // Records: the root log's 3 entries and head, then anchor, a, a again.
    assert!(
        e.to_string()
            .starts_with("log m/1' entry 1 (record 6): duplicate"),
        "{e}"
    );

    // A duplicate later in the log, after new entries.
    let e = refusal(with(&|es| {
        let again = es[0].clone();
        es.push(again);
    }));
    assert_eq!(
        e.rule,
        Rule::Duplicate {
            expected: 4,
            found: 0
        }
    );

    assert_eq!(rule(with(&|es| es[2].prev[0] ^= 1)), Rule::BadPrev);

    // A changed statement breaks the next entry's prev.
    assert_eq!(rule(with(&|es| es[1].appended_at += 1)), Rule::BadPrev);

    assert!(matches!(
        rule(with(&|es| es[3].appended_at = NOW - 1)),
        Rule::TimeBackwards { .. }
    ));
}

#[test]
fn duplicate_statements() {
    let tree = Tree::new(1);
    let err = verdict_with(&tree, tree.certify(&p("m/1'/1'/0'"), "a2")).expect_err("recertify");
    assert!(matches!(err.rule, Rule::AlreadyCertified { .. }));
    // The root certifies a branch twice.
    assert!(matches!(
        rule(verdict_in(&tree, &m(), tree.certify(&p("m/1'"), "again"))),
        Rule::AlreadyCertified { .. }
    ));
    assert!(matches!(
        rule(verdict_in(&tree, &m(), tree.genesis())),
        Rule::SecondGenesis
    ));
    let mut c = base(&tree);
    c.append(&p("m/1'"), tree.revoke(&p("m/1'/1'/1'"), &p("m/1'")), NOW)
        .expect("revoke");
    assert!(matches!(
        c.append(&p("m/1'"), tree.revoke(&p("m/1'/1'/1'"), &p("m/1'")), NOW),
        Err(Rule::AlreadyRevoked { .. })
    ));
    // The root log revokes a branch once.
    c.append(&m(), tree.revoke(&p("m/2'"), &m()), NOW)
        .expect("root revokes m/2'");
    assert!(matches!(
        c.append(&m(), tree.revoke(&p("m/2'"), &m()), NOW),
        Err(Rule::AlreadyRevoked { .. })
    ));
}

#[test]
fn truncated_and_trailing_bytes() {
    let tree = Tree::new(1);
    let c = base(&tree);
    let bytes = file(&c, &tree);
    let err = verify_file(&bytes[..bytes.len() - 10]).expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = verify_file(&bytes[..bytes.len() / 2]).expect_err("truncated");
    assert!(matches!(err.rule, Rule::Decode(_)), "{err}");
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(&[0x00, 0x01]);
    let err = verify_file(&trailing).expect_err("trailing");
    assert!(matches!(err.rule, Rule::Decode(_)), "{err}");
    // An entry after its log's head.
    let mut after = bytes.clone();
    after.extend(ciborium_vec(&Record::Entry(c.entries(&m())[0].clone())));
    let err = verify_file(&after).expect_err("after head");
    assert_eq!(err.rule, Rule::AfterHead, "{err}");
    // A chain without its heads.
    let mut no_head = Vec::new();
    for (_, l) in c.logs() {
        encode_log(&mut no_head, &l.entries, None);
    }
    assert_eq!(
        verify_file(&no_head).expect_err("no head").rule,
        Rule::LogWithoutHead { log: m() }
    );
    // The root log closed, the branch log not.
    let mut branch_open = Vec::new();
    encode_log(
        &mut branch_open,
        c.entries(&m()),
        Some(&tree.head(&m(), c.entries(&m()), NOW)),
    );
    encode_log(&mut branch_open, c.entries(&p("m/1'")), None);
    assert_eq!(
        verify_file(&branch_open).expect_err("no head").rule,
        Rule::LogWithoutHead { log: p("m/1'") }
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
    let c = base(&tree);
    let root = c.entries(&m());
    let mut value: ciborium::Value =
        ciborium::from_reader(ciborium_vec(&Record::Entry(root[1].clone())).as_slice())
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
    let mut bytes = ciborium_vec(&Record::Entry(root[0].clone()));
    bytes.extend(ciborium_vec(&value));
    let err = verify_file(&bytes).expect_err("unknown kind");
    assert_eq!(err.rule, Rule::UnknownKind("delegate".into()), "{err}");

    // appended_at as a non-minimal 8-byte integer instead of 4 bytes.
    let genesis = ciborium_vec(&Record::Entry(root[0].clone()));
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
    let st = root[1].statement.to_cbor();
    let needle = b"m/1'";
    let pos = st.windows(4).position(|x| x == needle).expect("path text");
    let mut alt = st.clone();
    alt[pos + 3] = b'h';
    assert!(matches!(
        Statement::from_cbor(&alt),
        Err(keyd::chain::CborError::NonCanonical)
    ));
    // An entry whose log is written m/1h.
    let anchor = ciborium_vec(&Record::Entry(c.entries(&p("m/1'"))[0].clone()));
    let pos = anchor
        .windows(4)
        .position(|x| x == needle)
        .expect("log text");
    let mut alt = anchor.clone();
    alt[pos + 3] = b'h';
    let mut bytes = Vec::new();
    encode_log(&mut bytes, root, Some(&tree.head(&m(), root, NOW)));
    bytes.extend(alt);
    let err = verify_file(&bytes).expect_err("non-canonical log");
    assert!(err.to_string().contains("non-canonical"), "{err}");
}

#[test]
fn epoch_going_backwards() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let mut c = base(&tree);
    c.append(&b1, tree.epoch(&p("m/1'/1'/0'"), 3), NOW)
        .expect("forward");
    for e in [3, 2, 0] {
        let err = c
            .append(&b1, tree.epoch(&p("m/1'/1'/0'"), e), NOW)
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
    assert_eq!(
        c.append(&m(), st, NOW).expect_err("root epoch"),
        Rule::RootEpoch
    );
}

#[test]
fn reused_name() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let err = verdict_with(&tree, tree.certify(&p("m/1'/1'/7'"), "a")).expect_err("name taken");
    assert_eq!(
        err.rule,
        Rule::NameTaken {
            name: "a".into(),
            path: p("m/1'/1'/0'")
        }
    );
    // In the root log, among branches.
    assert_eq!(
        rule(verdict_in(&tree, &m(), tree.certify(&p("m/3'"), "branch2"))),
        Rule::NameTaken {
            name: "branch2".into(),
            path: p("m/2'")
        }
    );
    // Once a's holder is revoked, the name is free again.
    let mut c = base(&tree);
    c.append(&b1, tree.revoke(&p("m/1'/1'/0'"), &b1), NOW)
        .expect("revoke");
    c.append(&b1, tree.certify(&p("m/1'/1'/7'"), "a"), NOW)
        .expect("name reused after revocation");
    assert_eq!(
        c.state().find("a").map(|(p, _)| p.clone()),
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
    // The branch revokes the root.
    let err = verdict_with(&tree, tree.revoke(&KeyPath::root(), &p("m/1'"))).expect_err("root");
    assert_eq!(err.rule, Rule::RootRevoke);
    // The branch revokes itself in its own log: a branch is revoked in the root log
    // (its log could never be closed by a head again).
    let err = verdict_with(&tree, tree.revoke(&p("m/1'"), &p("m/1'"))).expect_err("self");
    assert!(
        matches!(err.rule, Rule::WrongLog { kind: "revoke", .. }),
        "{err}"
    );
    // The root revokes itself.
    let err =
        verdict_in(&tree, &m(), tree.revoke(&KeyPath::root(), &KeyPath::root())).expect_err("root");
    assert_eq!(err.rule, Rule::RootRevoke);
    let err = verdict_with(&tree, tree.revoke(&p("m/1'/1'/5'"), &p("m/1'"))).expect_err("unknown");
    assert!(matches!(err.rule, Rule::UnknownTarget { .. }));
    let err = verdict_in(&tree, &m(), tree.revoke(&p("m/5'"), &m())).expect_err("unknown");
    assert!(matches!(err.rule, Rule::UnknownTarget { .. }));
    // The key itself may revoke itself.
    let b1 = p("m/1'");
    let mut c = base(&tree);
    c.append(&b1, tree.revoke(&p("m/1'/1'/1'"), &p("m/1'/1'/1'")), NOW)
        .expect("self revoke");
    c.append(
        &b1,
        tree.revoke(&p("m/1'/1'/0'/0'/0'"), &p("m/1'/1'/0'/0'/0'")),
        NOW,
    )
    .expect("epoch self revoke");
}

#[test]
fn revocation_cascades_and_reports_why() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let mut c = base(&tree);
    c.append(&b1, tree.certify(&p("m/1'/1'/0'/1'/0'"), "c"), NOW)
        .expect("c");
    c.append(&b1, tree.epoch(&p("m/1'/1'/0'/1'/0'"), 0), NOW)
        .expect("c epoch");
    let seq = c.state().link(&b1).next_seq;
    c.append(&b1, tree.revoke(&p("m/1'/1'/0'"), &b1), NOW)
        .expect("the branch revokes a");
    let s = c.state();
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
            assert_eq!(by, b1);
            assert_eq!(at, seq);
        }
        other => panic!("expected revoked, got {other:?}"),
    }
    let r = s.own_revocation(&p("m/1'/1'/0'")).expect("revocation");
    assert_eq!((&r.log, r.seq), (&b1, seq));
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
    let b1 = p("m/1'");
    let node = p("m/1'/1'/0'");
    let mut c = base(&tree);
    c.append(&b1, tree.epoch(&node, 1), NOW).expect("e1");
    c.append(&b1, tree.epoch(&node, 5), NOW).expect("e5");
    assert_eq!(c.state().current_epoch(&node).map(|(e, _)| e), Some(5));
    assert_eq!(
        c.state().status_at(&p("m/1'/1'/0'/0'/1'"), NOW),
        KeyStatus::Superseded {
            path: p("m/1'/1'/0'/0'/1'"),
            epoch: 1,
            current: 5
        }
    );
    c.append(&b1, tree.revoke(&p("m/1'/1'/0'/0'/5'"), &node), NOW)
        .expect("revoke e5");
    assert_eq!(c.state().current_epoch(&node).map(|(e, _)| e), Some(1));
    assert!(c.state().status_at(&p("m/1'/1'/0'/0'/1'"), NOW).is_valid());
    // Epochs still only move forward past the revoked one.
    assert!(matches!(
        c.append(&b1, tree.epoch(&node, 4), NOW),
        Err(Rule::EpochBackwards { .. })
    ));
}

#[test]
fn trust_untrust_succession() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let other = Tree::new(2).keyset(&KeyPath::root()).ed25519;
    let trust = |root| {
        Body::Trust(Trust {
            cluster: "other".into(),
            root,
            level: TrustLevel::Limited,
            permissions: vec!["verify".into()],
            expires_at: NOW + 100,
            introduced_by: None,
        })
    };
    let mut c = base(&tree);
    c.append(&b1, tree.sign(trust(other), &b1), NOW)
        .expect("branch trusts");
    assert_eq!(c.state().trusted().count(), 1);
    assert!(matches!(
        c.append(&b1, tree.sign(trust(other), &b1), NOW),
        Err(Rule::AlreadyTrusted(_))
    ));
    // Trust is per log: the root log may trust the same cluster, cluster-wide.
    c.append(&m(), tree.sign(trust(other), &m()), NOW)
        .expect("root trusts");
    assert_eq!(c.state().trusted().count(), 2);
    assert!(matches!(
        c.append(&m(), tree.sign(trust(other), &m()), NOW),
        Err(Rule::AlreadyTrusted(_))
    ));
    let own = tree.keyset(&KeyPath::root()).ed25519;
    assert_eq!(
        c.append(&m(), tree.sign(trust(own), &m()), NOW)
            .expect_err("self"),
        Rule::SelfTrust
    );
    assert_eq!(
        c.append(&b1, tree.sign(trust(own), &b1), NOW)
            .expect_err("self"),
        Rule::SelfTrust
    );
    let untrust = Body::Untrust(Untrust {
        root: other,
        reason: "ended".into(),
    });
    c.append(&m(), tree.sign(untrust.clone(), &m()), NOW)
        .expect("untrust");
    assert!(matches!(
        c.append(&m(), tree.sign(untrust.clone(), &m()), NOW),
        Err(Rule::NotTrusted(_))
    ));
    // The branch's own trust stands until the branch ends it.
    assert_eq!(c.state().trusted().count(), 1);
    c.append(&b1, tree.sign(untrust, &b1), NOW)
        .expect("branch untrusts");
    assert_eq!(c.state().trusted().count(), 0);
    let succ = Body::Succession(keyd::chain::Succession {
        new_root: Tree::new(3).keyset(&KeyPath::root()),
    });
    // Only the root log names a successor.
    assert!(matches!(
        c.append(&b1, tree.sign(succ.clone(), &b1), NOW),
        Err(Rule::WrongLog {
            kind: "succession",
            ..
        })
    ));
    c.append(&m(), tree.sign(succ.clone(), &m()), NOW)
        .expect("succession");
    // The succession is the old root's last word: nothing more in its log, a second
    // succession included.
    assert!(matches!(
        c.append(&m(), tree.sign(succ, &m()), NOW),
        Err(Rule::AfterSuccession(_))
    ));
    let late = Body::Revoke(keyd::chain::Revoke {
        target: b1.clone(),
        reason: "late".into(),
    });
    assert!(matches!(
        c.append(&m(), tree.sign(late, &m()), NOW),
        Err(Rule::AfterSuccession(_))
    ));
    // Every key of the replaced root vouches for nothing any more.
    for path in [m(), b1.clone()] {
        assert!(matches!(
            c.state().status_at(&path, NOW),
            keyd::chain::KeyStatus::Succeeded { .. }
        ));
    }
}

#[test]
fn heads() {
    let tree = Tree::new(1);
    let c = base(&tree);
    let root = c.entries(&m()).to_vec();
    let branch = c.entries(&p("m/1'")).to_vec();
    let root_key = tree.signing_key(&m());
    let branch_key = tree.signing_key(&p("m/1'"));
    let good_root = tree.head(&m(), &root, NOW);
    let good_branch = tree.head(&p("m/1'"), &branch, NOW);
    let check = |root_head: &Head, branch_head: &Head| {
        let mut out = Vec::new();
        encode_log(&mut out, &root, Some(root_head));
        encode_log(&mut out, &branch, Some(branch_head));
        verify_file(&out)
    };
    check(&good_root, &good_branch).expect("good heads");
    let e = refusal(check(
        &Head::sign(m(), 1, root[1].hash(), NOW, &root_key),
        &good_branch,
    ));
    assert!(matches!(e.rule, Rule::HeadMismatch { .. }), "{e}");
    assert_eq!((e.position, e.log), (3, Some(m())));
    assert_eq!(
        rule(check(
            &Head::sign(m(), 2, root[1].hash(), NOW, &root_key),
            &good_branch
        )),
        Rule::HeadHash
    );
    // The branch log's head names its own last entry, not the root log's.
    assert_eq!(
        rule(check(
            &good_root,
            &Head::sign(p("m/1'"), 3, root[2].hash(), NOW, &branch_key)
        )),
        Rule::HeadHash
    );
    // The wrong authority: the root signs the branch log's head, a node signs it, the
    // branch signs the root log's head.
    let (seq, hash) = (3, branch[3].hash());
    assert_eq!(
        rule(check(
            &good_root,
            &Head::sign(p("m/1'"), seq, hash, NOW, &root_key)
        )),
        Rule::BadSignature { signer: p("m/1'") }
    );
    let node = p("m/1'/1'/0'");
    assert_eq!(
        rule(check(
            &good_root,
            &Head::sign(p("m/1'"), seq, hash, NOW, &tree.signing_key(&node))
        )),
        Rule::BadSignature { signer: p("m/1'") }
    );
    assert_eq!(
        rule(check(
            &Head::sign(m(), 2, root[2].hash(), NOW, &branch_key),
            &good_branch
        )),
        Rule::BadSignature { signer: m() }
    );
    // A head of a log that is not held, or not a log.
    for (log, key) in [
        (p("m/2'"), tree.signing_key(&p("m/2'"))),
        (node.clone(), tree.signing_key(&node)),
    ] {
        let mut out = check(&good_root, &good_branch).expect("good").to_file();
        encode_log(
            &mut out,
            &[],
            Some(&Head::sign(log.clone(), seq, hash, NOW, &key)),
        );
        assert_eq!(rule(verify_file(&out)), Rule::UnknownLog { log });
    }
    // A head of the branch log in the place of the root log's.
    assert_eq!(
        rule(check(&good_branch, &good_branch)),
        Rule::LogWithoutHead { log: m() }
    );
    let mut forged = good_branch.clone();
    forged.signature[5] ^= 4;
    assert!(matches!(
        rule(check(&good_root, &forged)),
        Rule::BadSignature { .. }
    ));
    let mut later = good_branch.clone();
    later.signed_at += 1;
    assert!(matches!(
        rule(check(&good_root, &later)),
        Rule::BadSignature { .. }
    ));
    // Chain::set_head refuses the same.
    let mut held = c.clone();
    assert_eq!(
        held.set_head(Head::sign(p("m/1'"), seq, hash, NOW, &root_key)),
        Err(Rule::BadSignature { signer: p("m/1'") })
    );
    assert_eq!(
        held.sign_head(&p("m/2'"), &tree.signing_key(&p("m/2'")), NOW),
        Err(Rule::UnknownLog { log: p("m/2'") })
    );
    assert!(held.head(&p("m/1'")).is_none());
}

#[test]
fn older_head_refused() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let (mut held, mut replay, mut newer) = (base(&tree), base(&tree), base(&tree));
    tree.close(&mut held, NOW + 10);
    tree.close(&mut replay, NOW);
    tree.close(&mut newer, NOW + 20);
    // The same entries under a head signed earlier than the one held: a replay.
    let e = held.update(&replay.file_of([&b1])).expect_err("older head");
    assert_eq!(
        e.rule,
        Rule::OlderHead {
            log: b1.clone(),
            signed_at: NOW,
            held: NOW + 10
        }
    );
    assert_eq!(e.log, Some(b1.clone()));
    let e = held.update(&replay.to_file()).expect_err("older head");
    assert!(
        matches!(&e.rule, Rule::OlderHead { log, .. } if *log == m()),
        "{e}"
    );
    assert_eq!(held.head(&b1).map(|h| h.signed_at), Some(NOW + 10));
    assert_eq!(
        held.set_head(replay.head(&b1).expect("head").clone()),
        Err(Rule::OlderHead {
            log: b1.clone(),
            signed_at: NOW,
            held: NOW + 10
        })
    );
    // The same head again, or a newer one, is fine.
    assert_eq!(held.update(&held.to_file()).expect("same"), 0);
    assert_eq!(held.update(&newer.to_file()).expect("newer"), 0);
    assert_eq!(held.head(&b1).map(|h| h.signed_at), Some(NOW + 20));
}

#[test]
fn stale_branch_head() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let mut c = base(&tree);
    // The root log's head is old (the root is offline); the branch's is fresh.
    c.sign_head(&m(), &tree.signing_key(&m()), NOW - 10_000)
        .expect("root head");
    c.sign_head(&b1, &tree.signing_key(&b1), NOW).expect("head");
    c.check_fresh(NOW + 60, 60).expect("fresh");
    let e = c.check_fresh(NOW + 100, 60).expect_err("stale");
    assert_eq!(
        e.rule,
        Rule::Stale {
            log: b1.clone(),
            age: 100,
            signed_at: NOW,
            max_age: 60
        }
    );
    assert_eq!(e.log, Some(b1.clone()));
    assert!(e.to_string().contains("100 s old"), "{e}");
    // A re-signed head makes it fresh again.
    c.sign_head(&b1, &tree.signing_key(&b1), NOW + 90)
        .expect("re-signed");
    c.check_fresh(NOW + 100, 60).expect("fresh again");
}

#[test]
fn entries_in_the_wrong_log() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let wrong = |r: Result<Chain, ChainError>, log: &KeyPath, kind: &str| {
        let e = refusal(r);
        assert!(
            matches!(&e.rule, Rule::WrongLog { log: l, kind: k, .. } if *l == *log && *k == kind),
            "{e}"
        );
        assert_eq!(e.log.as_ref(), Some(log), "{e}");
    };
    // A branch statement in the root log.
    let st = tree.certify(&p("m/1'/1'/2'"), "c");
    wrong(verdict_in(&tree, &m(), st.clone()), &m(), "certify");
    assert!(matches!(
        base(&tree).append(&m(), st, NOW),
        Err(Rule::WrongLog { .. })
    ));
    wrong(
        verdict_in(&tree, &m(), tree.epoch(&p("m/1'/1'/0'"), 1)),
        &m(),
        "epoch",
    );
    // Root statements in a branch log.
    let st = tree.certify(&p("m/3'"), "c");
    wrong(verdict_with(&tree, st.clone()), &b1, "certify");
    assert!(matches!(
        base(&tree).append(&b1, st, NOW),
        Err(Rule::WrongLog { .. })
    ));
    wrong(
        verdict_with(&tree, tree.revoke(&p("m/1'/1'/0'"), &m())),
        &b1,
        "revoke",
    );
    wrong(verdict_with(&tree, tree.genesis()), &b1, "genesis");
    // The anchor belongs to its branch log, once.
    let c = base(&tree);
    wrong(
        verdict_in(&tree, &m(), tree.anchor(&c, &b1)),
        &m(),
        "anchor",
    );
    wrong(verdict_with(&tree, tree.anchor(&c, &b1)), &b1, "anchor");
    // m/2' signs in the log of m/1'.
    let st = tree.certify(&p("m/2'/1'/0'"), "c");
    wrong(verdict_with(&tree, st.clone()), &b1, "certify");
    wrong(
        verdict_with(&tree, tree.revoke(&p("m/2'"), &p("m/2'"))),
        &b1,
        "revoke",
    );
    // No log below level 1.
    let deep = p("m/1'/1'/0'");
    wrong(
        verdict_in(&tree, &deep, tree.certify(&p("m/1'/1'/0'/1'/0'"), "c")),
        &deep,
        "certify",
    );
}

#[test]
fn root_log_revokes_only_branches() {
    let tree = Tree::new(1);
    for target in ["m/1'/1'/0'", "m/1'/1'/0'/0'/0'"] {
        let e = refusal(verdict_in(&tree, &m(), tree.revoke(&p(target), &m())));
        assert!(
            matches!(&e.rule, Rule::WrongLog { log, kind: "revoke", .. } if *log == m()),
            "{e}"
        );
        assert!(matches!(
            base(&tree).append(&m(), tree.revoke(&p(target), &m()), NOW),
            Err(Rule::WrongLog { .. })
        ));
    }
    // A branch is revoked in the root log.
    verdict_in(&tree, &m(), tree.revoke(&p("m/1'"), &m())).expect("root revokes m/1'");
}

#[test]
fn branch_logs_open_with_their_anchor() {
    let tree = Tree::new(1);
    let b2 = p("m/2'");
    let c = base(&tree);
    let root = c.entries(&m());
    let anchor = |root_seq: u64, root_entry: [u8; 32]| {
        tree.sign(
            Body::Anchor(Anchor {
                root_seq,
                root_entry,
            }),
            &b2,
        )
    };
    // m/2' is certified by root-log entry 2.
    verdict_in(&tree, &b2, anchor(2, root[2].hash())).expect("anchored");
    let bad = |st: Statement| {
        let e = refusal(verdict_in(&tree, &b2, st));
        assert_eq!(e.log, Some(b2.clone()));
        e.rule
    };
    // No anchor: the log opens with a certify.
    assert_eq!(
        bad(tree.certify(&p("m/2'/1'/0'"), "c")),
        Rule::BadAnchor {
            log: b2.clone(),
            root_seq: 2,
            found: None
        }
    );
    // The anchor names another root-log entry (m/1's certification).
    assert_eq!(
        bad(anchor(1, root[1].hash())),
        Rule::BadAnchor {
            log: b2.clone(),
            root_seq: 2,
            found: Some(1)
        }
    );
    // The right seq, another entry's hash.
    assert_eq!(
        bad(anchor(2, root[1].hash())),
        Rule::BadAnchor {
            log: b2.clone(),
            root_seq: 2,
            found: Some(2)
        }
    );
    // The right anchor, signed by another branch.
    let by_b1 = tree.sign(
        Body::Anchor(Anchor {
            root_seq: 2,
            root_entry: root[2].hash(),
        }),
        &p("m/1'"),
    );
    assert!(matches!(bad(by_b1), Rule::WrongLog { kind: "anchor", .. }));
    // The right anchor, a forged signature.
    let mut forged = anchor(2, root[2].hash());
    forged.signature[9] ^= 2;
    assert_eq!(bad(forged), Rule::BadSignature { signer: b2.clone() });
    // Chain::append refuses the same.
    let mut held = base(&tree);
    assert!(matches!(
        held.append(&b2, tree.certify(&p("m/2'/1'/0'"), "c"), NOW),
        Err(Rule::BadAnchor { found: None, .. })
    ));
    assert!(held.entries(&b2).is_empty());
    let st = tree.anchor(&held, &b2);
    held.append(&b2, st, NOW).expect("anchor");
    held.append(&b2, tree.certify(&p("m/2'/1'/0'"), "c"), NOW)
        .expect("then the branch's statements");
}

#[test]
fn unknown_branch_log() {
    let tree = Tree::new(1);
    let b3 = p("m/3'");
    // The root log does not certify m/3': its log is not one of this cluster.
    let st = tree.sign(
        Body::Anchor(Anchor {
            root_seq: 2,
            root_entry: [7; 32],
        }),
        &b3,
    );
    let e = refusal(verdict_in(&tree, &b3, st.clone()));
    assert_eq!(e.rule, Rule::UnknownLog { log: b3.clone() });
    assert_eq!(e.log, Some(b3.clone()));
    assert_eq!(
        base(&tree).append(&b3, st, NOW).map(drop),
        Err(Rule::UnknownLog { log: b3.clone() })
    );
    // A branch log read before the root log that certifies it.
    let mut ls = logs(&base(&tree));
    ls.reverse();
    let e = refusal(verdict(&tree, &ls));
    assert_eq!(e.rule, Rule::UnknownLog { log: p("m/1'") });
    assert_eq!(e.position, 0);
}

#[test]
fn root_revocation_of_a_branch_cuts_off_its_log() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let mut c = base(&tree);
    let seq = c.state().link(&m()).next_seq;
    c.append(&m(), tree.revoke(&b1, &m()), NOW)
        .expect("root revokes m/1'");
    // The branch's log still verifies: the branch keeps writing it (liveness inside a
    // branch log ignores the root log's revocations).
    c.append(&b1, tree.epoch(&p("m/1'/1'/0'"), 1), NOW)
        .expect("the branch log goes on");
    let v = verify_file(&file(&c, &tree)).expect("still verifies");
    assert_eq!(v.entries(&b1).len(), 5);
    // Every key of the branch's log reports Revoked, cut off by the root-log entry.
    let s = v.state();
    let published: Vec<KeyPath> = s
        .keys()
        .filter(|(path, _)| keyd::chain::log_of(path) == b1)
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(
        published.len(),
        4,
        "a, b and a's epochs 0 and 1: {published:?}"
    );
    for path in published.iter().chain([&b1]) {
        match s.status_at(path, NOW) {
            KeyStatus::Revoked {
                revoked,
                by,
                seq: at,
                ..
            } => {
                assert_eq!((&revoked, &by, at), (&b1, &m(), seq), "{path}");
            }
            other => panic!("{path}: expected revoked, got {other:?}"),
        }
        assert_eq!(
            s.status_of_key(&tree.keyset(path).ed25519, NOW).name(),
            "revoked"
        );
    }
    assert!(s.find("a").is_some());
    assert!(s.current_epoch(&p("m/1'/1'/0'")).is_none());
    // The other branch stays valid.
    assert!(s.status_at(&p("m/2'"), NOW).is_valid());
}

#[test]
fn names_are_unique_per_log() {
    let tree = Tree::new(1);
    let (b1, b2) = (p("m/1'"), p("m/2'"));
    let mut c = base(&tree);
    let st = tree.anchor(&c, &b2);
    c.append(&b2, st, NOW).expect("anchor m/2'");
    c.append(&b1, tree.certify(&p("m/1'/1'/5'"), "web"), NOW)
        .expect("web in m/1'");
    c.append(&b2, tree.certify(&p("m/2'/1'/0'"), "web"), NOW)
        .expect("web in m/2'");
    // Names within a log stay unique.
    assert_eq!(
        c.append(&b2, tree.certify(&p("m/2'/1'/1'"), "web"), NOW)
            .map(drop),
        Err(Rule::NameTaken {
            name: "web".into(),
            path: p("m/2'/1'/0'")
        })
    );
    // A branch name may be a node name in a branch log.
    c.append(&b2, tree.certify(&p("m/2'/1'/2'"), "branch"), NOW)
        .expect("branch name reused by a node");
    let v = verify_file(&file(&c, &tree)).expect("both verify");
    let s = v.state();
    assert_eq!(
        s.find_in("web", &b2).map(|(p, _)| p.clone()),
        Some(p("m/2'/1'/0'"))
    );
    assert_eq!(
        s.find_in("web", &b1).map(|(p, _)| p.clone()),
        Some(p("m/1'/1'/5'"))
    );
    assert_eq!(s.find("web").map(|(p, _)| p.clone()), Some(p("m/1'/1'/5'")));
    assert_eq!(s.find("branch").map(|(p, _)| p.clone()), Some(p("m/1'")));
}

#[test]
fn broken_links_name_their_log() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let c = base(&tree);
    // A gap in the root log.
    let mut ls = logs(&c);
    entries_of(&mut ls, &m()).remove(1);
    let e = refusal(verdict(&tree, &ls));
    assert_eq!(
        e.rule,
        Rule::OutOfOrder {
            expected: 1,
            found: 2
        }
    );
    assert!(e.to_string().starts_with("log m entry 2 (record 1)"), "{e}");
    assert_eq!((e.log, e.seq, e.position), (Some(m()), Some(2), 1));
    // A reorder in the branch log.
    let mut ls = logs(&c);
    entries_of(&mut ls, &b1).swap(2, 3);
    let e = refusal(verdict(&tree, &ls));
    assert_eq!(
        e.rule,
        Rule::OutOfOrder {
            expected: 2,
            found: 3
        }
    );
    assert_eq!((e.log, e.seq, e.position), (Some(b1.clone()), Some(3), 6));
    // A fork: a holder of the chain is offered another history of the branch log.
    let mut held = c.clone();
    tree.close(&mut held, NOW);
    let mut ls = logs(&c);
    {
        let es = entries_of(&mut ls, &b1);
        es.truncate(2);
        let e = next_entry(&b1, es, tree.certify(&p("m/1'/1'/1'"), "b2"), NOW);
        es.push(e);
    }
    let e = held.update(&raw_file(&tree, &ls)).expect_err("fork");
    assert_eq!(e.rule, Rule::Diverged { seq: 2 });
    assert_eq!((e.log, e.seq), (Some(b1.clone()), Some(2)));
    // The root log's overlap was fine; the held logs are unchanged.
    assert_eq!(held.entries(&b1), c.entries(&b1));
}

#[test]
fn paging_across_logs_round_trips() {
    let tree = Tree::new(1);
    let b2 = p("m/2'");
    let mut src = base(&tree);
    let st = tree.anchor(&src, &b2);
    src.append(&b2, st, NOW).expect("anchor");
    src.append(&b2, tree.certify(&p("m/2'/1'/0'"), "web"), NOW)
        .expect("web");
    tree.close(&mut src, NOW);
    assert_eq!(src.len(), 9);

    let mut dst = Chain::new();
    let mut flags = Vec::new();
    for _ in 0..20 {
        let page = src.since(&dst.positions(), 2);
        let new = dst.update(&page.bytes).expect("page verifies");
        assert!(new <= 2);
        flags.push(page.complete);
        if page.complete {
            break;
        }
        assert!(dst.check_complete().is_err(), "a page cut short");
    }
    // 9 entries, 2 a page: 5 pages, only the last complete.
    assert_eq!(flags, [false, false, false, false, true]);
    dst.check_complete().expect("complete");
    assert_eq!(dst.to_file(), src.to_file());
    assert_eq!(dst.positions(), src.positions());
    verify_file(&dst.to_file()).expect("verifies");
    // Nothing new: the heads only.
    let page = src.since(&dst.positions(), 2);
    assert!(page.complete);
    assert_eq!(dst.update(&page.bytes).expect("heads"), 0);
    // A holder with the root log only gets the branch logs.
    let mut root_only = Chain::new();
    root_only.update(&src.file_of([&m()])).expect("root log");
    let page = src.since(&root_only.positions(), 100);
    assert!(page.complete);
    assert_eq!(root_only.update(&page.bytes).expect("branches"), 6);
    assert_eq!(root_only.to_file(), src.to_file());
}

/// A two-log chain file: the root log (genesis, certify m/1') and the log of m/1'
/// (anchor, certify a, a's epoch 0), each with its head.
fn small_file(tree: &Tree) -> Vec<u8> {
    let mut c = tree.root_and_branch();
    c.append(&p("m/1'"), tree.certify(&p("m/1'/1'/0'"), "a"), NOW)
        .expect("a");
    c.append(&p("m/1'"), tree.epoch(&p("m/1'/1'/0'"), 0), NOW)
        .expect("epoch");
    tree.close(&mut c, NOW);
    c.to_file()
}

#[test]
fn every_bit_flip_is_refused() {
    let tree = Tree::new(1);
    let bytes = small_file(&tree);
    verify_file(&bytes).expect("the file verifies");
    let bits = bytes.len() * 8;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let accepted: Vec<usize> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let bytes = &bytes;
                s.spawn(move || {
                    let mut accepted = Vec::new();
                    let mut flipped = bytes.clone();
                    for bit in (t..bits).step_by(threads) {
                        flipped[bit / 8] ^= 1 << (bit % 8);
                        if verify_file(&flipped).is_ok() {
                            accepted.push(bit);
                        }
                        flipped[bit / 8] ^= 1 << (bit % 8);
                    }
                    accepted
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    assert!(
        accepted.is_empty(),
        "{} of {bits} single-bit flips verify, e.g. bit {:?}",
        accepted.len(),
        accepted.first()
    );
}

#[test]
fn no_genesis_and_genesis_signer() {
    let tree = Tree::new(1);
    let es = base(&tree).entries(&m()).to_vec();
    let mut first = es[1].clone();
    first.seq = 0;
    first.prev = [0; 32];
    assert_eq!(rule(verdict(&tree, &[(m(), vec![first])])), Rule::NoGenesis);
    // A genesis signed by another key than the root's: the root log holds only what
    // the root signs (the placement rule refuses it before the genesis-signer rule).
    let mut g = tree.genesis();
    g.signer = p("m/1'");
    let e = next_entry(&m(), &[], g, NOW);
    assert!(matches!(
        rule(verdict(&tree, &[(m(), vec![e])])),
        Rule::WrongLog {
            kind: "genesis",
            ..
        }
    ));
    // A chain that starts with a branch log.
    let st = tree.certify(&p("m/1'/1'/0'"), "a");
    let e = next_entry(&p("m/1'"), &[], st, NOW);
    assert_eq!(
        rule(verdict(&tree, &[(p("m/1'"), vec![e])])),
        Rule::UnknownLog { log: p("m/1'") }
    );
}

#[test]
fn refused_entries_leave_the_state_unchanged() {
    let tree = Tree::new(1);
    let b1 = p("m/1'");
    let mut c = base(&tree);
    let snapshot = |c: &Chain| {
        (
            c.state().link(&m()),
            c.state().link(&b1),
            c.state().len(),
            c.len(),
        )
    };
    let before = snapshot(&c);
    // Valid signature, broken rule (name taken), after a check that would have mutated.
    assert!(
        c.append(&b1, tree.certify(&p("m/1'/1'/8'"), "b"), NOW)
            .is_err()
    );
    assert!(c.append(&b1, tree.epoch(&p("m/1'/1'/0'"), 0), NOW).is_err());
    assert!(
        c.append(&m(), tree.certify(&p("m/1'/1'/8'"), "c"), NOW)
            .is_err()
    );
    assert!(c.append(&p("m/3'"), tree.genesis(), NOW).is_err());
    assert_eq!(snapshot(&c), before);
    assert!(c.state().key(&p("m/1'/1'/8'")).is_none());
    assert!(c.log(&p("m/3'")).is_none());
}

#[test]
fn file_layout_is_the_one_encoding() {
    let tree = Tree::new(1);
    let (b1, b2) = (p("m/1'"), p("m/2'"));
    let mut c = base(&tree);
    let st = tree.anchor(&c, &b2);
    c.append(&b2, st, NOW).expect("anchor");
    tree.close(&mut c, NOW);
    let good = c.to_file();
    keyd::fuzzing::chain_file(&good);
    // The branch logs out of path order.
    let mut swapped = c.file_of([&m(), &b2]);
    swapped.extend(c.file_of([&b1]));
    let e = verify_file(&swapped).expect_err("out of order");
    assert_eq!(
        e.rule,
        Rule::LogOrder {
            log: b1.clone(),
            after: b2.clone()
        }
    );
    assert_eq!((e.log, e.seq, e.position), (Some(b1.clone()), Some(0), 6));
    // The root log's head after the branch logs.
    let mut late_head = Vec::new();
    encode_log(&mut late_head, c.entries(&m()), None);
    late_head.extend(c.file_of([&b1, &b2]));
    encode_log(&mut late_head, &[], c.head(&m()));
    let e = verify_file(&late_head).expect_err("root log left open");
    assert_eq!(e.rule, Rule::LogWithoutHead { log: m() });
    assert_eq!(e.position, 3);
    // A log in two sections.
    let mut split = c.file_of([&m()]);
    encode_log(&mut split, &c.entries(&b1)[..2], None);
    encode_log(&mut split, c.entries(&b2), c.head(&b2));
    encode_log(&mut split, &c.entries(&b1)[2..], c.head(&b1));
    assert_eq!(
        verify_file(&split).expect_err("split").rule,
        Rule::LogWithoutHead { log: b1.clone() }
    );
    // None of them trips the fuzz target's re-encoding check.
    for bytes in [&swapped, &late_head, &split] {
        keyd::fuzzing::chain_file(bytes);
    }
    // A pull may bring the logs in any order: update takes them.
    for bytes in [&swapped, &late_head, &split] {
        let mut held = Chain::new();
        held.update(bytes).expect("update");
        held.check_complete().expect("complete");
        assert_eq!(held.to_file(), good);
    }
}

#[test]
fn bad_keys_paths_and_versions() {
    use ed25519_dalek::{Signer, VerifyingKey};
    let tree = Tree::new(1);
    // A public key that is not a valid Ed25519 point.
    let bad_point = (0..=255u8)
        .map(|b| [b; 32])
        .find(|k| VerifyingKey::from_bytes(k).is_err())
        .expect("an invalid point");
    let mut body = tree.certify_body(&p("m/1'/1'/2'"), "c");
    if let Body::Certify(c) = &mut body {
        c.keys.ed25519 = bad_point;
    }
    assert_eq!(
        rule(verdict_with(&tree, tree.sign(body, &p("m/1'")))),
        Rule::BadKey
    );
    // A key already published at another path.
    let mut body = tree.certify_body(&p("m/1'/1'/2'"), "c");
    if let Body::Certify(c) = &mut body {
        c.keys = tree.keyset(&p("m/1'/1'/0'"));
    }
    assert_eq!(
        rule(verdict_with(&tree, tree.sign(body, &p("m/1'")))),
        Rule::KeyReused {
            other: p("m/1'/1'/0'")
        }
    );
    // A certify of a path that is not a node, an epoch of an epoch key.
    assert_eq!(
        rule(verdict_with(
            &tree,
            tree.sign(tree.certify_body(&p("m/1'/3'/0'"), "c"), &p("m/1'"))
        )),
        Rule::NotNode {
            path: p("m/1'/3'/0'")
        }
    );
    let epoch_key = p("m/1'/1'/0'/0'/0'");
    let st = tree.sign(
        Body::Epoch(keyd::chain::Epoch {
            node: epoch_key.clone(),
            epoch: 1,
            keys: tree.keyset(&p("m/1'/1'/0'/0'/0'/0'/1'")),
        }),
        &p("m/1'/1'/0'"),
    );
    assert_eq!(
        rule(verdict_with(&tree, st)),
        Rule::NotNode { path: epoch_key }
    );
    // A statement version this version does not know (signed as such).
    let mut st = tree.certify(&p("m/1'/1'/2'"), "c");
    st.v = 2;
    st.signature = tree
        .signing_key(&p("m/1'"))
        .sign(&st.signed_bytes())
        .to_bytes();
    assert_eq!(rule(verdict_with(&tree, st)), Rule::Version(2));
}

#[test]
fn the_next_child_index_is_one_past_the_highest_certified_and_never_reused() {
    let tree = Tree::new(1);
    let mut c = base(&tree);
    let branch = p("m/1'");
    assert_eq!(
        c.state().next_child_index(&branch),
        2,
        "a and b are 0 and 1"
    );
    assert_eq!(
        c.state().next_child_index(&p("m/1'/1'/0'")),
        0,
        "a has no children"
    );
    // A gap (index 7) moves the next index past it; revoking the highest frees nothing.
    c.append(&branch, tree.certify(&p("m/1'/1'/7'"), "h"), NOW)
        .expect("certify m/1'/1'/7'");
    c.append(&branch, tree.revoke(&p("m/1'/1'/7'"), &branch), NOW)
        .expect("revoke m/1'/1'/7'");
    assert_eq!(c.state().next_child_index(&branch), 8);
    c.append(&branch, tree.certify(&p("m/1'/1'/0'/1'/0'"), "a0"), NOW)
        .expect("certify a child of a");
    assert_eq!(c.state().next_child_index(&p("m/1'/1'/0'")), 1);
    assert_eq!(c.state().next_child_index(&branch), 8);
}

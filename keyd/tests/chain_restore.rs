//! Restoring a stored chain without re-verifying every signature (keyd's start-up), and
//! incremental updates (a node pulling `?since=SEQ`): the same state as full
//! verification, and any change, fork or gap refused.

mod common;

use common::{NOW, Tree, p};
use keyd::chain::{Body, ChainWriter, Entry, Head, Revoke, Rule};
use keyd::derive::KeyPath;

/// genesis, branch m/1', nodes a and b, a's epochs 0 and 1, b revoked by the branch.
fn chain(tree: &Tree) -> ChainWriter {
    let mut w = ChainWriter::new();
    for st in [
        tree.genesis(),
        tree.certify(&p("m/1'"), "branch"),
        tree.certify(&p("m/1'/1'/0'"), "a"),
        tree.certify(&p("m/1'/1'/1'"), "b"),
        tree.epoch(&p("m/1'/1'/0'"), 0),
        tree.epoch(&p("m/1'/1'/0'"), 1),
        tree.revoke(&p("m/1'/1'/1'"), &p("m/1'")),
    ] {
        w.append(st, NOW).expect("valid chain");
    }
    w
}

fn branch_head(tree: &Tree, entries: &[Entry]) -> Head {
    let last = entries.last().expect("entries");
    let branch = p("m/1'");
    Head::sign(
        last.seq,
        last.hash(),
        branch.clone(),
        &tree.signing_key(&branch),
    )
}

fn refused(entries: Vec<Entry>, head: &Head) -> Rule {
    ChainWriter::restore(entries, head).expect_err("must be refused")
}

#[test]
fn restore_gives_the_verified_state_and_appends_stay_checked() {
    let tree = Tree::new(3);
    let w = chain(&tree);
    let head = branch_head(&tree, w.entries());
    let mut r = ChainWriter::restore(w.entries().to_vec(), &head).expect("restore");
    assert_eq!(r.entries(), w.entries());
    for path in [
        "m",
        "m/1'",
        "m/1'/1'/0'",
        "m/1'/1'/0'/0'/1'",
        "m/1'/1'/1'",
        "m/9'",
    ] {
        let path = p(path);
        let (a, b) = (r.state().key(&path), w.state().key(&path));
        assert_eq!(
            a.map(|k| (&k.keys, &k.kind, &k.revoked)),
            b.map(|k| (&k.keys, &k.kind, &k.revoked))
        );
        assert_eq!(
            r.state().status_at(&path, NOW),
            w.state().status_at(&path, NOW)
        );
    }
    assert_eq!(
        r.state().find("a").map(|(p, _)| p.clone()),
        Some(p("m/1'/1'/0'"))
    );
    // Appending after a restore is fully checked again.
    r.append(tree.epoch(&p("m/1'/1'/0'"), 2), NOW)
        .expect("next epoch");
    let mut forged = tree.epoch(&p("m/1'/1'/0'"), 3);
    forged.signature[0] ^= 1;
    assert!(matches!(
        r.append(forged, NOW),
        Err(Rule::BadSignature { .. })
    ));
    // The revoked node signs nothing.
    let by_b = tree.certify_body(&p("m/1'/1'/1'/1'/0'"), "c");
    assert!(r.append(tree.sign(by_b, &p("m/1'/1'/1'")), NOW).is_err());
}

#[test]
fn restore_refuses_changed_entries_and_heads() {
    let tree = Tree::new(4);
    let w = chain(&tree);
    let good = w.entries().to_vec();
    let head = branch_head(&tree, &good);

    // The last entry changed (a revocation's target): the head no longer matches.
    let mut es = good.clone();
    if let Body::Revoke(Revoke { target, .. }) = &mut es[6].statement.body {
        *target = p("m/1'/1'/0'");
    }
    assert_eq!(refused(es, &head), Rule::HeadHash);
    // A signature in the middle changed (restore does not check signatures): the next
    // link breaks.
    let mut es = good.clone();
    es[3].statement.signature[0] ^= 1;
    assert_eq!(refused(es.clone(), &head), Rule::BadPrev);
    // ... and with every later link rewritten, the head still catches it.
    for i in 4..es.len() {
        es[i].prev = es[i - 1].hash();
    }
    assert_eq!(refused(es, &head), Rule::HeadHash);
    // Entries dropped from the end, or from the start.
    assert!(matches!(
        refused(good[..6].to_vec(), &head),
        Rule::HeadMismatch { .. }
    ));
    assert!(matches!(
        refused(good[1..].to_vec(), &head),
        Rule::OutOfOrder { .. }
    ));
    // A head not signed by the branch key, or signed by a node.
    let mut forged = head.clone();
    forged.signature[3] ^= 8;
    assert!(matches!(
        refused(good.clone(), &forged),
        Rule::BadSignature { .. }
    ));
    let node = p("m/1'/1'/0'");
    let last = good.last().expect("entries");
    let by_node = Head::sign(
        last.seq,
        last.hash(),
        node.clone(),
        &tree.signing_key(&node),
    );
    assert_eq!(refused(good.clone(), &by_node), Rule::HeadSigner(node));
    let other = Tree::new(5);
    let by_other = Head::sign(
        last.seq,
        last.hash(),
        KeyPath::root(),
        &other.signing_key(&KeyPath::root()),
    );
    assert!(matches!(
        refused(good, &by_other),
        Rule::BadSignature { .. }
    ));
}

/// A node that holds a verified chain pulls `?since=SEQ` updates and verifies only them.
#[test]
fn incremental_updates_verify_and_refuse_forks_and_gaps() {
    use keyd::chain::{encode_file, verify_file};
    let tree = Tree::new(6);
    let w = chain(&tree);
    let all = w.entries().to_vec();
    let head = branch_head(&tree, &all);
    let full = verify_file(&encode_file(&all, &head)).expect("full");
    let prefix = |n: usize| {
        verify_file(&encode_file(&all[..n], &branch_head(&tree, &all[..n]))).expect("prefix")
    };

    // From where the node stands: three new entries, the same state as the full file.
    let mut v = prefix(4);
    assert_eq!(v.update(&encode_file(&all[4..], &head)).expect("update"), 3);
    assert_eq!(v.entries, full.entries);
    assert_eq!(v.head, full.head);
    assert_eq!(
        v.state.status_at(&p("m/1'/1'/1'"), NOW),
        full.state.status_at(&p("m/1'/1'/1'"), NOW)
    );
    assert_eq!(v.to_file(), encode_file(&all, &head));
    // Overlapping entries are fine when identical; nothing new is fine.
    let mut v = prefix(4);
    assert_eq!(
        v.update(&encode_file(&all[2..], &head)).expect("overlap"),
        3
    );
    assert_eq!(v.update(&encode_file(&[], &head)).expect("nothing new"), 0);

    // A different history for an entry the node holds: refused.
    let mut forked = all.clone();
    forked[3].statement.signature[1] ^= 1;
    let mut v = prefix(5);
    let e = v
        .update(&encode_file(&forked[3..], &head))
        .expect_err("fork");
    assert_eq!(e.rule, Rule::Diverged { seq: 3 });
    // A gap, a missing head, or a head that does not close the update: refused.
    let mut v = prefix(4);
    let e = v.update(&encode_file(&all[5..], &head)).expect_err("gap");
    assert!(matches!(e.rule, Rule::OutOfOrder { .. }));
    let mut v = prefix(4);
    let e = v
        .update(&keyd::chain::cbor_bytes(&all[4]))
        .expect_err("no head");
    assert!(matches!(e.rule, Rule::NoHead | Rule::Decode(_)), "{e}");
    let mut v = prefix(4);
    let e = v
        .update(&encode_file(&all[4..6], &head))
        .expect_err("stale head");
    assert!(matches!(e.rule, Rule::HeadMismatch { .. }));
}

//! Restoring a stored chain without re-verifying every signature: the same state as full
//! verification, and any change to the stored entries or head is refused.

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

//! Named keys `P/2'/n'` in the chain: certified by their owner with a role `key:<type>`,
//! names unique among the owner's live named keys (not across the log), versions as
//! epochs signed by the named key, deleted by a revocation from the owner; no children,
//! no named keys of their own, and refused entries change nothing.

mod common;

use common::{NOW, Tree, p};
use keyd::chain::{Body, Certify, KeyStatus, Rule, verify_file};
use keyd::derive::KeyPath;

fn named(tree: &Tree, path: &KeyPath, name: &str, role: &str) -> Body {
    Body::Certify(Certify {
        path: path.clone(),
        name: name.into(),
        role: role.into(),
        keys: tree.keyset(path),
        not_before: NOW - 1000,
        not_after: u64::MAX,
    })
}

#[test]
fn a_node_certifies_named_keys_and_their_versions() {
    let tree = Tree::new(5);
    let mut c = tree.root_and_branch();
    let (b, web, db) = (p("m/1'"), p("m/1'/1'/0'"), p("m/1'/1'/1'"));
    c.append(&b, tree.certify(&web, "web"), NOW).expect("web");
    c.append(&b, tree.certify(&db, "db"), NOW).expect("db");
    let k0 = web.named_key(0).expect("path");
    let k1 = web.named_key(1).expect("path");
    let mut add =
        |body: Body, signer: &KeyPath| c.append(&b, tree.sign(body, signer), NOW).map(|_| ());
    add(named(&tree, &k0, "backups", "key:aes256-gcm96"), &web).expect("backups");
    // Another node may have a key of the same name, and a node may share it.
    add(
        named(
            &tree,
            &db.named_key(0).expect("path"),
            "backups",
            "key:ed25519",
        ),
        &db,
    )
    .expect("db's backups");
    add(
        named(&tree, &db.named_key(1).expect("path"), "web", "key:ed25519"),
        &db,
    )
    .expect("a named key may share a node's name");
    let taken = add(named(&tree, &k1, "backups", "key:ed25519"), &web);
    assert!(matches!(taken, Err(Rule::NameTaken { .. })), "{taken:?}");
    let by_parent = add(named(&tree, &k1, "signing", "key:ed25519"), &b);
    assert!(
        matches!(by_parent, Err(Rule::NoAuthority { .. })),
        "{by_parent:?}"
    );
    let node_role = add(named(&tree, &k1, "signing", "node"), &web);
    assert!(matches!(node_role, Err(Rule::Bounds(_))), "{node_role:?}");
    let key_role_on_node = add(named(&tree, &p("m/1'/1'/2'"), "cache", "key:ed25519"), &b);
    assert!(
        matches!(key_role_on_node, Err(Rule::Bounds(_))),
        "{key_role_on_node:?}"
    );
    // Versions: the named key certifies its own epochs, forward only.
    for v in [0, 1] {
        let version = tree.epoch(&k0, v);
        c.append(&b, version, NOW).expect("version");
    }
    let by_owner = tree.sign(
        match tree.epoch(&k0, 2).body {
            body @ Body::Epoch(_) => body,
            _ => unreachable!(),
        },
        &web,
    );
    assert!(matches!(
        c.append(&b, by_owner, NOW),
        Err(Rule::NoAuthority { .. })
    ));
    assert!(matches!(
        c.append(&b, tree.epoch(&k0, 1), NOW),
        Err(Rule::EpochBackwards { .. })
    ));
    // No children, no named keys below a named key.
    for below in ["m/1'/1'/0'/2'/0'/1'/0'", "m/1'/1'/0'/2'/0'/2'/0'"] {
        let child = tree.sign(named(&tree, &p(below), "x", "key:ed25519"), &k0);
        let r = c.append(&b, child, NOW);
        assert!(matches!(r, Err(Rule::NotNode { .. })), "{below}: {r:?}");
    }
    let st = c.state();
    assert_eq!(st.next_named_index(&web), 1);
    assert_eq!(st.next_named_index(&db), 2);
    assert_eq!(st.named_key(&web, "backups").map(|(p, _)| p), Some(&k0));
    assert!(st.named_key(&web, "nothing").is_none());
    assert_eq!(
        st.named_keys(&db).map(|(n, _)| n).collect::<Vec<_>>(),
        ["backups", "web"]
    );
    // A named key is not found by name among the nodes.
    assert_eq!(st.find("backups"), None);
    assert_eq!(st.find("web").map(|(p, _)| p), Some(&web));
    let v1 = k0.epoch_key(1).expect("path");
    assert!(matches!(
        st.status_of_key(&tree.keyset(&v1).ed25519, NOW),
        KeyStatus::Valid { current: true, .. }
    ));
    tree.close(&mut c, NOW);
    let back = verify_file(&c.to_file()).expect("the file verifies");
    assert_eq!(
        back.state().named_key(&web, "backups").map(|(p, _)| p),
        Some(&k0)
    );
}

#[test]
fn the_owner_deletes_a_named_key_and_its_name_is_free_again() {
    let tree = Tree::new(6);
    let mut c = tree.root_and_branch();
    let (b, web) = (p("m/1'"), p("m/1'/1'/0'"));
    c.append(&b, tree.certify(&web, "web"), NOW).expect("web");
    let k0 = web.named_key(0).expect("path");
    let k1 = web.named_key(1).expect("path");
    c.append(
        &b,
        tree.sign(named(&tree, &k0, "release", "key:ed25519"), &web),
        NOW,
    )
    .expect("release");
    c.append(&b, tree.epoch(&k0, 0), NOW).expect("v1");
    c.append(&b, tree.revoke(&k0, &web), NOW).expect("deleted");
    let v = k0.epoch_key(0).expect("path");
    assert!(matches!(
        c.state().status_of_key(&tree.keyset(&v).ed25519, NOW),
        KeyStatus::Revoked { .. }
    ));
    c.append(
        &b,
        tree.sign(named(&tree, &k1, "release", "key:ed25519"), &web),
        NOW,
    )
    .expect("the name again, at the next index");
    assert_eq!(
        c.state().named_key(&web, "release").map(|(p, _)| p),
        Some(&k1)
    );
    assert_eq!(c.state().named_keys(&web).count(), 1);
    // Revoking the owner cuts off its named keys.
    c.append(&b, tree.revoke(&web, &b), NOW)
        .expect("web revoked");
    assert_eq!(c.state().named_keys(&web).count(), 0);
}

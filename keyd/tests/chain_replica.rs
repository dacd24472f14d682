//! `replica` statements: a branch records the replicas of its keyd group in its own
//! log — added once, removed once with the install key it was added with, only by the
//! branch; refused entries change nothing, and the records survive a file round trip.

mod common;

use common::{NOW, Tree, m, p};
use keyd::chain::{Body, Replica, Rule, verify_file};

fn replica(name: &str, key: u8, action: &str) -> Body {
    Body::Replica(Replica {
        name: name.into(),
        install_key: [key; 32],
        action: action.into(),
    })
}

#[test]
fn a_branch_adds_and_removes_its_replicas_once() {
    let tree = Tree::new(3);
    let mut c = tree.root_and_branch();
    let b = p("m/1'");
    let mut append = |body: Body, signer| c.append(&b, tree.sign(body, signer), NOW).map(|_| ());
    append(replica("a", 1, "add"), &b).expect("a added");
    append(replica("b", 2, "add"), &b).expect("b added");
    assert!(matches!(
        append(replica("a", 3, "add"), &b),
        Err(Rule::NameTaken { .. })
    ));
    assert!(matches!(
        append(replica("b", 9, "remove"), &b),
        Err(Rule::UnknownTarget { .. })
    ));
    assert!(matches!(
        append(replica("zz", 1, "remove"), &b),
        Err(Rule::UnknownTarget { .. })
    ));
    append(replica("b", 2, "remove"), &b).expect("b removed");
    assert!(matches!(
        append(replica("b", 2, "remove"), &b),
        Err(Rule::AlreadyRevoked { .. })
    ));
    assert!(matches!(
        append(replica("b", 2, "add"), &b),
        Err(Rule::NameTaken { .. })
    ));
    assert!(matches!(
        append(replica("no good", 4, "add"), &b),
        Err(Rule::Bounds(_))
    ));
    assert!(matches!(
        append(replica("c", 4, "pause"), &b),
        Err(Rule::Bounds(_))
    ));
    let records: Vec<(String, [u8; 32], Option<u64>)> = c
        .state()
        .replicas(&b)
        .map(|(n, r)| (n.to_owned(), r.install_key, r.removed))
        .collect();
    assert_eq!(
        records,
        vec![("a".into(), [1; 32], None), ("b".into(), [2; 32], Some(3))]
    );
    tree.close(&mut c, NOW);
    let back = verify_file(&c.to_file()).expect("the file verifies");
    let again: Vec<(String, [u8; 32], Option<u64>)> = back
        .state()
        .replicas(&b)
        .map(|(n, r)| (n.to_owned(), r.install_key, r.removed))
        .collect();
    assert_eq!(again, records);
}

#[test]
fn only_the_branch_records_replicas_in_its_own_log() {
    let tree = Tree::new(4);
    let mut c = tree.root_and_branch();
    let (b, web) = (p("m/1'"), p("m/1'/1'/0'"));
    c.append(&b, tree.certify(&web, "web"), NOW).expect("web");
    let by_node = c.append(&b, tree.sign(replica("a", 1, "add"), &web), NOW);
    assert!(
        matches!(by_node, Err(Rule::NoAuthority { .. })),
        "{by_node:?}"
    );
    let by_root = c.append(&m(), tree.sign(replica("a", 1, "add"), &m()), NOW);
    assert!(
        matches!(by_root, Err(Rule::NoAuthority { .. })),
        "{by_root:?}"
    );
    assert_eq!(c.state().replicas(&b).count(), 0);
}

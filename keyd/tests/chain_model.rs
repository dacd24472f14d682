//! Property test: random trees of certify / epoch / revoke operations, applied both to
//! the chain engine (each statement in its signer's log: the root log for the root, a
//! branch's log for the keys of the branch) and to a plain model of the rules; their
//! verdicts and answers must agree at every step.

mod common;

use common::{NOW, Tree, log_of};
use keyd::chain::{Chain, KeyStatus, verify_file};
use keyd::derive::KeyPath;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Certify child `n` of node number `parent` (modulo the nodes known).
    Certify { parent: usize, n: u32 },
    /// Next epoch (or a repeated / lower one when `back`) of node number `node`.
    Epoch { node: usize, back: bool },
    /// Revoke key number `target` signed by key number `signer`.
    Revoke { target: usize, signer: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<usize>(), 0u32..4).prop_map(|(parent, n)| Op::Certify { parent, n }),
        2 => (any::<usize>(), proptest::bool::weighted(0.2)).prop_map(|(node, back)| Op::Epoch { node, back }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(target, signer)| Op::Revoke { target, signer }),
    ]
}

/// The plain model: a list of keys with their parent links.
#[derive(Default)]
struct Model {
    keys: Vec<MKey>,
}

struct MKey {
    path: KeyPath,
    parent: Option<usize>,
    node: bool,
    /// The log that recorded its revocation, if revoked.
    revoked: Option<KeyPath>,
    epochs: Vec<u32>,
}

impl Model {
    fn find(&self, path: &KeyPath) -> Option<usize> {
        self.keys.iter().position(|k| &k.path == path)
    }
    /// Live for status answers: no revocation of it or an ancestor, in any log.
    fn live(&self, i: usize) -> bool {
        self.live_in(i, &KeyPath::root())
    }
    /// Live as a signer in `log`: a branch log does not see the root log's revocations
    /// (the root log sees every revocation).
    fn live_in(&self, mut i: usize, log: &KeyPath) -> bool {
        loop {
            if let Some(by_log) = &self.keys[i].revoked
                && (log.depth() == 0 || by_log == log)
            {
                return false;
            }
            match self.keys[i].parent {
                Some(p) => i = p,
                None => return true,
            }
        }
    }
    fn is_ancestor_or_self(&self, a: usize, mut b: usize) -> bool {
        loop {
            if a == b {
                return true;
            }
            match self.keys[b].parent {
                Some(p) => b = p,
                None => return false,
            }
        }
    }
    fn nodes(&self) -> Vec<usize> {
        (0..self.keys.len())
            .filter(|&i| self.keys[i].node)
            .collect()
    }
    fn current_epoch(&self, node: usize) -> Option<u32> {
        if !self.live(node) {
            return None;
        }
        let path = &self.keys[node].path;
        self.keys[node].epochs.iter().rev().copied().find(|e| {
            self.find(&path.epoch_key(*e).expect("epoch"))
                .is_some_and(|i| self.keys[i].revoked.is_none())
        })
    }
}

/// What an accepted operation does to the model.
type Effect = Box<dyn FnOnce(&mut Model)>;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_model(ops in proptest::collection::vec(op(), 1..40)) {
        let tree = Tree::new(5);
        let mut c = Chain::new();
        c.append(&KeyPath::root(), tree.genesis(), NOW).expect("genesis");
        let mut m = Model::default();
        m.keys.push(MKey { path: KeyPath::root(), parent: None, node: true, revoked: None, epochs: vec![] });

        for op in ops {
            let nodes = m.nodes();
            let (statement, expect_ok, effect): (_, bool, Effect) = match op {
                Op::Certify { parent, n } => {
                    let parent = nodes[parent % nodes.len()];
                    let ppath = m.keys[parent].path.clone();
                    let path = ppath.child_node(n).expect("child path");
                    let ok = m.live_in(parent, &log_of(&ppath)) && m.find(&path).is_none();
                    let name = format!("n{}", path.indexes().map(|i| i.to_string()).collect::<Vec<_>>().join("-"));
                    let st = tree.certify(&path, &name);
                    (st, ok, Box::new(move |m: &mut Model| m.keys.push(MKey { path, parent: Some(parent), node: true, revoked: None, epochs: vec![] })))
                }
                Op::Epoch { node, back } => {
                    let candidates: Vec<usize> = nodes.iter().copied().filter(|&i| i != 0).collect();
                    if candidates.is_empty() { continue; }
                    let node = candidates[node % candidates.len()];
                    let latest = m.keys[node].epochs.last().copied();
                    let e = match (latest, back) {
                        (Some(l), true) => l,
                        (Some(l), false) => l + 1,
                        (None, _) => 0,
                    };
                    let npath = m.keys[node].path.clone();
                    let ok = m.live_in(node, &log_of(&npath)) && latest.is_none_or(|l| e > l);
                    let st = tree.epoch(&npath, e);
                    let epath = npath.epoch_key(e).expect("epoch path");
                    (st, ok, Box::new(move |m: &mut Model| {
                        m.keys[node].epochs.push(e);
                        m.keys.push(MKey { path: epath, parent: Some(node), node: false, revoked: None, epochs: vec![] });
                    }))
                }
                Op::Revoke { target, signer } => {
                    let target = target % m.keys.len();
                    let signer = signer % m.keys.len();
                    let log = log_of(&m.keys[signer].path);
                    // Epoch keys sign only their own revocation; the root log revokes
                    // level-1 branches only, and a branch is revoked only there.
                    let signer_may_sign = m.keys[signer].node || signer == target;
                    let placed = if signer == 0 {
                        m.keys[target].path.depth() == 1
                    } else {
                        m.keys[target].path != log
                    };
                    let ok = target != 0 && signer_may_sign && placed && m.live_in(signer, &log)
                        && m.keys[target].revoked.is_none() && m.is_ancestor_or_self(signer, target);
                    let st = tree.revoke(&m.keys[target].path, &m.keys[signer].path);
                    (st, ok, Box::new(move |m: &mut Model| m.keys[target].revoked = Some(log)))
                }
            };
            let log = log_of(&statement.signer);
            let got = c.append(&log, statement, NOW).map(drop);
            prop_assert_eq!(got.is_ok(), expect_ok, "engine said {:?}", got.err());
            if expect_ok {
                effect(&mut m);
                // A branch the root log just certified opens its log.
                if let Some(k) = m.keys.last().filter(|k| k.node && k.path.depth() == 1 && c.log(&k.path).is_none()) {
                    let anchor = tree.anchor(&c, &k.path);
                    c.append(&k.path.clone(), anchor, NOW).expect("anchor");
                }
            }
        }

        // Every key's answer agrees with the model.
        let s = c.state();
        prop_assert_eq!(s.len(), m.keys.len());
        for (i, k) in m.keys.iter().enumerate() {
            let status = s.status_of_key(&tree.keyset(&k.path).ed25519, NOW);
            let live = m.live(i);
            let engine_live = matches!(status, KeyStatus::Valid { .. } | KeyStatus::Superseded { .. });
            prop_assert_eq!(engine_live, live, "{} is {:?}", k.path, status);
            if k.node && i != 0 {
                prop_assert_eq!(s.current_epoch(&k.path).map(|(e, _)| e), m.current_epoch(i), "current epoch of {}", k.path);
            }
        }
        // Every revoked key's subtree is cut off.
        for r in s.revoked_paths() {
            for p in s.cut_off_by(r) {
                prop_assert!(!s.status_at(&p, NOW).is_valid());
            }
        }
        // Every log closes with a head by its authority, and the file verifies to the
        // same answers.
        tree.close(&mut c, NOW);
        let v = verify_file(&c.to_file()).expect("the chain file verifies");
        prop_assert_eq!(v.to_file(), c.to_file());
        for k in &m.keys {
            prop_assert_eq!(v.state().status_at(&k.path, NOW), c.state().status_at(&k.path, NOW));
        }
    }
}

//! Property test: random trees of certify / epoch / revoke operations, applied both to
//! the chain engine and to a plain model of the rules; their verdicts and answers must
//! agree at every step.

mod common;

use common::{NOW, Tree};
use keyd::chain::{ChainWriter, KeyStatus};
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
    revoked: bool,
    epochs: Vec<u32>,
}

impl Model {
    fn find(&self, path: &KeyPath) -> Option<usize> {
        self.keys.iter().position(|k| &k.path == path)
    }
    fn live(&self, mut i: usize) -> bool {
        loop {
            if self.keys[i].revoked {
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
                .is_some_and(|i| !self.keys[i].revoked)
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
        let mut w = ChainWriter::new();
        w.append(tree.genesis(), NOW).expect("genesis");
        let mut m = Model::default();
        m.keys.push(MKey { path: KeyPath::root(), parent: None, node: true, revoked: false, epochs: vec![] });

        for op in ops {
            let nodes = m.nodes();
            let (statement, expect_ok, effect): (_, bool, Effect) = match op {
                Op::Certify { parent, n } => {
                    let parent = nodes[parent % nodes.len()];
                    let ppath = m.keys[parent].path.clone();
                    let path = ppath.child_node(n).expect("child path");
                    let ok = m.live(parent) && m.find(&path).is_none();
                    let name = format!("n{}", path.indexes().map(|i| i.to_string()).collect::<Vec<_>>().join("-"));
                    let st = tree.certify(&path, &name);
                    (st, ok, Box::new(move |m: &mut Model| m.keys.push(MKey { path, parent: Some(parent), node: true, revoked: false, epochs: vec![] })))
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
                    let ok = m.live(node) && latest.is_none_or(|l| e > l);
                    let npath = m.keys[node].path.clone();
                    let st = tree.epoch(&npath, e);
                    let epath = npath.epoch_key(e).expect("epoch path");
                    (st, ok, Box::new(move |m: &mut Model| {
                        m.keys[node].epochs.push(e);
                        m.keys.push(MKey { path: epath, parent: Some(node), node: false, revoked: false, epochs: vec![] });
                    }))
                }
                Op::Revoke { target, signer } => {
                    let target = target % m.keys.len();
                    let signer = signer % m.keys.len();
                    // Epoch keys sign only their own revocation.
                    let signer_may_sign = m.keys[signer].node || signer == target;
                    let ok = target != 0 && signer_may_sign && m.live(signer)
                        && !m.keys[target].revoked && m.is_ancestor_or_self(signer, target);
                    let st = tree.revoke(&m.keys[target].path, &m.keys[signer].path);
                    (st, ok, Box::new(move |m: &mut Model| m.keys[target].revoked = true))
                }
            };
            let got = w.append(statement, NOW);
            prop_assert_eq!(got.is_ok(), expect_ok, "engine said {:?}", got.err());
            if expect_ok { effect(&mut m); }
        }

        // Every key's answer agrees with the model.
        let s = w.state();
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
    }
}

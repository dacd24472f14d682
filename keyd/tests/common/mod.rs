//! A software-root key tree that signs statements, for chain tests and benchmarks.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use keyd::chain::{Body, Certify, Epoch, Genesis, KeySet, Revoke, Statement};
use keyd::derive::{KeyPath, SoftwareRoot, derive_node};

/// Unix time the fixtures pretend it is.
pub const NOW: u64 = 1_800_000_000;

/// A tree under a fixed software root.
pub struct Tree {
    root: SoftwareRoot,
}

pub fn p(s: &str) -> KeyPath {
    s.parse().expect("test path")
}

impl Tree {
    pub fn new(seed: u8) -> Self {
        Tree {
            root: SoftwareRoot::danger_from_bytes(&[seed; 64]),
        }
    }

    pub fn signing_key(&self, path: &KeyPath) -> SigningKey {
        derive_node(&self.root, path)
            .expect("software derivation")
            .material()
            .signing_key()
            .clone()
    }

    pub fn keyset(&self, path: &KeyPath) -> KeySet {
        KeySet::from(
            &derive_node(&self.root, path)
                .expect("software derivation")
                .public_keys(),
        )
    }

    pub fn sign(&self, body: Body, signer: &KeyPath) -> Statement {
        Statement::sign(body, signer.clone(), NOW, &self.signing_key(signer))
    }

    pub fn genesis(&self) -> Statement {
        self.sign(
            Body::Genesis(Genesis {
                cluster: "test".into(),
                keys: self.keyset(&KeyPath::root()),
            }),
            &KeyPath::root(),
        )
    }

    pub fn certify_body(&self, path: &KeyPath, name: &str) -> Body {
        Body::Certify(Certify {
            path: path.clone(),
            name: name.into(),
            role: "node".into(),
            keys: self.keyset(path),
            not_before: NOW - 1000,
            not_after: NOW + 1_000_000,
        })
    }

    /// `path` certified by its parent.
    pub fn certify(&self, path: &KeyPath, name: &str) -> Statement {
        let parent = path.parent_node().expect("a node path");
        self.sign(self.certify_body(path, name), &parent)
    }

    pub fn epoch(&self, node: &KeyPath, epoch: u32) -> Statement {
        let key = node.epoch_key(epoch).expect("epoch path");
        self.sign(
            Body::Epoch(Epoch {
                node: node.clone(),
                epoch,
                keys: self.keyset(&key),
            }),
            node,
        )
    }

    pub fn revoke(&self, target: &KeyPath, by: &KeyPath) -> Statement {
        self.sign(
            Body::Revoke(Revoke {
                target: target.clone(),
                reason: "test".into(),
            }),
            by,
        )
    }
}

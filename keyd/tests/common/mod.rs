//! A software-root key tree that signs statements, for chain tests and benchmarks.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use keyd::chain::{
    Anchor, Body, Certify, Chain, Entry, Epoch, Genesis, Head, KeySet, Revoke, Statement,
};
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

/// The root log `m`.
pub fn m() -> KeyPath {
    KeyPath::root()
}

/// The log a key's statements go to: its level-1 branch (`m` for the root).
pub fn log_of(path: &KeyPath) -> KeyPath {
    path.prefix(path.depth().min(1))
}

/// The entry that follows `entries` (a log's entries so far) in `log`, linked to the
/// last one, without any check: for building chains that break rules.
pub fn next_entry(log: &KeyPath, entries: &[Entry], statement: Statement, at: u64) -> Entry {
    Entry {
        log: log.clone(),
        seq: entries.len() as u64,
        prev: entries.last().map_or([0; 32], Entry::hash),
        statement,
        appended_at: at,
    }
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

    /// The anchor opening the log of `branch`, signed by the branch key, naming the
    /// root-log entry of `chain` that certified the branch.
    pub fn anchor(&self, chain: &Chain, branch: &KeyPath) -> Statement {
        let (root_seq, root_entry) = chain
            .entries(&KeyPath::root())
            .iter()
            .find(|e| matches!(&e.statement.body, Body::Certify(c) if c.path == *branch))
            .map(|e| (e.seq, e.hash()))
            .expect("the root log certifies the branch");
        self.sign(
            Body::Anchor(Anchor {
                root_seq,
                root_entry,
            }),
            branch,
        )
    }

    /// Certifies `branch` (a level-1 node) in the root log and opens its log with the
    /// anchor.
    pub fn open_branch(&self, chain: &mut Chain, branch: &KeyPath, name: &str) {
        chain
            .append(&KeyPath::root(), self.certify(branch, name), NOW)
            .expect("the root log certifies the branch");
        let anchor = self.anchor(chain, branch);
        chain.append(branch, anchor, NOW).expect("anchor");
    }

    /// Appends `statement` to the log of its signer (the root log for the root, else
    /// the signer's branch log).
    pub fn append(
        &self,
        chain: &mut Chain,
        statement: Statement,
    ) -> Result<Entry, keyd::chain::Rule> {
        let log = log_of(&statement.signer);
        chain.append(&log, statement, NOW).cloned()
    }

    /// A head of `log` over the last of `entries`, signed at `signed_at` by the log's
    /// authority: the root for `m`, the branch key for a branch log.
    pub fn head(&self, log: &KeyPath, entries: &[Entry], signed_at: u64) -> Head {
        let last = entries.last().expect("entries");
        Head::sign(
            log.clone(),
            last.seq,
            last.hash(),
            signed_at,
            &self.signing_key(log),
        )
    }

    /// Signs a head for every log of `chain` at `signed_at`.
    pub fn close(&self, chain: &mut Chain, signed_at: u64) {
        let logs: Vec<KeyPath> = chain.logs().map(|(l, _)| l.clone()).collect();
        for log in logs {
            chain
                .sign_head(&log, &self.signing_key(&log), signed_at)
                .expect("head");
        }
    }

    /// The base of most tests: the root log (genesis, certify `m/1'` "branch") and the
    /// log of `m/1'` (its anchor), without heads.
    pub fn root_and_branch(&self) -> Chain {
        let mut chain = Chain::new();
        chain
            .append(&KeyPath::root(), self.genesis(), NOW)
            .expect("genesis");
        self.open_branch(&mut chain, &p("m/1'"), "branch");
        chain
    }
}

/// Randomness handed out in order from a fixed list (what the vectors record as the
/// HPKE sender's randomness), for reproducible envelopes and bundles.
pub struct Scripted(pub Vec<u8>);

impl rand_core::TryRng for Scripted {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert!(
            dst.len() <= self.0.len(),
            "the vector records too little randomness"
        );
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Scripted {}

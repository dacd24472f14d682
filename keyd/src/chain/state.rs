//! The verification engine: applies entries one by one into a [`ChainState`].
//!
//! Rules (DESIGN.md section 4): one writer per log: the root log `m` holds only what the
//! root signs, a branch log `m/i'` only what keys of that branch sign, opening with an
//! anchor to the root-log entry that certified the branch; within a log, seq and `prev`
//! link every entry to the one before; authority links up to genesis; a signer must be
//! live (not revoked, itself or an ancestor, and within its validity) when it signs;
//! revocation by any ancestor or by the key itself, irreversible, cascading to the whole
//! subtree (a root-log revocation of a branch cuts off everything in its log); epochs
//! only move forward; names are unique among the live keys of a log (a named key's
//! among its owner's live named keys: see [`super::named`]). Every rule is
//! checked before anything changes, so a refused entry leaves the state as it was.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;
use smallvec::SmallVec;

use super::entry::{Entry, Head};
use super::error::Rule;
pub use super::placement::Link;
use super::placement::in_log;
use super::statement::{Body, KeySet, Statement, TrustLevel};
use crate::derive::{KeyId, KeyPath, PathRole};

/// What a key of the chain is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// The root identity.
    Root {
        /// Cluster name.
        cluster: String,
    },
    /// A node identity key.
    Node {
        /// Its name.
        name: String,
        /// Its role.
        role: String,
        /// Valid from.
        not_before: u64,
        /// Valid until.
        not_after: u64,
        /// Epochs certified so far, ascending (inline up to two).
        epochs: SmallVec<[u32; 2]>,
    },
    /// An epoch key.
    Epoch {
        /// The epoch.
        epoch: u32,
    },
}

/// A revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Who revoked.
    pub by: KeyPath,
    /// The log of the revoking entry.
    pub log: KeyPath,
    /// The revoking entry's seq.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// A key published by the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// Its public keys.
    pub keys: KeySet,
    /// Its key id.
    pub key_id: KeyId,
    /// That entry's seq.
    pub seq: u64,
    /// That entry's time (Unix seconds).
    pub published_at: u64,
    /// What it is.
    pub kind: KeyKind,
    /// Its own revocation, if any (ancestors' are found by [`ChainState::revocation`]);
    /// boxed: few keys are revoked, and every record is held in memory.
    pub revoked: Option<Box<Revocation>>,
    /// The decoded Ed25519 key of the root and the level-1 branches (the keys that sign
    /// most statements and every branch head), kept so that applying an entry does not
    /// decode it again; other nodes' keys are decoded when they sign (192 bytes a node
    /// saved against a point decompression per statement a node signs).
    signer: Option<Box<VerifyingKey>>,
}

/// Another cluster this one trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustRecord {
    /// Its name.
    pub cluster: String,
    /// Trust level.
    pub level: TrustLevel,
    /// Permissions.
    pub permissions: Vec<String>,
    /// Expiry.
    pub expires_at: u64,
    /// The introducer's root fingerprint, when the trust came from an introduction.
    pub introduced_by: Option<String>,
    /// The log of the trusting entry (the root log: cluster-wide; a branch log: that
    /// branch's keyd).
    pub log: KeyPath,
    /// The trusting entry's seq.
    pub seq: u64,
}

/// Everything the chain says, verified.
#[derive(Clone, Debug, Default)]
pub struct ChainState {
    pub(super) keys: super::records::Keys,
    pub(super) by_id: HashMap<KeyId, KeyPath>,
    /// Holders of each name, in the order they were certified (almost always one, held
    /// inline).
    pub(super) names: HashMap<String, SmallVec<[KeyPath; 1]>>,
    pub(super) trusted: HashMap<(KeyPath, [u8; 32]), TrustRecord>,
    pub(super) successor: Option<(KeySet, u64)>,
    pub(super) revocations: Vec<KeyPath>,
    pub(super) links: BTreeMap<KeyPath, Link>,
    /// Root-log entry (seq, hash) certifying each level-1 branch: its log's anchor.
    pub(super) branch_certs: HashMap<KeyPath, (u64, [u8; 32])>,
    /// One past the highest child index certified under each node that has children.
    pub(super) next_child: HashMap<KeyPath, u32>,
    /// Rekey orders not yet followed by an epoch of their node.
    pub(super) rekey_orders: HashMap<KeyPath, RekeyOrdered>,
    /// Each branch's replicas (etcd groups): name → install key and whether removed.
    pub(super) replicas: BTreeMap<(KeyPath, String), ReplicaRecord>,
    /// Each node's named keys.
    pub(super) named: HashMap<KeyPath, super::named::NamedKeys>,
}

/// A replica of a branch's keyd group, as its branch log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRecord {
    /// Its install public key.
    pub install_key: [u8; 32],
    /// Seq of the entry that added it.
    pub added: u64,
    /// Seq of the entry that removed it, if it was.
    pub removed: Option<u64>,
}

/// A rekey order that stands: who gave it, where, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RekeyOrdered {
    /// The ancestor that ordered it.
    pub by: KeyPath,
    /// The log and seq of the order.
    pub log: KeyPath,
    /// Its seq.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

impl ChainState {
    /// An empty state, before genesis.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room for the keys of `entries` more entries (each publishes at most one
    /// key): a restore of a large store grows its maps once instead of doubling them
    /// again and again.
    pub fn reserve(&mut self, entries: usize) {
        self.keys.reserve(entries);
        self.by_id.reserve(entries);
        self.names.reserve(entries / 2);
    }

    /// Where `log` stands (the default, empty link for a log not started).
    pub fn link(&self, log: &KeyPath) -> Link {
        self.links.get(log).copied().unwrap_or_default()
    }

    /// Every started log, root log first, then branches in path order.
    pub fn logs(&self) -> impl Iterator<Item = (&KeyPath, &Link)> {
        self.links.iter()
    }

    /// Verifies `entry` against every rule and applies it; on error nothing changes.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), Rule> {
        self.apply_hashed(entry, entry.hash())
    }

    /// [`ChainState::apply`] for an entry whose hash the caller already computed from
    /// its canonical encoding (as [`super::Records`] does), saving a re-encoding.
    pub fn apply_hashed(&mut self, entry: &Entry, hash: [u8; 32]) -> Result<(), Rule> {
        let link = self.check_link(entry)?;
        let st = &entry.statement;
        self.check_placement(entry, &link)?;
        let signer = self.check_signer(entry, &link)?;
        if !st.verify(&signer) {
            return Err(Rule::BadSignature {
                signer: st.signer.clone(),
            });
        }
        let new_key = self.check_rules(st, &entry.log)?;
        self.commit(entry, hash, new_key);
        Ok(())
    }

    /// Applies an entry that was verified by [`ChainState::apply`] before it was stored,
    /// checking only its link (seq and `prev`) and its place, not its signature or rules:
    /// restoring a stored log this way costs a hash per entry instead of signature checks
    /// and key decoding. Only for a log whose head is then checked with
    /// [`ChainState::verify_head`]: the signed head covers the hash of the last entry,
    /// which covers every entry before it, so a changed entry fails there.
    pub fn apply_trusted(&mut self, entry: &Entry) -> Result<(), Rule> {
        self.apply_trusted_hashed(entry, entry.hash())
    }

    /// [`ChainState::apply_trusted`] for an entry whose hash was computed from the bytes
    /// it was stored as.
    pub fn apply_trusted_hashed(&mut self, entry: &Entry, hash: [u8; 32]) -> Result<(), Rule> {
        let link = self.check_link(entry)?;
        self.check_placement(entry, &link)?;
        self.commit(entry, hash, None);
        Ok(())
    }

    /// Verifies a head: it names the last entry of its log and is signed by the log's
    /// authority (the root for `m`, the branch key for `m/i'`).
    pub fn verify_head(&self, head: &Head) -> Result<(), Rule> {
        let link = self
            .links
            .get(&head.log)
            .copied()
            .ok_or_else(|| Rule::UnknownLog {
                log: head.log.clone(),
            })?;
        let last = i128::from(link.next_seq) - 1;
        if i128::from(head.seq) != last {
            return Err(Rule::HeadMismatch {
                seq: head.seq,
                last,
            });
        }
        if head.hash != link.last_hash {
            return Err(Rule::HeadHash);
        }
        let key = self.live_key(&head.log, link.last_appended_at, &head.log)?;
        if !head.verify(&key) {
            return Err(Rule::BadSignature {
                signer: head.log.clone(),
            });
        }
        Ok(())
    }

    /// The key that must have signed `entry`'s statement, checked to be live when it
    /// was appended.
    fn check_signer(&self, entry: &Entry, link: &Link) -> Result<VerifyingKey, Rule> {
        let st = &entry.statement;
        match &st.body {
            Body::Genesis(g) if link.next_seq == 0 => {
                if st.signer != KeyPath::root() {
                    return Err(Rule::GenesisSigner);
                }
                g.keys.verifying_key().ok_or(Rule::BadKey)
            }
            _ => self.live_key(&st.signer, entry.appended_at, &entry.log),
        }
    }

    /// The verifying key at `path`, if that key is live at `at` as seen from `log`: a
    /// branch log is written by its branch alone, so what the root log says of the
    /// branch (its revocation) does not undo the branch's own entries; it cuts off
    /// every key they publish instead.
    fn live_key(&self, path: &KeyPath, at: u64, log: &KeyPath) -> Result<VerifyingKey, Rule> {
        let record = self.keys.get(path).ok_or_else(|| Rule::UnknownSigner {
            signer: path.clone(),
        })?;
        if let Some((revoked, r)) =
            self.revocation_where(path, |r| log.depth() == 0 || r.log == *log)
        {
            return Err(Rule::SignerRevoked {
                signer: path.clone(),
                revoked: revoked.clone(),
                by: r.by.clone(),
                seq: r.seq,
            });
        }
        if let KeyKind::Node {
            not_before,
            not_after,
            ..
        } = record.kind
            && !(not_before..=not_after).contains(&at)
        {
            return Err(Rule::SignerExpired {
                signer: path.clone(),
                at,
                not_before,
                not_after,
            });
        }
        match &record.signer {
            Some(key) => Ok(**key),
            None => record.keys.verifying_key().ok_or(Rule::BadKey),
        }
    }

    /// The rekey order that stands for node `path` (given, and not yet followed by an
    /// epoch of the node).
    pub fn rekey_order(&self, path: &KeyPath) -> Option<&RekeyOrdered> {
        self.rekey_orders.get(path)
    }

    /// The revocation that cuts `path` off: its own or an ancestor's.
    pub fn revocation(&self, path: &KeyPath) -> Option<(&KeyPath, &Revocation)> {
        self.revocation_where(path, |_| true)
    }

    /// The highest revocation of `path` or an ancestor that `counts`.
    fn revocation_where(
        &self,
        path: &KeyPath,
        counts: impl Fn(&Revocation) -> bool,
    ) -> Option<(&KeyPath, &Revocation)> {
        if self.revocations.is_empty() {
            return None;
        }
        let revoked = |p: &KeyPath| {
            self.keys
                .get_key_value(p)
                .and_then(|(p, rec)| rec.revoked.as_deref().map(|r| (p, r)))
                .filter(|(_, r)| counts(r))
        };
        // Few revocations: test each; many: walk the lineage.
        if self.revocations.len() <= path.depth() {
            return self
                .revocations
                .iter()
                .filter(|r| r.is_prefix_of(path))
                .filter_map(revoked)
                .min_by_key(|(p, _)| p.depth());
        }
        path.node_lineage().find_map(|p| revoked(&p))
    }

    fn is_live(&self, path: &KeyPath) -> bool {
        self.keys.contains_key(path) && self.revocation(path).is_none()
    }

    pub(super) fn no_authority(st: &Statement, why: String) -> Rule {
        Rule::NoAuthority {
            signer: st.signer.clone(),
            kind: st.body.kind(),
            why,
        }
    }

    /// Checks a key a statement publishes: a valid point, not published before.
    fn check_new_keys(&self, keys: &KeySet) -> Result<Option<VerifyingKey>, Rule> {
        let key = keys.verifying_key().ok_or(Rule::BadKey)?;
        if let Some(other) = self.by_id.get(&keys.key_id()) {
            return Err(Rule::KeyReused {
                other: other.clone(),
            });
        }
        Ok(Some(key))
    }

    /// Checks every rule for `st`, appended to `log`; returns the decoded key it
    /// publishes, if any.
    fn check_rules(&self, st: &Statement, log: &KeyPath) -> Result<Option<VerifyingKey>, Rule> {
        // A succession is the old root's last word.
        if log.depth() == 0
            && let Some((_, seq)) = self.successor
        {
            return Err(Rule::AfterSuccession(seq));
        }
        // Epoch keys sign data, not statements, except to revoke themselves.
        if let Some(KeyRecord {
            kind: KeyKind::Epoch { .. },
            ..
        }) = self.keys.get(&st.signer)
            && !matches!(&st.body, Body::Revoke(r) if r.target == st.signer)
        {
            return Err(Self::no_authority(
                st,
                "an epoch key signs only its own revocation".into(),
            ));
        }
        match &st.body {
            Body::Genesis(g) => self.check_new_keys(&g.keys),
            Body::Certify(c) => {
                let parent = c.path.parent_node().ok_or_else(|| Rule::NotNode {
                    path: c.path.clone(),
                })?;
                if st.signer != parent {
                    return Err(Self::no_authority(
                        st,
                        format!("only the parent {parent} certifies {}", c.path),
                    ));
                }
                if let Some(existing) = self.keys.get(&c.path) {
                    return Err(Rule::AlreadyCertified {
                        path: c.path.clone(),
                        seq: existing.seq,
                    });
                }
                if matches!(c.path.role(), PathRole::Named { .. }) {
                    self.check_named_name(&parent, c)?;
                } else if let Some(holder) = self
                    .names
                    .get(&c.name)
                    .and_then(|holders| holders.iter().find(|h| in_log(h, log) && self.is_live(h)))
                {
                    return Err(Rule::NameTaken {
                        name: c.name.clone(),
                        path: holder.clone(),
                    });
                }
                self.check_new_keys(&c.keys)
            }
            Body::Epoch(e) => {
                let record = self.keys.get(&e.node).ok_or_else(|| Rule::UnknownTarget {
                    target: e.node.clone(),
                })?;
                let latest = match &record.kind {
                    KeyKind::Root { .. } => return Err(Rule::RootEpoch),
                    KeyKind::Epoch { .. } => {
                        return Err(Rule::NotNode {
                            path: e.node.clone(),
                        });
                    }
                    KeyKind::Node { epochs, .. } => epochs.last().copied(),
                };
                if st.signer != e.node {
                    return Err(Self::no_authority(
                        st,
                        format!("only {} certifies its own epochs", e.node),
                    ));
                }
                if let Some(latest) = latest
                    && e.epoch <= latest
                {
                    return Err(Rule::EpochBackwards {
                        node: e.node.clone(),
                        epoch: e.epoch,
                        latest,
                    });
                }
                if e.node.epoch_key(e.epoch).is_none() {
                    return Err(Rule::Bounds("epoch number out of range".into()));
                }
                self.check_new_keys(&e.keys)
            }
            Body::Revoke(r) => {
                if r.target.depth() == 0 {
                    return Err(Rule::RootRevoke);
                }
                let record = self
                    .keys
                    .get(&r.target)
                    .ok_or_else(|| Rule::UnknownTarget {
                        target: r.target.clone(),
                    })?;
                if let Some(prior) = &record.revoked {
                    return Err(Rule::AlreadyRevoked {
                        target: r.target.clone(),
                        seq: prior.seq,
                    });
                }
                if !st.signer.is_prefix_of(&r.target) {
                    return Err(Self::no_authority(
                        st,
                        format!("{} may be revoked only by itself or an ancestor", r.target),
                    ));
                }
                Ok(None)
            }
            Body::Trust(t) => {
                Self::check_cluster_signer(st)?;
                VerifyingKey::from_bytes(&t.root).map_err(|_| Rule::BadKey)?;
                if self.root_keys().is_some_and(|k| k.ed25519 == t.root) {
                    return Err(Rule::SelfTrust);
                }
                if self.trusted.contains_key(&(log.clone(), t.root)) {
                    return Err(Rule::AlreadyTrusted(hex::encode(t.root)));
                }
                Ok(None)
            }
            Body::Untrust(u) => {
                Self::check_cluster_signer(st)?;
                if !self.trusted.contains_key(&(log.clone(), u.root)) {
                    return Err(Rule::NotTrusted(hex::encode(u.root)));
                }
                Ok(None)
            }
            Body::Anchor(_) => Ok(None),
            Body::RekeyOrder(o) => self.check_rekey_order(st, o),
            Body::Replica(r) => self.check_replica(log, st, r),
            Body::Extend(x) => self.check_extend(st, x),
            Body::Succession(s) => {
                if st.signer.depth() != 0 {
                    return Err(Self::no_authority(
                        st,
                        "only the root names its successor".into(),
                    ));
                }
                self.check_new_keys(&s.new_root)
            }
        }
    }

    fn check_cluster_signer(st: &Statement) -> Result<(), Rule> {
        if st.signer.depth() > 1 {
            return Err(Self::no_authority(
                st,
                "trust is given by the root or a level-1 branch".into(),
            ));
        }
        Ok(())
    }

    fn insert_key(
        &mut self,
        path: KeyPath,
        keys: KeySet,
        entry: &Entry,
        kind: KeyKind,
        decoded: Option<VerifyingKey>,
    ) {
        let key_id = keys.key_id();
        self.by_id.insert(key_id, path.clone());
        if let (KeyKind::Node { .. }, PathRole::Node, Some(parent), Some(index)) = (
            &kind,
            path.role(),
            path.parent_node(),
            path.indexes().last(),
        ) {
            let next = self.next_child.entry(parent).or_default();
            *next = (*next).max(index.saturating_add(1));
        }
        // Only the root and the branches keep their decoded form.
        let signer = match kind {
            KeyKind::Epoch { .. } => None,
            _ if path.depth() > 1 => None,
            _ => decoded.map(Box::new),
        };
        self.keys.insert(
            path,
            KeyRecord {
                keys,
                key_id,
                seq: entry.seq,
                published_at: entry.appended_at,
                kind,
                revoked: None,
                signer,
            },
        );
    }

    fn commit(&mut self, entry: &Entry, hash: [u8; 32], decoded: Option<VerifyingKey>) {
        let (st, seq, log) = (&entry.statement, entry.seq, &entry.log);
        match &st.body {
            Body::Genesis(g) => self.insert_key(
                KeyPath::root(),
                g.keys,
                entry,
                KeyKind::Root {
                    cluster: g.cluster.clone(),
                },
                decoded,
            ),
            Body::Certify(c) => {
                if let PathRole::Named { owner, index } = c.path.role() {
                    self.commit_named(&owner, index, c);
                } else {
                    self.names
                        .entry(c.name.clone())
                        .or_default()
                        .push(c.path.clone());
                }
                if c.path.depth() == 1 {
                    self.branch_certs.insert(c.path.clone(), (seq, hash));
                }
                self.insert_key(
                    c.path.clone(),
                    c.keys,
                    entry,
                    KeyKind::Node {
                        name: c.name.clone(),
                        role: c.role.clone(),
                        not_before: c.not_before,
                        not_after: c.not_after,
                        epochs: SmallVec::new(),
                    },
                    decoded,
                );
            }
            Body::Epoch(e) => {
                if let Some(KeyRecord {
                    kind: KeyKind::Node { epochs, .. },
                    ..
                }) = self.keys.get_mut(&e.node)
                {
                    epochs.push(e.epoch);
                }
                // A new epoch fulfils any order to rekey.
                self.rekey_orders.remove(&e.node);
                if let Some(path) = e.node.epoch_key(e.epoch) {
                    self.insert_key(path, e.keys, entry, KeyKind::Epoch { epoch: e.epoch }, None);
                }
            }
            Body::Revoke(r) => {
                if let Some(record) = self.keys.get_mut(&r.target) {
                    record.revoked = Some(Box::new(Revocation {
                        by: st.signer.clone(),
                        log: log.clone(),
                        seq,
                        reason: r.reason.clone(),
                    }));
                    self.revocations.push(r.target.clone());
                }
            }
            Body::Trust(t) => {
                self.trusted.insert(
                    (log.clone(), t.root),
                    TrustRecord {
                        cluster: t.cluster.clone(),
                        level: t.level,
                        permissions: t.permissions.clone(),
                        expires_at: t.expires_at,
                        introduced_by: t.introduced_by.clone(),
                        log: log.clone(),
                        seq,
                    },
                );
            }
            Body::Untrust(u) => {
                self.trusted.remove(&(log.clone(), u.root));
            }
            Body::Succession(s) => self.successor = Some((s.new_root, seq)),
            Body::Anchor(_) => {}
            Body::RekeyOrder(o) => {
                self.rekey_orders.insert(
                    o.node.clone(),
                    RekeyOrdered {
                        by: st.signer.clone(),
                        log: log.clone(),
                        seq,
                        reason: o.reason.clone(),
                    },
                );
            }
            Body::Replica(r) => self.apply_replica(log, r, seq),
            Body::Extend(x) => {
                if let Some(KeyRecord {
                    kind: KeyKind::Node { not_after, .. },
                    ..
                }) = self.keys.get_mut(&x.node)
                {
                    *not_after = x.not_after;
                }
            }
        }
        let link = self.links.entry(log.clone()).or_default();
        link.next_seq += 1;
        link.last_hash = hash;
        link.last_appended_at = entry.appended_at;
    }

    /// The root identity keys, after genesis.
    pub fn root_keys(&self) -> Option<&KeySet> {
        self.keys.get(&KeyPath::root()).map(|r| &r.keys)
    }
}

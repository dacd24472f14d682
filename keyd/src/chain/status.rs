//! Questions the verified state answers offline.

use super::state::{ChainState, KeyKind, KeyRecord, Revocation, TrustRecord};
use super::statement::KeySet;
use crate::derive::{KeyId, KeyPath, PathRole};

/// Whether a public key is a valid key of this cluster now, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Valid. For an epoch key, `current` says whether it is its node's current
    /// signing key.
    Valid {
        /// Where it is.
        path: KeyPath,
        /// Whether it is the current epoch (always true for identity keys).
        current: bool,
    },
    /// Not a key of this chain.
    Unknown,
    /// Revoked, itself or through an ancestor.
    Revoked {
        /// Where it is.
        path: KeyPath,
        /// The revoked key: `path` itself or an ancestor.
        revoked: KeyPath,
        /// Who revoked it.
        by: KeyPath,
        /// The revoking entry.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// An epoch key with a newer live epoch: still decrypts, no longer signs.
    Superseded {
        /// Where it is.
        path: KeyPath,
        /// Its epoch.
        epoch: u32,
        /// The node's current epoch.
        current: u32,
    },
    /// A key of a root that named its successor: the whole tree of that root is
    /// replaced; its keys open old envelopes until retired, and vouch for nothing.
    Succeeded {
        /// Where it is.
        path: KeyPath,
        /// Seq of the succession in the root log.
        seq: u64,
    },
    /// Outside its validity window (its own or its node's).
    Expired {
        /// Where it is.
        path: KeyPath,
        /// Validity start.
        not_before: u64,
        /// Validity end.
        not_after: u64,
    },
}

impl KeyStatus {
    /// Whether the key is valid (current or not).
    pub fn is_valid(&self) -> bool {
        matches!(self, KeyStatus::Valid { .. })
    }

    /// A one-word name: `valid`, `unknown`, `revoked`, `superseded`, `succeeded`,
    /// `expired`.
    pub fn name(&self) -> &'static str {
        match self {
            KeyStatus::Valid { .. } => "valid",
            KeyStatus::Unknown => "unknown",
            KeyStatus::Revoked { .. } => "revoked",
            KeyStatus::Superseded { .. } => "superseded",
            KeyStatus::Succeeded { .. } => "succeeded",
            KeyStatus::Expired { .. } => "expired",
        }
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyStatus::Valid { path, .. } => write!(f, "{path} is valid"),
            KeyStatus::Unknown => f.write_str("not a key of this cluster"),
            KeyStatus::Revoked {
                path,
                revoked,
                by,
                seq,
                reason,
            } if path == revoked => {
                write!(f, "{path} was revoked by {by} at seq {seq} ({reason})")
            }
            KeyStatus::Revoked {
                path,
                revoked,
                by,
                seq,
                reason,
            } => write!(
                f,
                "{path} is cut off: its ancestor {revoked} was revoked by {by} at seq {seq} ({reason})"
            ),
            KeyStatus::Superseded {
                path,
                epoch,
                current,
            } => {
                write!(f, "{path} is epoch {epoch}; the current epoch is {current}")
            }
            KeyStatus::Succeeded { path, seq } => write!(
                f,
                "{path} is a key of a replaced root: the root named its successor at seq {seq} of the root log"
            ),
            KeyStatus::Expired {
                path, not_after, ..
            } => write!(f, "{path} expired at {}", crate::rfc3339(*not_after)),
        }
    }
}

impl ChainState {
    /// Number of keys published (root, nodes and epoch keys).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing has been applied.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key at `path`.
    pub fn key(&self, path: &KeyPath) -> Option<&KeyRecord> {
        self.keys.get(path)
    }

    /// The child index after the highest one certified under `parent` (0 when it has
    /// no children): where the next child goes, in constant time however many it has.
    pub fn next_child_index(&self, parent: &KeyPath) -> u32 {
        self.next_child.get(parent).copied().unwrap_or(0)
    }

    /// All keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = (&KeyPath, &KeyRecord)> {
        self.keys.iter()
    }

    /// The name of the node at `path`.
    pub fn name_of(&self, path: &KeyPath) -> Option<&str> {
        match &self.keys.get(path)?.kind {
            KeyKind::Node { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The path of the key with this key id.
    pub fn path_of(&self, id: &KeyId) -> Option<&KeyPath> {
        self.by_id.get(id)
    }

    /// A node by name or any key by path (`m/…`). Names are unique among the live
    /// keys of one log (branch), not across the cluster: of the holders of a name, this
    /// is the live one with the lowest path, else the last certified.
    pub fn find(&self, name_or_path: &str) -> Option<(&KeyPath, &KeyRecord)> {
        self.find_in(name_or_path, &KeyPath::root())
    }

    /// [`ChainState::find`], preferring holders of a name below `scope` (a keyd's
    /// branch: its own nodes before other branches' nodes of the same name).
    pub fn find_in(&self, name_or_path: &str, scope: &KeyPath) -> Option<(&KeyPath, &KeyRecord)> {
        if name_or_path == "m" || name_or_path.starts_with("m/") {
            let path: KeyPath = name_or_path.parse().ok()?;
            return self.keys.get_key_value(&path);
        }
        let holders = self.names.get(name_or_path)?;
        let live = |p: &&KeyPath| self.revocation(p).is_none();
        let path = holders
            .iter()
            .filter(|p| scope.is_prefix_of(p))
            .filter(live)
            .min()
            .or_else(|| holders.iter().filter(live).min())
            .or_else(|| holders.iter().rev().find(|p| scope.is_prefix_of(p)))
            .or_else(|| holders.last())?;
        self.keys.get_key_value(path)
    }

    /// Trusted clusters, by root key (a root trusted in several logs appears once per
    /// log).
    pub fn trusted(&self) -> impl Iterator<Item = (&[u8; 32], &TrustRecord)> {
        self.trusted.iter().map(|((_, root), t)| (root, t))
    }

    /// The successor the root named, if any.
    pub fn successor(&self) -> Option<&KeySet> {
        self.successor.as_ref().map(|(k, _)| k)
    }

    /// Paths revoked by their own revocation statement, in chain order.
    pub fn revoked_paths(&self) -> &[KeyPath] {
        &self.revocations
    }

    /// The status of an Ed25519 public key at time `now` (Unix seconds).
    pub fn status_of_key(&self, ed25519: &[u8; 32], now: u64) -> KeyStatus {
        match self.by_id.get(&KeyId::of_bytes(ed25519)) {
            Some(path)
                if self
                    .keys
                    .get(path)
                    .is_some_and(|r| &r.keys.ed25519 == ed25519) =>
            {
                self.status_at(path, now)
            }
            _ => KeyStatus::Unknown,
        }
    }

    /// The status of the key at `path` at time `now`.
    pub fn status_at(&self, path: &KeyPath, now: u64) -> KeyStatus {
        let Some(record) = self.keys.get(path) else {
            return KeyStatus::Unknown;
        };
        if let Some((revoked, r)) = self.revocation(path) {
            return KeyStatus::Revoked {
                path: path.clone(),
                revoked: revoked.clone(),
                by: r.by.clone(),
                seq: r.seq,
                reason: r.reason.clone(),
            };
        }
        // Validity windows of the node lineage (an epoch key inherits its node's).
        for node in path.node_lineage() {
            if let Some(KeyRecord {
                kind:
                    KeyKind::Node {
                        not_before,
                        not_after,
                        ..
                    },
                ..
            }) = self.keys.get(&node)
                && !(*not_before..=*not_after).contains(&now)
            {
                return KeyStatus::Expired {
                    path: path.clone(),
                    not_before: *not_before,
                    not_after: *not_after,
                };
            }
        }
        if let Some((_, seq)) = self.successor {
            return KeyStatus::Succeeded {
                path: path.clone(),
                seq,
            };
        }
        if let (KeyKind::Epoch { epoch }, PathRole::Epoch { node, .. }) =
            (&record.kind, path.role())
        {
            let current = self.current_epoch(&node).map(|(e, _)| e);
            if let Some(current) = current
                && current != *epoch
            {
                return KeyStatus::Superseded {
                    path: path.clone(),
                    epoch: *epoch,
                    current,
                };
            }
        }
        KeyStatus::Valid {
            path: path.clone(),
            current: true,
        }
    }

    /// A node's current signing key: its highest non-revoked epoch.
    pub fn current_epoch(&self, node: &KeyPath) -> Option<(u32, &KeyRecord)> {
        let KeyKind::Node { epochs, .. } = &self.keys.get(node)?.kind else {
            return None;
        };
        if self.revocation(node).is_some() {
            return None;
        }
        epochs.iter().rev().find_map(|&epoch| {
            let record = self.keys.get(&node.epoch_key(epoch)?)?;
            record.revoked.is_none().then_some((epoch, record))
        })
    }

    /// When the epoch key at `path` was superseded: the time of its node's next epoch
    /// (`None` while it is the newest, or for a path that is not an epoch key).
    pub fn superseded_at(&self, path: &KeyPath) -> Option<u64> {
        let (KeyKind::Epoch { epoch }, PathRole::Epoch { node, .. }) =
            (&self.keys.get(path)?.kind, path.role())
        else {
            return None;
        };
        let KeyKind::Node { epochs, .. } = &self.keys.get(&node)?.kind else {
            return None;
        };
        let next = epochs.iter().find(|e| *e > epoch)?;
        Some(self.keys.get(&node.epoch_key(*next)?)?.published_at)
    }

    /// The keys a revocation of `target` cuts off: `target` and every key below it,
    /// sorted by path.
    pub fn cut_off_by(&self, target: &KeyPath) -> Vec<KeyPath> {
        let mut out: Vec<KeyPath> = self
            .keys
            .iter()
            .map(|(p, _)| p)
            .filter(|p| target.is_prefix_of(p))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// The revocation record of `path` itself.
    pub fn own_revocation(&self, path: &KeyPath) -> Option<&Revocation> {
        self.keys.get(path)?.revoked.as_deref()
    }
}

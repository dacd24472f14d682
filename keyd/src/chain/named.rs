//! Named keys (DESIGN.md section 2): a node `P` certifies its named keys `P/2'/n'` with
//! their name and a role `key:<type>`, like a child; their versions are their epochs.
//! A name is unique among the owner's live named keys (not across the log: two nodes
//! may each have a key `backups`), and a deleted (revoked) key's name may be used again.

use std::collections::BTreeMap;

use super::error::Rule;
use super::state::{ChainState, KeyRecord};
use super::statement::Certify;
use crate::derive::KeyPath;

/// The role prefix of named keys: `key:ed25519`, `key:aes256-gcm96`. Only named-key
/// paths carry it, and they carry nothing else.
pub const NAMED_ROLE_PREFIX: &str = "key:";

/// The named keys of one owner node.
#[derive(Clone, Debug, Default)]
pub(super) struct NamedKeys {
    /// One past the highest index certified: where the next named key goes.
    next: u32,
    /// The holders of each name, in the order they were certified.
    by_name: BTreeMap<String, Vec<KeyPath>>,
}

impl ChainState {
    /// For a certify of the named key `c.path` owned by `owner`: its name is not held by
    /// another live named key of the owner.
    pub(super) fn check_named_name(&self, owner: &KeyPath, c: &Certify) -> Result<(), Rule> {
        let holder = self
            .named
            .get(owner)
            .and_then(|n| n.by_name.get(&c.name))
            .and_then(|holders| holders.iter().find(|h| self.revocation(h).is_none()));
        match holder {
            Some(path) => Err(Rule::NameTaken {
                name: c.name.clone(),
                path: path.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the named key `c.path` of `owner` (index `index`).
    pub(super) fn commit_named(&mut self, owner: &KeyPath, index: u32, c: &Certify) {
        let named = self.named.entry(owner.clone()).or_default();
        named.next = named.next.max(index.saturating_add(1));
        named
            .by_name
            .entry(c.name.clone())
            .or_default()
            .push(c.path.clone());
    }

    /// The index after the highest named key certified under `owner` (0 when none).
    pub fn next_named_index(&self, owner: &KeyPath) -> u32 {
        self.named.get(owner).map_or(0, |n| n.next)
    }

    /// The owner's named key called `name`: the live holder, else the last certified.
    pub fn named_key(&self, owner: &KeyPath, name: &str) -> Option<(&KeyPath, &KeyRecord)> {
        let holders = self.named.get(owner)?.by_name.get(name)?;
        let path = holders
            .iter()
            .find(|p| self.revocation(p).is_none())
            .or_else(|| holders.last())?;
        self.keys.get_key_value(path)
    }

    /// The owner's live named keys, by name.
    pub fn named_keys(&self, owner: &KeyPath) -> impl Iterator<Item = (&str, &KeyPath)> {
        self.named.get(owner).into_iter().flat_map(move |n| {
            n.by_name.iter().filter_map(move |(name, holders)| {
                holders
                    .iter()
                    .find(|p| self.revocation(p).is_none())
                    .map(|p| (name.as_str(), p))
            })
        })
    }
}

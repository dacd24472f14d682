//! The key records of the chain state, by path.

use std::collections::HashMap;

use super::state::KeyRecord;
use crate::derive::KeyPath;

/// Every key the chain publishes, by path. Records are boxed: a slot of the map holds
/// the path and a pointer (40 bytes) rather than the whole record (over 200), so the
/// slots a hash map keeps free (up to half of them just after it grows) cost little.
#[derive(Clone, Debug, Default)]
pub(super) struct Keys(HashMap<KeyPath, Box<KeyRecord>>);

impl Keys {
    pub(super) fn get(&self, path: &KeyPath) -> Option<&KeyRecord> {
        self.0.get(path).map(|r| &**r)
    }

    pub(super) fn get_mut(&mut self, path: &KeyPath) -> Option<&mut KeyRecord> {
        self.0.get_mut(path).map(|r| &mut **r)
    }

    pub(super) fn get_key_value(&self, path: &KeyPath) -> Option<(&KeyPath, &KeyRecord)> {
        self.0.get_key_value(path).map(|(p, r)| (p, &**r))
    }

    pub(super) fn contains_key(&self, path: &KeyPath) -> bool {
        self.0.contains_key(path)
    }

    pub(super) fn insert(&mut self, path: KeyPath, record: KeyRecord) {
        self.0.insert(path, Box::new(record));
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&KeyPath, &KeyRecord)> {
        self.0.iter().map(|(p, r)| (p, &**r))
    }

    pub(super) fn reserve(&mut self, more: usize) {
        self.0.reserve(more);
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

//! One log as a holder keeps it: its entries in memory (all of them, or only the newer
//! ones when the holder serves the older ones from its store) and its latest head.

use super::entry::{Entry, Head};

/// One log as held: its entries in order, and the latest verified head (which may
/// name an earlier entry while a paged pull is under way).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// The entries held in memory, in order: every entry of the log from seq 0, unless
    /// the older ones were offloaded ([`Log::first_held`] says from which seq on).
    pub entries: Vec<Entry>,
    /// The latest verified head.
    pub head: Option<Head>,
    /// The hashes of the offloaded entries, from seq 0: what a repeated entry is
    /// compared with, and what a row read back from the store must hash to.
    offloaded: Vec<[u8; 32]>,
}

impl Log {
    /// A log holding `entries` under `head`.
    pub(super) fn new(entries: Vec<Entry>, head: Head) -> Self {
        Log {
            entries,
            head: Some(head),
            offloaded: Vec::new(),
        }
    }

    /// A log whose entries are kept by its holder's store, not in memory: only their
    /// hashes (`hashes[i]` of entry `i`, checked by the caller) and the head.
    pub(super) fn offloaded(hashes: Vec<[u8; 32]>, head: Head) -> Self {
        Log {
            entries: Vec::new(),
            head: Some(head),
            offloaded: hashes,
        }
    }

    /// Entries in the log, held or not.
    pub fn len(&self) -> u64 {
        (self.offloaded.len() + self.entries.len()) as u64
    }

    /// Whether the log has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seq of the first entry held in memory (0 unless older ones were offloaded).
    pub fn first_held(&self) -> u64 {
        self.offloaded.len() as u64
    }

    /// The entry at `seq`, if held in memory.
    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        let i = usize::try_from(seq.checked_sub(self.first_held())?).ok()?;
        self.entries.get(i)
    }

    /// The hash of the entry at `seq`, held or offloaded.
    pub fn hash(&self, seq: u64) -> Option<[u8; 32]> {
        if seq < self.first_held() {
            return usize::try_from(seq)
                .ok()
                .and_then(|i| self.offloaded.get(i).copied());
        }
        self.entry(seq).map(Entry::hash)
    }

    /// The entries from `seq` on, when all of them are held in memory.
    pub fn entries_from(&self, seq: u64) -> Option<&[Entry]> {
        let i = usize::try_from(seq.checked_sub(self.first_held())?).ok()?;
        Some(&self.entries[i.min(self.entries.len())..])
    }

    /// Whether the head names the last entry.
    pub fn is_complete(&self) -> bool {
        match &self.head {
            Some(h) => self.len() == h.seq.saturating_add(1),
            None => self.is_empty(),
        }
    }
}

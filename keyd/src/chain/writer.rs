//! Building a chain: every appended entry is verified by the engine first, so a writer
//! can never produce a chain that does not verify.

use ed25519_dalek::SigningKey;

use super::entry::{Entry, Head, encode_file};
use super::error::Rule;
use super::state::ChainState;
use super::statement::Statement;
use crate::derive::KeyPath;

/// A chain being written (by a ceremony, or by keyd in service).
#[derive(Debug, Clone, Default)]
pub struct ChainWriter {
    state: ChainState,
    entries: Vec<Entry>,
}

impl ChainWriter {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Continues a verified chain.
    pub fn from_verified(v: super::Verified) -> Self {
        ChainWriter {
            state: v.state,
            entries: v.entries,
        }
    }

    /// Restores a chain this process wrote and stored, with the head it stored: links
    /// checked entry by entry, then the head's signature, which vouches for them all
    /// (see [`ChainState::apply_trusted`]). The head must be signed by a key the chain
    /// holds live, as for any head.
    pub fn restore(entries: Vec<Entry>, head: &Head) -> Result<Self, Rule> {
        let mut state = ChainState::new();
        for e in &entries {
            state.apply_trusted(e)?;
        }
        state.verify_head(head)?;
        Ok(ChainWriter { state, entries })
    }

    /// Appends `statement` at `appended_at`, if the engine accepts it.
    pub fn append(&mut self, statement: Statement, appended_at: u64) -> Result<&Entry, Rule> {
        let entry = Entry {
            seq: self.state.next_seq(),
            prev: self.state.last_hash(),
            statement,
            appended_at: appended_at.max(self.state.last_appended_at()),
        };
        self.state.apply(&entry)?;
        self.entries.push(entry);
        Ok(&self.entries[self.entries.len() - 1])
    }

    /// A head over the last entry, signed with the key at `signer`.
    pub fn head(&self, signer: KeyPath, key: &SigningKey) -> Result<Head, Rule> {
        let seq = self
            .state
            .next_seq()
            .checked_sub(1)
            .ok_or(Rule::NoGenesis)?;
        let head = Head::sign(seq, self.state.last_hash(), signer, key);
        self.state.verify_head(&head)?;
        Ok(head)
    }

    /// A head over entry `seq` (the last one, or an earlier one: a page of the chain
    /// ends with it), signed with the key at `signer`; the key must have been live at
    /// that entry for a verifier to accept it.
    pub fn head_at(&self, seq: u64, signer: KeyPath, key: &SigningKey) -> Result<Head, Rule> {
        let next = usize::try_from(seq)
            .ok()
            .and_then(|i| i.checked_add(1))
            .ok_or(Rule::NoGenesis)?;
        match self.entries.get(next) {
            // The next entry's `prev` is this entry's hash.
            Some(after) => Ok(Head::sign(seq, after.prev, signer, key)),
            None if next == self.entries.len() => self.head(signer, key),
            None => Err(Rule::HeadMismatch {
                seq,
                last: i128::from(self.state.next_seq()) - 1,
            }),
        }
    }

    /// The chain file: entries and a head signed with the key at `signer`.
    pub fn to_file(&self, signer: KeyPath, key: &SigningKey) -> Result<Vec<u8>, Rule> {
        Ok(encode_file(&self.entries, &self.head(signer, key)?))
    }

    /// The verified state.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// The entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

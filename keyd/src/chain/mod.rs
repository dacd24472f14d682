//! The cluster chain (DESIGN.md section 4): signed statements, hash-linked entries, a
//! signed head, and the one verification engine keyd, keyctl and nodes all use.
//!
//! - [`Statement`]: `genesis`, `certify`, `epoch`, `revoke`, `trust`, `untrust`,
//!   `succession`, in one deterministic CBOR encoding, Ed25519-signed.
//! - [`Entry`] / [`Head`]: `{seq, prev, statement, appended_at}` linked by SHA-256, and the
//!   head `{seq, hash}` signed by the appending key.
//! - [`ChainState`]: applies entries incrementally and answers questions about keys.
//! - [`verify_file`] / [`ChainWriter`]: read a whole chain file; build one.

mod cbor;
mod entry;
mod error;
mod state;
mod statement;
mod status;
mod writer;

pub use cbor::{CborError, decode_exact, to_vec as cbor_bytes};
pub use entry::{
    Entry, Head, MAX_RECORD_BYTES, Record, Records, encode_file, entry_hash_of_record,
};
pub use error::{ChainError, Rule};
pub use state::{ChainState, KeyKind, KeyRecord, Revocation, TrustRecord};
pub use statement::{
    Body, Certify, Epoch, Genesis, KeySet, MAX_NAME, MAX_REASON, MAX_STATEMENT_BYTES, Revoke,
    STATEMENT_VERSION, Statement, Succession, Trust, TrustLevel, Untrust, check_name, check_text,
};
pub use status::KeyStatus;
pub use writer::ChainWriter;

/// A verified chain file: the state and the head that closed it.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The state after every entry.
    pub state: ChainState,
    /// The entries, in order.
    pub entries: Vec<Entry>,
    /// The signed head.
    pub head: Head,
}

/// Verifies a whole chain file: every entry from genesis, then its signed head.
pub fn verify_file(bytes: &[u8]) -> Result<Verified, ChainError> {
    let mut state = ChainState::new();
    let mut entries = Vec::new();
    let head = apply_records(&mut state, &mut entries, bytes)?;
    Ok(Verified {
        state,
        entries,
        head,
    })
}

/// Applies the records of a chain file (or of an update) to `state` and `entries`:
/// entries already in `entries` (an update's overlap) must be identical, every other
/// entry is verified and applied in order, and the file must end with a head that
/// closes the result; that head is returned.
fn apply_records(
    state: &mut ChainState,
    entries: &mut Vec<Entry>,
    bytes: &[u8],
) -> Result<Head, ChainError> {
    let held = entries.len();
    let mut head = None;
    for (position, record) in Records::new(bytes).enumerate() {
        let fail = |seq, rule| ChainError {
            position,
            seq,
            rule,
        };
        if head.is_some() {
            return Err(fail(None, Rule::AfterHead));
        }
        match record.map_err(|(_, e)| fail(None, decode_rule(e)))? {
            (_, Record::Entry(entry), bytes) => {
                let seq = entry.seq;
                let ours = usize::try_from(seq)
                    .ok()
                    .filter(|i| *i < held)
                    .and_then(|i| entries.get(i));
                match ours {
                    Some(ours) if *ours == entry => {}
                    Some(_) => return Err(fail(Some(seq), Rule::Diverged { seq })),
                    None => {
                        let hash =
                            entry::entry_hash_of_record(bytes).unwrap_or_else(|| entry.hash());
                        state
                            .apply_hashed(&entry, hash)
                            .map_err(|rule| fail(Some(seq), rule))?;
                        entries.push(entry);
                    }
                }
            }
            (_, Record::Head(h), _) => {
                state.verify_head(&h).map_err(|rule| fail(None, rule))?;
                head = Some(h);
            }
        }
    }
    head.ok_or(ChainError {
        position: entries.len(),
        seq: None,
        rule: Rule::NoHead,
    })
}

impl Verified {
    /// Verifies an update pulled with `GET /v1/chain?since=SEQ` (entries from SEQ on and
    /// a signed head) against this chain and applies it: entries this chain already holds
    /// must be identical, new ones are verified like any entry, and the head must close
    /// the result. Returns how many entries were new.
    ///
    /// The state is updated in place, entry by entry (no copy of a large state): on an
    /// error, the entries before the bad one stay applied (each verified on its own) and
    /// the head stays the last one that verified.
    pub fn update(&mut self, bytes: &[u8]) -> Result<usize, ChainError> {
        let held = self.entries.len();
        self.head = apply_records(&mut self.state, &mut self.entries, bytes)?;
        Ok(self.entries.len() - held)
    }

    /// The whole chain as a file (entries and the latest head).
    pub fn to_file(&self) -> Vec<u8> {
        encode_file(&self.entries, &self.head)
    }
}

/// Maps a decoding failure to its rule, singling out unknown statement kinds.
pub fn decode_rule(e: CborError) -> Rule {
    if let CborError::Malformed(msg) = &e
        && let Some(rest) = msg.strip_prefix("unknown variant `")
        && let Some((kind, _)) = rest.split_once('`')
        && msg.contains("genesis")
    {
        return Rule::UnknownKind(kind.to_owned());
    }
    Rule::Decode(e)
}

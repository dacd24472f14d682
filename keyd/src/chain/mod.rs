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
    Body, Certify, Epoch, Genesis, KeySet, MAX_NAME, MAX_STATEMENT_BYTES, Revoke,
    STATEMENT_VERSION, Statement, Succession, Trust, TrustLevel, Untrust, check_name,
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
        let record = record.map_err(|(_, e)| fail(None, decode_rule(e)))?;
        match record {
            (_, Record::Entry(entry), bytes) => {
                let hash = entry::entry_hash_of_record(bytes).unwrap_or_else(|| entry.hash());
                state
                    .apply_hashed(&entry, hash)
                    .map_err(|rule| fail(Some(entry.seq), rule))?;
                entries.push(entry);
            }
            (_, Record::Head(h), _) => {
                state.verify_head(&h).map_err(|rule| fail(None, rule))?;
                head = Some(h);
            }
        }
    }
    let head = head.ok_or(ChainError {
        position: entries.len(),
        seq: None,
        rule: Rule::NoHead,
    })?;
    Ok(Verified {
        state,
        entries,
        head,
    })
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

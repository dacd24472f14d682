//! The cluster chain (DESIGN.md section 4): signed statements in hash-linked logs, one
//! writer per log, each log closed by a signed, timed head; and the one verification
//! engine keyd, keyctl and nodes all use.
//!
//! - [`Statement`]: `genesis`, `certify`, `epoch`, `revoke`, `trust`, `untrust`,
//!   `succession`, `anchor`, in one deterministic CBOR encoding, Ed25519-signed.
//! - [`Entry`] / [`Head`]: `{log, seq, prev, statement, appended_at}` linked by SHA-256
//!   within a log, and the head `{log, seq, hash, signed_at}` signed by the log's
//!   authority.
//! - [`ChainState`]: applies entries incrementally and answers questions about keys.
//! - [`Chain`]: the logs held; [`verify_file`] reads a whole cluster-chain file.

mod cbor;
mod cluster;
mod entry;
mod error;
mod lifecycle;
mod log;
mod named;
mod placement;
mod records;
mod replica;
mod state;
mod statement;
mod status;

use std::collections::BTreeMap;

pub use cbor::{CborError, decode_exact, decode_hashed, to_vec as cbor_bytes};
pub use cluster::{Chain, Log, Page, verify_file};
pub use entry::{
    Entry, HEAD_DOMAIN, Head, MAX_RECORD_BYTES, Record, Records, encode_log, entry_hash_of_record,
    push_entry_record,
};
pub use error::{ChainError, Rule};
pub use named::NAMED_ROLE_PREFIX;
pub use placement::log_of;
pub use state::{
    ChainState, KeyKind, KeyRecord, Link, RekeyOrdered, ReplicaRecord, Revocation, TrustRecord,
};
pub use statement::{
    Anchor, Body, Certify, Epoch, Extend, Genesis, KeySet, MAX_NAME, MAX_REASON,
    MAX_STATEMENT_BYTES, RekeyOrder, Replica, Revoke, STATEMENT_DOMAIN, STATEMENT_VERSION,
    Statement, Succession, Trust, TrustLevel, Untrust, check_name, check_replica_name, check_text,
};
pub use status::KeyStatus;

use crate::derive::KeyPath;

/// A root's fingerprint: lowercase hex of SHA-256 of its Ed25519 identity key (what
/// the ceremony's `root.json` and `keyd import --expect-root` show).
pub fn fingerprint(ed25519: &[u8; 32]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(ed25519))
}

/// The response header of `GET /v1/chain` saying whether the answer reached every
/// log's head (`true`) or is a page cut short (`false`).
pub const COMPLETE_HEADER: &str = "x-keyd-chain-complete";

/// The response header of `GET /v1/chain` giving the number of entries keyd holds over
/// all logs.
pub const LENGTH_HEADER: &str = "x-keyd-chain-length";

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

/// Writes positions in logs (per log, the seq of the next entry a holder needs) as
/// `GET /v1/chain?since=` takes them: `m:5,2:10` (the root log from seq 5, the log of
/// `m/2'` from seq 10).
pub fn format_positions(positions: &BTreeMap<KeyPath, u64>) -> String {
    positions
        .iter()
        .filter_map(|(log, seq)| match log.depth() {
            0 => Some(format!("m:{seq}")),
            1 => log.indexes().next().map(|i| format!("{i}:{seq}")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses [`format_positions`]' text; the error names the bad item.
pub fn parse_positions(text: &str) -> Result<BTreeMap<KeyPath, u64>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let bad = || {
            format!(
                "bad position {item:?}: expected LOG:SEQ, LOG being m (the root log) or a branch index i (the log of m/i')"
            )
        };
        let (log, seq) = item.split_once(':').ok_or_else(bad)?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        let log = match log {
            "m" => KeyPath::root(),
            i => {
                let i: u32 = i.parse().map_err(|_| bad())?;
                KeyPath::root().child(i).ok_or_else(bad)?
            }
        };
        if out.insert(log, seq).is_some() {
            return Err(format!("position of log {item:?} given twice"));
        }
    }
    Ok(out)
}

//! Log entries, linked by SHA-256 within their log, and the signed head of a log.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cbor::{self, CborError};
use super::statement::{MAX_STATEMENT_BYTES, Statement};
use crate::derive::KeyPath;

/// Largest encoded record (an entry wraps one statement).
pub const MAX_RECORD_BYTES: usize = MAX_STATEMENT_BYTES + 256;
/// Domain separation for head signatures.
pub const HEAD_DOMAIN: &[u8] = b"keyd/v1/head\0";

/// One link of a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The log: `m` (the root log) or a level-1 branch `m/i'` (that branch's log).
    pub log: KeyPath,
    /// Position in its log, from 0.
    pub seq: u64,
    /// SHA-256 of the previous entry of the same log (zeros for seq 0).
    #[serde(with = "serde_bytes")]
    pub prev: [u8; 32],
    /// The statement.
    pub statement: Statement,
    /// When it was appended (Unix seconds).
    pub appended_at: u64,
}

impl Entry {
    /// SHA-256 of the canonical encoding: what the next entry's `prev` must be.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(cbor::to_vec(self)).into()
    }
}

/// A log's head: its last entry at `signed_at`, signed by the log's authority (the root
/// for `m`, the branch key for `m/i'`). keyd re-signs its branch head at an interval, so
/// a verifier can demand a head no older than it allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The log (and its signer).
    pub log: KeyPath,
    /// Seq of the log's last entry.
    pub seq: u64,
    /// Hash of the log's last entry.
    #[serde(with = "serde_bytes")]
    pub hash: [u8; 32],
    /// When the authority signed it (Unix seconds).
    pub signed_at: u64,
    /// Ed25519 signature over [`Head::signed_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

#[derive(Serialize)]
struct UnsignedHead<'a> {
    log: &'a KeyPath,
    seq: u64,
    #[serde(with = "serde_bytes")]
    hash: &'a [u8; 32],
    signed_at: u64,
}

impl Head {
    /// Signs a head of `log` over its entry `(seq, hash)` at `signed_at`, with the log's
    /// authority key.
    pub fn sign(log: KeyPath, seq: u64, hash: [u8; 32], signed_at: u64, key: &SigningKey) -> Head {
        let mut h = Head {
            log,
            seq,
            hash,
            signed_at,
            signature: [0; 64],
        };
        h.signature = key.sign(&h.signed_bytes()).to_bytes();
        h
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = HEAD_DOMAIN.to_vec();
        out.extend(cbor::to_vec(&UnsignedHead {
            log: &self.log,
            seq: self.seq,
            hash: &self.hash,
            signed_at: self.signed_at,
        }));
        out
    }

    /// Verifies the signature under `key`.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        key.verify_strict(
            &self.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .is_ok()
    }

    /// Its age at `now`, in seconds (0 for a head signed in the future).
    pub fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.signed_at)
    }
}

/// An item of a chain file or of a `GET /v1/chain` response: per log, its entries, then
/// its head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // decoded one at a time, never held in bulk
pub enum Record {
    /// An entry.
    Entry(Entry),
    /// A log's signed head.
    Head(Head),
}

/// Appends one log's entries and (when given) its head to `out`, as records of a chain
/// file (a CBOR sequence, RFC 8742).
pub fn encode_log(out: &mut Vec<u8>, entries: &[Entry], head: Option<&Head>) {
    out.reserve(entries.len() * 300 + 200);
    for e in entries {
        out.extend(cbor::to_vec(&RecordRef::Entry(e)));
    }
    if let Some(head) = head {
        out.extend(cbor::to_vec(&RecordRef::Head(head)));
    }
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum RecordRef<'a> {
    Entry(&'a Entry),
    Head(&'a Head),
}

/// Iterates over the records of a chain file, with each record's byte offset.
pub struct Records<'a> {
    input: &'a [u8],
    offset: usize,
}

impl<'a> Records<'a> {
    /// Reads records from `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Records { input, offset: 0 }
    }
}

/// The encoding of a record's opening: a one-entry map keyed "entry".
const ENTRY_RECORD_PREFIX: &[u8] = &[0xa1, 0x65, b'e', b'n', b't', b'r', b'y'];

/// Appends to `out` the record of an entry from the entry's canonical bytes (as a store
/// holds them), without decoding it.
pub fn push_entry_record(out: &mut Vec<u8>, entry_bytes: &[u8]) {
    out.extend_from_slice(ENTRY_RECORD_PREFIX);
    out.extend_from_slice(entry_bytes);
}

/// The hash of the entry inside a record's canonical bytes, without re-encoding it.
pub fn entry_hash_of_record(record_bytes: &[u8]) -> Option<[u8; 32]> {
    record_bytes
        .strip_prefix(ENTRY_RECORD_PREFIX)
        .map(|entry| Sha256::digest(entry).into())
}

impl<'a> Iterator for Records<'a> {
    /// The record's offset, the record, and its canonical bytes.
    type Item = Result<(usize, Record, &'a [u8]), (usize, CborError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.input.len() {
            return None;
        }
        let at = self.offset;
        match cbor::decode_prefix::<Record>(&self.input[at..], MAX_RECORD_BYTES) {
            Ok((record, used)) => {
                self.offset += used;
                Some(Ok((at, record, &self.input[at..at + used])))
            }
            Err(e) => {
                self.offset = self.input.len();
                Some(Err((at, e)))
            }
        }
    }
}

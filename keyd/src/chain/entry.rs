//! Chain entries, linked by SHA-256, and the signed head.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cbor::{self, CborError};
use super::statement::{MAX_STATEMENT_BYTES, Statement};
use crate::derive::KeyPath;

/// Largest encoded record (an entry wraps one statement).
pub const MAX_RECORD_BYTES: usize = MAX_STATEMENT_BYTES + 256;
/// Domain separation for head signatures.
const HEAD_DOMAIN: &[u8] = b"keyd/v1/head\0";

/// One link of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position, from 0.
    pub seq: u64,
    /// SHA-256 of the previous entry's encoding (zeros for seq 0).
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

/// The chain's head, signed by the appending key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Seq of the last entry.
    pub seq: u64,
    /// Hash of the last entry.
    #[serde(with = "serde_bytes")]
    pub hash: [u8; 32],
    /// Path of the signing key.
    pub signer: KeyPath,
    /// Ed25519 signature over [`Head::signed_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

#[derive(Serialize)]
struct UnsignedHead<'a> {
    seq: u64,
    #[serde(with = "serde_bytes")]
    hash: &'a [u8; 32],
    signer: &'a KeyPath,
}

impl Head {
    /// Signs a head for the entry `(seq, hash)` with the key at `signer`.
    pub fn sign(seq: u64, hash: [u8; 32], signer: KeyPath, key: &SigningKey) -> Head {
        let mut h = Head {
            seq,
            hash,
            signer,
            signature: [0; 64],
        };
        h.signature = key.sign(&h.signed_bytes()).to_bytes();
        h
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = HEAD_DOMAIN.to_vec();
        out.extend(cbor::to_vec(&UnsignedHead {
            seq: self.seq,
            hash: &self.hash,
            signer: &self.signer,
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
}

/// An item of a chain file or of a `GET /v1/chain` response: entries, then one head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// An entry.
    Entry(Entry),
    /// The signed head.
    Head(Head),
}

/// Encodes entries and a head as a chain file (a CBOR sequence, RFC 8742).
pub fn encode_file(entries: &[Entry], head: &Head) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 300 + 200);
    for e in entries {
        out.extend(cbor::to_vec(&RecordRef::Entry(e)));
    }
    out.extend(cbor::to_vec(&RecordRef::Head(head)));
    out
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

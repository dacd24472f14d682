//! Errors of the chain layer: every refusal names the entry and the rule it breaks.

use thiserror::Error;

use super::cbor::CborError;
use crate::derive::KeyPath;

/// A chain that does not verify: the first bad entry and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}: {rule}", self.place())]
pub struct ChainError {
    /// 0-based position of the record in the input.
    pub position: usize,
    /// Its seq, when it could be read.
    pub seq: Option<u64>,
    /// The rule broken.
    pub rule: Rule,
}

impl ChainError {
    fn place(&self) -> String {
        match self.seq {
            Some(seq) => format!("entry {} (seq {seq})", self.position),
            None => format!("record {}", self.position),
        }
    }
}

/// The rules of the chain (DESIGN.md section 4), one variant per way to break one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rule {
    /// Bytes that are not a canonical record.
    #[error("cannot decode: {0}")]
    Decode(CborError),
    /// A statement kind this version does not know.
    #[error("unknown statement kind {0:?}")]
    UnknownKind(String),
    /// A statement version this version does not know.
    #[error("statement version {0} is not supported")]
    Version(u8),
    /// A missing entry or a reordering.
    #[error("out of order: expected seq {expected}, found {found} (a gap or a reordering)")]
    OutOfOrder {
        /// The next seq.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// An entry whose seq was already applied.
    #[error("duplicate: seq {found} was already applied (expected seq {expected})")]
    Duplicate {
        /// The next seq.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// `prev` is not the hash of the previous entry.
    #[error("prev does not match the hash of the previous entry")]
    BadPrev,
    /// An update repeats an entry the reader already verified, differently: the
    /// history forked.
    #[error("entry {seq} differs from the one already verified (the history forked)")]
    Diverged {
        /// The entry.
        seq: u64,
    },
    /// `appended_at` goes backwards.
    #[error("appended_at {found} is before the previous entry's {previous}")]
    TimeBackwards {
        /// This entry's time.
        found: u64,
        /// The previous entry's time.
        previous: u64,
    },
    /// The chain does not start with genesis.
    #[error("the chain must start with a genesis statement")]
    NoGenesis,
    /// Genesis after the start.
    #[error("genesis is only allowed as the first entry")]
    SecondGenesis,
    /// Genesis not self-signed by the root at `m`.
    #[error("genesis must be signed by its own root key at m")]
    GenesisSigner,
    /// A size or count out of bounds, or a malformed field.
    #[error("{0}")]
    Bounds(String),
    /// A public key that is not a valid Ed25519 point.
    #[error("the statement carries an invalid Ed25519 public key")]
    BadKey,
    /// A key that is already published at another path.
    #[error("this public key is already published as {other}")]
    KeyReused {
        /// Where it is.
        other: KeyPath,
    },
    /// The signature does not verify.
    #[error("bad signature: not signed by the key at {signer}")]
    BadSignature {
        /// The claimed signer.
        signer: KeyPath,
    },
    /// The signer is not in the chain.
    #[error("signer {signer} is not a key of this chain")]
    UnknownSigner {
        /// The claimed signer.
        signer: KeyPath,
    },
    /// The signer (or an ancestor) was revoked before it signed.
    #[error(
        "signer {signer} was revoked before it signed ({revoked} revoked by {by} at seq {seq})"
    )]
    SignerRevoked {
        /// The signer.
        signer: KeyPath,
        /// The revoked key (the signer or an ancestor).
        revoked: KeyPath,
        /// Who revoked it.
        by: KeyPath,
        /// The revoking entry.
        seq: u64,
    },
    /// The signer is outside its validity window.
    #[error("signer {signer} is not valid at {at} (valid from {not_before} to {not_after})")]
    SignerExpired {
        /// The signer.
        signer: KeyPath,
        /// The entry's time.
        at: u64,
        /// Validity start.
        not_before: u64,
        /// Validity end.
        not_after: u64,
    },
    /// The signer has no authority for this statement.
    #[error("{signer} has no authority for this {kind}: {why}")]
    NoAuthority {
        /// The signer.
        signer: KeyPath,
        /// Statement kind.
        kind: &'static str,
        /// Which authority it needs.
        why: String,
    },
    /// A path that is not a node (for certify) or not an epoch-able node.
    #[error("{path} is not a node path (nodes are m/i' and P/1'/n')")]
    NotNode {
        /// The path.
        path: KeyPath,
    },
    /// A path certified twice.
    #[error("{path} is already certified (at seq {seq}); a key is certified once")]
    AlreadyCertified {
        /// The path.
        path: KeyPath,
        /// Where.
        seq: u64,
    },
    /// A name used by another live key.
    #[error("name {name:?} is already used by live key {path}")]
    NameTaken {
        /// The name.
        name: String,
        /// Its holder.
        path: KeyPath,
    },
    /// An epoch that does not move forward.
    #[error("epoch {epoch} of {node} does not move forward (latest is {latest})")]
    EpochBackwards {
        /// The node.
        node: KeyPath,
        /// The epoch given.
        epoch: u32,
        /// The latest epoch.
        latest: u32,
    },
    /// The root has no epochs.
    #[error("the root has no epochs; a root rekey is a succession")]
    RootEpoch,
    /// A statement about a key the chain does not have.
    #[error("{target} is not a key of this chain")]
    UnknownTarget {
        /// The key.
        target: KeyPath,
    },
    /// A key revoked twice.
    #[error(
        "{target} is already revoked (at seq {seq}); revocation is irreversible and happens once"
    )]
    AlreadyRevoked {
        /// The key.
        target: KeyPath,
        /// Where.
        seq: u64,
    },
    /// Revoking the root.
    #[error("the root cannot be revoked; a root is replaced by succession")]
    RootRevoke,
    /// Trusting a root twice.
    #[error("cluster root {0} is already trusted")]
    AlreadyTrusted(String),
    /// Untrusting a root that is not trusted.
    #[error("cluster root {0} is not trusted")]
    NotTrusted(String),
    /// Trusting oneself.
    #[error("a cluster cannot trust its own root")]
    SelfTrust,
    /// A second succession.
    #[error("this root already named a successor (at seq {0})")]
    SecondSuccession(u64),
    /// The chain has no head.
    #[error("no signed head after the last entry")]
    NoHead,
    /// Records after the head.
    #[error("trailing bytes after the head")]
    AfterHead,
    /// The head does not name the last entry.
    #[error("the head names seq {seq}, but the last entry is seq {last}")]
    HeadMismatch {
        /// What the head says.
        seq: u64,
        /// The last entry.
        last: i128,
    },
    /// The head's hash is not the last entry's.
    #[error("the head's hash is not the hash of the last entry")]
    HeadHash,
    /// The head is signed by a key that may not sign heads.
    #[error("the head must be signed by the root or a level-1 branch key, not {0}")]
    HeadSigner(KeyPath),
}

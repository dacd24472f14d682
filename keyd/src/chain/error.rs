//! Errors of the chain layer: every refusal names the entry and the rule it breaks.

use thiserror::Error;

use super::cbor::CborError;
use crate::derive::KeyPath;

/// A chain that does not verify: the first bad entry (its log and seq) and the rule it
/// breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}: {rule}", self.place())]
pub struct ChainError {
    /// 0-based position of the record in the input.
    pub position: usize,
    /// The log of the entry or head, when it could be read.
    pub log: Option<KeyPath>,
    /// Its seq, when it could be read.
    pub seq: Option<u64>,
    /// The rule broken.
    pub rule: Rule,
}

impl ChainError {
    fn place(&self) -> String {
        match (&self.log, self.seq) {
            (Some(log), Some(seq)) => {
                format!("log {log} entry {seq} (record {})", self.position)
            }
            (Some(log), None) => format!("log {log} (record {})", self.position),
            (None, _) => format!("record {}", self.position),
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
    #[error(
        "appended_at {} is before the previous entry's {}",
        crate::rfc3339(*.found),
        crate::rfc3339(*.previous)
    )]
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
    #[error(
        "signer {signer} is not valid at {} (valid from {} to {})",
        crate::rfc3339(*.at),
        crate::rfc3339(*.not_before),
        crate::rfc3339(*.not_after)
    )]
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
    #[error(
        "{path} is not a node or named-key path (nodes are m/i' and P/1'/n', named keys P/2'/n')"
    )]
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
    /// A node's validity moved earlier (an `extend` only renews).
    #[error("{node} is valid until {current}; an extension to {not_after} does not renew it")]
    ValidityBackwards {
        /// The node.
        node: KeyPath,
        /// The end the extension names.
        not_after: u64,
        /// Its current end.
        current: u64,
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
    /// A root-log entry (a second succession included) after the succession.
    #[error("the root named its successor at seq {0}: its log ends there")]
    AfterSuccession(u64),
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
    /// An entry in a log it does not belong to.
    #[error("a {kind} does not belong in log {log}: {why}")]
    WrongLog {
        /// The log.
        log: KeyPath,
        /// Statement kind.
        kind: &'static str,
        /// Why.
        why: String,
    },
    /// A branch log whose branch the root log does not certify (yet).
    #[error("log {log} is not a log of this cluster: the root log does not certify {log}")]
    UnknownLog {
        /// The log.
        log: KeyPath,
    },
    /// A branch log that does not open with the anchor to its certification.
    #[error(
        "log {log} must open with an anchor to root-log entry {root_seq} that certified it ({})",
        found.map_or_else(|| "it opens with another statement".to_owned(), |f| format!("its anchor names entry {f} or another hash"))
    )]
    BadAnchor {
        /// The log.
        log: KeyPath,
        /// The root-log entry certifying the branch.
        root_seq: u64,
        /// The root-log entry the anchor names, if it is an anchor.
        found: Option<u64>,
    },
    /// A log section without a head.
    #[error("log {log} has no signed head after its entries")]
    LogWithoutHead {
        /// The log.
        log: KeyPath,
    },
    /// A head older than the verifier allows.
    #[error(
        "the head of log {log} is {age} s old (signed at {}); at most {max_age} s allowed: the log may be withheld",
        crate::rfc3339(*.signed_at)
    )]
    Stale {
        /// The log.
        log: KeyPath,
        /// Its age in seconds.
        age: u64,
        /// When it was signed.
        signed_at: u64,
        /// The allowed age.
        max_age: u64,
    },
    /// A head signed before the one already held for its log (a replay).
    #[error(
        "the head of log {log} was signed at {}, before the head already held (signed at {})",
        crate::rfc3339(*.signed_at),
        crate::rfc3339(*.held)
    )]
    OlderHead {
        /// The log.
        log: KeyPath,
        /// When the refused head was signed.
        signed_at: u64,
        /// When the held head was signed.
        held: u64,
    },
    /// A chain file whose log sections are out of order (a file holds each log once,
    /// root log first, then the branch logs in path order, as it is written).
    #[error(
        "log {log} comes after log {after} in the file: a chain file holds the root log, then the branch logs in path order"
    )]
    LogOrder {
        /// The log out of place.
        log: KeyPath,
        /// The log it follows.
        after: KeyPath,
    },
    /// A log held with entries beyond its last head (a partial page).
    #[error("log {log} has entries after its last head (seq {head_seq}): fetch the rest")]
    Incomplete {
        /// The log.
        log: KeyPath,
        /// Seq of its head.
        head_seq: i128,
    },
}

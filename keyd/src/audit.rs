//! The audit log: what keyd did, for whom, with which key — records chained by hash,
//! their head signed by the branch key at an interval (DESIGN section 9).
//!
//! Each [`Record`] names the hash of the one before it (`prev`; zeros for the first),
//! so a record removed, reordered or altered breaks the chain at that record; a signed
//! [`Head`] fixes the hash of the record at its `seq`, so the last records are covered
//! too, and nobody without the branch key can rebuild a chain that verifies. What a
//! hash chain cannot show is a tail cut off together with the heads that cover it:
//! keep the heads `keyctl audit export` wrote, and a shorter log is found against them.
//!
//! Crypto operations and refusals arrive at high rates: keyd keeps them as one record
//! per second, principal, operation, outcome, key (and rule), with the count. Nothing
//! that answers "who used which key, how often, when" is lost; the order of
//! operations within one second is (the access log keeps each request, its id and its
//! principal). Admin operations, enrollments, credential events, policy changes and
//! chain entries taken are one record each, written before keyd answers.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The domain of a record's hash.
pub const RECORD_DOMAIN: &[u8] = b"keyd/v1/audit-record\0";
/// The domain of a head's signature.
pub const HEAD_DOMAIN: &[u8] = b"keyd/v1/audit-head\0";
/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record (its fields in this order are its canonical CBOR encoding, which
/// its hash covers; JSON exports carry the same fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Its position: 1, 2, 3, …
    pub seq: u64,
    /// When (Unix seconds; for an aggregate, its second).
    pub at: u64,
    /// The hash of the record before it, hex ([`GENESIS`] for the first).
    pub prev: String,
    /// Who: `keyd:node:PATH`, `keyd:admin:NAME`, `keyd` (keyd itself), or `enrollment`.
    pub principal: String,
    /// What: an operation as policies name it (`sign`, `node.add`, …) or an event
    /// (`enroll`, `chain.mirror`).
    pub op: String,
    /// `ok` or `denied`.
    pub outcome: String,
    /// What it acted on (a node path, an admin name, a peer), if anything.
    pub target: Option<String>,
    /// The key used (an epoch key path), for key operations.
    pub key: Option<String>,
    /// That key's epoch.
    pub epoch: Option<u32>,
    /// How many operations the record stands for (1 for events).
    pub count: u64,
    /// More: the deciding rule of a refusal, a reason, what changed.
    pub detail: Option<String>,
}

impl Record {
    /// Its hash: SHA-256 over [`RECORD_DOMAIN`] and its canonical CBOR.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(RECORD_DOMAIN);
        h.update(crate::chain::cbor_bytes(self));
        h.finalize().into()
    }

    /// Its hash, hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }
}

/// A signed head: the branch key vouches that record `seq` has hash `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The record it covers (and, through the chain, all before it).
    pub seq: u64,
    /// That record's hash, hex.
    pub hash: String,
    /// When it was signed (Unix seconds).
    pub signed_at: u64,
    /// Ed25519 signature by the branch key, hex, over [`HEAD_DOMAIN`], `seq` (8 bytes,
    /// big-endian), `hash` (its 64 hex characters) and `signed_at` (8 bytes, big-endian).
    pub signature: String,
}

impl Head {
    fn message(seq: u64, hash: &str, signed_at: u64) -> Vec<u8> {
        let mut m = HEAD_DOMAIN.to_vec();
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(hash.as_bytes());
        m.extend_from_slice(&signed_at.to_be_bytes());
        m
    }

    /// Signs the head of record `seq` with hash `hash`.
    pub fn sign(seq: u64, hash: &str, signed_at: u64, key: &SigningKey) -> Head {
        let signature = key.sign(&Head::message(seq, hash, signed_at));
        Head {
            seq,
            hash: hash.to_owned(),
            signed_at,
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// Whether `key` signed it.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(
            &Head::message(self.seq, &self.hash, self.signed_at),
            &signature,
        )
        .is_ok()
    }
}

/// The first place an audit log does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {what}")]
pub struct AuditError {
    /// The record (or head) position.
    pub seq: u64,
    /// What is wrong with it.
    pub what: String,
}

/// What a verified log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: usize,
    /// Heads checked.
    pub heads: usize,
    /// The last record.
    pub last: u64,
    /// The last record a signed head covers.
    pub signed_to: u64,
}

/// Verifies records (in the order given, from seq 1 when `from_start`) and heads
/// against the branch key: the first record removed, reordered or altered, or head
/// not signed by `key`, is named.
pub fn verify(
    records: &[Record],
    heads: &[Head],
    key: &VerifyingKey,
    from_start: bool,
) -> Result<Verified, AuditError> {
    let present: std::collections::HashSet<u64> = records.iter().map(|r| r.seq).collect();
    let mut hashes = std::collections::HashMap::new();
    let mut expected = records
        .first()
        .map_or(1, |r| if from_start { 1 } else { r.seq });
    let mut prev: Option<(u64, String)> = None;
    for r in records {
        if r.seq != expected {
            return Err(if r.seq > expected && present.contains(&expected) {
                AuditError {
                    seq: expected,
                    what: format!("out of order: it comes after record {}", r.seq),
                }
            } else if r.seq > expected {
                let missing = if r.seq - expected == 1 {
                    format!(
                        "missing (the log goes from {} to {})",
                        expected.saturating_sub(1),
                        r.seq
                    )
                } else {
                    format!(
                        "missing, with {} more (the log goes from {} to {})",
                        r.seq - expected - 1,
                        expected.saturating_sub(1),
                        r.seq
                    )
                };
                AuditError {
                    seq: expected,
                    what: missing,
                }
            } else {
                AuditError {
                    seq: r.seq,
                    what: format!("out of order: it comes after record {}", expected - 1),
                }
            });
        }
        match &prev {
            None if from_start && r.prev != GENESIS => {
                return Err(AuditError {
                    seq: r.seq,
                    what: "the first record does not start the chain".into(),
                });
            }
            Some((seq, hash)) if *hash != r.prev => {
                return Err(AuditError {
                    seq: *seq,
                    what: format!(
                        "altered or replaced: record {} names another hash for it",
                        r.seq
                    ),
                });
            }
            _ => {}
        }
        let hash = r.hash_hex();
        hashes.insert(r.seq, hash.clone());
        prev = Some((r.seq, hash));
        expected = r.seq + 1;
    }
    let last = prev.as_ref().map_or(0, |(s, _)| *s);
    let mut signed_to = 0;
    for h in heads {
        if !h.verify(key) {
            return Err(AuditError {
                seq: h.seq,
                what: "its signed head is not signed by the branch key".into(),
            });
        }
        match hashes.get(&h.seq) {
            Some(hash) if *hash != h.hash => {
                return Err(AuditError {
                    seq: h.seq,
                    what: "altered: the signed head names another hash for it".into(),
                });
            }
            None if h.seq > last => {
                return Err(AuditError {
                    seq: last + 1,
                    what: format!(
                        "missing: a head signed at {} covers the log up to record {}",
                        crate::rfc3339(h.signed_at),
                        h.seq
                    ),
                });
            }
            _ => signed_to = signed_to.max(h.seq),
        }
    }
    Ok(Verified {
        records: records.len(),
        heads: heads.len(),
        last,
        signed_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: u64) -> Vec<Record> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let r = Record {
                    seq,
                    at: 1_800_000_000 + seq,
                    prev: prev.clone(),
                    principal: "keyd:admin:alice".into(),
                    op: "node.add".into(),
                    outcome: "ok".into(),
                    target: Some(format!("m/1'/1'/{seq}'")),
                    key: None,
                    epoch: None,
                    count: 1,
                    detail: None,
                };
                prev = r.hash_hex();
                r
            })
            .collect()
    }

    #[test]
    fn removal_reordering_alteration_and_forged_heads_are_named() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let records = log(6);
        let heads = vec![
            Head::sign(3, &records[2].hash_hex(), 1, &key),
            Head::sign(6, &records[5].hash_hex(), 2, &key),
        ];
        let ok = verify(&records, &heads, &public, true);
        assert_eq!(ok.map(|v| (v.records, v.last, v.signed_to)), Ok((6, 6, 6)));

        let named = |records: &[Record], heads: &[Head]| {
            verify(records, heads, &public, true)
                .err()
                .map(|e| (e.seq, e.what))
        };
        let mut removed = records.clone();
        removed.remove(3);
        assert!(named(&removed, &heads).is_some_and(|(s, w)| s == 4 && w.starts_with("missing")));
        let mut swapped = records.clone();
        swapped.swap(1, 2);
        assert!(named(&swapped, &heads).is_some_and(|(s, w)| s == 2 && w.contains("out of order")));
        let mut altered = records.clone();
        altered[2].op = "node.revoke".into();
        assert!(named(&altered, &heads).is_some_and(|(s, w)| s == 3 && w.contains("altered")));
        // The last record altered: only the head shows it.
        let mut last = records.clone();
        last[5].count = 9;
        assert!(named(&last, &heads).is_some_and(|(s, w)| s == 6 && w.contains("signed head")));
        // The tail cut off, a head still covering it.
        assert!(
            named(&records[..4], &heads).is_some_and(|(s, w)| s == 5 && w.starts_with("missing"))
        );
        // A head signed by another key.
        let other = SigningKey::from_bytes(&[8; 32]);
        let forged = vec![Head::sign(6, &records[5].hash_hex(), 3, &other)];
        assert!(named(&records, &forged).is_some_and(|(s, w)| s == 6 && w.contains("not signed")));
        // A chain rebuilt after an alteration still fails on the head.
        let mut rebuilt = records.clone();
        rebuilt[4].op = "policy.apply".into();
        rebuilt[5].prev = rebuilt[4].hash_hex();
        assert!(named(&rebuilt, &heads).is_some_and(|(s, _)| s == 6));
    }
}

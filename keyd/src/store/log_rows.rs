//! The log rows of a store: read in one contiguous buffer at start-up (no allocation per
//! row) and decoded on every core; read back as records when keyd serves entries it
//! does not hold in memory.

use redb::{ReadableDatabase, TableHandle};
use sha2::{Digest, Sha256};

use super::{CURRENT, Store, StoreError};
use crate::chain::{self, CborError, Entry};
use crate::derive::KeyPath;

impl Store {
    /// Appends to `out` the records of the entries of `log` with seqs in `seqs`, as
    /// stored (not decoded), each checked to hash to `expected(seq)`: the hash the chain
    /// verified at start-up. A row missing or changed since is refused, naming it.
    pub fn log_records(
        &self,
        log: &KeyPath,
        seqs: std::ops::Range<u64>,
        expected: impl Fn(u64) -> Option<[u8; 32]>,
        out: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let name = log.to_string();
        let corrupt = |seq: u64, detail: &str| StoreError::Corrupt {
            path: self.path.clone(),
            what: format!("entry {seq} of log {log} in {}", CURRENT.logs.name()),
            detail: detail.into(),
        };
        let mut next = seqs.start;
        // The first row that does not hash as verified, if any; a gap ends the read.
        let changed = (|| -> Result<Option<u64>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(CURRENT.logs)?;
            for row in table.range((name.as_str(), seqs.start)..(name.as_str(), seqs.end))? {
                let (k, v) = row?;
                let seq = k.value().1;
                if seq != next {
                    break;
                }
                if expected(seq) != Some(Sha256::digest(v.value()).into()) {
                    return Ok(Some(seq));
                }
                chain::push_entry_record(out, v.value());
                next += 1;
            }
            Ok(None)
        })()
        .map_err(self.db_err())?;
        if let Some(seq) = changed {
            return Err(corrupt(seq, "changed since keyd verified it at start-up"));
        }
        if next != seqs.end {
            return Err(corrupt(next, "missing from the store"));
        }
        Ok(())
    }
}

/// Rows of a log table, in the order read.
#[derive(Debug, Default)]
pub(super) struct RawRows {
    bytes: Vec<u8>,
    logs: Vec<String>,
    /// Per row: its log (index into `logs`), its seq and where its bytes end.
    rows: Vec<(u32, u64, usize)>,
}

/// A decoded row: the entry and the SHA-256 of its stored bytes.
type Decoded = Result<(Entry, [u8; 32]), CborError>;

impl RawRows {
    /// Adds the row `(log, seq)`.
    pub(super) fn push(&mut self, log: &str, seq: u64, row: &[u8]) {
        if self.logs.last().map(String::as_str) != Some(log) {
            self.logs.push(log.to_owned());
        }
        self.bytes.extend_from_slice(row);
        let log_index = u32::try_from(self.logs.len() - 1).unwrap_or(u32::MAX);
        self.rows.push((log_index, seq, self.bytes.len()));
    }

    /// Every row decoded, in order, with the log and seq it was stored under. The
    /// entries are not re-encoded: each row's hash is of its stored bytes, which the
    /// chain checks against the next entry's `prev` and the signed head (an altered or
    /// non-canonical row fails there).
    pub(super) fn decode(&self) -> Vec<(&str, u64, Decoded)> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = self.rows.len().div_ceil(threads).max(4096);
        let decode_range = |range: std::ops::Range<usize>| -> Vec<Decoded> {
            range
                .map(|i| {
                    let start = if i == 0 { 0 } else { self.rows[i - 1].2 };
                    let bytes = &self.bytes[start..self.rows[i].2];
                    chain::decode_hashed::<Entry>(bytes, chain::MAX_RECORD_BYTES)
                        .map(|e| (e, Sha256::digest(bytes).into()))
                })
                .collect()
        };
        let decoded: Vec<Decoded> = if self.rows.len() <= chunk {
            decode_range(0..self.rows.len())
        } else {
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..self.rows.len())
                    .step_by(chunk)
                    .map(|start| {
                        let end = (start + chunk).min(self.rows.len());
                        s.spawn(move || decode_range(start..end))
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| {
                        w.join().unwrap_or_else(|_| {
                            vec![Err(CborError::Malformed("decoder thread failed".into()))]
                        })
                    })
                    .collect()
            })
        };
        self.rows
            .iter()
            .zip(decoded)
            .map(|(&(log, seq, _), d)| {
                let log = self.logs.get(log as usize).map_or("", String::as_str);
                (log, seq, d)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Body, Certify, KeySet, Records, Statement};
    use ed25519_dalek::SigningKey;

    fn entry(log: &KeyPath, seq: u64, prev: [u8; 32], key: &SigningKey) -> Entry {
        let path = log.child_node(u32::try_from(seq).unwrap()).unwrap();
        let body = Body::Certify(Certify {
            path,
            name: format!("n{seq}"),
            role: "node".into(),
            keys: KeySet {
                ed25519: [seq as u8; 32],
                x25519: [seq as u8; 32],
            },
            not_before: 0,
            not_after: 1,
        });
        Entry {
            log: log.clone(),
            seq,
            prev,
            statement: Statement::sign(body, log.clone(), 0, key),
            appended_at: 0,
        }
    }

    #[test]
    fn records_are_read_back_as_stored_and_checked_against_their_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("keyd.redb")).unwrap();
        let log: KeyPath = "m/1'".parse().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut entries = Vec::new();
        for seq in 0..5 {
            let prev = entries.last().map_or([0; 32], Entry::hash);
            entries.push(entry(&log, seq, prev, &key));
        }
        store.append_logs(&entries, &[], &[]).unwrap();
        let hashes: Vec<[u8; 32]> = entries.iter().map(Entry::hash).collect();
        let expected = |seq: u64| hashes.get(seq as usize).copied();

        let mut out = Vec::new();
        store.log_records(&log, 1..4, expected, &mut out).unwrap();
        let read: Vec<Entry> = Records::new(&out)
            .map(|r| match r.unwrap().1 {
                chain::Record::Entry(e) => e,
                chain::Record::Head(_) => panic!("no head asked for"),
            })
            .collect();
        assert_eq!(read, entries[1..4]);

        // A row that does not hash as verified at start-up, or missing, is refused.
        let mut out = Vec::new();
        let err = store
            .log_records(
                &log,
                0..5,
                |seq| (seq != 3).then(|| hashes[seq as usize]),
                &mut out,
            )
            .unwrap_err();
        assert!(err.to_string().contains("entry 3 of log m/1'"), "{err}");
        assert!(err.to_string().contains("changed since"), "{err}");
        let err = store
            .log_records(&log, 3..7, expected, &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("entry 5 of log m/1'"), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

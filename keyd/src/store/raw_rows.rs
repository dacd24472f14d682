//! Entry rows as read from a store, in one contiguous buffer (no allocation per row),
//! decoded on every core at start-up.

use sha2::{Digest, Sha256};

use crate::chain::{self, CborError, Entry};

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

//! The store's shared half on etcd (`store = "etcd"`): the same operations as the redb
//! tables, for the state a replica group shares. [`Store`]'s methods call these when the
//! store has an etcd connection; rows are sealed (tagged) by the callers exactly as for
//! redb, so the row checks are the same code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::etcd::{Cmp, Etcd, MAX_TXN_OPS, seq_key};
use super::{RawLogs, Store, StoreError};
use crate::chain::{Entry, Head, cbor_bytes};

/// Latency of the calls to etcd (for `/metrics`).
#[derive(Default, Debug)]
pub struct Latency {
    count: AtomicU64,
    micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Latency {
    /// Counts one call.
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(us, Ordering::Relaxed);
        self.max_micros.fetch_max(us, Ordering::Relaxed);
    }

    /// Calls answered, their total time (s), and the slowest since the last call of
    /// this (s).
    pub fn read(&self) -> (u64, f64, f64) {
        (
            self.count.load(Ordering::Relaxed),
            self.micros.load(Ordering::Relaxed) as f64 / 1e6,
            self.max_micros.swap(0, Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

/// The etcd key of a row.
pub(super) fn row_key(table: &str, key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if table != super::TOKENS_NAME => format!("{table}/{text}"),
        _ => format!("{table}/{}", hex::encode(key)),
    }
}

fn log_size_key(log: &str) -> String {
    format!("size/{log}")
}

impl Store {
    /// The etcd connection, when the shared state lives there.
    pub fn shared(&self) -> Option<&Etcd> {
        self.shared.as_ref()
    }

    /// Refuses an operation that only a store of its own (redb) can do.
    pub(super) fn local_only(&self, what: &str) -> Result<(), StoreError> {
        match &self.shared {
            Some(e) => Err(StoreError::Unsupported(format!(
                "{what} works on a keyd with its own store; this replica shares {} (use etcd's own tools: etcdctl snapshot save)",
                e.describe()
            ))),
            None => Ok(()),
        }
    }

    /// Every row of a shared table (key as stored, row).
    pub(super) fn shared_rows(
        etcd: &Etcd,
        table: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        etcd.scan(&format!("{table}/"))
    }

    /// Appends entries and sets heads in etcd. Every log that gains entries must still
    /// end where this replica saw it end (its size), or nothing is written and the
    /// caller is told which log another replica extended first. A change of this
    /// keyd's branch log always fits in one transaction (group commits are bounded); a
    /// long stretch of a mirrored log is written in several, each a valid extension,
    /// the head with the last.
    pub(super) fn shared_append(
        etcd: &Etcd,
        entries: &[Entry],
        heads: &[&Head],
        rows: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut by_log: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
        for e in entries {
            by_log.entry(e.log.to_string()).or_default().push(e);
        }
        let mut heads_by_log: BTreeMap<String, &Head> = BTreeMap::new();
        for h in heads {
            heads_by_log.insert(h.log.to_string(), h);
        }
        let size_cmp = |log: &str, size: u64| {
            if size == 0 {
                Cmp::Absent(log_size_key(log))
            } else {
                Cmp::Equals(log_size_key(log), size.to_string().into_bytes())
            }
        };
        let mut when = Vec::new();
        let mut puts = rows;
        // Everything in one transaction when it fits. Else the entries go first, in
        // transactions that each require the logs' sizes to be still what this replica
        // extends: written past the sizes, no reader sees them (and a later write
        // overwrites an unfinished one); the last transaction moves the sizes and the
        // heads together.
        let total = entries.len() + 2 * by_log.len() + heads_by_log.len() + puts.len();
        let staged = total > MAX_TXN_OPS;
        if staged {
            let all: Vec<&Entry> = by_log.values().flatten().copied().collect();
            let first_of: BTreeMap<String, u64> = by_log
                .iter()
                .filter_map(|(l, list)| Some((l.clone(), list.first()?.seq)))
                .collect();
            for chunk in all.chunks(MAX_TXN_OPS - first_of.len()) {
                let logs: std::collections::BTreeSet<String> =
                    chunk.iter().map(|e| e.log.to_string()).collect();
                let cmps = logs.iter().map(|l| size_cmp(l, first_of[l])).collect();
                let ops = chunk
                    .iter()
                    .map(|e| (format!("logs/{}/{}", e.log, seq_key(e.seq)), cbor_bytes(*e)))
                    .collect();
                if !etcd.txn(cmps, ops, Vec::new())? {
                    let log = logs.into_iter().next().unwrap_or_default();
                    let first = first_of.get(&log).copied().unwrap_or_default();
                    return Err(conflict(&log, first));
                }
            }
        }
        for (log, list) in &by_log {
            let Some(first) = list.first().map(|e| e.seq) else {
                continue;
            };
            when.push(size_cmp(log, first));
            if !staged {
                for e in list {
                    puts.push((format!("logs/{log}/{}", seq_key(e.seq)), cbor_bytes(*e)));
                }
            }
            let next = list.last().map_or(first, |e| e.seq + 1);
            puts.push((log_size_key(log), next.to_string().into_bytes()));
        }
        for (log, h) in &heads_by_log {
            if by_log.get(log).is_none_or(|l| l.is_empty()) {
                // A head alone (re-signed): only over the log as etcd holds it.
                when.push(size_cmp(log, h.seq + 1));
            }
            puts.push((format!("heads/{log}"), cbor_bytes(*h)));
        }
        if puts.len() > MAX_TXN_OPS {
            return Err(StoreError::Unsupported(format!(
                "{} writes in one etcd transaction (at most {MAX_TXN_OPS})",
                puts.len()
            )));
        }
        if etcd.txn(when, puts, Vec::new())? {
            return Ok(());
        }
        let (log, first) = by_log
            .iter()
            .find_map(|(l, list)| list.first().map(|e| (l.clone(), e.seq)))
            .or_else(|| {
                heads_by_log
                    .values()
                    .next()
                    .map(|h| (h.log.to_string(), h.seq + 1))
            })
            .unwrap_or_default();
        Err(conflict(&log, first))
    }

    /// Imports a branch into an empty group: taken over under an import marker (a
    /// retried import starts afresh), written in chunks, committed by the last
    /// transaction (sizes and heads); an import racing it fails.
    pub(super) fn shared_import(
        etcd: &Etcd,
        branch: &str,
        entries: &[Entry],
        heads: &[&Head],
    ) -> Result<(), StoreError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| etcd.unavailable(format!("no randomness: {e}")))?;
        let nonce = hex::encode(nonce);
        let marker = "import".to_string();
        let taken = etcd.txn(
            vec![Cmp::Absent(log_size_key(branch))],
            vec![(marker.clone(), nonce.clone().into_bytes())],
            vec!["logs/".into(), "heads/".into(), "size/".into()],
        )?;
        if !taken {
            return Err(StoreError::Exists(std::path::PathBuf::from(format!(
                "{}: branch {branch}",
                etcd.describe()
            ))));
        }
        let mine = || Cmp::Equals(marker.clone(), nonce.clone().into_bytes());
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        for chunk in entries.chunks(MAX_TXN_OPS - 1) {
            let puts = chunk
                .iter()
                .map(|e| {
                    let log = e.log.to_string();
                    let seq = sizes.entry(log.clone()).or_default();
                    *seq = (*seq).max(e.seq + 1);
                    (format!("logs/{log}/{}", seq_key(e.seq)), cbor_bytes(e))
                })
                .collect();
            if !etcd.txn(vec![mine()], puts, Vec::new())? {
                return Err(conflict(branch, 0));
            }
        }
        let mut puts: Vec<(String, Vec<u8>)> = sizes
            .iter()
            .map(|(log, n)| (log_size_key(log), n.to_string().into_bytes()))
            .collect();
        puts.extend(
            heads
                .iter()
                .map(|h| (format!("heads/{}", h.log), cbor_bytes(*h))),
        );
        if !etcd.txn(
            vec![mine(), Cmp::Absent(log_size_key(branch))],
            puts,
            vec![marker],
        )? {
            return Err(conflict(branch, 0));
        }
        Ok(())
    }

    /// Every committed entry row and head, as etcd holds them (entries beyond a log's
    /// size are an unfinished write: ignored).
    pub(super) fn shared_logs(etcd: &Etcd) -> Result<RawLogs, StoreError> {
        // One revision for all three reads: sizes, entries and heads agree.
        let (sizes, revision) = etcd.scan_at("size/", 0)?;
        let sizes: BTreeMap<String, u64> = sizes
            .into_iter()
            .map(|(log, v)| {
                let n = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                (log, n)
            })
            .collect();
        let mut rows = super::RawRows::default();
        for (key, bytes) in etcd.scan_at("logs/", revision)?.0 {
            let Some((log, seq)) = key.rsplit_once('/') else {
                continue;
            };
            let (Some(size), Ok(seq)) = (sizes.get(log), seq.parse::<u64>()) else {
                continue;
            };
            if seq < *size {
                rows.push(log, seq, &bytes);
            }
        }
        let heads = etcd.scan_at("heads/", revision)?.0;
        Ok((rows, heads))
    }

    /// How many entries etcd holds of each log.
    pub fn shared_sizes(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let Some(etcd) = &self.shared else {
            return Ok(BTreeMap::new());
        };
        Ok(etcd
            .scan("size/")?
            .into_iter()
            .filter_map(|(log, v)| {
                let n = std::str::from_utf8(&v).ok()?.parse().ok()?;
                Some((log, n))
            })
            .collect())
    }
}

impl Store {
    /// The entries of `log` from `from` on, as etcd holds them (up to its size), and
    /// its head.
    pub fn log_tail(&self, log: &str, from: u64) -> Result<(Vec<Entry>, Option<Head>), StoreError> {
        let Some(etcd) = &self.shared else {
            return Ok((Vec::new(), None));
        };
        let corrupt = |what: String, detail: String| StoreError::Corrupt {
            path: etcd.describe().into(),
            what,
            detail,
        };
        // The head first, then exactly the entries it covers, at the same revision.
        let (head, revision) = etcd.get_at(&format!("heads/{log}"), 0)?;
        let Some(head) = head else {
            return Ok((Vec::new(), None));
        };
        let head = crate::chain::decode_exact::<Head>(&head, 1024)
            .map_err(|e| corrupt(format!("head of log {log}"), e.to_string()))?;
        let (rows, _) = etcd.between(
            &format!("logs/{log}/"),
            &seq_key(from),
            &seq_key(head.seq + 1),
            revision,
        )?;
        let mut entries = Vec::with_capacity(rows.len());
        for (seq, bytes) in rows {
            let e: Entry = crate::chain::decode_exact(&bytes, crate::chain::MAX_RECORD_BYTES)
                .map_err(|e| corrupt(format!("entry {seq} of log {log}"), e.to_string()))?;
            entries.push(e);
        }
        let head = Some(head);
        Ok((entries, head))
    }
}

fn conflict(log: &str, seq: u64) -> StoreError {
    StoreError::Conflict(format!(
        "another replica appended to log {log} first (at seq {seq}); nothing of this change was stored"
    ))
}

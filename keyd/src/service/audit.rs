//! The audit log as keyd writes it (the format and its verification: [`crate::audit`]).
//!
//! Events (admin operations, enrollments, credential events, policy changes, chain
//! entries taken) are written one record each before keyd answers. Key operations and
//! refusals are counted per second, principal, operation, outcome and key (and rule),
//! and written once their second is over, by the flush keyd runs every second: a crash
//! loses at most the counts of the last second or two, never an event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::policy::Named;
use super::{Service, ServiceError, unix_now};
use crate::audit::{GENESIS, Head, Record};
use crate::chain::{self, cbor_bytes};
use crate::derive::{KeyPath, PathRole};
use crate::identity::Principal;
use crate::policy::Op;
use crate::store::Store;

/// Every this many seconds at most, a new head is signed when records were added.
const HEAD_EVERY: u64 = 10;

/// What one aggregate record counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Agg {
    at: u64,
    principal: Principal,
    op: Op,
    key: Option<KeyPath>,
    /// For a refusal: the rule, and the target named.
    denied: Option<(Arc<str>, Option<String>)>,
}

/// The last record and head written.
#[derive(Debug)]
struct Tail {
    seq: u64,
    hash: String,
    head_seq: u64,
    head_at: u64,
}

/// An event waiting to be written: its record (given its seq and the previous hash)
/// and where to say it was written.
type Event = (
    Box<dyn FnOnce(u64, String) -> Record + Send>,
    std::sync::mpsc::Sender<Result<(), String>>,
);

/// The audit log's writer.
pub(super) struct Auditor {
    pending: Mutex<HashMap<Agg, u64>>,
    tail: Mutex<Tail>,
    /// Events queued for the next write: written in groups, one durable write for all
    /// the events that arrived while the previous write was on its way.
    events: Mutex<Vec<Event>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").finish_non_exhaustive()
    }
}

impl Auditor {
    /// Picks up where the stored log ends.
    pub(super) fn load(store: &Store) -> Result<Auditor, ServiceError> {
        let (seq, hash) = match store.audit_last()? {
            Some((seq, bytes)) => (seq, crate::audit::Record::hash_hex(&decode(seq, &bytes))),
            None => (0, GENESIS.to_owned()),
        };
        let (head_seq, head_at) = match store.audit_last_head()? {
            Some((seq, bytes)) => (
                seq,
                chain::decode_exact::<Head>(&bytes, 4096).map_or(0, |h| h.signed_at),
            ),
            None => (0, 0),
        };
        Ok(Auditor {
            events: Mutex::new(Vec::new()),
            pending: Mutex::new(HashMap::new()),
            tail: Mutex::new(Tail {
                seq,
                hash,
                head_seq,
                head_at,
            }),
        })
    }
}

/// A stored record; one that does not decode stands as a record whose hash cannot be
/// the one its successor names (so verification names it).
fn decode(seq: u64, bytes: &[u8]) -> Record {
    chain::decode_exact(bytes, 64 * 1024).unwrap_or_else(|e| Record {
        seq,
        at: 0,
        prev: String::new(),
        principal: String::new(),
        op: "(undecodable)".into(),
        outcome: "corrupt".into(),
        target: None,
        key: None,
        epoch: None,
        count: 0,
        detail: Some(format!("stored bytes do not decode: {e}")),
    })
}

fn epoch_of(key: &KeyPath) -> Option<u32> {
    match key.role() {
        PathRole::Epoch { epoch, .. } => Some(epoch),
        _ => None,
    }
}

impl Service {
    /// A key operation done with `key`: counted into its second.
    pub(super) fn audit_use(&self, principal: &Principal, op: Op, key: Option<&KeyPath>) {
        self.count(Agg {
            at: unix_now(),
            principal: principal.clone(),
            op,
            key: key.cloned(),
            denied: None,
        });
    }

    /// A refusal by policy: counted into its second.
    pub(super) fn audit_denied(
        &self,
        principal: &Principal,
        op: Op,
        target: Named<'_>,
        rule: &Arc<str>,
    ) {
        let target = match target {
            Named::Nothing => None,
            Named::Node(p) => Some(p.to_string()),
            Named::Admin(a) => Some(format!("admin:{a}")),
            Named::Trusted(l) => Some(format!("trusted:{l:?}").to_lowercase()),
        };
        self.count(Agg {
            at: unix_now(),
            principal: principal.clone(),
            op,
            key: None,
            denied: Some((rule.clone(), target)),
        });
    }

    fn count(&self, agg: Agg) {
        *self
            .audit
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(agg)
            .or_insert(0) += 1;
    }

    /// An event, written before keyd answers: `who` did `op` to `target`. Events that
    /// arrive together are written together (one durable write), each answered once its
    /// write is done.
    pub(super) fn audit_event(
        &self,
        who: &str,
        op: &str,
        target: Option<String>,
        detail: Option<String>,
    ) {
        let (principal, op_name) = (who.to_owned(), op.to_owned());
        let record = move |seq, prev| Record {
            seq,
            at: unix_now(),
            prev,
            principal,
            op: op_name,
            outcome: "ok".into(),
            target,
            key: None,
            epoch: None,
            count: 1,
            detail,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        lock(&self.audit.events).push((Box::new(record), tx));
        let written = loop {
            if let Ok(r) = rx.try_recv() {
                break r;
            }
            let mut tail = lock(&self.audit.tail);
            // The writer before answered every event it took before it let go.
            if let Ok(r) = rx.try_recv() {
                break r;
            }
            let batch = std::mem::take(&mut *lock(&self.audit.events));
            let (builders, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let result = self
                .write_audit_locked(&mut tail, builders, false)
                .map_err(|e| e.to_string());
            for reply in replies {
                let _ = reply.send(result.clone());
            }
        };
        if let Err(e) = written {
            tracing::error!(error = %e, op, "could not write an audit record");
            crate::api::metrics().error("audit_write");
        }
    }

    /// Writes the counts of finished seconds (all of them with `all`, at shutdown) and
    /// signs a head when one is due: how many records were written.
    pub fn flush_audit(&self, all: bool) -> Result<usize, ServiceError> {
        let now = unix_now();
        let mut done: Vec<(Agg, u64)> = self
            .audit
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extract_if(|a, _| all || a.at < now)
            .collect();
        done.sort_by_cached_key(|(a, _)| (a.at, a.principal.uri(), a.op));
        let records: Vec<_> = done
            .iter()
            .map(|(agg, n)| {
                let agg = agg.clone();
                let n = *n;
                move |seq, prev| {
                    let (outcome, detail, target) = match agg.denied {
                        Some((rule, target)) => ("denied", Some(format!("rule {rule}")), target),
                        None => ("ok", None, None),
                    };
                    Record {
                        seq,
                        at: agg.at,
                        prev,
                        principal: agg.principal.uri(),
                        op: agg.op.name().to_owned(),
                        outcome: outcome.to_owned(),
                        target,
                        epoch: agg.key.as_ref().and_then(epoch_of),
                        key: agg.key.map(|k| k.to_string()),
                        count: n,
                        detail,
                    }
                }
            })
            .collect();
        let written = records.len();
        let result = self.write_audit(records, true);
        if result.is_err() {
            // Kept for the next flush.
            let mut pending = self.audit.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (agg, n) in done {
                *pending.entry(agg).or_insert(0) += n;
            }
        }
        result.map(|()| written)
    }

    /// Appends records built from (seq, prev) in order, with a head when `head_due` and
    /// one is due, in one transaction.
    fn write_audit<F: FnOnce(u64, String) -> Record>(
        &self,
        records: Vec<F>,
        head_due: bool,
    ) -> Result<(), ServiceError> {
        let mut tail = lock(&self.audit.tail);
        self.write_audit_locked(&mut tail, records, head_due)
    }

    /// [`Service::write_audit`] with the tail held.
    fn write_audit_locked<F: FnOnce(u64, String) -> Record>(
        &self,
        tail: &mut Tail,
        records: Vec<F>,
        head_due: bool,
    ) -> Result<(), ServiceError> {
        let (mut seq, mut hash) = (tail.seq, tail.hash.clone());
        let mut rows = Vec::with_capacity(records.len());
        for build in records {
            seq += 1;
            let r = build(seq, hash);
            hash = r.hash_hex();
            rows.push((seq, cbor_bytes(&r)));
        }
        let now = unix_now();
        let head = if head_due && seq > tail.head_seq && now >= tail.head_at + HEAD_EVERY {
            let key = self.material(&self.branch_path)?;
            Some(Head::sign(seq, &hash, now, key.signing_key()))
        } else {
            None
        };
        if rows.is_empty() && head.is_none() {
            return Ok(());
        }
        if let Err(e) = self
            .store
            .append_audit(&rows, head.as_ref().map(|h| (h.seq, cbor_bytes(h))))
        {
            // A replica's write may have landed in part (or late): go on from the end
            // the store holds.
            if self.replicated()
                && let Ok(fresh) = Auditor::load(&self.store)
            {
                *tail = fresh.tail.into_inner().unwrap_or_else(|e| e.into_inner());
            }
            return Err(e.into());
        }
        tail.seq = seq;
        tail.hash = hash;
        if let Some(h) = head {
            tail.head_seq = h.seq;
            tail.head_at = h.signed_at;
        }
        Ok(())
    }

    /// Records after `since` (at most `limit`), the heads among them, and the last
    /// record's seq (`audit.read`).
    pub fn audit_page(
        &self,
        principal: &Principal,
        since: u64,
        limit: usize,
    ) -> Result<(Vec<Record>, Vec<Head>, u64), ServiceError> {
        self.authorize(principal, Op::AuditRead, Named::Nothing)?;
        let records: Vec<Record> = self
            .store
            .audit_records(since, limit)?
            .into_iter()
            .map(|(seq, bytes)| decode(seq, &bytes))
            .collect();
        let until = records.last().map_or(since, |r| r.seq);
        let heads = self
            .store
            .audit_heads(since, usize::MAX)?
            .into_iter()
            .take_while(|(seq, _)| *seq <= until)
            .filter_map(|(_, bytes)| chain::decode_exact::<Head>(&bytes, 4096).ok())
            .collect();
        let last = self
            .audit
            .tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seq;
        Ok((records, heads, last))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

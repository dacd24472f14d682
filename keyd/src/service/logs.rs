//! The logs keyd holds besides its own: root-log extensions pushed by an admin after a
//! ceremony, and the logs it mirrors from its peer keyds. Both are verified by the one
//! engine before anything is stored, and stored in one transaction.

use std::collections::BTreeMap;

use super::policy::Named;
use super::{Pushed, Service, ServiceError};
use crate::chain::{Chain, ChainError, Head, Records, Rule};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::Op;

/// What a pull from a peer brought.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mirrored {
    /// New entries, over all logs.
    pub new_entries: usize,
}

impl Service {
    /// Takes a root-log extension (admin only): records of the root log `m` ending
    /// with its root-signed head. Verified against the root log held, then stored with
    /// the head in one transaction; refused, naming the entry, with nothing stored.
    pub fn push_root(&self, principal: &Principal, bytes: &[u8]) -> Result<Pushed, ServiceError> {
        Self::require_admin(principal)?;
        self.authorize(principal, Op::ChainPush, Named::Nothing)?;
        let root = KeyPath::root();
        let only_root = |log: &KeyPath| {
            (*log != root).then(|| format!("only the root log m is pushed; log {log} is not"))
        };
        let records = Self::select(bytes, only_root)?;
        if !records.iter().any(|(log, head)| *log == root && *head) {
            return Err(ChainError {
                position: 0,
                log: Some(root.clone()),
                seq: None,
                rule: Rule::LogWithoutHead { log: root },
            }
            .into());
        }
        let new_entries = self.take(bytes)?;
        let root_length = self.read_chain().log_len(&KeyPath::root());
        let branch_revoked = self.branch_revoked().is_some();
        tracing::info!(
            new_entries,
            root_length,
            branch_revoked,
            "chain: root log pushed"
        );
        self.audit_event(
            &principal.uri(),
            Op::ChainPush.name(),
            Some("m".into()),
            Some(format!(
                "{new_entries} new entries, root log length {root_length}"
            )),
        );
        Ok(Pushed {
            new_entries,
            root_length,
            branch_revoked,
        })
    }

    /// Takes what the peer keyd of branch `peer` served from the positions this keyd
    /// holds: the root log and the other branches' logs; the records of this keyd's own
    /// log (its peers' copy of it) are left out: only this keyd writes it. The peer's
    /// own head must be at most `peer_max_age` old: an older one means the peer
    /// withholds its log (or its clock is wrong), and nothing is taken.
    pub fn take_from_peer(&self, bytes: &[u8], peer: &KeyPath) -> Result<Mirrored, ServiceError> {
        let max_age = self.config.peer_max_age.as_secs();
        let now = super::unix_now();
        for record in Records::new(bytes) {
            if let Ok((_, crate::chain::Record::Head(h), _)) = record
                && h.log == *peer
                && h.age(now) > max_age
            {
                return Err(ChainError {
                    position: 0,
                    log: Some(h.log.clone()),
                    seq: None,
                    rule: Rule::Stale {
                        log: h.log.clone(),
                        age: h.age(now),
                        signed_at: h.signed_at,
                        max_age,
                    },
                }
                .into());
            }
        }
        // Logs the peer merely mirrors (the root log, other branches) may lag behind
        // ours: a head over an entry this keyd holds, with that entry's hash, bringing
        // no newer entry or head, is an older view of the same log and is left out. A
        // different hash is a fork, refused below; the peer's own log never lags (it
        // writes it), so an older one is refused.
        let behind = {
            let chain = self.read_chain();
            Records::new(bytes)
                .filter_map(|r| match r {
                    Ok((_, crate::chain::Record::Head(h), _)) if h.log != *peer => Some(h),
                    _ => None,
                })
                .filter(|h| {
                    let same_entry = chain.entry_hash(&h.log, h.seq) == Some(h.hash);
                    let nothing_new = chain.log_len(&h.log) > h.seq + 1
                        || chain
                            .head(&h.log)
                            .is_some_and(|ours| ours.signed_at >= h.signed_at);
                    same_entry && nothing_new
                })
                .map(|h| h.log)
                .collect::<Vec<_>>()
        };
        let own = self.branch_path.clone();
        self.check_own_log(bytes, peer);
        self.take_logs(bytes, |log| *log != own && !behind.contains(log))
    }

    /// What a peer holds of this keyd's own branch log: more of it than this keyd, or
    /// another entry at a seq this keyd holds, means this store is behind the log this
    /// keyd wrote (restored or rebuilt from an older copy). Appending would fork the
    /// log, so keyd refuses changes to it from then on, saying why.
    fn check_own_log(&self, bytes: &[u8], peer: &KeyPath) {
        let own = &self.branch_path;
        let finding = {
            let chain = self.read_chain();
            let held = chain.log_len(own);
            Records::new(bytes).find_map(|r| match r {
                // The peer's head of this log names an entry this keyd lacks, or another
                // one at that seq (a head is served even when no entry is).
                Ok((_, crate::chain::Record::Head(h), _)) if h.log == *own => {
                    match chain.entry_hash(own, h.seq) {
                        Some(ours) if ours != h.hash => Some(format!(
                            "peer {peer} holds a head over another entry at seq {} of this keyd's branch log {own}: the logs forked",
                            h.seq
                        )),
                        Some(_) => None,
                        None => Some(format!(
                            "peer {peer} holds this keyd's branch log {own} beyond seq {} (up to {})",
                            held.saturating_sub(1),
                            h.seq
                        )),
                    }
                }
                Ok((_, crate::chain::Record::Entry(e), _)) if e.log == *own => {
                    match chain.entry_hash(own, e.seq) {
                        Some(ours) if ours != e.hash() => Some(format!(
                            "peer {peer} holds another entry at seq {} of this keyd's branch log {own}: the logs forked",
                            e.seq
                        )),
                        Some(_) => None,
                        None => Some(format!(
                            "peer {peer} holds this keyd's branch log {own} beyond seq {} (entry {} at least)",
                            held.saturating_sub(1),
                            e.seq
                        )),
                    }
                }
                _ => None,
            })
        };
        if let Some(what) = finding {
            let why = format!(
                "{what}: this store is behind the log this keyd wrote (restored or rebuilt from an older copy); keyd refuses changes to the branch log until it is rebuilt from the newest copy (keyctl chain fetch from that peer, keyctl ceremony rebuild, keyd import)"
            );
            let mut behind = self.behind.write().unwrap_or_else(|e| e.into_inner());
            if behind.is_none() {
                tracing::error!(peer = %peer, "{why}");
            }
            *behind = Some(why);
        }
    }

    /// Takes only the root log of what a peer served: it verifies by its root
    /// signatures alone, whoever served it (this is how a keyd learns of a branch
    /// certified after its own bundle, before it can authenticate that branch's keyd).
    pub fn take_root_from_peer(&self, bytes: &[u8]) -> Result<Mirrored, ServiceError> {
        self.take_logs(bytes, |log| log.depth() == 0)
    }

    fn take_logs(
        &self,
        bytes: &[u8],
        keep: impl Fn(&KeyPath) -> bool,
    ) -> Result<Mirrored, ServiceError> {
        let mut kept = Vec::with_capacity(bytes.len());
        for record in Records::new(bytes) {
            let (_, record, raw) = record.map_err(|(at, e)| ChainError {
                position: at,
                log: None,
                seq: None,
                rule: crate::chain::decode_rule(e),
            })?;
            if keep(record_log(&record)) {
                kept.extend_from_slice(raw);
            }
        }
        let new_entries = self.take(&kept)?;
        if new_entries > 0 {
            self.audit_event(
                "keyd",
                "chain.mirror",
                None,
                Some(format!("{new_entries} new entries from a peer")),
            );
        }
        Ok(Mirrored { new_entries })
    }

    /// The level-1 branch whose identity key is `key` (with id `id`) in the chain held.
    pub fn branch_of_key(&self, id: &crate::derive::KeyId, key: &[u8; 32]) -> Option<KeyPath> {
        let of = |chain: &Chain| {
            let path = chain.state().path_of(id)?;
            let record = chain.state().key(path)?;
            (path.depth() == 1 && record.keys.ed25519 == *key).then(|| path.clone())
        };
        // After a root rekey and until retirement, a peer's TLS identity is still its
        // branch key of the previous root's tree: the same branch path in this one.
        of(&self.read_chain()).or_else(|| self.retired.as_ref().and_then(|r| of(&r.chain)))
    }

    /// Waits up to `interval`, or less when a pull is asked for ([`Service::pull_peers`]).
    pub fn wait_pull(&self, interval: std::time::Duration) {
        let (lock, signal) = &self.pull_now;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let seen = *guard;
        let _ = signal
            .wait_timeout_while(guard, interval, |n| *n == seen)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Asks the peer threads to pull now (admin); how many peers are configured.
    pub fn pull_peers(&self, principal: &Principal) -> Result<usize, ServiceError> {
        Self::require_admin(principal)?;
        self.authorize(principal, Op::ChainPull, Named::Nothing)?;
        let (lock, signal) = &self.pull_now;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        signal.notify_all();
        Ok(self.config.peers.len())
    }

    /// The positions this keyd holds, per log (what to ask a peer from).
    pub fn positions(&self) -> BTreeMap<KeyPath, u64> {
        self.read_chain().positions()
    }

    /// Verifies records against the logs held and stores what is new (entries and heads)
    /// in one transaction. Verified in place under the write lock, entry by entry; when
    /// a refusal comes after some new entries were applied, or the store fails, the
    /// chain is restored from the store, so memory stays equal to disk and a refused
    /// input leaves nothing behind.
    fn take(&self, bytes: &[u8]) -> Result<usize, ServiceError> {
        let mut chain = self.chain.write().unwrap_or_else(|e| e.into_inner());
        let before = chain.positions();
        let succeeded = chain.state().successor().is_some();
        let heads_before: BTreeMap<KeyPath, Option<Head>> = chain
            .logs()
            .map(|(l, held)| (l.clone(), held.head.clone()))
            .collect();
        let result = chain.update(bytes).and_then(|n| {
            chain.check_complete()?;
            Ok(n)
        });
        let new = match result {
            Ok(n) => n,
            Err(e) => {
                if chain.len() != before.values().sum::<u64>() as usize {
                    *chain = self.reload_chain()?;
                }
                return Err(e.into());
            }
        };
        // A succession moves this keyd's whole tree: it is taken by `keyd root-rekey`
        // (keyd stopped), never pushed or mirrored into a serving keyd.
        if !succeeded && chain.state().successor().is_some() {
            *chain = self.reload_chain()?;
            return Err(ServiceError::BadRequest(
                "the root log names a successor of the root: keyd takes a succession only with keyd root-rekey (stopped), with its branch's bundle from the ceremony".into(),
            ));
        }
        let mut entries = Vec::new();
        let mut heads = Vec::new();
        let mut not_held = None;
        for (log, held) in chain.logs() {
            let from = before.get(log).copied().unwrap_or(0);
            // What was taken now was appended in memory, offloaded logs or not.
            match held.entries_from(from) {
                Some(new) => entries.extend_from_slice(new),
                None => not_held = Some(format!("log {log} from seq {from}")),
            }
            if let Some(h) = &held.head
                && heads_before.get(log).and_then(|h| h.as_ref()) != Some(h)
            {
                heads.push(h.clone());
            }
        }
        if let Some(what) = not_held {
            *chain = self.reload_chain()?;
            return Err(ServiceError::Uncommitted(format!(
                "the entries taken in ({what}) are not held in memory; nothing was stored"
            )));
        }
        if entries.is_empty() && heads.is_empty() {
            return Ok(0);
        }
        let heads: Vec<&Head> = heads.iter().collect();
        if let Err(e) = self.store.append_logs(&entries, &heads, &[]) {
            *chain = self.reload_chain()?;
            return Err(e.into());
        }
        for e in &entries {
            tracing::info!(log = %e.log, seq = e.seq, kind = e.statement.body.kind(),
                signer = %e.statement.signer, "chain: taken in");
        }
        Ok(new)
    }

    /// The logs of `bytes`' records, each with whether it is a head; refused with the
    /// message `refuse` gives for a log.
    fn select(
        bytes: &[u8],
        refuse: impl Fn(&KeyPath) -> Option<String>,
    ) -> Result<Vec<(KeyPath, bool)>, ServiceError> {
        let mut out = Vec::new();
        for (position, record) in Records::new(bytes).enumerate() {
            let (_, record, _) = record.map_err(|(_, e)| ChainError {
                position,
                log: None,
                seq: None,
                rule: crate::chain::decode_rule(e),
            })?;
            let log = record_log(&record).clone();
            if let Some(why) = refuse(&log) {
                return Err(ServiceError::BadRequest(why));
            }
            out.push((log, matches!(record, crate::chain::Record::Head(_))));
        }
        Ok(out)
    }
}

fn record_log(record: &crate::chain::Record) -> &KeyPath {
    match record {
        crate::chain::Record::Entry(e) => &e.log,
        crate::chain::Record::Head(h) => &h.log,
    }
}

//! Restoring the chain from the store at start-up (and after a failed write, to keep
//! memory equal to disk).

use super::ServiceError;
use crate::chain::{Chain, ChainError, Head, Rule};
use crate::derive::KeyPath;
use crate::store::Store;

/// The stored logs, restored by their hash links and their stored heads, not every
/// signature again ([`Chain::restore_log`]): every entry was verified before it was
/// stored, and each head, signed by its log's authority (the root, this keyd's branch
/// key, a peer's branch key) over the hash of the last entry, vouches for all of them, so
/// a changed entry fails there. Root log first: it certifies the keys that sign the
/// branch heads. This keyd's own log must end where the seal token's mark says (checked
/// by the caller).
pub fn restore_chain(store: &Store) -> Result<Chain, ServiceError> {
    chain_of(store.load_logs()?)
}

/// [`restore_chain`] from logs read out of the store (current, staged or retired).
pub fn chain_of(logs: crate::store::StoredLogs) -> Result<Chain, ServiceError> {
    let mut chain = sized(&logs);
    for (log, stored) in logs {
        let head = stored_head(&log, stored.head, stored.entries.len())?;
        chain.restore_hashed(stored.entries, &stored.hashes, head)?;
    }
    Ok(chain)
}

/// [`restore_chain`] for a serving keyd: on a local store, the entries are served from
/// the store ([`Store::log_records`]) and only their hashes are held in memory (about
/// 440 bytes an entry saved); a replica on etcd holds them all.
pub fn restore_serving(store: &Store) -> Result<Chain, ServiceError> {
    let logs = store.load_logs()?;
    if store.shared().is_some() {
        return chain_of(logs);
    }
    let mut chain = sized(&logs);
    for (log, stored) in logs {
        let head = stored_head(&log, stored.head, stored.entries.len())?;
        chain.restore_offloaded(stored.entries, stored.hashes, head)?;
    }
    Ok(chain)
}

/// An empty chain with room for the keys of `logs`.
fn sized(logs: &crate::store::StoredLogs) -> Chain {
    let mut chain = Chain::new();
    chain.reserve(logs.values().map(|l| l.entries.len()).sum());
    chain
}

fn stored_head(log: &KeyPath, head: Option<Head>, entries: usize) -> Result<Head, ChainError> {
    head.ok_or_else(|| ChainError {
        position: entries,
        log: Some(log.clone()),
        seq: None,
        rule: Rule::LogWithoutHead { log: log.clone() },
    })
}

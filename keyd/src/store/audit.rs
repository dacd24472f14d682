//! The audit log's records and signed heads (their integrity is the hash chain and
//! the heads' signatures: see [`crate::audit`]).

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use super::etcd::seq_key;
use super::{Store, StoreError};

/// Record seq → its canonical CBOR.
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Head seq → the head (CBOR).
pub(super) const AUDIT_HEADS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_heads");

impl Store {
    /// Appends records (and a head) in one transaction.
    pub fn append_audit(
        &self,
        records: &[(u64, Vec<u8>)],
        head: Option<(u64, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        if let Some(etcd) = self.shared() {
            // Each replica keeps its own audit log (one writer per hash chain).
            let me = etcd.replica();
            let mut puts: Vec<(String, Vec<u8>)> = records
                .iter()
                .map(|(seq, b)| (format!("audit/{me}/{}", seq_key(*seq)), b.clone()))
                .collect();
            if let Some((seq, b)) = head {
                puts.push((format!("audit_heads/{me}/{}", seq_key(seq)), b));
            }
            // Each chunk only where nothing is yet: a write that timed out and landed
            // late is never overwritten, nor does it overwrite; the caller then reads
            // the log's end again.
            for chunk in puts.chunks(super::etcd::MAX_TXN_OPS) {
                let when = vec![super::etcd::Cmp::Absent(chunk[0].0.clone())];
                if !etcd.txn(when, chunk.to_vec(), Vec::new())? {
                    return Err(StoreError::Conflict(format!(
                        "audit log of replica {me}: {} is written already",
                        chunk[0].0
                    )));
                }
            }
            return Ok(());
        }
        self.write(|tx| {
            let mut table = tx.open_table(AUDIT)?;
            for (seq, bytes) in records {
                table.insert(*seq, bytes.as_slice())?;
            }
            if let Some((seq, bytes)) = &head {
                tx.open_table(AUDIT_HEADS)?.insert(*seq, bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// The last record, if any.
    pub fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self.audit_range(AUDIT, true, 0, 1)?.into_iter().next())
    }

    /// The last head, if any.
    pub fn audit_last_head(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .audit_range(AUDIT_HEADS, true, 0, 1)?
            .into_iter()
            .next())
    }

    /// Up to `limit` records after `since`, in order.
    pub fn audit_records(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.audit_range(AUDIT, false, since, limit)
    }

    /// Up to `limit` heads after `since`, in order.
    pub fn audit_heads(&self, since: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.audit_range(AUDIT_HEADS, false, since, limit)
    }

    fn audit_range(
        &self,
        def: TableDefinition<u64, &[u8]>,
        last: bool,
        since: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if let Some(etcd) = self.shared() {
            let rest = format!("{}/{}/", def.name(), etcd.replica());
            let after = (!last).then(|| seq_key(since));
            return Ok(etcd
                .range(&rest, after.as_deref(), limit, last)?
                .into_iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
                .collect());
        }
        let run = || -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let Some(table) = super::existing(&tx, def)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            if last {
                if let Some(row) = table.last()? {
                    out.push((row.0.value(), row.1.value().to_vec()));
                }
                return Ok(out);
            }
            for row in table.range(since.saturating_add(1)..)?.take(limit) {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        };
        run().map_err(self.db_err())
    }
}

//! A root rekey in the store. While keyd re-wraps its tree under the new root, the new
//! root log and branch log are written to staging tables batch by batch (each batch one
//! transaction, so a crash loses nothing and the re-wrap resumes where it stopped); the
//! swap then makes them current in one transaction, keeping the old tree's logs and
//! branch secret as retired (decrypt-only) until an operator retires the old root.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use super::{CURRENT, LogTables, META, Store, StoreError, StoredLogs, key, put_logs_in};
use crate::chain::{Entry, Head};

const STAGED_LOGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("rekey_logs");
const STAGED_HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("rekey_heads");
const RETIRED_LOGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("retired_logs");
const RETIRED_HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("retired_heads");

/// The new tree's logs while a re-wrap writes them.
pub(crate) const STAGED: LogTables = LogTables {
    logs: STAGED_LOGS,
    heads: STAGED_HEADS,
};
/// The old tree's logs after the swap, until the old root is retired.
pub(crate) const RETIRED: LogTables = LogTables {
    logs: RETIRED_LOGS,
    heads: RETIRED_HEADS,
};

/// The names of the tables a root rekey adds (for the backup).
pub(crate) const TABLE_NAMES: [&str; 4] =
    ["rekey_logs", "rekey_heads", "retired_logs", "retired_heads"];

/// Copies every row of `from` into `to` and deletes `from`.
fn move_table<K: redb::Key + 'static>(
    tx: &redb::WriteTransaction,
    from: TableDefinition<K, &[u8]>,
    to: TableDefinition<K, &[u8]>,
) -> Result<u64, redb::Error> {
    let mut n = 0;
    {
        let src = tx.open_table(from)?;
        let mut dst = tx.open_table(to)?;
        for row in src.iter()? {
            let (k, v) = row?;
            dst.insert(k.value(), v.value())?;
            n += 1;
        }
    }
    tx.delete_table(from)?;
    Ok(n)
}

impl Store {
    /// Stages the new tree's entries and heads (one transaction); with `sealed`, first
    /// records the new branch secret they are written under.
    pub fn stage_logs(
        &self,
        entries: &[Entry],
        heads: &[&Head],
        sealed: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.local_only("a root rekey")?;
        self.write(|tx| {
            put_logs_in(tx, STAGED, entries, heads)?;
            if let Some(sealed) = sealed {
                tx.open_table(META)?
                    .insert(key::STAGED_BRANCH_SEALED, sealed)?;
            }
            Ok(())
        })
    }

    /// The staged logs of a re-wrap under way (empty when none).
    pub fn staged_logs(&self) -> Result<StoredLogs, StoreError> {
        self.read_logs(STAGED)
    }

    /// The old tree's logs, kept after a root rekey until the old root is retired
    /// (empty when none).
    pub fn retired_logs(&self) -> Result<StoredLogs, StoreError> {
        self.read_logs(RETIRED)
    }

    /// Makes the staged tree current in one transaction: the current logs become the
    /// retired ones, the staged logs the current ones, and the current branch secret
    /// the retired one, the staged secret the current one: how many entries moved
    /// each way (retired, current).
    pub fn swap_in_staged(&self) -> Result<(u64, u64), StoreError> {
        self.local_only("a root rekey")?;
        self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            let staged = meta
                .remove(key::STAGED_BRANCH_SEALED)?
                .map(|v| v.value().to_vec());
            let current = meta.get(key::BRANCH_SEALED)?.map(|v| v.value().to_vec());
            let (Some(staged), Some(current)) = (staged, current) else {
                return Err(redb::Error::Io(std::io::Error::other(
                    "no staged tree to swap in",
                )));
            };
            meta.insert(key::RETIRED_BRANCH_SEALED, current.as_slice())?;
            meta.insert(key::BRANCH_SEALED, staged.as_slice())?;
            drop(meta);
            let retired = move_table(tx, CURRENT.logs, RETIRED.logs)?;
            move_table(tx, CURRENT.heads, RETIRED.heads)?;
            let current = move_table(tx, STAGED.logs, CURRENT.logs)?;
            move_table(tx, STAGED.heads, CURRENT.heads)?;
            Ok((retired, current))
        })
    }

    /// Forgets the old tree: its logs and its branch secret (one transaction): how many
    /// entries went.
    pub fn retire_old_tree(&self) -> Result<u64, StoreError> {
        self.local_only("a root rekey")?;
        self.write(|tx| {
            let n = match tx.list_tables()?.any(|t| t.name() == RETIRED.logs.name()) {
                true => tx.open_table(RETIRED.logs)?.len()?,
                false => 0,
            };
            tx.delete_table(RETIRED.logs)?;
            tx.delete_table(RETIRED.heads)?;
            tx.open_table(META)?.remove(key::RETIRED_BRANCH_SEALED)?;
            Ok(n)
        })
    }
}

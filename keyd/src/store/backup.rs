//! Backups: every table as of one read transaction, copied into a new store file. Rows
//! are copied as stored — sealed secrets stay sealed by the seal token and integrity
//! tags stay bound to it — so a backup is of use only with that seal token.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::audit::{AUDIT, AUDIT_HEADS};
use super::lifecycle::MIN_EPOCHS;
use super::policies::POLICIES;
use super::succession::{RETIRED, STAGED, TABLE_NAMES};
use super::trust::TRUSTED;
use super::{
    CREDENTIALS, GENERATIONS, HEADS, LOGS, META, REVOKED_ADMINS, SUITES, Store, StoreError, TOKENS,
};

/// Copies one table; none when the source has no such table (a store made before it).
fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, redb::Error> {
    let Some(src) = super::existing(from, def)? else {
        return Ok(0);
    };
    let mut dst = to.open_table(def)?;
    let mut n = 0;
    for row in src.iter()? {
        let (k, v) = row?;
        dst.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}

impl Store {
    /// Writes a consistent copy of the store (one read transaction) to `to`, a new file
    /// (0600): how many rows.
    pub fn backup(&self, to: &Path) -> Result<u64, StoreError> {
        self.local_only("keyd backup")?;
        let err = |e: redb::Error| StoreError::Db {
            path: to.to_owned(),
            source: e,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| err(redb::Error::Io(e)))?;
        let dest = super::builder().create(to).map_err(|e| err(e.into()))?;
        let run = || -> Result<u64, redb::Error> {
            let from = self.db.begin_read()?;
            // Never a partial backup: a table this code does not know stops it.
            let known = [
                META.name(),
                LOGS.name(),
                HEADS.name(),
                TOKENS.name(),
                REVOKED_ADMINS.name(),
                CREDENTIALS.name(),
                SUITES.name(),
                GENERATIONS.name(),
                POLICIES.name(),
                MIN_EPOCHS.name(),
                AUDIT.name(),
                AUDIT_HEADS.name(),
                TRUSTED.name(),
            ];
            if let Some(t) = from
                .list_tables()?
                .find(|t| !known.contains(&t.name()) && !TABLE_NAMES.contains(&t.name()))
            {
                return Err(redb::Error::Io(std::io::Error::other(format!(
                    "the store holds table {:?}, which a backup does not copy yet",
                    t.name()
                ))));
            }
            let tx = dest.begin_write()?;
            let n = copy(&from, &tx, META)?
                + copy(&from, &tx, LOGS)?
                + copy(&from, &tx, HEADS)?
                + copy(&from, &tx, TOKENS)?
                + copy(&from, &tx, REVOKED_ADMINS)?
                + copy(&from, &tx, CREDENTIALS)?
                + copy(&from, &tx, SUITES)?
                + copy(&from, &tx, GENERATIONS)?
                + copy(&from, &tx, POLICIES)?
                + copy(&from, &tx, MIN_EPOCHS)?
                + copy(&from, &tx, AUDIT)?
                + copy(&from, &tx, AUDIT_HEADS)?
                + copy(&from, &tx, TRUSTED)?
                + copy(&from, &tx, STAGED.logs)?
                + copy(&from, &tx, STAGED.heads)?
                + copy(&from, &tx, RETIRED.logs)?
                + copy(&from, &tx, RETIRED.heads)?;
            tx.commit()?;
            Ok(n)
        };
        let rows = run().map_err(err)?;
        drop(dest);
        std::fs::File::open(to)
            .and_then(|f| f.sync_all())
            .and_then(|()| crate::sync_dir(to))
            .map_err(|e| err(redb::Error::Io(e)))?;
        Ok(rows)
    }
}

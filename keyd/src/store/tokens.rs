//! Enrollment tokens: each stored under the SHA-256 of the token, its record tagged
//! like every protected row, and taken once (single use, across a replica group too).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::{Checked, RowKey, Store, StoreError, TOKENS, TOKENS_NAME, etcd, shared};

impl Store {
    /// Stores an enrollment token record.
    pub fn put_token(&self, hash: &[u8], record: &[u8]) -> Result<(), StoreError> {
        let row = self.row_key()?.seal(TOKENS_NAME, hash, record);
        if let Some(etcd) = &self.shared {
            etcd.txn(
                Vec::new(),
                vec![(shared::row_key(TOKENS_NAME, hash), row)],
                Vec::new(),
            )?;
            return Ok(());
        }
        self.write(|tx| {
            tx.open_table(TOKENS)?.insert(hash, row.as_slice())?;
            Ok(())
        })
    }

    /// The record of a token, if it is still there (not spent) and was written by keyd
    /// (a planted or edited row is refused and logged).
    pub fn token(&self, hash: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.row_key()?;
        let run = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.db.begin_read()?;
            let tokens = tx.open_table(TOKENS)?;
            Ok(tokens.get(hash)?.map(|v| v.value().to_vec()))
        };
        let stored = match &self.shared {
            Some(etcd) => etcd.get(&shared::row_key(TOKENS_NAME, hash))?,
            None => run().map_err(self.db_err())?,
        };
        Ok(match stored {
            Some(stored) => match self.check(key, TOKENS_NAME, hash, &stored) {
                Checked::Valid(record) => Some(record),
                Checked::Tampered => None,
            },
            None => None,
        })
    }

    /// Removes every token whose record `stale` says is of no more use (expired), in one
    /// transaction: how many.
    /// (A row that fails its tag is left for an operator to look at.)
    pub fn purge_tokens(&self, stale: impl Fn(&[u8]) -> bool) -> Result<usize, StoreError> {
        let key = self.row_key()?;
        if let Some(etcd) = &self.shared {
            let mut n = 0;
            for (k, row) in Self::shared_rows(etcd, TOKENS_NAME)? {
                let Ok(hash) = hex::decode(&k) else { continue };
                if key.open(TOKENS_NAME, &hash, &row).is_some_and(&stale) {
                    let k = shared::row_key(TOKENS_NAME, &hash);
                    let gone =
                        etcd.txn(vec![etcd::Cmp::Equals(k.clone(), row)], Vec::new(), vec![k])?;
                    n += usize::from(gone);
                }
            }
            return Ok(n);
        }
        self.write(|tx| {
            let mut tokens = tx.open_table(TOKENS)?;
            let before = tokens.len()?;
            tokens.retain(|hash, row| {
                key.open(TOKENS_NAME, hash, row)
                    .is_none_or(|record| !stale(record))
            })?;
            Ok(usize::try_from(before - tokens.len()?).unwrap_or(usize::MAX))
        })
    }

    /// Removes and returns the record of a token (single use), in one transaction; a
    /// row that fails its tag is refused (and left in place).
    pub fn take_token(&self, hash: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.row_key()?;
        let stored = if let Some(etcd) = &self.shared {
            // Single use across every replica: the delete is conditional on the row
            // being the one read.
            etcd.take(&shared::row_key(TOKENS_NAME, hash), |row| {
                key.open(TOKENS_NAME, hash, row).is_none()
            })?
        } else {
            self.take_token_local(key, hash)?
        };
        Ok(match stored {
            Some(row) => match self.check(key, TOKENS_NAME, hash, &row) {
                Checked::Valid(record) => Some(record),
                Checked::Tampered => None,
            },
            None => None,
        })
    }

    fn take_token_local(&self, key: &RowKey, hash: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.write(|tx| {
            let mut tokens = tx.open_table(TOKENS)?;
            let stored = tokens.get(hash)?.map(|v| v.value().to_vec());
            if stored
                .as_deref()
                .is_some_and(|row| key.open(TOKENS_NAME, hash, row).is_some())
            {
                tokens.remove(hash)?;
            }
            Ok(stored)
        })
    }
}

//! redb storage: every write in one transaction, durable on commit, so nothing
//! acknowledged is lost on `kill -9`.
//!
//! Tables: `meta` (sealed secrets, identity, the chain head), `chain` (seq → canonical
//! entry bytes), `tokens` (SHA-256 of an enrollment token → its record) and
//! `revoked_admins` (admin name → its revocation record).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use thiserror::Error;

use crate::chain::{self, Entry, Head, cbor_bytes};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CHAIN: TableDefinition<u64, &[u8]> = TableDefinition::new("chain");
const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
const REVOKED_ADMINS: TableDefinition<&str, &[u8]> = TableDefinition::new("revoked_admins");

/// Meta keys.
pub mod key {
    /// Install key secret, sealed by the seal token.
    pub const INSTALL_SEALED: &str = "install_key_sealed";
    /// Install public key.
    pub const INSTALL_PUBLIC: &str = "install_public";
    /// Branch secret `k || c`, sealed by the seal token.
    pub const BRANCH_SEALED: &str = "branch_sealed";
    /// Branch path text.
    pub const BRANCH_PATH: &str = "branch_path";
    /// Branch name.
    pub const BRANCH_NAME: &str = "branch_name";
    /// The chain's current head (canonical CBOR).
    pub const HEAD: &str = "chain_head";
}

/// Storage failures.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database {path}: {source}")]
    Db {
        /// The file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
    /// A stored record does not decode.
    #[error("database {path}: stored record {what} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which record.
        what: String,
        /// Why.
        detail: String,
    },
    /// The database already exists.
    #[error("{0} already exists; keyd init runs once per instance")]
    Exists(PathBuf),
    /// Another process (a running `keyd serve`) holds the database.
    #[error("database {0} is in use by another keyd process; stop `keyd serve` first")]
    InUse(PathBuf),
    /// The database does not exist.
    #[error("{0} does not exist; run `keyd init` first")]
    Missing(PathBuf),
}

/// Stored entry rows and the stored head, undecoded.
type RawChain = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// The keyd database.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self) -> impl FnOnce(redb::Error) -> StoreError + '_ {
        |source| StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates a new database (refuses an existing file).
    pub fn create(path: &Path) -> Result<Store, StoreError> {
        if path.exists() {
            return Err(StoreError::Exists(path.to_owned()));
        }
        let db = Database::create(path).map_err(|e| StoreError::Db {
            path: path.to_owned(),
            source: e.into(),
        })?;
        let store = Store {
            db,
            path: path.to_owned(),
        };
        store.write(|tx| {
            tx.open_table(META)?;
            tx.open_table(CHAIN)?;
            tx.open_table(TOKENS)?;
            tx.open_table(REVOKED_ADMINS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Opens an existing database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        let db = Database::open(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.to_owned()),
            e => StoreError::Db {
                path: path.to_owned(),
                source: e.into(),
            },
        })?;
        Ok(Store {
            db,
            path: path.to_owned(),
        })
    }

    /// Runs `f` in one write transaction and commits it.
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, redb::Error> {
            let tx = self.db.begin_write()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(self.db_err())
    }

    /// A meta value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let run = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(META)?;
            Ok(table.get(name)?.map(|v| v.value().to_vec()))
        };
        run().map_err(self.db_err())
    }

    /// Sets meta values, all in one transaction.
    pub fn set_meta(&self, values: &[(&str, &[u8])]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(META)?;
            for (k, v) in values {
                table.insert(*k, *v)?;
            }
            Ok(())
        })
    }

    /// Appends entries and sets the new head, in one transaction; optionally also stores
    /// an enrollment token record (so a node and its token are committed together).
    pub fn append_chain(
        &self,
        entries: &[Entry],
        head: &Head,
        token: Option<(&[u8], &[u8])>,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            put_chain(tx, entries, head)?;
            if let Some((hash, record)) = token {
                tx.open_table(TOKENS)?.insert(hash, record)?;
            }
            Ok(())
        })
    }

    /// Records an admin name as revoked (`record`: the revocation, CBOR); false when it
    /// already was (the first record stays).
    pub fn revoke_admin(&self, name: &str, record: &[u8]) -> Result<bool, StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(REVOKED_ADMINS)?;
            let known = table.get(name)?.is_some();
            if !known {
                table.insert(name, record)?;
            }
            Ok(!known)
        })
    }

    /// Every revoked admin name with its record.
    pub fn revoked_admins(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let run = || -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = match tx.open_table(REVOKED_ADMINS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        };
        run().map_err(self.db_err())
    }

    /// Stores an imported branch: its chain, head and meta values, in one transaction
    /// (all or nothing).
    pub fn import(
        &self,
        entries: &[Entry],
        head: &Head,
        values: &[(&str, &[u8])],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            put_chain(tx, entries, head)?;
            let mut table = tx.open_table(META)?;
            for (k, v) in values {
                table.insert(*k, *v)?;
            }
            Ok(())
        })
    }

    /// The stored chain entries in order, and the head.
    pub fn load_chain(&self) -> Result<(Vec<Entry>, Option<Head>), StoreError> {
        let rows = (|| -> Result<RawChain, redb::Error> {
            let tx = self.db.begin_read()?;
            let chain = tx.open_table(CHAIN)?;
            let mut rows = Vec::new();
            for row in chain.range::<u64>(..)? {
                let (_, v) = row?;
                rows.push(v.value().to_vec());
            }
            let head = tx
                .open_table(META)?
                .get(key::HEAD)?
                .map(|v| v.value().to_vec());
            Ok((rows, head))
        })()
        .map_err(self.db_err())?;
        let corrupt = |what: String, detail: String| StoreError::Corrupt {
            path: self.path.clone(),
            what,
            detail,
        };
        let mut entries = Vec::with_capacity(rows.0.len());
        for (i, row) in rows.0.iter().enumerate() {
            let e: Entry = chain::decode_exact(row, chain::MAX_RECORD_BYTES)
                .map_err(|e| corrupt(format!("chain entry {i}"), e.to_string()))?;
            entries.push(e);
        }
        let head = rows
            .1
            .map(|h| chain::decode_exact::<Head>(&h, 1024))
            .transpose()
            .map_err(|e| corrupt("chain head".into(), e.to_string()))?;
        Ok((entries, head))
    }

    /// The record of a token, if it is still there (not spent).
    pub fn token(&self, hash: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let run = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.db.begin_read()?;
            let tokens = tx.open_table(TOKENS)?;
            Ok(tokens.get(hash)?.map(|v| v.value().to_vec()))
        };
        run().map_err(self.db_err())
    }

    /// Removes every token whose record `stale` says is of no more use (expired), in one
    /// transaction: how many.
    pub fn purge_tokens(&self, stale: impl Fn(&[u8]) -> bool) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut tokens = tx.open_table(TOKENS)?;
            let before = tokens.len()?;
            tokens.retain(|_, record| !stale(record))?;
            Ok(usize::try_from(before - tokens.len()?).unwrap_or(usize::MAX))
        })
    }

    /// Removes and returns the record of a token (single use), in one transaction.
    pub fn take_token(&self, hash: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.write(|tx| {
            let mut tokens = tx.open_table(TOKENS)?;
            let taken = tokens.remove(hash)?.map(|v| v.value().to_vec());
            Ok(taken)
        })
    }
}

fn put_chain(
    tx: &redb::WriteTransaction,
    entries: &[Entry],
    head: &Head,
) -> Result<(), redb::Error> {
    let mut chain = tx.open_table(CHAIN)?;
    for e in entries {
        chain.insert(e.seq, cbor_bytes(e).as_slice())?;
    }
    tx.open_table(META)?
        .insert(key::HEAD, cbor_bytes(head).as_slice())?;
    Ok(())
}

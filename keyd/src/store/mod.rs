//! The store: one interface, two backends. redb (the default): every write in one
//! transaction, durable on commit, so nothing acknowledged is lost on `kill -9`. etcd
//! (`store = "etcd"`, [`Etcd`]): the state a replica group shares, each write one etcd
//! transaction; the redb file then keeps only the replica's own sealed secrets (meta).
//!
//! Tables: `meta` (sealed secrets, identity), `logs` ((log, seq) → canonical entry
//! bytes: the root log, this keyd's branch log and the logs mirrored from peers),
//! `heads` (log → its latest signed head), `tokens` (SHA-256 of an enrollment token → its
//! record), `revoked_admins` (admin name → its revocation record), `credentials` (serial
//! of every client certificate issued → its record), `generations` (principal → its
//! credential generation) and `suites` (node → its envelope suite policy). The last five
//! carry a tag under the seal token's row key, checked on every read ([`RowKey`]).

mod audit;
mod backup;
mod credentials;
mod etcd;
mod lifecycle;
mod log_rows;
mod policies;
mod rows;
mod shared;
mod succession;
mod tokens;
mod trust;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use thiserror::Error;

use std::collections::BTreeMap;

use crate::chain::{self, Entry, Head, cbor_bytes};
use crate::derive::KeyPath;
use crate::hsm::HsmError;
pub use etcd::{Etcd, EtcdConfig};
use log_rows::RawRows;
pub use rows::RowKey;
pub use shared::Latency;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The single chain of keyd before logs (format 1): a store holding it is refused.
const OLD_CHAIN: &str = "chain";
const LOGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("logs");
const HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("heads");
pub(crate) const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new(TOKENS_NAME);
pub(crate) const REVOKED_ADMINS: TableDefinition<&str, &[u8]> =
    TableDefinition::new(REVOKED_ADMINS_NAME);
/// Every client certificate keyd issued: serial (hex) → its record.
pub(crate) const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new(CREDENTIALS_NAME);
/// Each principal's credential generation: principal key → its record.
/// Each node's envelope suite policy: node path → `any` or `x-wing`.
pub(crate) const SUITES: TableDefinition<&str, &[u8]> = TableDefinition::new(SUITES_NAME);
pub(crate) const GENERATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new(GENERATIONS_NAME);

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
    /// After a root rekey, until the old root is retired: the old branch secret, sealed
    /// by the seal token (it still opens envelopes of the old tree).
    pub const RETIRED_BRANCH_SEALED: &str = "retired_branch_sealed";
    /// During a root rekey: the new branch secret, sealed by the seal token, that the
    /// staged logs are written under (a resumed re-wrap checks it is the same).
    pub const STAGED_BRANCH_SEALED: &str = "staged_branch_sealed";
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
    /// The row key cannot be unsealed or made.
    #[error("database {path}: the row integrity key: {source}")]
    RowKey {
        /// The file.
        path: PathBuf,
        /// The seal token's error.
        #[source]
        source: HsmError,
    },
    /// The shared store (etcd) did not answer: no quorum reachable, or it failed.
    #[error("{what}: unavailable: {detail}")]
    Unavailable {
        /// The store.
        what: String,
        /// Why.
        detail: String,
    },
    /// The shared store refused the request for good (permissions, a limit).
    #[error("{what}: refused: {detail}")]
    Refused {
        /// The store.
        what: String,
        /// Why.
        detail: String,
    },
    /// Another replica changed the shared state first; nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// What this store cannot do (a shared store's backups are etcd's).
    #[error("{0}")]
    Unsupported(String),
    /// A protected table was used before [`Store::unlock`] (a bug in keyd).
    #[error("database {0}: protected rows used before the store was unlocked")]
    Locked(PathBuf),
}

/// A row of a protected table, checked against its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The record, as keyd wrote it.
    Valid(Vec<u8>),
    /// The row's tag does not match: it was added or edited outside keyd (logged).
    Tampered,
}

/// Stored entry rows and heads (log, bytes), undecoded.
type RawLogs = (RawRows, Vec<(String, Vec<u8>)>);

/// One log as a store holds it.
#[derive(Debug, Default)]
pub struct StoredLog {
    /// Its entries in order, from seq 0.
    pub entries: Vec<Entry>,
    /// The SHA-256 of each entry's stored bytes (what the next entry's `prev` and the
    /// head must name, unless the row was altered).
    pub hashes: Vec<[u8; 32]>,
    /// Its latest head.
    pub head: Option<Head>,
}

impl StoredLog {
    /// A log of `entries` (hashed here) and `head`.
    pub fn of(entries: Vec<Entry>, head: Option<Head>) -> Self {
        StoredLog {
            hashes: entries.iter().map(Entry::hash).collect(),
            entries,
            head,
        }
    }
}

/// The logs a store holds: per log, its entries and its latest head.
pub type StoredLogs = BTreeMap<KeyPath, StoredLog>;

/// redb's page cache: bounded well below redb's default of 1 GiB, which a start-up's one
/// pass over every log row would otherwise fill and keep resident (about 800 bytes per
/// node). The interior pages that every lookup touches fit many times over; what the
/// start-up reads once is read from the OS's file cache.
const CACHE_BYTES: usize = 64 << 20;

pub(super) fn builder() -> redb::Builder {
    let mut b = redb::Builder::new();
    b.set_cache_size(CACHE_BYTES);
    b
}

/// The keyd database.
pub struct Store {
    db: Database,
    path: PathBuf,
    rows: OnceLock<RowKey>,
    /// With `store = "etcd"`: the state the replica group shares lives there; the redb
    /// file holds only this replica's own sealed secrets (meta).
    shared: Option<Etcd>,
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
        // Sealed secrets, tokens and the logs: readable by keyd's user only, from the
        // start (an empty file becomes a new database).
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Db {
                path: path.to_owned(),
                source: redb::Error::Io(e),
            })?;
        let db = builder().create(path).map_err(|e| StoreError::Db {
            path: path.to_owned(),
            source: e.into(),
        })?;
        let store = Store {
            db,
            path: path.to_owned(),
            rows: OnceLock::new(),
            shared: None,
        };
        store.write(|tx| {
            tx.open_table(META)?;
            tx.open_table(LOGS)?;
            tx.open_table(HEADS)?;
            tx.open_table(TOKENS)?;
            tx.open_table(REVOKED_ADMINS)?;
            tx.open_table(CREDENTIALS)?;
            tx.open_table(GENERATIONS)?;
            tx.open_table(SUITES)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Opens an existing database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        let db = builder().open(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.to_owned()),
            e => StoreError::Db {
                path: path.to_owned(),
                source: e.into(),
            },
        })?;
        Ok(Store {
            db,
            path: path.to_owned(),
            rows: OnceLock::new(),
            shared: None,
        })
    }

    /// This store with its shared state in etcd (`store = "etcd"`), connected.
    pub fn with_etcd(mut self, config: &EtcdConfig) -> Result<Store, StoreError> {
        self.shared = Some(Etcd::connect(config)?);
        Ok(self)
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

    /// Appends entries (of any logs) and sets heads, in one transaction, with the
    /// enrollment token records `(hash, record)` of the nodes they add (so a node and
    /// its token are committed together).
    pub fn append_logs(
        &self,
        entries: &[Entry],
        heads: &[&Head],
        tokens: &[(&[u8], &[u8])],
    ) -> Result<(), StoreError> {
        let sealed = if tokens.is_empty() {
            Vec::new()
        } else {
            let key = self.row_key()?;
            tokens
                .iter()
                .map(|(hash, record)| (*hash, key.seal(TOKENS_NAME, hash, record)))
                .collect()
        };
        if let Some(etcd) = &self.shared {
            let rows = sealed
                .into_iter()
                .map(|(hash, row)| (shared::row_key(TOKENS_NAME, hash), row))
                .collect();
            return Self::shared_append(etcd, entries, heads, rows);
        }
        self.write(|tx| {
            put_logs(tx, entries, heads)?;
            if !sealed.is_empty() {
                let mut table = tx.open_table(TOKENS)?;
                for (hash, row) in &sealed {
                    table.insert(*hash, row.as_slice())?;
                }
            }
            Ok(())
        })
    }

    /// Stores an imported branch: its logs, heads and meta values, in one transaction
    /// (all or nothing).
    pub fn import(
        &self,
        entries: &[Entry],
        heads: &[&Head],
        values: &[(&str, &[u8])],
    ) -> Result<(), StoreError> {
        if let Some(etcd) = &self.shared {
            let branch = values
                .iter()
                .find(|(k, _)| *k == key::BRANCH_PATH)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            Self::shared_import(etcd, &branch, entries, heads)?;
            return self.set_meta(values);
        }
        self.write(|tx| {
            put_logs(tx, entries, heads)?;
            let mut table = tx.open_table(META)?;
            for (k, v) in values {
                table.insert(*k, *v)?;
            }
            Ok(())
        })
    }

    /// The stored logs: per log, its entries in order and its head. A store of the
    /// earlier single-chain format is refused, naming what to do.
    pub fn load_logs(&self) -> Result<StoredLogs, StoreError> {
        let old = (|| -> Result<bool, redb::Error> {
            let tx = self.db.begin_read()?;
            Ok(tx.list_tables()?.any(|t| t.name() == OLD_CHAIN))
        })()
        .map_err(self.db_err())?;
        if old {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                what: "chain".into(),
                detail: "written by a keyd before per-log chains (one chain table); this keyd cannot read it: init a new store and import a bundle issued from the new root log".into(),
            });
        }
        self.read_logs(CURRENT)
    }

    /// The logs held in `tables` (none when they do not exist), decoded and checked to
    /// be where they are stored.
    fn read_logs(&self, tables: LogTables) -> Result<StoredLogs, StoreError> {
        let corrupt = |what: String, detail: String| StoreError::Corrupt {
            path: self.path.clone(),
            what,
            detail,
        };
        let raw = match &self.shared {
            Some(etcd) if tables.logs.name() == CURRENT.logs.name() => {
                Some(Self::shared_logs(etcd)?)
            }
            // A replica group has no root rekey's staged or retired logs.
            Some(_) => return Ok(StoredLogs::new()),
            None => None,
        };
        let read_local = || {
            (|| -> Result<RawLogs, redb::Error> {
                let tx = self.db.begin_read()?;
                let mut rows = RawRows::default();
                if let Some(t) = existing(&tx, tables.logs)? {
                    for row in t.range::<(&str, u64)>(..)? {
                        let (k, v) = row?;
                        let (log, seq) = k.value();
                        rows.push(log, seq, v.value());
                    }
                }
                let mut heads = Vec::new();
                if let Some(t) = existing(&tx, tables.heads)? {
                    for row in t.iter()? {
                        let (k, v) = row?;
                        heads.push((k.value().to_owned(), v.value().to_vec()));
                    }
                }
                Ok((rows, heads))
            })()
            .map_err(self.db_err())
        };
        let (rows, heads) = match raw {
            Some(raw) => raw,
            None => read_local()?,
        };
        let mut out = StoredLogs::new();
        for (log, seq, decoded) in rows.decode() {
            let what = || format!("entry {seq} of log {log} in {}", tables.logs.name());
            let (e, hash) = decoded.map_err(|e| corrupt(what(), e.to_string()))?;
            if e.log.to_string() != log || e.seq != seq {
                return Err(corrupt(
                    what(),
                    format!("holds entry {} of log {}", e.seq, e.log),
                ));
            }
            let held = out.entry(e.log.clone()).or_default();
            held.entries.push(e);
            held.hashes.push(hash);
        }
        for (log, bytes) in heads {
            let what = || format!("head of log {log} in {}", tables.heads.name());
            let h = chain::decode_exact::<Head>(&bytes, 1024)
                .map_err(|e| corrupt(what(), e.to_string()))?;
            if h.log.to_string() != log {
                return Err(corrupt(what(), format!("names log {}", h.log)));
            }
            let log = h.log.clone();
            out.entry(log).or_default().head = Some(h);
        }
        Ok(out)
    }

    /// Sets a node's suite policy.
    pub fn put_suite(&self, node: &str, policy: &[u8]) -> Result<(), StoreError> {
        let row = self.row_key()?.seal(SUITES_NAME, node.as_bytes(), policy);
        if let Some(etcd) = &self.shared {
            return self.put_shared_row(etcd, SUITES_NAME, node.as_bytes(), row);
        }
        self.write(|tx| {
            tx.open_table(SUITES)?.insert(node, row.as_slice())?;
            Ok(())
        })
    }

    /// Every node's suite policy, checked.
    pub fn suites(&self) -> Result<Vec<(String, Checked)>, StoreError> {
        self.rows(SUITES)
    }

    /// Every row of a protected string-keyed table, checked (none when the table does
    /// not exist yet: a store made before the table).
    fn rows(
        &self,
        def: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Checked)>, StoreError> {
        let key = self.row_key()?;
        let table = def.name();
        if let Some(etcd) = &self.shared {
            return Ok(Self::shared_rows(etcd, table)?
                .into_iter()
                .map(|(k, v)| {
                    let checked = self.check(key, table, k.as_bytes(), &v);
                    (k, checked)
                })
                .collect());
        }
        let run = || -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let Some(table) = existing(&tx, def)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        };
        Ok(run()
            .map_err(self.db_err())?
            .into_iter()
            .map(|(k, v)| {
                let checked = self.check(key, table, k.as_bytes(), &v);
                (k, checked)
            })
            .collect())
    }

    /// Writes one protected row (sealed by the caller) to the shared store.
    pub(super) fn put_shared_row(
        &self,
        etcd: &Etcd,
        table: &str,
        key: &[u8],
        row: Vec<u8>,
    ) -> Result<(), StoreError> {
        etcd.txn(
            Vec::new(),
            vec![(shared::row_key(table, key), row)],
            Vec::new(),
        )?;
        Ok(())
    }
}

/// Table `def` in `tx`, or none when the store has no such table yet (a store made
/// before it).
fn existing<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &redb::ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, redb::Error> {
    match tx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) const TOKENS_NAME: &str = "tokens";
pub(crate) const REVOKED_ADMINS_NAME: &str = "revoked_admins";
pub(crate) const CREDENTIALS_NAME: &str = "credentials";
pub(crate) const GENERATIONS_NAME: &str = "generations";
pub(crate) const SUITES_NAME: &str = "suites";

/// A pair of tables holding logs and their heads: the current ones, or a root rekey's
/// staged or retired ones.
#[derive(Clone, Copy)]
pub(crate) struct LogTables {
    pub(super) logs: TableDefinition<'static, (&'static str, u64), &'static [u8]>,
    pub(super) heads: TableDefinition<'static, &'static str, &'static [u8]>,
}

/// The logs keyd serves.
pub(crate) const CURRENT: LogTables = LogTables {
    logs: LOGS,
    heads: HEADS,
};

fn put_logs(
    tx: &redb::WriteTransaction,
    entries: &[Entry],
    heads: &[&Head],
) -> Result<(), redb::Error> {
    put_logs_in(tx, CURRENT, entries, heads)
}

fn put_logs_in(
    tx: &redb::WriteTransaction,
    tables: LogTables,
    entries: &[Entry],
    heads: &[&Head],
) -> Result<(), redb::Error> {
    let mut logs = tx.open_table(tables.logs)?;
    let mut name = (KeyPath::root(), KeyPath::root().to_string());
    for e in entries {
        if e.log != name.0 {
            name = (e.log.clone(), e.log.to_string());
        }
        logs.insert((name.1.as_str(), e.seq), cbor_bytes(e).as_slice())?;
    }
    let mut table = tx.open_table(tables.heads)?;
    for h in heads {
        table.insert(h.log.to_string().as_str(), cbor_bytes(*h).as_slice())?;
    }
    Ok(())
}

//! The etcd backend of the store: the state a group of keyd replicas of one branch
//! shares (DESIGN.md section 9; decision 0016).
//!
//! Keys live under one prefix per replica group. Logs: `logs/<log>/<seq:020>` → an
//! entry, `heads/<log>` → its latest head, `size/<log>` → how many entries the log
//! holds (decimal). The size is the commit point: an append is one etcd transaction
//! that compares the size it extends and writes the entries, the head and the new
//! size together, so two replicas never write the same seq — the second is told
//! ([`StoreError::Conflict`]). Protected rows: `<table>/<key>` (binary keys in hex).
//! Each replica's audit log: `audit/<replica>/<seq:020>` and
//! `audit_heads/<replica>/<seq:020>`. A replica's own sealed secrets stay in its local
//! redb file beside its seal token (they are sealed to that token and of no use to
//! another replica).
//!
//! etcd's client is asynchronous; this backend runs it on a small runtime of its own
//! and waits for each call from the (synchronous) store, with a timeout, so a replica
//! cut off from a quorum answers "unavailable" instead of hanging.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, SortOrder, SortTarget, TxnOp,
    WatchOptions,
};
use zeroize::Zeroizing;

use super::StoreError;

/// How keyd reaches etcd (keyd.toml: `store = "etcd"`).
#[derive(Clone)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// The key prefix of this replica group (one branch), ending in `/`.
    pub prefix: String,
    /// This replica's name (unique in the group).
    pub replica: String,
    /// CA certificate (PEM) that signs the members' certificates, for `https://`.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for etcd's client-certificate auth.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// User name and password for etcd's own auth (the password from a file or the
    /// environment, never from keyd.toml).
    pub user: Option<(String, Zeroizing<String>)>,
    /// How long one call may take before it fails as unavailable.
    pub timeout: Duration,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("replica", &self.replica)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// Keys (the part after a prefix) and their values, in key order.
pub(crate) type Rows = Vec<(String, Vec<u8>)>;

/// A condition of a transaction.
pub(crate) enum Cmp {
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Present(String),
    /// The key holds exactly this value.
    Equals(String, Vec<u8>),
}

/// A connection to etcd.
pub struct Etcd {
    rt: tokio::runtime::Runtime,
    client: Client,
    kv: KvClient,
    prefix: String,
    replica: String,
    endpoints: String,
    timeout: Duration,
    /// Time of the last call that etcd answered (for health and the grace).
    contact: std::sync::Mutex<Option<Instant>>,
    /// Latency of each answered call, for the metrics.
    latency: crate::store::Latency,
    /// Watch lag: how late (ms) the last other replica's heartbeat arrived.
    lag_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The largest reply keyd accepts (a page of log entries).
const MAX_REPLY: usize = 64 << 20;
/// Keys per page when reading a table or a log.
const PAGE: i64 = 512;
/// Operations per transaction (etcd refuses more than 128 by default).
pub const MAX_TXN_OPS: usize = 120;

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// Connects (one call to check that a quorum answers).
    pub fn connect(config: &EtcdConfig) -> Result<Etcd, StoreError> {
        let endpoints = config.endpoints.join(",");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keyd-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable {
                what: endpoints.clone(),
                detail: format!("cannot start the etcd client's runtime: {e}"),
            })?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            .with_timeout(config.timeout)
            .with_keep_alive(Duration::from_secs(2), config.timeout)
            .with_require_leader(true);
        if let Some((user, password)) = &config.user {
            options = options.with_user(user.clone(), password.as_str());
        }
        if config.ca.is_some() || config.client_cert.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| StoreError::Unavailable {
                    what: endpoints.clone(),
                    detail: format!("cannot read {}: {e}", p.display()),
                })
            };
            if let Some(ca) = &config.ca {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
            }
            if let Some((cert, key)) = &config.client_cert {
                let key = Zeroizing::new(read(key)?);
                tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, key.as_slice()));
            }
            options = options.with_tls(tls);
        }
        let eps = config.endpoints.clone();
        let timeout = config.timeout;
        let client = rt
            .block_on(async move {
                tokio::time::timeout(timeout, Client::connect(eps, Some(options))).await
            })
            .map_err(|_| StoreError::Unavailable {
                what: endpoints.clone(),
                detail: format!("no answer within {} s", timeout.as_secs()),
            })?
            .map_err(|e| StoreError::Unavailable {
                what: endpoints.clone(),
                detail: e.to_string(),
            })?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_REPLY)
            .max_encoding_message_size(MAX_REPLY);
        let etcd = Etcd {
            rt,
            client,
            kv,
            prefix: config.prefix.clone(),
            replica: config.replica.clone(),
            endpoints,
            timeout: config.timeout,
            contact: std::sync::Mutex::new(None),
            latency: crate::store::Latency::default(),
            lag_ms: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
        };
        etcd.ping()?;
        Ok(etcd)
    }

    /// `etcd <endpoints> <prefix>`, for messages.
    pub fn describe(&self) -> String {
        format!("etcd {} {}", self.endpoints, self.prefix)
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The full key of `rest` under the group's prefix.
    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// When etcd last answered.
    pub fn last_contact(&self) -> Option<Instant> {
        *self.contact.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Latency of the calls answered.
    pub fn latency(&self) -> &crate::store::Latency {
        &self.latency
    }

    pub(crate) fn unavailable(&self, detail: String) -> StoreError {
        StoreError::Unavailable {
            what: self.describe(),
            detail,
        }
    }

    /// An etcd error: refused for good (auth, permissions, a request etcd will never
    /// take), or unavailable (no quorum, no leader, a timeout: it may pass).
    fn classify(&self, e: etcd_client::Error) -> StoreError {
        use etcd_client::Error as E;
        let refused = match &e {
            // gRPC codes: invalid argument 3, permission denied 7, resource exhausted 8,
            // failed precondition 9, out of range 11, unimplemented 12,
            // unauthenticated 16.
            E::GRpcStatus(status) => {
                matches!(i32::from(status.code()), 3 | 7 | 8 | 9 | 11 | 12 | 16)
            }
            E::InvalidArgs(_) | E::InvalidUri(_) | E::InvalidMetadataValue(_) => true,
            _ => false,
        };
        if refused {
            StoreError::Refused {
                what: self.describe(),
                detail: e.to_string(),
            }
        } else {
            self.unavailable(e.to_string())
        }
    }

    /// Runs `f` on the client's runtime and waits for it (at most the timeout). Safe to
    /// call from any thread, an actix worker's included: the caller only waits.
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let timeout = self.timeout;
        let started = Instant::now();
        self.rt.spawn(async move {
            let _ = tx.send(tokio::time::timeout(timeout, f).await);
        });
        let out = rx
            .recv()
            .map_err(|_| self.unavailable("the etcd client stopped".into()))?
            .map_err(|_| {
                self.unavailable(format!(
                    "no answer within {} s (is a quorum of members reachable?)",
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| self.classify(e))?;
        *self.contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.latency.record(started.elapsed());
        Ok(out)
    }

    /// Writes this replica's heartbeat (`beat/<replica>` = the time, ms): the others
    /// see it through their watch and measure how late it arrives (the watch lag).
    pub fn beat(&self) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let key = format!("beat/{}", self.replica);
        self.txn(
            Vec::new(),
            vec![(key, now.to_string().into_bytes())],
            Vec::new(),
        )?;
        Ok(())
    }

    /// The watch lag last measured (another replica's heartbeat), if any.
    pub fn watch_lag(&self) -> Option<Duration> {
        match self.lag_ms.load(std::sync::atomic::Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// A linearizable read that needs a quorum: is etcd there?
    pub fn ping(&self) -> Result<(), StoreError> {
        let mut kv = self.kv.clone();
        let key = self.key("size/");
        self.run(async move {
            kv.get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                .await
                .map(|_| ())
        })
    }

    /// The value of `rest`.
    pub(crate) fn get(&self, rest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_at(rest, 0)?.0)
    }

    /// The value of `rest` at `revision` (0: the latest), and the revision read.
    pub(crate) fn get_at(
        &self,
        rest: &str,
        revision: i64,
    ) -> Result<(Option<Vec<u8>>, i64), StoreError> {
        let mut kv = self.kv.clone();
        let key = self.key(rest);
        let options = (revision > 0).then(|| GetOptions::new().with_revision(revision));
        let mut reply = self.run(async move { kv.get(key, options).await })?;
        let at = reply.header().map_or(revision, |h| h.revision());
        Ok((
            reply
                .take_kvs()
                .into_iter()
                .next()
                .map(|kv| kv.value().to_vec()),
            at,
        ))
    }

    /// Every key under `rest` (the part after it) with its value, in key order, read at
    /// one revision.
    pub(crate) fn scan(&self, rest: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.scan_at(rest, 0)?.0)
    }

    /// [`Etcd::scan`] at `revision` (0: the latest), and the revision read.
    pub(crate) fn scan_at(&self, rest: &str, revision: i64) -> Result<(Rows, i64), StoreError> {
        let start = self.key(rest);
        let end = prefix_end(start.as_bytes());
        self.pages(
            &start,
            start.clone().into_bytes(),
            end,
            usize::MAX,
            revision,
        )
    }

    /// Up to `limit` keys under `rest` after `after` (its full remainder), in order; or
    /// only the last one.
    pub(crate) fn range(
        &self,
        rest: &str,
        after: Option<&str>,
        limit: usize,
        last: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = self.key(rest);
        let end = prefix_end(start.as_bytes());
        if last {
            let options = GetOptions::new()
                .with_range(end)
                .with_sort(SortTarget::Key, SortOrder::Descend)
                .with_limit(1);
            let mut kv = self.kv.clone();
            let from = start.clone();
            let mut reply = self.run(async move { kv.get(from, Some(options)).await })?;
            return Ok(reply
                .take_kvs()
                .into_iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(&kv.key()[start.len()..]).into_owned(),
                        kv.value().to_vec(),
                    )
                })
                .collect());
        }
        let from = match after {
            Some(a) => {
                let mut k = format!("{start}{a}").into_bytes();
                k.push(0);
                k
            }
            None => start.clone().into_bytes(),
        };
        Ok(self.pages(&start, from, end, limit, 0)?.0)
    }

    /// The keys under `rest` from `from` (inclusive) to `to` (exclusive), both
    /// remainders, at `revision` (0: the latest); and the revision read.
    pub(crate) fn between(
        &self,
        rest: &str,
        from: &str,
        to: &str,
        revision: i64,
    ) -> Result<(Rows, i64), StoreError> {
        let start = self.key(rest);
        let (f, t) = (format!("{start}{from}"), format!("{start}{to}"));
        self.pages(&start, f.into_bytes(), t.into_bytes(), usize::MAX, revision)
    }

    /// Reads `[from, end)` page by page at one revision (the first page's, unless
    /// given), at most `limit` keys; keys returned without `strip`.
    fn pages(
        &self,
        strip: &str,
        mut from: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        revision: i64,
    ) -> Result<(Rows, i64), StoreError> {
        let mut revision = revision;
        let mut out = Vec::new();
        loop {
            let want = PAGE.min(i64::try_from(limit - out.len()).unwrap_or(PAGE));
            let mut kv = self.kv.clone();
            let (f, e) = (from.clone(), end.clone());
            let mut options = GetOptions::new().with_range(e).with_limit(want);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut reply = self.run(async move { kv.get(f, Some(options)).await })?;
            if revision == 0 {
                revision = reply.header().map_or(0, |h| h.revision());
            }
            let more = reply.more();
            let kvs = reply.take_kvs();
            for kv in &kvs {
                let key = kv.key().get(strip.len()..).unwrap_or_default();
                out.push((
                    String::from_utf8_lossy(key).into_owned(),
                    kv.value().to_vec(),
                ));
            }
            match kvs.last() {
                Some(last) if more && out.len() < limit => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((out, revision)),
            }
        }
    }

    /// One transaction: when every condition holds, the puts and deletes (false, and
    /// nothing written, when one does not). A delete key ending in `/` removes every
    /// key under it.
    pub(crate) fn txn(
        &self,
        when: Vec<Cmp>,
        puts: Vec<(String, Vec<u8>)>,
        deletes: Vec<String>,
    ) -> Result<bool, StoreError> {
        let compares: Vec<Compare> = when
            .into_iter()
            .map(|c| match c {
                Cmp::Absent(k) => Compare::version(self.key(&k), CompareOp::Equal, 0),
                Cmp::Present(k) => Compare::version(self.key(&k), CompareOp::Greater, 0),
                Cmp::Equals(k, v) => Compare::value(self.key(&k), CompareOp::Equal, v),
            })
            .collect();
        let mut ops: Vec<TxnOp> = puts
            .into_iter()
            .map(|(k, v)| TxnOp::put(self.key(&k), v, None))
            .collect();
        ops.extend(
            deletes
                .into_iter()
                .map(|k| TxnOp::delete(self.key(&k), None)),
        );
        let mut kv = self.kv.clone();
        let txn = etcd_client::Txn::new().when(compares).and_then(ops);
        let reply = self.run(async move { kv.txn(txn).await }).map_err(|e| match e {
            // A write that was not answered may still be applied once a quorum is back.
            StoreError::Unavailable { what, detail } => StoreError::Unavailable {
                what,
                detail: format!(
                    "{detail}; the change may still be applied when a quorum is back: look before retrying"
                ),
            },
            e => e,
        })?;
        Ok(reply.succeeded())
    }

    /// Removes `rest` and returns its value, in one transaction, if it is there and
    /// `keep` does not hold for it (single use across every replica).
    pub(crate) fn take(
        &self,
        rest: &str,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(rest);
        loop {
            let mut kv = self.kv.clone();
            let k = key.clone();
            let mut reply = self.run(async move { kv.get(k, None).await })?;
            let Some(found) = reply.take_kvs().into_iter().next() else {
                return Ok(None);
            };
            let value = found.value().to_vec();
            if keep(&value) {
                return Ok(Some(value));
            }
            let txn = etcd_client::Txn::new()
                .when(vec![Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    found.mod_revision(),
                )])
                .and_then(vec![TxnOp::delete(key.clone(), None)]);
            let mut kv = self.kv.clone();
            let reply = self.run(async move { kv.txn(txn).await })?;
            if reply.succeeded() {
                return Ok(Some(value));
            }
            // Changed or taken since it was read: look again.
        }
    }

    /// Watches every key of the group from `revision` (0: now) and sends the names of
    /// the tables that changed (`logs`, `tokens`, …) to `to`; an empty list means "the
    /// watch restarted: look at everything". Stops when `to` is dropped.
    pub fn watch(&self, revision: i64, to: std::sync::mpsc::Sender<Vec<String>>) {
        let mut client = self.client.watch_client();
        let prefix = self.prefix.clone();
        let own_beat = format!("{}beat/{}", self.prefix, self.replica).into_bytes();
        let lag = self.lag_ms.clone();
        self.rt.spawn(async move {
            let mut from = revision;
            loop {
                let mut options = WatchOptions::new().with_prefix();
                if from > 0 {
                    options = options.with_start_revision(from);
                }
                match client.watch(prefix.clone(), Some(options)).await {
                    Ok(mut stream) => {
                        if to.send(Vec::new()).is_err() {
                            return;
                        }
                        while let Ok(Some(reply)) = stream.message().await {
                            let mut tables = BTreeMap::new();
                            for event in reply.events() {
                                if let Some(kv) = event.kv() {
                                    from = from.max(kv.mod_revision() + 1);
                                    let rest = &kv.key()[prefix.len().min(kv.key().len())..];
                                    let table = rest.split(|b| *b == b'/').next().unwrap_or(b"");
                                    if table == b"beat" {
                                        if kv.key() != own_beat.as_slice() {
                                            record_lag(&lag, kv.value());
                                        }
                                        continue;
                                    }
                                    tables.insert(String::from_utf8_lossy(table).into_owned(), ());
                                }
                            }
                            if reply.canceled() {
                                // Compacted past `from`: start again from now.
                                from = 0;
                                break;
                            }
                            if !tables.is_empty() && to.send(tables.into_keys().collect()).is_err()
                            {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "etcd: the watch failed; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
}

/// Records how late a heartbeat (its send time in ms) arrived.
fn record_lag(lag: &std::sync::atomic::AtomicU64, value: &[u8]) {
    let sent: Option<u128> = std::str::from_utf8(value).ok().and_then(|t| t.parse().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    if let Some(sent) = sent {
        let ms = u64::try_from(now.saturating_sub(sent)).unwrap_or(u64::MAX - 1);
        lag.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The key of a seq: 20 decimal digits, so that text order is number order.
pub(crate) fn seq_key(seq: u64) -> String {
    format!("{seq:020}")
}

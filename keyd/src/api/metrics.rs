//! Prometheus metrics, through the Prometheus project's client (`prometheus-client`,
//! OpenMetrics text): requests and latency by route and status, errors by code,
//! operations by kind, peers, and the gauges operators alert on — chain length per log,
//! branch head age, the server certificate's end, whether the seal token answers, and
//! the process's memory, CPU, open files and start time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpOutcome {
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Source {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Peer {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Log {
    log: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    latency: Family<Route, Histogram, fn() -> Histogram>,
    errors: Family<Code, Counter>,
    operations: Family<OpOutcome, Counter>,
    chain_pages: Family<Source, Counter>,
    peer_healthy: Family<Peer, Gauge>,
    peer_failures: Family<Peer, Counter>,
    peer_last_pull: Family<Peer, Gauge>,
    chain_entries: Family<Log, Gauge>,
    head_age: Gauge,
    server_cert_not_after: Gauge,
    seal_token_up: Gauge,
    resident_memory: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    /// The CPU seconds last read, as f64 bits: the counter grows by the difference.
    cpu_read: AtomicU64,
    open_fds: Gauge,
    start_time: Gauge,
    etcd_up: Gauge,
    etcd_contact_age: Gauge<f64, AtomicU64>,
    etcd_requests: Counter,
    etcd_seconds: Counter<f64, AtomicU64>,
    etcd_slowest: Gauge<f64, AtomicU64>,
    watch_apply: Histogram,
    watch_lag: Gauge<f64, AtomicU64>,
}

/// The global metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            operations: Family::default(),
            chain_pages: Family::default(),
            peer_healthy: Family::default(),
            peer_failures: Family::default(),
            peer_last_pull: Family::default(),
            chain_entries: Family::default(),
            head_age: Gauge::default(),
            server_cert_not_after: Gauge::default(),
            seal_token_up: Gauge::default(),
            resident_memory: Gauge::default(),
            cpu_seconds: Counter::default(),
            cpu_read: AtomicU64::new(0),
            open_fds: Gauge::default(),
            start_time: Gauge::default(),
            etcd_up: Gauge::default(),
            etcd_contact_age: Gauge::default(),
            etcd_requests: Counter::default(),
            etcd_seconds: Counter::default(),
            etcd_slowest: Gauge::default(),
            watch_apply: latency_histogram(),
            watch_lag: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "keyd_requests",
            "Requests by route and status",
            m.requests.clone(),
        );
        r.register(
            "keyd_request_duration_seconds",
            "Request latency by route",
            m.latency.clone(),
        );
        r.register("keyd_errors", "Error responses by code", m.errors.clone());
        r.register(
            "keyd_operations",
            "Operations by kind and outcome: key operations (batch items count one each), enroll, renew, add_node, revoke, rekey, revoke_admin",
            m.operations.clone(),
        );
        r.register(
            "keyd_chain_pages",
            "GET /v1/chain pages answered from the cache of encoded pages, and encoded",
            m.chain_pages.clone(),
        );
        r.register(
            "keyd_peer_healthy",
            "Whether the last pull from a peer keyd verified and was stored (1) or not (0)",
            m.peer_healthy.clone(),
        );
        r.register(
            "keyd_peer_pull_failures",
            "Failed pulls by peer",
            m.peer_failures.clone(),
        );
        r.register(
            "keyd_peer_last_pull_seconds",
            "Unix time of the last good pull by peer",
            m.peer_last_pull.clone(),
        );
        r.register(
            "keyd_chain_entries",
            "Entries held per log (m: the root log; m/i': a branch log)",
            m.chain_entries.clone(),
        );
        r.register(
            "keyd_branch_head_age_seconds",
            "Seconds since keyd last signed its branch head (verifiers refuse heads older than they allow)",
            m.head_age.clone(),
        );
        r.register(
            "keyd_server_certificate_not_after_seconds",
            "Unix time at which the server certificate served now ends (renewed at half its life)",
            m.server_cert_not_after.clone(),
        );
        r.register(
            "keyd_seal_token_up",
            "Whether the seal token answered keyd's last use of it (1) or not (0)",
            m.seal_token_up.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            m.resident_memory.clone(),
        );
        r.register(
            "process_cpu_seconds",
            "User and system CPU time spent, seconds",
            m.cpu_seconds.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors",
            m.open_fds.clone(),
        );
        r.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, seconds",
            m.start_time.clone(),
        );
        r.register(
            "keyd_etcd_up",
            "A replica (store = etcd): whether etcd answered the last quorum read (1) or not (0)",
            m.etcd_up.clone(),
        );
        r.register(
            "keyd_etcd_last_contact_age_seconds",
            "Seconds since etcd last answered this replica",
            m.etcd_contact_age.clone(),
        );
        r.register(
            "keyd_etcd_requests",
            "Calls to etcd answered",
            m.etcd_requests.clone(),
        );
        r.register(
            "keyd_etcd_request_seconds",
            "Total time of the calls to etcd answered (divide by keyd_etcd_requests for the mean latency)",
            m.etcd_seconds.clone(),
        );
        r.register(
            "keyd_etcd_request_slowest_seconds",
            "The slowest call to etcd in the last second",
            m.etcd_slowest.clone(),
        );
        r.register(
            "keyd_replica_watch_apply_seconds",
            "From a change seen on etcd's watch to it being in force at this replica",
            m.watch_apply.clone(),
        );
        r.register(
            "keyd_replica_watch_lag_seconds",
            "Watch lag: how late the last heartbeat of another replica (written every second) arrived here through etcd's watch (includes clock skew between hosts)",
            m.watch_lag.clone(),
        );
        m.start_time
            .set(i64::try_from(crate::service::unix_now()).unwrap_or(i64::MAX));
        // Both sources from the start, so a scrape before the first cache hit says 0.
        for source in ["cache", "encoded"] {
            let _ = m.chain_pages.get_or_create(&Source { source });
        }
        m
    }

    /// Records one request to `route` (the matched pattern) with its status and time.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records an error response by its stable code.
    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&Code { code }).inc();
    }

    /// Records one `GET /v1/chain` page: from the cache, or encoded.
    pub fn chain_page(&self, cached: bool) {
        let source = if cached { "cache" } else { "encoded" };
        self.chain_pages.get_or_create(&Source { source }).inc();
    }

    /// Records operations of one kind (`sign`, `encrypt`, ...): how many succeeded and
    /// how many failed (a batch counts each item).
    pub fn operations(&self, op: &'static str, ok: u64, failed: u64) {
        for (outcome, n) in [("ok", ok), ("error", failed)] {
            if n > 0 {
                self.operations
                    .get_or_create(&OpOutcome { op, outcome })
                    .inc_by(n);
            }
        }
    }

    /// Records a pull from a peer keyd: whether it verified and was stored, at `now`
    /// (Unix seconds).
    pub fn peer_pull(&self, peer: &str, ok: bool, now: u64) {
        let label = Peer {
            peer: peer.to_owned(),
        };
        self.peer_healthy.get_or_create(&label).set(i64::from(ok));
        if ok {
            self.peer_last_pull
                .get_or_create(&label)
                .set(i64::try_from(now).unwrap_or(i64::MAX));
        } else {
            self.peer_failures.get_or_create(&label).inc();
        }
    }

    /// Records when the server certificate being served ends (Unix seconds).
    pub fn server_certificate(&self, not_after: u64) {
        self.server_cert_not_after
            .set(i64::try_from(not_after).unwrap_or(i64::MAX));
    }

    /// Records whether the seal token answered keyd's last use of it.
    pub fn seal_token(&self, up: bool) {
        self.seal_token_up.set(i64::from(up));
    }

    /// A replica's view of etcd: whether the last quorum read answered; calls answered,
    /// their total time and the slowest lately; seconds since etcd last answered.
    pub fn etcd(&self, up: bool, health: &crate::service::StoreHealth) {
        let (calls, total, slowest, age) = (
            health.calls,
            health.seconds,
            health.slowest,
            health.contact_age,
        );
        if let Some(lag) = health.lag {
            self.watch_lag.set(lag);
        }
        self.etcd_up.set(i64::from(up));
        let seen = self.etcd_requests.get();
        self.etcd_requests.inc_by(calls.saturating_sub(seen));
        let was = self.etcd_seconds.get();
        if total > was {
            self.etcd_seconds.inc_by(total - was);
        }
        self.etcd_slowest.set(slowest);
        self.etcd_contact_age.set(age);
    }

    /// How long a watch event took to be applied.
    pub fn watch_applied(&self, took: Duration) {
        self.watch_apply.observe(took.as_secs_f64());
    }

    /// Sets the chain gauges: entries per log, and the age of keyd's branch head.
    pub fn chain(&self, logs: &[(String, usize)], head_age: Option<u64>) {
        for (log, entries) in logs {
            self.chain_entries
                .get_or_create(&Log { log: log.clone() })
                .set(i64::try_from(*entries).unwrap_or(i64::MAX));
        }
        if let Some(age) = head_age {
            self.head_age.set(i64::try_from(age).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text exposition, the process gauges read first.
    pub fn render(&self) -> String {
        self.read_process();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Reads the process gauges from /proc/self (Linux; left unset elsewhere).
    fn read_process(&self) {
        let page = rustix::param::page_size() as u64;
        let ticks = rustix::param::clock_ticks_per_second();
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(pages) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        {
            self.resident_memory
                .set(i64::try_from(pages * page).unwrap_or(i64::MAX));
        }
        // utime and stime are fields 14 and 15 of /proc/self/stat, counted after the
        // command name (which may hold spaces) closes with ')'.
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
            if let (Some(user), Some(system), true) = (field(11), field(12), ticks > 0) {
                let now = (user + system) as f64 / ticks as f64;
                let before = f64::from_bits(self.cpu_read.swap(now.to_bits(), Ordering::Relaxed));
                if now > before {
                    self.cpu_seconds.inc_by(now - before);
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(fds.count()).unwrap_or(i64::MAX));
        }
    }
}

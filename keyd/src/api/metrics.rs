//! Prometheus metrics: requests and latency by route and status, errors by code,
//! operations by kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    errors: BTreeMap<&'static str, u64>,
    operations: BTreeMap<(&'static str, &'static str), u64>,
    peers: BTreeMap<String, PeerHealth>,
    /// `GET /v1/chain` pages answered from the cache, and encoded.
    chain_pages: (u64, u64),
}

/// A per-peer metric: name, help, type, and its value for a peer.
type PeerMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PeerHealth) -> u64,
);

#[derive(Default, Clone, Copy)]
struct PeerHealth {
    healthy: bool,
    failures: u64,
    last_ok: u64,
}

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// The global metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one request to `route` (the matched pattern) with its status and time.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut m = self.lock();
        *m.requests.entry((route.to_owned(), status)).or_default() += 1;
        let h = m.latency.entry(route.to_owned()).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
    }

    /// Records an error response by its stable code.
    pub fn error(&self, code: &'static str) {
        *self.lock().errors.entry(code).or_default() += 1;
    }

    /// Records one `GET /v1/chain` page: from the cache, or encoded.
    pub fn chain_page(&self, cached: bool) {
        let mut inner = self.lock();
        if cached {
            inner.chain_pages.0 += 1;
        } else {
            inner.chain_pages.1 += 1;
        }
    }

    /// Records operations of one kind (`sign`, `encrypt`, ...): how many succeeded and
    /// how many failed (a batch counts each item).
    pub fn operations(&self, op: &'static str, ok: u64, failed: u64) {
        let mut m = self.lock();
        for (outcome, n) in [("ok", ok), ("error", failed)] {
            if n > 0 {
                *m.operations.entry((op, outcome)).or_default() += n;
            }
        }
    }

    /// Records a pull from a peer keyd: whether it verified and was stored, at `now`
    /// (Unix seconds).
    pub fn peer_pull(&self, peer: &str, ok: bool, now: u64) {
        let mut m = self.lock();
        let p = m.peers.entry(peer.to_owned()).or_default();
        p.healthy = ok;
        if ok {
            p.last_ok = now;
        } else {
            p.failures += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP keyd_chain_pages_total GET /v1/chain pages answered from the cache of encoded pages, and encoded.\n# TYPE keyd_chain_pages_total counter\nkeyd_chain_pages_total{{source=\"cache\"}} {}\nkeyd_chain_pages_total{{source=\"encoded\"}} {}",
            m.chain_pages.0, m.chain_pages.1
        );
        out.push_str("# HELP keyd_requests_total Requests by route and status.\n# TYPE keyd_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "keyd_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP keyd_request_duration_seconds Request latency by route.\n# TYPE keyd_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "keyd_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "keyd_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "keyd_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "keyd_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP keyd_errors_total Error responses by code.\n# TYPE keyd_errors_total counter\n",
        );
        for (code, n) in &m.errors {
            let _ = writeln!(out, "keyd_errors_total{{code=\"{code}\"}} {n}");
        }
        out.push_str(
            "# HELP keyd_operations_total Operations by kind and outcome: key operations (batch items count one each), enroll, renew, add_node, revoke, rekey, revoke_admin.\n# TYPE keyd_operations_total counter\n",
        );
        for ((op, outcome), n) in &m.operations {
            let _ = writeln!(
                out,
                "keyd_operations_total{{op=\"{op}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let peer_metrics: [PeerMetric; 3] = [
            (
                "keyd_peer_healthy",
                "Whether the last pull from a peer keyd verified and was stored (1) or not (0).",
                "gauge",
                |p| u64::from(p.healthy),
            ),
            (
                "keyd_peer_pull_failures_total",
                "Failed pulls by peer.",
                "counter",
                |p| p.failures,
            ),
            (
                "keyd_peer_last_pull_seconds",
                "Unix time of the last good pull by peer.",
                "gauge",
                |p| p.last_ok,
            ),
        ];
        for (name, help, kind, value) in peer_metrics {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (peer, p) in &m.peers {
                let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {}", value(p));
            }
        }
        out
    }
}

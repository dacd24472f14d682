//! The load itself: one thread and one keep-alive connection per connection, in a closed
//! loop (each connection sends its next request when the last is answered) or an open
//! loop (requests are due at a fixed total rate, whether or not the server keeps up),
//! with latencies in an HDR histogram; and the server's CPU time over the measured
//! seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::request::{Plan, check};

/// How requests are paced.
#[derive(Clone, Copy)]
pub enum Pace {
    /// Each connection sends as soon as its last answer came.
    Closed,
    /// Requests are due at this total rate (per second), spread over the connections;
    /// latency counts from when a request was due, so a server that falls behind is
    /// charged for the queue it builds (no coordinated omission).
    Open(f64),
}

/// What a run measured.
pub struct Measured {
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
    /// The server's CPU seconds over the measured seconds, if asked.
    pub server_cpu: Option<f64>,
    /// The seconds measured: the run's, or less when `--requests` ran out first.
    pub seconds: f64,
}

/// CPU seconds (user + system, all threads) a process has used.
pub fn cpu_seconds(pid: u32, clk_tck: u64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').context("/proc stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .context("/proc stat fields")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    Ok(ticks as f64 / clk_tck as f64)
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s, three significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|e| unreachable!("constant bounds: {e}"))
}

fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("a load thread panicked")))
}

/// A connection's part of the load.
pub struct Load<'a> {
    /// The full URL.
    pub url: &'a str,
    /// What to send and check.
    pub plan: &'a Plan,
    /// OpenBao token, if any.
    pub token: Option<&'a str>,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// Measured seconds.
    pub run: Duration,
    /// Pacing.
    pub pace: Pace,
    /// Requests left to send, when the run has a count (`--requests`).
    pub left: Option<AtomicU64>,
}

impl Load<'_> {
    /// Claims one request of the count, if the run has one: false when none are left.
    fn claim(&self) -> bool {
        self.left.as_ref().is_none_or(|left| {
            left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }

    fn send(&self, agent: &ureq::Agent, conn: usize, count: u64) -> Result<()> {
        let mut req = agent
            .post(self.url)
            .header("content-type", "application/json");
        if let Some(token) = self.token {
            req = req.header("x-vault-token", token);
        }
        let mut resp = match &self.plan.node_names {
            Some(prefix) => {
                req.send_json(serde_json::json!({ "name": format!("{prefix}-{conn}-{count}") }))?
            }
            None => req.send(&self.plan.body[..])?,
        };
        let answer = resp.body_mut().read_to_vec()?;
        check(self.plan, resp.status().as_u16(), &answer)
    }

    /// Runs connection `i` of `n` from `start` until the end of the measured seconds.
    fn connection(
        &self,
        agent: ureq::Agent,
        start: Instant,
        i: usize,
        n: usize,
    ) -> Result<Histogram<u64>> {
        let mut lat = histogram();
        let end = self.warmup + self.run;
        let mut record = |from: Instant, due: Duration| {
            if due >= self.warmup {
                lat.saturating_record(from.elapsed().as_micros().max(1) as u64);
            }
        };
        match self.pace {
            Pace::Closed => {
                let mut k = 0u64;
                while start.elapsed() < end && self.claim() {
                    let t = Instant::now();
                    self.send(&agent, i, k)?;
                    k += 1;
                    record(t, t - start);
                }
            }
            Pace::Open(rate) => {
                // Connection i sends at start + (i + k n) / rate, k = 0, 1, ...
                let mut k = 0u64;
                loop {
                    let due = Duration::from_secs_f64((i as u64 + k * n as u64) as f64 / rate);
                    if due >= end || !self.claim() {
                        break;
                    }
                    let at = start + due;
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    self.send(&agent, i, k)?;
                    record(at, due);
                    k += 1;
                }
            }
        }
        Ok(lat)
    }

    /// Runs the load on one agent per connection; with `server`, also reads the
    /// server's CPU time over the measured seconds.
    pub fn run(&self, agents: Vec<ureq::Agent>, server: Option<(u32, u64)>) -> Result<Measured> {
        let start = Instant::now();
        let n = agents.len();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (results, cpu) = std::thread::scope(|s| {
            // The server's CPU time when the warm-up ends (none if the load ends first).
            let before = server.map(|(pid, clk)| {
                s.spawn(move || -> Result<Option<f64>> {
                    let wait = self.warmup.saturating_sub(start.elapsed());
                    match stopped.recv_timeout(wait) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            Ok(Some(cpu_seconds(pid, clk)?))
                        }
                        _ => Ok(None),
                    }
                })
            });
            let handles: Vec<_> = agents
                .into_iter()
                .enumerate()
                .map(|(i, agent)| s.spawn(move || self.connection(agent, start, i, n)))
                .collect();
            let results: Vec<Result<Histogram<u64>>> = handles.into_iter().map(joined).collect();
            drop(stop);
            let cpu = match (server, before.map(joined)) {
                (Some((pid, clk)), Some(Ok(Some(before)))) => {
                    Some(cpu_seconds(pid, clk).map(|after| after - before))
                }
                (_, Some(Err(e))) => Some(Err(e)),
                _ => None,
            };
            (results, cpu)
        });
        let seconds = (start.elapsed().saturating_sub(self.warmup))
            .min(self.run)
            .as_secs_f64();
        let mut latency = histogram();
        for r in results {
            latency
                .add(r.context("a connection failed")?)
                .context("merging latencies")?;
        }
        Ok(Measured {
            latency,
            server_cpu: cpu.transpose().context("reading the server's CPU time")?,
            seconds,
        })
    }
}

//! Shared by the benchmarks: machine-readable results.

use std::io::Write;
use std::time::{Duration, Instant};

/// Appends `line` (one JSON object) to the file named by `KEYD_BENCH_JSON`, if set, so
/// that bench/run-scale can chart the figures a benchmark prints.
pub fn emit(line: &serde_json::Value) {
    let Ok(path) = std::env::var("KEYD_BENCH_JSON") else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        panic!("KEYD_BENCH_JSON {path}: {e}");
    }
}

/// Nanoseconds per call of `f`: the median of 5 runs of about `budget / 5` each.
#[allow(dead_code, reason = "not every benchmark times closures")]
pub fn measure(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up and size a batch to ~10 ms.
    let mut batch = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed() > Duration::from_millis(10) {
            break;
        }
        batch *= 2;
    }
    let mut runs = Vec::new();
    for _ in 0..5 {
        let (mut n, t) = (0u64, Instant::now());
        while t.elapsed() < budget / 5 {
            for _ in 0..batch {
                f();
            }
            n += batch;
        }
        runs.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    runs.sort_by(f64::total_cmp);
    runs[2]
}

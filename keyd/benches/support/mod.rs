//! Shared by the benchmarks: machine-readable results.

use std::io::Write;

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

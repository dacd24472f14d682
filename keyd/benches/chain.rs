//! Chain benchmarks: `cargo bench -p keyd --bench chain [-- N…]`.
//!
//! Builds cluster chains of N entries (the arguments, else `KEYD_BENCH_CHAIN_ENTRIES`,
//! default 1,000,000) spread over 1, 10 and 100 branch logs (`KEYD_BENCH_CHAIN_LOGS`,
//! default `1,10,100`): the root log certifies the branches; each branch log opens with
//! its anchor, then certifies nodes (1000 under the branch, then children under them),
//! each followed by its epoch 0. It then verifies each chain file with [`verify_file`]
//! on one core (decoding, hashing, every signature and rule, every head) and reports
//! the rate in entries per second, beside the raw Ed25519 `verify_strict` rate measured
//! in the same run (N signatures over messages the size of the chain's statements), plus
//! the resident memory the verified chain (its entries and state) takes per key, and of
//! it the state's (measured on a copy of the state); then
//! restores the same logs as keyd does at start-up from its store (the root log fully
//! verified, each branch log decoded from its rows, by its links and its signed head,
//! not every signature, its entries left in the store). Each chain is
//! verified in a child process of this benchmark, so that its memory is measured alone.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::hint::black_box;
use std::time::Instant;

use common::{NOW, Tree};
use ed25519_dalek::{Signer, SigningKey};
use keyd::chain::{
    Anchor, Body, Certify, Entry, Epoch, Head, KeySet, Statement, encode_log, verify_file,
};
use keyd::derive::KeyPath;

/// Entries per chain unless `KEYD_BENCH_CHAIN_ENTRIES` says otherwise.
const DEFAULT_ENTRIES: usize = 1_000_000;
/// Nodes certified directly under a branch; later nodes are their children.
const WIDTH: u64 = 1000;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn path(s: &str) -> KeyPath {
    s.parse().unwrap_or_else(|_| unreachable!("a valid path"))
}

/// Ed25519 keys for node `i` of branch `b` (only the public keys matter to the chain).
fn keyset(b: u32, i: u64, salt: u8) -> (SigningKey, KeySet) {
    let mut seed = [salt; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    seed[8..12].copy_from_slice(&b.to_le_bytes());
    let sk = SigningKey::from_bytes(&seed);
    let ed = sk.verifying_key().to_bytes();
    (
        sk,
        KeySet {
            ed25519: ed,
            x25519: ed,
        },
    )
}

/// Node `i` of a branch: its path and its parent's index (`None`: the branch itself).
fn node_of(branch: &KeyPath, i: u64) -> (KeyPath, Option<u64>) {
    let (parent, idx, parent_path) = if i < WIDTH {
        (None, i, branch.clone())
    } else {
        let p = i % WIDTH;
        let parent_path = branch
            .child_node(p as u32)
            .unwrap_or_else(|| unreachable!());
        (Some(p), i / WIDTH, parent_path)
    };
    let path = parent_path
        .child_node(idx as u32)
        .unwrap_or_else(|| unreachable!());
    (path, parent)
}

/// One branch's work: its statements after the anchor (`count` of them).
struct BranchPlan {
    b: u32,
    path: KeyPath,
    key: SigningKey,
    /// Signing keys of the first `WIDTH` nodes (the parents of the later ones).
    parents: Vec<SigningKey>,
    count: u64,
}

/// The statements for certify items `items` of `plan` (a certify, then its epoch, while
/// the branch's count lasts).
fn statements(plan: &BranchPlan, items: std::ops::Range<u64>) -> Vec<Statement> {
    let mut out = Vec::with_capacity(2 * (items.end - items.start) as usize);
    for i in items {
        let (node, parent) = node_of(&plan.path, i);
        let (signer, signer_key) = match parent {
            None => (plan.path.clone(), &plan.key),
            Some(p) => (
                node.parent_node().unwrap_or_else(|| unreachable!()),
                &plan.parents[p as usize],
            ),
        };
        let (sk, keys) = if i < WIDTH {
            let sk = plan.parents[i as usize].clone();
            let ed = sk.verifying_key().to_bytes();
            (
                sk,
                KeySet {
                    ed25519: ed,
                    x25519: ed,
                },
            )
        } else {
            keyset(plan.b, i, 1)
        };
        let body = Body::Certify(Certify {
            path: node.clone(),
            name: format!("n{i}"),
            role: "node".into(),
            keys,
            not_before: NOW - 10,
            not_after: NOW + 1_000_000,
        });
        out.push(Statement::sign(body, signer, NOW, signer_key));
        if 2 * i + 1 < plan.count {
            let (_, ekeys) = keyset(plan.b, i, 2);
            let body = Body::Epoch(Epoch {
                node: node.clone(),
                epoch: 0,
                keys: ekeys,
            });
            out.push(Statement::sign(body, node, NOW, &sk));
        }
    }
    out
}

/// Runs `f` over `0..n` split into one contiguous range per core, results in order.
fn parallel<T: Send>(n: u64, f: impl Fn(std::ops::Range<u64>) -> Vec<T> + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()) as u64;
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .step_by(chunk as usize)
            .map(|start| {
                let f = &f;
                s.spawn(move || f(start..(start + chunk).min(n)))
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|_| panic!("builder thread")))
            .collect()
    })
}

/// Links statements into a log's entries.
fn link(log: &KeyPath, statements: Vec<Statement>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::with_capacity(statements.len());
    for statement in statements {
        let e = Entry {
            log: log.clone(),
            seq: entries.len() as u64,
            prev: entries.last().map_or([0; 32], Entry::hash),
            statement,
            appended_at: NOW,
        };
        entries.push(e);
    }
    entries
}

fn head(log: &KeyPath, entries: &[Entry], key: &SigningKey) -> Head {
    let last = entries
        .last()
        .unwrap_or_else(|| unreachable!("a log has entries"));
    Head::sign(log.clone(), last.seq, last.hash(), NOW, key)
}

/// A valid cluster chain of `n` entries over `logs` branch logs, as a file; and the
/// mean size of the signed bytes of its statements.
fn build(tree: &Tree, n: usize, logs: u32) -> (Vec<u8>, usize) {
    let root = KeyPath::root();
    let branches: Vec<KeyPath> = (1..=logs).map(|b| path(&format!("m/{b}'"))).collect();
    let mut root_statements = vec![tree.genesis()];
    root_statements.extend(
        branches
            .iter()
            .enumerate()
            .map(|(b, p)| tree.certify(p, &format!("b{b}"))),
    );
    let root_entries = link(&root, root_statements);
    let mut out = Vec::new();
    encode_log(
        &mut out,
        &root_entries,
        Some(&head(&root, &root_entries, &tree.signing_key(&root))),
    );

    // What is left after the root log and the anchors, spread evenly.
    let rest = n.saturating_sub(root_entries.len() + branches.len()) as u64;
    let per = rest / u64::from(logs);
    let plans: Vec<BranchPlan> = branches
        .iter()
        .enumerate()
        .map(|(b, p)| {
            let count = per + u64::from((b as u64) < rest % u64::from(logs));
            let b = b as u32;
            let parents = parallel(count.div_ceil(2).min(WIDTH), |r| {
                r.map(|i| keyset(b, i, 1).0).collect()
            });
            BranchPlan {
                b,
                path: p.clone(),
                key: tree.signing_key(p),
                parents,
                count,
            }
        })
        .collect();
    let mut signed_bytes = (0usize, 0usize);
    for (plan, certified) in plans.iter().zip(&root_entries[1..]) {
        let anchor = Statement::sign(
            Body::Anchor(Anchor {
                root_seq: certified.seq,
                root_entry: certified.hash(),
            }),
            plan.path.clone(),
            NOW,
            &plan.key,
        );
        let mut all = vec![anchor];
        all.extend(parallel(plan.count.div_ceil(2), |r| statements(plan, r)));
        for st in all.iter().take(1000) {
            signed_bytes.0 += st.signed_bytes().len();
            signed_bytes.1 += 1;
        }
        let entries = link(&plan.path, all);
        encode_log(
            &mut out,
            &entries,
            Some(&head(&plan.path, &entries, &plan.key)),
        );
    }
    (out, signed_bytes.0 / signed_bytes.1.max(1))
}

/// Raw `verify_strict`: `n` verifications over distinct keys and `len`-byte messages.
fn raw_rate(n: usize, len: usize) -> f64 {
    let distinct = n.clamp(1, 20_000);
    let triples: Vec<_> = parallel(distinct as u64, |r| {
        r.map(|i| {
            let (sk, _) = keyset(u32::MAX, i, 9);
            let mut msg = vec![7u8; len];
            msg[..8].copy_from_slice(&i.to_le_bytes());
            let sig = sk.sign(&msg);
            (sk.verifying_key(), msg, sig)
        })
        .collect()
    });
    let t = Instant::now();
    let mut ok = 0usize;
    for (vk, msg, sig) in triples.iter().cycle().take(n) {
        ok += usize::from(
            black_box(vk)
                .verify_strict(black_box(msg), black_box(sig))
                .is_ok(),
        );
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(ok, n);
    n as f64 / secs
}

/// Set (to a chain file) in the child process that verifies one chain: a fresh
/// process, so that its resident memory measures the verified chain alone.
const CHILD: &str = "KEYD_BENCH_CHAIN_FILE";

/// What the child measured.
struct Measured {
    entries: usize,
    verify_s: f64,
    held_bytes: u64,
    /// Of `held_bytes`, what the state takes (measured on a copy of it): the rest is
    /// the entries held.
    state_bytes: u64,
    keys: usize,
    restore_s: f64,
}

/// The child: verifies the chain file, then restores its logs as keyd does at start-up
/// from its store: the root log verified, its own stored logs decoded from their rows
/// (not re-encoded), hashed as stored and restored offloaded (their links, places and
/// signed heads checked, not every signature: `Chain::restore_offloaded`). Prints the
/// figures.
fn verify_child(file: &str) {
    use sha2::Digest;
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let rss0 = rss_bytes();
    let t = Instant::now();
    let chain = verify_file(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
    let verify_s = t.elapsed().as_secs_f64();
    let held_bytes = rss_bytes().saturating_sub(rss0);
    let before_state = rss_bytes();
    let state = chain.state().clone();
    let state_bytes = rss_bytes() - before_state;
    drop(black_box(state));

    let (entries, keys) = (chain.len(), chain.state().len());
    // Per log: its rows as a store holds them (each entry's canonical bytes), its head.
    let stored: Vec<(Vec<Vec<u8>>, Head, bool)> = chain
        .logs()
        .map(|(log, l)| {
            let head = l.head.clone().unwrap_or_else(|| unreachable!("verified"));
            let rows = l.entries.iter().map(keyd::chain::cbor_bytes).collect();
            (rows, head, log.depth() > 0)
        })
        .collect();
    drop(black_box(chain));
    let t = Instant::now();
    let mut restored = keyd::chain::Chain::new();
    for (rows, head, trusted) in stored {
        let entries: Vec<Entry> = rows
            .iter()
            .map(|r| {
                keyd::chain::decode_hashed(r, keyd::chain::MAX_RECORD_BYTES)
                    .unwrap_or_else(|e| panic!("row: {e}"))
            })
            .collect();
        let restoring = if trusted {
            let hashes = rows
                .iter()
                .map(|r| sha2::Sha256::digest(r).into())
                .collect();
            restored.restore_offloaded(entries, hashes, head)
        } else {
            restored.restore_log(entries, head, false)
        };
        restoring.unwrap_or_else(|e| panic!("restore: {e}"));
    }
    let restore_s = t.elapsed().as_secs_f64();
    assert_eq!(restored.len(), entries);
    drop(black_box(restored));
    println!("{entries} {verify_s} {held_bytes} {keys} {restore_s} {state_bytes}");
}

/// Verifies `file` in a child process.
fn measure(file: &std::path::Path) -> Measured {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    let out = std::process::Command::new(exe)
        .env(CHILD, file)
        .output()
        .unwrap_or_else(|e| panic!("child: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 6, "child said {text:?}");
    Measured {
        entries: v[0] as usize,
        verify_s: v[1],
        held_bytes: v[2] as u64,
        keys: v[3] as usize,
        restore_s: v[4],
        state_bytes: v[5] as u64,
    }
}

fn main() {
    if let Ok(file) = std::env::var(CHILD) {
        verify_child(&file);
        return;
    }
    // Entry counts: arguments (`cargo bench -p keyd --bench chain -- 10000 100000`), else
    // KEYD_BENCH_CHAIN_ENTRIES, else 1,000,000.
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes.push(env_or("KEYD_BENCH_CHAIN_ENTRIES", DEFAULT_ENTRIES));
    }
    let log_counts: Vec<u32> = std::env::var("KEYD_BENCH_CHAIN_LOGS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u32>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 10, 100]);
    let tree = Tree::new(3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));

    for n in sizes {
        run(&tree, dir.path(), n, &log_counts);
    }
}

/// Builds and measures chains of `n` entries over each count of branch logs, then the
/// raw rate for `n` signatures, and prints the table.
fn run(tree: &Tree, dir: &std::path::Path, n: usize, log_counts: &[u32]) {
    let mut rows = Vec::new();
    let mut msg_len = 0;
    for &logs in log_counts {
        let t = Instant::now();
        let (bytes, len) = build(tree, n, logs);
        let build_s = t.elapsed().as_secs_f64();
        msg_len = msg_len.max(len);
        let file = dir.join(format!("chain-{n}-{logs}.cbor"));
        std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let file_mb = bytes.len() as f64 / 1e6;
        drop(bytes);
        let m = measure(&file);
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        rows.push((logs, build_s, file_mb, m));
    }

    let raw = raw_rate(n, msg_len);
    println!(
        "raw Ed25519 verify_strict: {n} signatures over {msg_len}-byte messages, {raw:.0}/s on one core\n"
    );
    println!(
        "{:>5} {:>9} {:>8} {:>8} {:>11} {:>7} {:>9} {:>8} {:>12} {:>11}",
        "logs",
        "entries",
        "build s",
        "file MB",
        "verify /s",
        "vs raw",
        "held MB",
        "B/key",
        "state B/key",
        "restore /s"
    );
    for (logs, build_s, file_mb, m) in rows {
        let rate = m.entries as f64 / m.verify_s;
        support::emit(&serde_json::json!({
            "bench": "chain", "logs": logs, "entries": m.entries, "verify_per_second": rate,
            "raw_verify_per_second": raw, "held_bytes": m.held_bytes, "keys": m.keys,
            "bytes_per_key": m.held_bytes as f64 / m.keys as f64,
            "state_bytes_per_key": m.state_bytes as f64 / m.keys as f64,
            "restore_per_second": m.entries as f64 / m.restore_s, "file_mb": file_mb,
        }));
        println!(
            "{:>5} {:>9} {:>8.1} {:>8.1} {:>11.0} {:>6.0}% {:>9.1} {:>8.0} {:>12.0} {:>11.0}",
            logs,
            m.entries,
            build_s,
            file_mb,
            rate,
            100.0 * rate / raw,
            m.held_bytes as f64 / 1e6,
            m.held_bytes as f64 / m.keys as f64,
            m.state_bytes as f64 / m.keys as f64,
            m.entries as f64 / m.restore_s
        );
    }
    println!();
}

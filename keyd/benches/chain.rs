//! Chain benchmarks: `cargo bench -p keyd --bench chain [-- 10000 100000 1000000]`.
//!
//! Builds chains of N statements (half `certify`, half `epoch`, under a 1000-wide tree),
//! then decodes, verifies and applies them on one core, and reports the rate beside the
//! raw Ed25519 `verify_strict` rate measured in the same run, plus the resident memory
//! the resulting state takes per key; then restores the same entries as keyd does at
//! start-up (links and the signed head checked, not every signature).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{NOW, Tree};
use ed25519_dalek::{Signer, SigningKey};
use keyd::chain::{
    Body, Certify, ChainState, ChainWriter, Entry, Epoch, Head, KeySet, Record, Records, Statement,
    encode_file, entry_hash_of_record,
};
use keyd::derive::KeyPath;

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

/// Ed25519 keys for node `i` (only the public keys matter to the chain).
fn keyset(i: u64, salt: u8) -> (SigningKey, KeySet) {
    let mut seed = [salt; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
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

/// A valid chain of genesis + branch + `n` statements.
fn build(tree: &Tree, n: u64) -> Vec<u8> {
    let branch: KeyPath = "m/1'".parse().unwrap_or_else(|_| unreachable!());
    let mut statements = vec![tree.genesis(), tree.certify(&branch, "branch")];
    let branch_key = tree.signing_key(&branch);
    // Parents: 1000 nodes under the branch, then children under them.
    let mut parents: Vec<(KeyPath, SigningKey)> = Vec::new();
    let mut i = 0u64;
    while (statements.len() as u64) < n + 2 {
        let (parent_path, parent_key) = if i < 1000 {
            (&branch, &branch_key)
        } else {
            let (p, k) = &parents[(i % 1000) as usize];
            (p, k)
        };
        let idx = if i < 1000 {
            i as u32
        } else {
            (i / 1000) as u32
        };
        let path = parent_path
            .child_node(idx)
            .unwrap_or_else(|| unreachable!());
        let (sk, keys) = keyset(i, 1);
        let body = Body::Certify(Certify {
            path: path.clone(),
            name: format!("n{i}"),
            role: "node".into(),
            keys,
            not_before: NOW - 10,
            not_after: NOW + 1_000_000,
        });
        statements.push(Statement::sign(body, parent_path.clone(), NOW, parent_key));
        if (statements.len() as u64) < n + 2 {
            let (_, ekeys) = keyset(i, 2);
            let body = Body::Epoch(Epoch {
                node: path.clone(),
                epoch: 0,
                keys: ekeys,
            });
            statements.push(Statement::sign(body, path.clone(), NOW, &sk));
        }
        if i < 1000 {
            parents.push((path, sk));
        }
        i += 1;
    }
    let mut entries = Vec::with_capacity(statements.len());
    let mut prev = [0u8; 32];
    for (seq, statement) in statements.into_iter().enumerate() {
        let e = Entry {
            seq: seq as u64,
            prev,
            statement,
            appended_at: NOW,
        };
        prev = e.hash();
        entries.push(e);
    }
    let last = entries.len() as u64 - 1;
    let head = Head::sign(
        last,
        prev,
        KeyPath::root(),
        &tree.signing_key(&KeyPath::root()),
    );
    encode_file(&entries, &head)
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let tree = Tree::new(3);

    // Raw verify_strict on a statement-sized message.
    let sk = tree.signing_key(&KeyPath::root());
    let vk = sk.verifying_key();
    let msg = [7u8; 260];
    let sig = sk.sign(&msg);
    let (mut n, t) = (0u64, Instant::now());
    while t.elapsed().as_secs_f64() < 3.0 {
        for _ in 0..100 {
            black_box(vk.verify_strict(black_box(&msg), black_box(&sig)).is_ok());
        }
        n += 100;
    }
    let raw = n as f64 / t.elapsed().as_secs_f64();
    println!("raw Ed25519 verify_strict (260-byte message): {raw:.0}/s on one core\n");
    println!(
        "{:>9} {:>10} {:>12} {:>12} {:>9} {:>13} {:>11} {:>12}",
        "entries", "build s", "file MB", "apply /s", "vs raw", "state MB", "B/key", "restore /s"
    );

    for n in sizes {
        let t = Instant::now();
        let bytes = build(&tree, n);
        let build_s = t.elapsed().as_secs_f64();

        let rss0 = rss_bytes();
        let t = Instant::now();
        let mut state = ChainState::new();
        let mut entries = 0u64;
        for record in Records::new(&bytes) {
            match record {
                Ok((_, Record::Entry(e), bytes)) => {
                    let hash = entry_hash_of_record(bytes).unwrap_or_else(|| e.hash());
                    if let Err(rule) = state.apply_hashed(&e, hash) {
                        panic!("seq {}: {rule}", e.seq);
                    }
                    entries += 1;
                }
                Ok((_, Record::Head(h), _)) => {
                    if let Err(rule) = state.verify_head(&h) {
                        panic!("head: {rule}");
                    }
                }
                Err((at, e)) => panic!("byte {at}: {e}"),
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let rss1 = rss_bytes();
        let rate = entries as f64 / secs;
        let keys = state.len() as f64;
        drop(black_box(state));

        // keyd's start-up: its own stored entries and signed head, restored with links
        // and the head checked but not every signature (ChainWriter::restore).
        let mut stored = Vec::new();
        let mut head = None;
        for record in Records::new(&bytes) {
            match record {
                Ok((_, Record::Entry(e), _)) => stored.push(e),
                Ok((_, Record::Head(h), _)) => head = Some(h),
                Err((at, e)) => panic!("byte {at}: {e}"),
            }
        }
        let head = head.expect("a head");
        let t = Instant::now();
        let restored = ChainWriter::restore(stored, &head).expect("restore");
        let restore_rate = entries as f64 / t.elapsed().as_secs_f64();
        drop(black_box(restored));
        println!(
            "{:>9} {:>10.1} {:>12.1} {:>12.0} {:>8.0}% {:>13.1} {:>11.0} {:>12.0}",
            entries,
            build_s,
            bytes.len() as f64 / 1e6,
            rate,
            100.0 * rate / raw,
            (rss1.saturating_sub(rss0)) as f64 / 1e6,
            (rss1.saturating_sub(rss0)) as f64 / keys,
            restore_rate
        );
    }
}

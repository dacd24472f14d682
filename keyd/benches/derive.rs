//! Derivation benchmarks: `cargo bench -p keyd --bench derive`.
//!
//! Measures, in one run, the raw primitives (HMAC-SHA512, HKDF-SHA256, Ed25519 and
//! X25519 key generation from a seed, SHA-256) beside keyd's derivations built from them:
//! one software level, a full path to public keys, and one HSM-level derivation through
//! a real SoftHSM2 token. It then compares the full derivation with the sum of the
//! primitives it is made of (goal: at most 1.2x).
//!
//! SoftHSM2 reads SOFTHSM2_CONF when the process starts, so the HSM part runs in a child
//! process of this benchmark with a fresh token.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use keyd::derive::{KeyPath, NodeSecret, RootSecret, SoftwareRoot, derive_node};
use keyd::hsm::{Hsm, Pkcs11Uri};
use sha2::{Digest, Sha256, Sha512};

mod support;

const CHILD: &str = "KEYD_BENCH_HSM_DIR";
/// A node five levels down: level 1 through the root, four SLIP-0010 levels.
const NODE: &str = "m/7'/1'/4'/1'/9'";

fn row(name: &str, ns: f64) {
    println!("{name:<52} {:>10.0} ns/op {:>12.0} ops/s", ns, 1e9 / ns);
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD) {
        hsm_child(Path::new(&dir));
        return;
    }
    let budget = Duration::from_millis(1500);
    println!("keyd derivation benchmark (one core, median of 5 runs)\n");

    let key = [7u8; 32];
    let data = [1u8; 37]; // 0x00 || k || ser32(i)
    let hmac = support::measure(budget, || {
        let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(black_box(&key))
            .unwrap_or_else(|_| unreachable!());
        m.update(black_box(&data));
        black_box(m.finalize().into_bytes());
    });
    row(
        "primitive: HMAC-SHA512 (32-byte key, 37-byte message)",
        hmac,
    );
    let extract = support::measure(budget, || {
        black_box(Hkdf::<Sha256>::new(Some(b"keyd/v1"), black_box(&key)));
    });
    row("primitive: HKDF-SHA256 extract", extract);
    let hk = Hkdf::<Sha256>::new(Some(b"keyd/v1"), &key);
    let expand = support::measure(budget, || {
        let mut out = [0u8; 32];
        black_box(&hk)
            .expand(b"ed25519", &mut out)
            .unwrap_or_else(|_| unreachable!());
        black_box(out);
    });
    row("primitive: HKDF-SHA256 expand (32 bytes)", expand);
    let ed = support::measure(budget, || {
        black_box(SigningKey::from_bytes(black_box(&key)).verifying_key());
    });
    row("primitive: Ed25519 key pair from seed", ed);
    let x = support::measure(budget, || {
        let s = x25519_dalek::StaticSecret::from(*black_box(&key));
        black_box(x25519_dalek::PublicKey::from(&s));
    });
    row("primitive: X25519 public key from secret", x);
    let sha = support::measure(budget, || {
        black_box(Sha256::digest(black_box(&key)));
    });
    row("primitive: SHA-256 (32 bytes, key id)", sha);

    let root = SoftwareRoot::danger_from_bytes(&[9u8; 64]);
    let path: KeyPath = NODE.parse().unwrap_or_else(|_| unreachable!());
    let parent = derive_node(&root, &path).unwrap_or_else(|_| unreachable!());
    let level = support::measure(budget, || {
        black_box(black_box(&parent).child(3));
    });
    row("keyd: one software level (SLIP-0010 hardened child)", level);
    let publics = support::measure(budget, || {
        black_box(black_box(&parent).public_keys());
    });
    row("keyd: node key k -> public keys + key id", publics);
    let full = support::measure(budget, || {
        let node =
            derive_node(black_box(&root), black_box(&path)).unwrap_or_else(|_| unreachable!());
        black_box(node.public_keys());
    });
    row(
        &format!("keyd: full path {NODE} -> public keys (software root)"),
        full,
    );

    let depth = path.depth() as f64;
    let sum = depth * hmac + extract + 2.0 * expand + ed + x + sha;
    println!(
        "\nfull derivation / sum of its primitives ({depth} x HMAC + extract + 2 x expand + Ed25519 + X25519 + SHA-256 = {sum:.0} ns): {:.3}x (goal <= 1.2x)",
        full / sum
    );
    let _ = NodeSecret::slip10_master; // the type is part of what is measured above

    // How the cost grows: n children of one node, each to its public keys and key id
    // (what adding n nodes derives). KEYD_BENCH_DERIVE_COUNTS, default 1k to 100k.
    let counts: Vec<u32> = std::env::var("KEYD_BENCH_DERIVE_COUNTS")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|c| c.trim().replace('_', "").parse().ok())
        .collect();
    println!("\n{:>9} {:>10} {:>12}", "nodes", "seconds", "nodes/s");
    for n in counts {
        let t = Instant::now();
        for i in 0..n {
            let child = black_box(&parent).child(i);
            black_box(child.public_keys());
        }
        let secs = t.elapsed().as_secs_f64();
        println!("{n:>9} {secs:>10.2} {:>12.0}", f64::from(n) / secs);
        support::emit(&serde_json::json!({
            "bench": "derive", "nodes": n, "seconds": secs, "per_second": f64::from(n) / secs,
        }));
    }

    match hsm_parent() {
        Ok(()) => {}
        Err(e) => println!("\nHSM benchmark skipped: {e}"),
    }
}

fn hsm_parent() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let (layout, _) = hsm_sim::prepare(&tmp.path().join("hsm"))?;
    let status = Command::new(std::env::current_exe()?)
        .env(CHILD, &layout.dir)
        .env("SOFTHSM2_CONF", &layout.softhsm2_conf)
        .status()?;
    if !status.success() {
        return Err(format!("child ended with {status}").into());
    }
    Ok(())
}

fn hsm_child(dir: &Path) {
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let layout = hsm_sim::Layout::of(dir)?;
        let module = hsm_sim::find_module()?;
        hsm_sim::init_token_in_process(&layout, "bench", &module)?;
        let uri: Pkcs11Uri = layout.uri("bench", &module).parse()?;
        let hsm = Hsm::open(&uri)?;
        hsm.import_root(&[9u8; 64])?;
        let root = hsm.root()?;
        let budget = Duration::from_millis(1500);
        let label = *b"keyd/v1/child\x80\x00\x00\x07";
        let hsm_level = support::measure(budget, || {
            black_box(
                root.hmac_sha512(black_box(&label))
                    .unwrap_or_else(|_| unreachable!()),
            );
        });
        println!();
        row(
            "keyd: one HSM-level derivation (SoftHSM2 C_Sign HMAC)",
            hsm_level,
        );
        let path: KeyPath = NODE.parse()?;
        let full = support::measure(budget, || {
            let node =
                derive_node(black_box(&root), black_box(&path)).unwrap_or_else(|_| unreachable!());
            black_box(node.public_keys());
        });
        row(
            &format!("keyd: full path {NODE} -> public keys (SoftHSM2)"),
            full,
        );
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("HSM benchmark failed: {e}");
        std::process::exit(1);
    }
}

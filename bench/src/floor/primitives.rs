//! keyd's cryptography per operation, called through the keyd library on one thread.

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ed25519_dalek::{Signer, SigningKey};
use keyd::derive::{KeyMaterial, KeyPath};
use keyd::envelope::{Encrypted, Sealed, Suite};
use serde_json::json;

/// Calls of `f` per second over about `seconds`.
fn rate<T>(seconds: f64, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    // Warm up, then count whole batches of calls until the time is up.
    for _ in 0..100 {
        black_box(f()?);
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            black_box(f()?);
        }
        calls += 100;
    }
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).context("randomness")?;
    Ok(b)
}

/// Prints one JSON line per primitive: `{"op", "size", "per_second"}`.
pub fn run(size: usize, seconds: f64) -> Result<()> {
    let node = KeyPath::from_str("m/1'/1'/2'")?;
    let key = node.epoch_key(1).context("epoch key path")?;
    let material = KeyMaterial::from_node_key(&[7; 32]);
    let sender = node.epoch_key(2).context("epoch key path")?;
    let sender_material = KeyMaterial::from_node_key(&[8; 32]);
    let data = vec![0x5a; size];
    let signing: &SigningKey = material.signing_key();
    let signature = signing.sign(&data);
    let public = signing.verifying_key();
    let seal = |plaintext: &[u8]| -> Result<Vec<u8>> {
        Ok(Sealed::seal(&key, &material, plaintext, random()?, random()?)?.to_cbor())
    };
    let sealed = seal(&data)?;
    let encrypt = |suite: Suite| -> Result<Vec<u8>> {
        let s = sender_material.signing_key();
        Ok(Encrypted::encrypt(suite, &key, &material, &sender, s, &data)?.to_cbor())
    };
    let mut rows: Vec<(String, f64)> = vec![
        (
            "sign".into(),
            rate(seconds, || Ok(signing.sign(black_box(&data))))?,
        ),
        (
            "verify".into(),
            rate(seconds, || {
                Ok(public.verify_strict(black_box(&data), &signature)?)
            })?,
        ),
        ("seal".into(), rate(seconds, || seal(black_box(&data)))?),
        (
            "unseal".into(),
            rate(seconds, || Ok(Sealed::from_cbor(&sealed)?.open(&material)?))?,
        ),
        ("datakey".into(), rate(seconds, || seal(&random::<32>()?))?),
    ];
    for (suite, name) in [(Suite::XWing, "x-wing"), (Suite::X25519, "x25519")] {
        let envelope = encrypt(suite)?;
        let sender_key = sender_material.signing_key().verifying_key();
        rows.push((format!("encrypt/{name}"), rate(seconds, || encrypt(suite))?));
        rows.push((
            format!("decrypt/{name}"),
            rate(seconds, || {
                let e = Encrypted::from_cbor(&envelope)?;
                e.verify_sender(&sender_key)?;
                Ok(e.open(&material)?)
            })?,
        ));
    }
    for (op, per_second) in rows {
        println!(
            "{}",
            json!({ "server": "primitive", "op": op, "size": size, "per_second": per_second })
        );
    }
    Ok(())
}

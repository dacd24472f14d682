//! The envelope vectors of docs/test-vectors.json (`envelopes`; format:
//! docs/formats/envelopes.md): every envelope opens with keys derived from the vector
//! root, and every version-2 envelope is made again, byte for byte, from its inputs and
//! the randomness it records — so a dependency upgrade that changes any byte of a
//! derivation, a KEM, the AEAD or the encoding fails here. Also checked independently by
//! docs/check_test_vectors.py.
//!
//! `cargo test -p keyd --test envelope_vectors -- --ignored --nocapture` prints the
//! vectors section afresh (only when a new kind or version of envelope is added: the
//! committed vectors must never change).

mod common;

use anyhow::{Context, Result, ensure};
use common::Scripted;
use hpke::Serializable;
use keyd::derive::{KeyMaterial, KeyPath, SoftwareRoot, derive_node};
use keyd::envelope::{Encrypted, Sealed, Suite};
use serde_json::{Value, json};

fn doc() -> Result<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors.json");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(serde_json::from_str(&text)?)
}

fn hex_of(v: &Value, key: &str) -> Result<Vec<u8>> {
    let s = v[key]
        .as_str()
        .with_context(|| format!("missing {key} in {v}"))?;
    Ok(hex::decode(s)?)
}

fn path_of(v: &Value, key: &str) -> Result<KeyPath> {
    v[key]
        .as_str()
        .with_context(|| format!("missing {key}"))?
        .parse()
        .with_context(|| format!("{key} is not a path"))
}

/// The key material at `path` under the software root `root_hex`.
fn material(root: &[u8], path: &KeyPath) -> Result<KeyMaterial> {
    Ok(derive_node(&SoftwareRoot::danger_from_bytes(root), path)?.material())
}

/// The path a vector names in `field` and its key material: from `FIELD_node_key` when
/// the vector gives one (the version-1 envelopes, made with fixed node keys), else
/// derived from the root.
fn party(v: &Value, field: &str, root: &[u8]) -> Result<(KeyPath, KeyMaterial)> {
    let path = path_of(v, field)?;
    let m = match v.get(format!("{field}_node_key")) {
        Some(_) => {
            let k: [u8; 32] = hex_of(v, &format!("{field}_node_key"))?
                .try_into()
                .map_err(|_| anyhow::anyhow!("{field}_node_key: 32 bytes"))?;
            KeyMaterial::from_node_key(&k)
        }
        None => material(root, &path)?,
    };
    Ok((path, m))
}

fn randomness(v: &Value) -> Result<Scripted> {
    Ok(Scripted(hex_of(v, "randomness")?))
}

#[test]
fn every_envelope_vector_opens_and_version_2_is_made_again_byte_for_byte() -> Result<()> {
    let doc = doc()?;
    let section = &doc["envelopes"];
    let root = hex_of(section, "root_hex")?;
    let mut checked = 0;
    for v in section["vectors"].as_array().context("vectors")? {
        let bytes = hex_of(v, "envelope")?;
        let plaintext = hex_of(v, "plaintext")?;
        let name = v["name"].as_str().context("name")?;
        // The context the envelope is bound to (none when the vector has none).
        let context = match v.get("context") {
            Some(_) => hex_of(v, "context")?,
            None => Vec::new(),
        };
        match v["kind"].as_str().context("kind")? {
            "sealed" => {
                let (key, m) = party(v, "key", &root)?;
                let s = Sealed::from_cbor(&bytes)?;
                ensure!(
                    s.open_in(&m, &context)?.as_slice() == plaintext,
                    "{name}: plaintext"
                );
                if s.v == 2 {
                    let (salt, nonce) = (s.salt, s.nonce);
                    let again =
                        Sealed::seal_in(&key, &m, &plaintext, &context, salt, nonce)?.to_cbor();
                    ensure!(again == bytes, "{name}: made again, the bytes differ");
                }
            }
            "encrypted" => {
                let (to, recipient) = party(v, "recipient", &root)?;
                let (from, sender) = party(v, "sender", &root)?;
                let e = Encrypted::from_cbor(&bytes)?;
                e.verify_sender(&sender.signing_key().verifying_key())?;
                ensure!(
                    e.open_in(&recipient, &context)?.as_slice() == plaintext,
                    "{name}: plaintext"
                );
                if e.v == 2 {
                    let parties = (&to, &recipient, &from, sender.signing_key());
                    let again = Encrypted::encrypt_in(
                        e.suite()?,
                        parties,
                        &plaintext,
                        &context,
                        &mut randomness(v)?,
                    )?;
                    ensure!(
                        again.to_cbor() == bytes,
                        "{name}: made again, the bytes differ"
                    );
                }
                let x_wing = hex::encode(recipient.x_wing().1.to_bytes());
                ensure!(
                    v["recipient_x_wing_public"].as_str() == Some(x_wing.as_str()),
                    "{name}: the recipient's X-Wing public key"
                );
            }
            other => anyhow::bail!("unknown kind {other}"),
        }
        checked += 1;
    }
    assert_eq!(
        checked, 9,
        "sealed and both suites, versions 1 and 2, and the three bound to a context"
    );
    Ok(())
}

/// Prints the `envelopes` section of docs/test-vectors.json.
#[test]
#[ignore = "prints the vectors; run by hand when adding a kind of envelope"]
fn print_envelope_vectors() -> Result<()> {
    let root: Vec<u8> = (0u8..64).collect();
    let key: KeyPath = "m/7'/1'/3'/0'/1'".parse()?;
    let to = key.clone();
    let from: KeyPath = "m/7'/1'/4'/0'/0'".parse()?;
    let (m, sender) = (material(&root, &key)?, material(&root, &from)?);
    let x_wing = hex::encode(m.x_wing().1.to_bytes());
    let mut vectors = Vec::new();
    let text = b"keyd envelope vector".to_vec();
    let sealed = Sealed::seal(&key, &m, &text, [0x11; 32], [0x22; 12])?.to_cbor();
    vectors.push(
        json!({"name": "sealed v2", "kind": "sealed", "key": key.to_string(),
        "plaintext": hex::encode(&text), "envelope": hex::encode(sealed)}),
    );
    for (suite, name, draws) in [(Suite::X25519, "x25519", 32), (Suite::XWing, "x-wing", 64)] {
        let random: Vec<u8> = (0..draws).map(|i| 0x40 + i as u8).collect();
        let parties = (&to, &m, &from, sender.signing_key());
        let e = Encrypted::encrypt_with_rng(suite, parties, &text, &mut Scripted(random.clone()))?;
        vectors.push(
            json!({"name": format!("encrypted {name} v2"), "kind": "encrypted",
            "recipient": to.to_string(), "sender": from.to_string(),
            "recipient_x_wing_public": x_wing, "plaintext": hex::encode(&text),
            "randomness": hex::encode(random), "envelope": hex::encode(e.to_cbor())}),
        );
    }
    // Bound to a context (version 2 with `ctx`): one of each kind and suite.
    let context = b"keyd context vector".to_vec();
    let sealed = Sealed::seal_in(&key, &m, &text, &context, [0x33; 32], [0x44; 12])?.to_cbor();
    vectors.push(json!({"name": "sealed v2 with context", "kind": "sealed",
        "key": key.to_string(), "context": hex::encode(&context),
        "plaintext": hex::encode(&text), "envelope": hex::encode(sealed)}));
    for (suite, name, draws) in [(Suite::X25519, "x25519", 32), (Suite::XWing, "x-wing", 64)] {
        let random: Vec<u8> = (0..draws).map(|i| 0x80 + i as u8).collect();
        let parties = (&to, &m, &from, sender.signing_key());
        let e = Encrypted::encrypt_in(
            suite,
            parties,
            &text,
            &context,
            &mut Scripted(random.clone()),
        )?;
        vectors.push(json!({"name": format!("encrypted {name} v2 with context"),
            "kind": "encrypted", "recipient": to.to_string(), "sender": from.to_string(),
            "recipient_x_wing_public": x_wing, "context": hex::encode(&context),
            "plaintext": hex::encode(&text), "randomness": hex::encode(random),
            "envelope": hex::encode(e.to_cbor())}));
    }
    // Version 1, made before key ids (keyd/tests/data/legacy-envelopes.txt, node keys
    // [n; 32]); their HPKE randomness was not kept.
    let legacy = include_str!("data/legacy-envelopes.txt");
    let line = |name: &str| -> Result<Vec<u8>> {
        let l = legacy
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .context("legacy line")?;
        Ok(hex::decode(l.trim())?)
    };
    let node_key = |n: u8| hex::encode([n; 32]);
    let s1 = Sealed::from_cbor(&line("sealed")?)?;
    vectors.push(
        json!({"name": "sealed v1", "kind": "sealed", "key": s1.key.to_string(),
        "key_node_key": node_key(4), "plaintext": hex::encode(b"sealed before key ids"),
        "envelope": hex::encode(line("sealed")?)}),
    );
    for (name, text) in [
        ("x25519", "x25519 before key ids"),
        ("x_wing", "x-wing before key ids"),
    ] {
        let e = Encrypted::from_cbor(&line(name)?)?;
        let bob = KeyMaterial::from_node_key(&[2; 32]);
        vectors.push(
            json!({"name": format!("encrypted {} v1", name.replace('_', "-")),
            "kind": "encrypted", "recipient": e.recipient.to_string(),
            "recipient_node_key": node_key(2), "sender": e.sender.to_string(),
            "sender_node_key": node_key(1),
            "recipient_x_wing_public": hex::encode(bob.x_wing().1.to_bytes()),
            "plaintext": hex::encode(text.as_bytes()), "envelope": hex::encode(line(name)?)}),
        );
    }
    println!("{}", serde_json::to_string_pretty(&vectors)?);
    Ok(())
}

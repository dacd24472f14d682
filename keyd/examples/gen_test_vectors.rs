//! Prints keyd's own derivation vectors (the `keyd` section of docs/test-vectors.json)
//! for fixed software roots. `cargo run -p keyd --example gen_test_vectors`.
//!
//! The SLIP-0010 section of that file is copied from the SLIP-0010 specification, not
//! generated here.

use hpke::Serializable;
use keyd::derive::{KeyPath, SoftwareRoot, derive_node};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

/// The roots: two patterned, one pseudo-random.
fn roots() -> Vec<(String, [u8; 64])> {
    let mut ascending = [0u8; 64];
    let mut descending = [0u8; 64];
    for i in 0..64u8 {
        ascending[i as usize] = i;
        descending[i as usize] = 0xff - 3 * i;
    }
    let hashed: [u8; 64] = Sha512::digest(b"keyd/v1 test vector root 3").into();
    vec![
        ("ascending".into(), ascending),
        ("descending".into(), descending),
        ("sha512(\"keyd/v1 test vector root 3\")".into(), hashed),
    ]
}

const PATHS: &[(&str, &str)] = &[
    ("root node", "m"),
    ("level-1 key", "m/7'"),
    ("level-3 key", "m/7'/1'/3'"),
    ("epoch 2 key of m/7'", "m/7'/0'/2'"),
    ("child of a child", "m/7'/1'/4'/1'/9'"),
    ("deep path", "m/7'/1'/4'/1'/9'/1'/2'/0'/1000000000'"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for (name, secret) in roots() {
        let root = SoftwareRoot::danger_from_bytes(&secret);
        let mut keys = Vec::new();
        for (what, path) in PATHS {
            let path: KeyPath = path.parse()?;
            let node = derive_node(&root, &path)?;
            let public = node.public_keys();
            keys.push(json!({
                "what": what,
                "path": path.to_string(),
                "node_key": hex::encode(node.danger_key()),
                "chain_code": hex::encode(node.danger_chain_code()),
                "key_id": public.key_id.to_string(),
                "ed25519_public": hex::encode(public.ed25519.as_bytes()),
                "x25519_public": hex::encode(public.x25519.as_bytes()),
                "x_wing_public": hex::encode(node.material().x_wing().1.to_bytes()),
            }));
        }
        out.push(json!({"name": name, "root_hex": hex::encode(secret), "keys": keys}));
    }
    println!("{}", serde_json::to_string_pretty(&Value::Array(out))?);
    Ok(())
}

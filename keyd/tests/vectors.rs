//! Checks the library against every vector in docs/test-vectors.json: the SLIP-0010
//! Ed25519 vectors 1 and 2 (from the specification) and keyd's own software-root vectors
//! (also checked by the independent docs/check_test_vectors.py).

use anyhow::{Context, Result, ensure};
use ed25519_dalek::SigningKey;
use hpke::Serializable;
use keyd::derive::{KeyPath, NodeSecret, SoftwareRoot, derive_node};
use serde_json::Value;

fn doc() -> Result<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors.json");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(serde_json::from_str(&text)?)
}

fn s<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("missing string {key} in {v}"))
}

#[test]
fn slip10_ed25519_vectors() -> Result<()> {
    let doc = doc()?;
    let mut checked = 0;
    for vector in doc["slip10_ed25519"]["vectors"]
        .as_array()
        .context("vectors")?
    {
        let seed = hex::decode(s(vector, "seed")?)?;
        for row in vector["chain"].as_array().context("chain")? {
            let path: KeyPath = s(row, "path")?.parse()?;
            let mut node = NodeSecret::slip10_master(&seed);
            for index in path.indexes() {
                node = node.child(index);
            }
            ensure!(
                hex::encode(node.danger_key()) == s(row, "private")?,
                "private at {path}"
            );
            ensure!(
                hex::encode(node.danger_chain_code()) == s(row, "chain_code")?,
                "chain code at {path}"
            );
            let public = SigningKey::from_bytes(node.danger_key()).verifying_key();
            ensure!(
                format!("00{}", hex::encode(public.as_bytes())) == s(row, "public")?,
                "public at {path}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 12, "SLIP-0010 vectors 1 and 2 have 6 rows each");
    Ok(())
}

#[test]
fn keyd_scheme_vectors() -> Result<()> {
    let doc = doc()?;
    let roots = doc["keyd"]["roots"].as_array().context("roots")?;
    assert!(roots.len() >= 3, "at least 3 software roots");
    let mut checked = 0;
    for root in roots {
        let secret = hex::decode(s(root, "root_hex")?)?;
        let software = SoftwareRoot::danger_from_bytes(&secret);
        let keys = root["keys"].as_array().context("keys")?;
        assert!(keys.len() >= 6, "at least 6 paths per root");
        for key in keys {
            let path: KeyPath = s(key, "path")?.parse()?;
            let node = derive_node(&software, &path)?;
            let public = node.public_keys();
            ensure!(
                hex::encode(node.danger_key()) == s(key, "node_key")?,
                "k at {path}"
            );
            ensure!(
                hex::encode(node.danger_chain_code()) == s(key, "chain_code")?,
                "c at {path}"
            );
            ensure!(
                public.key_id.to_string() == s(key, "key_id")?,
                "key id at {path}"
            );
            ensure!(
                hex::encode(public.ed25519.as_bytes()) == s(key, "ed25519_public")?,
                "ed25519 at {path}"
            );
            ensure!(
                hex::encode(public.x25519.as_bytes()) == s(key, "x25519_public")?,
                "x25519 at {path}"
            );
            // The X-Wing public key: HPKE DeriveKeyPair (KEM 0x647a) of the X-Wing seed,
            // so a change of the hpke crate's X-Wing draft fails here.
            ensure!(
                hex::encode(node.material().x_wing().1.to_bytes()) == s(key, "x_wing_public")?,
                "x-wing at {path}"
            );
            // The full material agrees with the public-only shortcut.
            ensure!(
                node.material().public_keys() == public,
                "material at {path}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
    Ok(())
}

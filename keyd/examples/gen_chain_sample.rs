//! Writes a valid sample cluster-chain file (software root: for fuzz seeds and docs only)
//! to the path given as the first argument: the root log (genesis, a branch certified)
//! and the branch's log (its anchor, a node, epochs, a revocation and a trust
//! statement), each closed by its head. `cargo run -p keyd --example gen_chain_sample --
//! FILE`.

use keyd::chain::{
    Anchor, Body, Certify, Chain, Epoch, Genesis, KeySet, Revoke, Statement, Trust, TrustLevel,
    verify_file,
};
use keyd::derive::{KeyPath, SoftwareRoot, derive_node};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: gen_chain_sample FILE")?;
    let root = SoftwareRoot::danger_from_bytes(&[0x42; 64]);
    let node = |p: &KeyPath| derive_node(&root, p).map(|n| n.material());
    let keys = |p: &KeyPath| -> Result<KeySet, Box<dyn std::error::Error>> {
        Ok(KeySet::from(&node(p)?.public_keys()))
    };
    let now = 1_800_000_000;
    let sign = |body, signer: &KeyPath| -> Result<Statement, Box<dyn std::error::Error>> {
        Ok(Statement::sign(
            body,
            signer.clone(),
            now,
            node(signer)?.signing_key(),
        ))
    };
    let m = KeyPath::root();
    let branch: KeyPath = "m/1'".parse()?;
    let a: KeyPath = "m/1'/1'/0'".parse()?;
    let certify = |path: &KeyPath, name: &str| -> Result<Body, Box<dyn std::error::Error>> {
        Ok(Body::Certify(Certify {
            path: path.clone(),
            name: name.into(),
            role: "node".into(),
            keys: keys(path)?,
            not_before: now - 10,
            not_after: now + 86_400 * 365,
        }))
    };
    let mut w = Chain::new();
    w.append(
        &m,
        sign(
            Body::Genesis(Genesis {
                cluster: "sample".into(),
                keys: keys(&m)?,
            }),
            &m,
        )?,
        now,
    )?;
    let certified = w.append(&m, sign(certify(&branch, "dc1")?, &m)?, now)?;
    let anchor = Body::Anchor(Anchor {
        root_seq: certified.seq,
        root_entry: certified.hash(),
    });
    w.append(&branch, sign(anchor, &branch)?, now)?;
    w.append(&branch, sign(certify(&a, "web-1")?, &branch)?, now)?;
    for e in 0..2 {
        let path = a.epoch_key(e).ok_or("epoch")?;
        w.append(
            &branch,
            sign(
                Body::Epoch(Epoch {
                    node: a.clone(),
                    epoch: e,
                    keys: keys(&path)?,
                }),
                &a,
            )?,
            now,
        )?;
    }
    w.append(
        &branch,
        sign(
            Body::Revoke(Revoke {
                target: a.epoch_key(0).ok_or("epoch")?,
                reason: "rotated".into(),
            }),
            &a,
        )?,
        now,
    )?;
    let other = SoftwareRoot::danger_from_bytes(&[0x43; 64]);
    let other_root = derive_node(&other, &m)?.public_keys().ed25519.to_bytes();
    w.append(
        &branch,
        sign(
            Body::Trust(Trust {
                cluster: "partner".into(),
                root: other_root,
                level: TrustLevel::Limited,
                permissions: vec!["verify".into()],
                expires_at: now + 86_400,
                introduced_by: None,
            }),
            &branch,
        )?,
        now,
    )?;
    // Each log's head, signed by its authority: the root, and the branch key.
    w.sign_head(&m, node(&m)?.signing_key(), now)?;
    w.sign_head(&branch, node(&branch)?.signing_key(), now)?;
    let bytes = w.to_file();
    verify_file(&bytes)?;
    std::fs::write(&out, bytes)?;
    Ok(())
}

//! The chain vectors of docs/test-vectors.json (`chain`; format: docs/formats/chain.md):
//! a short cluster chain with one statement of each kind verifies, and each invalid
//! chain is refused with the rule it names. Also checked independently by
//! docs/check_test_vectors.py.
//!
//! `cargo test -p keyd --test chain_vectors -- --ignored --nocapture` prints the section
//! afresh (only when a kind or a rule is added: the committed vectors must not change).

mod common;

use anyhow::{Context, Result, ensure};
use common::{NOW, Scripted, Tree, m, p};
use keyd::chain::{
    Body, Chain, Entry, Epoch, Head, Record, Statement, Succession, Trust, TrustLevel, Untrust,
    cbor_bytes, verify_file,
};
use keyd::derive::KeyPath;
use serde_json::{Value, json};

fn doc() -> Result<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors.json");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(serde_json::from_str(&text)?)
}

/// The name of a rule as docs/test-vectors.json gives it: its variant name.
fn rule_name(rule: &keyd::chain::Rule) -> String {
    let debug = format!("{rule:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_chain_vector_verifies_and_every_invalid_one_breaks_its_rule() -> Result<()> {
    let doc = doc()?;
    let section = &doc["chain"];
    let valid = hex::decode(section["valid"].as_str().context("valid")?)?;
    let chain = verify_file(&valid)?;
    ensure!(
        chain.len() == 13,
        "the valid chain has 13 entries, not {}",
        chain.len()
    );
    let mut refused = 0;
    for v in section["invalid"].as_array().context("invalid")? {
        let bytes = hex::decode(v["file"].as_str().context("file")?)?;
        let want = v["rule"].as_str().context("rule")?;
        match verify_file(&bytes) {
            Ok(_) => anyhow::bail!("{}: verifies", v["name"]),
            Err(e) => ensure!(rule_name(&e.rule) == want, "{}: {e}, not {want}", v["name"]),
        }
        refused += 1;
    }
    assert_eq!(refused, 21);
    Ok(())
}

/// Per log, its entries and head, as in a file.
type Logs = Vec<(KeyPath, Vec<Entry>, Head)>;

fn encode(logs: &Logs) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, entries, head) in logs {
        for e in entries {
            out.extend(cbor_bytes(&Record::Entry(e.clone())));
        }
        out.extend(cbor_bytes(&Record::Head(head.clone())));
    }
    out
}

/// `logs` with the log `log`'s entries changed by `change` from entry `from` on: the
/// entries after it are linked again and the head signed again, so that only the change
/// itself breaks a rule.
fn mutate(tree: &Tree, logs: &Logs, log: &str, from: usize, change: impl Fn(&mut Entry)) -> Logs {
    let mut out = logs.clone();
    for (l, entries, head) in out.iter_mut() {
        if *l != p(log) {
            continue;
        }
        change(&mut entries[from]);
        for i in from + 1..entries.len() {
            entries[i].prev = entries[i - 1].hash();
        }
        *head = tree.head(l, entries, NOW);
    }
    out
}

/// Prints the `chain` section of docs/test-vectors.json.
#[test]
#[ignore = "prints the vectors; run by hand when adding a kind or a rule"]
fn print_chain_vectors() -> Result<()> {
    let tree = Tree::new(7);
    let (branch, web, db) = (p("m/1'"), p("m/1'/1'/0'"), p("m/1'/1'/1'"));
    let other_root = Tree::new(8).keyset(&m()).ed25519;
    let mut chain: Chain = tree.root_and_branch();
    let trust = |signer: &KeyPath| {
        tree.sign(
            Body::Trust(Trust {
                cluster: "partner".into(),
                root: other_root,
                level: TrustLevel::Limited,
                permissions: vec!["verify".into(), "encrypt".into()],
                expires_at: NOW + 86_400,
                introduced_by: None,
            }),
            signer,
        )
    };
    let untrust = |signer: &KeyPath| {
        tree.sign(
            Body::Untrust(Untrust {
                root: other_root,
                reason: "exchange ended".into(),
            }),
            signer,
        )
    };
    for st in [
        tree.certify(&web, "web"),
        tree.epoch(&web, 0),
        tree.certify(&db, "db"),
        tree.epoch(&db, 0),
        tree.epoch(&web, 1),
        tree.revoke(&db, &branch),
        trust(&branch),
        untrust(&branch),
        trust(&m()),
    ] {
        tree.append(&mut chain, st)?;
    }
    let succession = tree.sign(
        Body::Succession(Succession {
            new_root: tree.keyset(&p("m/9'")),
        }),
        &m(),
    );
    tree.append(&mut chain, succession)?;
    tree.close(&mut chain, NOW);
    let valid = chain.to_file();
    verify_file(&valid)?;
    let logs: Logs = [m(), branch.clone()]
        .into_iter()
        .map(|l| {
            let entries = chain.entries(&l).to_vec();
            let head = chain.head(&l).cloned().context("head")?;
            Ok((l, entries, head))
        })
        .collect::<Result<_>>()?;
    let db_epoch_after_revocation = tree.sign(
        Body::Epoch(Epoch {
            node: db.clone(),
            epoch: 1,
            keys: tree.keyset(&db.epoch_key(1).context("epoch")?),
        }),
        &db,
    );
    let statement_of = |st: Statement| move |e: &mut Entry| e.statement = st.clone();
    let mut invalid: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "a statement signature altered",
            "BadSignature",
            encode(&mutate(&tree, &logs, "m/1'", 1, |e| {
                e.statement.signature[0] ^= 1
            })),
        ),
        (
            "prev not the hash of the entry before",
            "BadPrev",
            encode(&mutate(&tree, &logs, "m/1'", 3, |e| e.prev[0] ^= 1)),
        ),
        (
            "a seq skipped",
            "OutOfOrder",
            encode(&mutate(&tree, &logs, "m/1'", 2, |e| e.seq += 1)),
        ),
        (
            "appended_at going back",
            "TimeBackwards",
            encode(&mutate(&tree, &logs, "m/1'", 2, |e| {
                e.appended_at = NOW - 1
            })),
        ),
        (
            "db certified by web, not by its parent",
            "NoAuthority",
            encode(&mutate(
                &tree,
                &logs,
                "m/1'",
                3,
                statement_of(tree.sign(tree.certify_body(&db, "db"), &web)),
            )),
        ),
        (
            "web's epoch certified by the branch, not by web",
            "NoAuthority",
            encode(&mutate(
                &tree,
                &logs,
                "m/1'",
                2,
                statement_of(tree.sign(
                    Body::Epoch(Epoch {
                        node: web.clone(),
                        epoch: 0,
                        keys: tree.keyset(&web.epoch_key(0).context("epoch")?),
                    }),
                    &branch,
                )),
            )),
        ),
        (
            "db signs after its revocation",
            "SignerRevoked",
            encode(&mutate(
                &tree,
                &logs,
                "m/1'",
                7,
                statement_of(db_epoch_after_revocation),
            )),
        ),
        (
            "the anchor names another root-log entry",
            "BadAnchor",
            encode(&mutate(&tree, &logs, "m/1'", 0, |e| {
                if let Body::Anchor(a) = &mut e.statement.body {
                    a.root_entry[0] ^= 1;
                }
                e.statement = tree.sign(e.statement.body.clone(), &p("m/1'"));
            })),
        ),
    ];
    let web_not_after = NOW + 1_000_000; // as common::Tree::certify_body certifies
    let extend = |not_after: u64| {
        Body::Extend(keyd::chain::Extend {
            node: web.clone(),
            not_after,
        })
    };
    invalid.push((
        "web's validity extended by db, not by its parent",
        "NoAuthority",
        encode(&mutate(
            &tree,
            &logs,
            "m/1'",
            5,
            statement_of(tree.sign(extend(web_not_after + 86_400), &db)),
        )),
    ));
    invalid.push((
        "web's validity \"extended\" to an earlier end",
        "ValidityBackwards",
        encode(&mutate(
            &tree,
            &logs,
            "m/1'",
            5,
            statement_of(tree.sign(extend(web_not_after - 86_400), &branch)),
        )),
    ));
    invalid.push((
        "web ordered to rekey by db, not by an ancestor",
        "NoAuthority",
        encode(&mutate(
            &tree,
            &logs,
            "m/1'",
            5,
            statement_of(tree.sign(
                Body::RekeyOrder(keyd::chain::RekeyOrder {
                    node: web.clone(),
                    reason: "rotate".into(),
                }),
                &db,
            )),
        )),
    ));
    let mut after = logs.clone();
    {
        let (l, entries, head) = &mut after[0];
        let last = entries.last().context("the root log's last entry")?.clone();
        entries.push(Entry {
            log: l.clone(),
            seq: last.seq + 1,
            prev: last.hash(),
            statement: tree.revoke(&branch, &m()),
            appended_at: last.appended_at,
        });
        *head = tree.head(l, entries, NOW);
    }
    invalid.push((
        "a root-log entry after the succession",
        "AfterSuccession",
        encode(&after),
    ));
    let mut bad_head = logs.clone();
    bad_head[1].2.hash[0] ^= 1;
    invalid.push((
        "the branch head over another hash",
        "HeadHash",
        encode(&bad_head),
    ));
    let mut no_head = encode(&logs);
    no_head.truncate(no_head.len() - cbor_bytes(&Record::Head(logs[1].2.clone())).len());
    invalid.push(("the branch log without its head", "LogWithoutHead", no_head));
    let replica = |name: &str, action: &str| {
        Body::Replica(keyd::chain::Replica {
            name: name.into(),
            install_key: [9; 32],
            action: action.into(),
        })
    };
    invalid.push((
        "a replica of the branch's group recorded by db, not by the branch",
        "NoAuthority",
        encode(&mutate(
            &tree,
            &logs,
            "m/1'",
            5,
            statement_of(tree.sign(replica("r1", "add"), &db)),
        )),
    ));
    let added = mutate(
        &tree,
        &logs,
        "m/1'",
        5,
        statement_of(tree.sign(replica("r1", "add"), &branch)),
    );
    let removed = mutate(
        &tree,
        &added,
        "m/1'",
        6,
        statement_of(tree.sign(replica("r1", "remove"), &branch)),
    );
    invalid.push((
        "a replica removed twice",
        "AlreadyRevoked",
        encode(&mutate(
            &tree,
            &removed,
            "m/1'",
            7,
            statement_of(tree.sign(replica("r1", "remove"), &branch)),
        )),
    ));
    invalid.push((
        "a replica removed that was never added",
        "UnknownTarget",
        encode(&mutate(
            &tree,
            &logs,
            "m/1'",
            5,
            statement_of(tree.sign(replica("r2", "remove"), &branch)),
        )),
    ));
    // Named keys (P/2'/n'): certified by their owner, role key:<type>, one live key a
    // name per owner, no nodes below them.
    let backups = web.named_key(0).context("named key")?;
    let named = |path: &KeyPath, name: &str, role: &str| {
        Body::Certify(keyd::chain::Certify {
            path: path.clone(),
            name: name.into(),
            role: role.into(),
            keys: tree.keyset(path),
            not_before: NOW - 1000,
            not_after: u64::MAX,
        })
    };
    invalid.push((
        "web's named key certified by the branch, not by web",
        "NoAuthority",
        encode(&mutate(
            &tree,
            &logs,
            "m/1'",
            5,
            statement_of(tree.sign(named(&backups, "backups", "key:ed25519"), &branch)),
        )),
    ));
    invalid.push((
        "a named key certified with a node's role",
        "Bounds",
        encode(&mutate(
            &tree,
            &logs,
            "m/1'",
            5,
            statement_of(tree.sign(named(&backups, "backups", "node"), &web)),
        )),
    ));
    let with_backups = mutate(
        &tree,
        &logs,
        "m/1'",
        5,
        statement_of(tree.sign(named(&backups, "backups", "key:ed25519"), &web)),
    );
    invalid.push((
        "two live named keys of web called backups",
        "NameTaken",
        encode(&mutate(
            &tree,
            &with_backups,
            "m/1'",
            6,
            statement_of(tree.sign(
                named(
                    &web.named_key(1).context("named key")?,
                    "backups",
                    "key:ed25519",
                ),
                &web,
            )),
        )),
    ));
    let below = backups.child_node(0).context("below")?;
    invalid.push((
        "a node certified below a named key",
        "NotNode",
        encode(&mutate(
            &tree,
            &with_backups,
            "m/1'",
            6,
            statement_of(tree.sign(named(&below, "below", "node"), &backups)),
        )),
    ));
    let invalid: Vec<Value> = invalid
        .into_iter()
        .map(|(name, rule, file)| json!({"name": name, "rule": rule, "file": hex::encode(file)}))
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"valid": hex::encode(valid), "invalid": invalid}))?
    );
    Ok(())
}

/// The branch m/1' of the chain vector's tree, its secret, and the bundle's fixed inputs.
fn bundle_inputs(v: &Value) -> Result<(keyd::derive::NodeSecret, [u8; 32], Vec<u8>)> {
    let root = keyd::derive::SoftwareRoot::danger_from_bytes(&[7; 64]);
    let secret = keyd::derive::derive_node(&root, &p("m/1'"))?;
    let install: [u8; 32] = hex::decode(v["install_secret"].as_str().context("install")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("install_secret: 32 bytes"))?;
    let randomness = hex::decode(v["randomness"].as_str().context("randomness")?)?;
    Ok((secret, install, randomness))
}

/// The bundle of the vector's inputs, sealed again: m/1' to the install key, with the
/// `chain` vector's file.
fn seal_bundle(doc: &Value, inputs: &Value) -> Result<(keyd::derive::NodeSecret, Vec<u8>)> {
    let (secret, install, randomness) = bundle_inputs(inputs)?;
    let key = keyd::bundle::InstallKey::from_secret(&install)?;
    let chain = hex::decode(doc["chain"]["valid"].as_str().context("chain")?)?;
    let bundle = keyd::bundle::BranchBundle::seal_with_rng(
        "branch",
        &p("m/1'"),
        &secret,
        (&key.public(), chain),
        &mut Scripted(randomness),
    )?;
    Ok((secret, bundle.to_cbor()))
}

#[test]
fn the_bundle_vector_opens_and_is_made_again_byte_for_byte() -> Result<()> {
    use keyd::bundle::{BranchBundle, InstallKey};
    let doc = doc()?;
    let v = &doc["bundle"];
    let bytes = hex::decode(v["bundle"].as_str().context("bundle")?)?;
    let (secret, install, _) = bundle_inputs(v)?;
    let key = InstallKey::from_secret(&install)?;
    let bundle = BranchBundle::from_cbor(&bytes)?;
    let (opened, _) = bundle.open(&key)?;
    ensure!(opened.danger_key() == secret.danger_key(), "k");
    ensure!(
        opened.danger_chain_code() == secret.danger_chain_code(),
        "c"
    );
    let (_, again) = seal_bundle(&doc, v)?;
    ensure!(again == bytes, "made again, the bundle differs");
    Ok(())
}

/// Prints the `bundle` section of docs/test-vectors.json (after the `chain` section).
#[test]
#[ignore = "prints the vector; run by hand when the bundle format changes"]
fn print_bundle_vector() -> Result<()> {
    let doc = doc()?;
    let inputs = json!({"install_secret": hex::encode([0x33; 32]),
        "randomness": hex::encode((0x50u8..0x70).collect::<Vec<u8>>())});
    let (secret, bundle) = seal_bundle(&doc, &inputs)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "install_secret": inputs["install_secret"], "randomness": inputs["randomness"],
            "node_key": hex::encode(secret.danger_key()),
            "chain_code": hex::encode(secret.danger_chain_code()),
            "bundle": hex::encode(bundle),
        }))?
    );
    Ok(())
}

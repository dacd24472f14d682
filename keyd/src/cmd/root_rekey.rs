//! `keyd root-rekey` and `keyd retire-root` (keyd stopped): moving this keyd's tree
//! under the new root named by a `succession`, and later forgetting the old tree.
//!
//! The re-wrap carries every node of the old branch log into a new branch log under
//! the new branch key, in the order the old log certified them (so names and parents
//! come out as they were): the node certified again by its parent's new key with the
//! same path, name, role and validity, then its current epoch (same number, new key);
//! a revoked node is certified and revoked again at once, so that its path and name stay
//! spent and nothing revoked comes back. Nodes cut off below a revoked or expired node
//! are not carried: nothing could use them. Each batch of nodes is one transaction in
//! staging tables; a crash (`kill -9`) loses at most the batch under way, and running
//! the same command again resumes after the last batch stored. The last step swaps the
//! new tree in and keeps the old one (logs and branch secret) for decryption only.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keyd::bundle::BranchBundle;
use keyd::chain::{Body, Certify, Chain, Epoch, KeyKind, KeyStatus, MAX_REASON, Revoke, Statement};
use keyd::config::Config;
use keyd::derive::{KeyPath, NodeSecret};
use keyd::hsm::Hsm;
use keyd::identity::Ca;
use keyd::service::Retired;
use keyd::store::{Store, key};
use serde_json::json;

use super::provision::{
    open_branch_log, seal_branch, unseal_branch, unseal_branch_secret, unseal_install,
};
use super::report::{Refusal, Report};

/// How `root-rekey` paces its work.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Nodes per transaction.
    pub batch: usize,
    /// A pause after each batch (for tests that stop keyd in the middle).
    pub pause: Duration,
}

/// The secret of `path` under the branch secret `branch` at `branch_path`.
fn secret_at(branch: &NodeSecret, branch_path: &KeyPath, path: &KeyPath) -> NodeSecret {
    path.indexes()
        .skip(branch_path.depth())
        .fold(branch.clone(), |node, i| node.child(i))
}

/// The nodes of the old branch log to carry, in the order it certified them.
fn plan(old: &Chain, branch: &KeyPath, now: u64) -> Vec<KeyPath> {
    let state = old.state();
    let mut nodes: Vec<(u64, KeyPath)> = state
        .keys()
        .filter(|(p, r)| {
            p.depth() > branch.depth()
                && branch.is_prefix_of(p)
                && matches!(r.kind, KeyKind::Node { .. })
        })
        .filter(|(p, _)| {
            // Not below a revoked or expired node: such a node cannot be certified
            // again (its parent signs nothing) and nothing could use it.
            p.node_lineage()
                .filter(|a| a != *p && a.depth() > branch.depth())
                .all(|a| {
                    state.own_revocation(&a).is_none()
                        && !matches!(
                            state.status_at(&a, now),
                            KeyStatus::Revoked { .. } | KeyStatus::Expired { .. }
                        )
                })
        })
        .map(|(p, r)| (r.seq, p.clone()))
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// `reason`, prefixed, cut to the chain's bound at a character boundary.
fn carried_reason(reason: &str) -> String {
    let mut out = format!("revoked under the previous root: {reason}");
    while out.len() > MAX_REASON {
        out.pop();
    }
    out
}

/// Appends to `new` what carries `node` of `old` under `new_branch`.
fn carry(
    old: &Chain,
    new: &mut Chain,
    (branch_path, new_branch): (&KeyPath, &NodeSecret),
    node: &KeyPath,
    now: u64,
) -> Result<()> {
    let state = old.state();
    let record = state
        .key(node)
        .context("a planned node is not in the old chain")?;
    let KeyKind::Node {
        name,
        role,
        not_before,
        not_after,
        epochs,
    } = &record.kind
    else {
        anyhow::bail!("{node} is not a node");
    };
    let parent = node.parent_node().context("a node without a parent")?;
    let secret = secret_at(new_branch, branch_path, node);
    let parent_key = secret_at(new_branch, branch_path, &parent).material();
    let certify = Body::Certify(Certify {
        path: node.clone(),
        name: name.clone(),
        role: role.clone(),
        keys: (&secret.public_keys()).into(),
        not_before: *not_before,
        not_after: *not_after,
    });
    let mut statements = vec![Statement::sign(
        certify,
        parent,
        now,
        parent_key.signing_key(),
    )];
    if let Some(r) = state.own_revocation(node) {
        let body = Body::Revoke(Revoke {
            target: node.clone(),
            reason: carried_reason(&r.reason),
        });
        let key = new_branch.material();
        statements.push(Statement::sign(
            body,
            branch_path.clone(),
            now,
            key.signing_key(),
        ));
    } else if let Some(epoch) = epochs.iter().rev().copied().find(|e| {
        node.epoch_key(*e)
            .is_some_and(|p| state.own_revocation(&p).is_none())
    }) {
        let keys = secret.child(0).child(epoch).public_keys();
        let body = Body::Epoch(Epoch {
            node: node.clone(),
            epoch,
            keys: (&keys).into(),
        });
        let key = secret.material();
        statements.push(Statement::sign(body, node.clone(), now, key.signing_key()));
    }
    for st in statements {
        let kind = st.body.kind();
        new.append(branch_path, st, now)
            .with_context(|| format!("carrying {node} ({kind})"))?;
    }
    Ok(())
}

/// `keyd root-rekey`: see the module documentation.
pub fn root_rekey(
    config: &Config,
    bundle_file: &Path,
    succession_file: &Path,
    pace: Pace,
) -> Result<Report> {
    let (store, name, path, old_branch, hsm) = unseal_branch(config)?;
    let install = unseal_install(&store, &hsm)?;
    // The new branch, sealed to this keyd's install key by the ceremony.
    let bytes = std::fs::read(bundle_file)
        .with_context(|| format!("cannot read {}", bundle_file.display()))?;
    let bundle = BranchBundle::from_cbor(&bytes)?;
    let (new_branch, bundle_chain) = bundle.open(&install)?;
    if store.meta(key::RETIRED_BRANCH_SEALED)?.is_some() {
        // Run again after it finished (its report lost to a crash): nothing to do.
        if old_branch.public_keys() == new_branch.public_keys() {
            return Ok(Report {
                text: format!(
                    "branch {path} ({name}) already moved under this bundle's root; nothing to do"
                ),
                json: json!({"branch": path.to_string(), "already_moved": true}),
            });
        }
        return Err(Refusal::with_hint(
            "old_root_kept",
            "this keyd still keeps the tree of the root before its last root rekey",
            "keyd retire-root (once nodes re-wrapped their envelopes), then this again",
        ));
    }
    let root = KeyPath::root();

    // The succession, verified against the root log this keyd holds, and stored.
    let mut old = keyd::service::restore_chain(&store).context("the stored chain")?;
    let held = old.entries(&root).len();
    let bytes = std::fs::read(succession_file)
        .with_context(|| format!("cannot read {}", succession_file.display()))?;
    old.update(&bytes).map_err(|e| {
        Refusal::error(
            "bad_succession",
            format!(
                "{} does not extend the root log this keyd holds: {e}",
                succession_file.display()
            ),
        )
    })?;
    let successor = *old.state().successor().ok_or_else(|| {
        Refusal::error(
            "no_succession",
            format!(
                "{} holds no succession of the root this keyd serves (the root-rekey ceremony writes it as succession.cbor)",
                succession_file.display()
            ),
        )
    })?;
    if old.entries(&root).len() > held {
        let head = old.head(&root).context("the root log has no head")?;
        store.append_logs(&old.entries(&root)[held..], &[head], &[])?;
    }

    if bundle.path != path {
        return Err(Refusal::error(
            "wrong_branch",
            format!(
                "the bundle is of branch {}, and this keyd serves {path}",
                bundle.path
            ),
        ));
    }
    if bundle_chain.state().root_keys() != Some(&successor) {
        return Err(Refusal::error(
            "wrong_root",
            format!(
                "the bundle was issued by another root than the successor the succession names ({})",
                keyd::chain::fingerprint(&successor.ed25519)
            ),
        ));
    }

    // The staged tree: started now, or resumed.
    let staged = store.staged_logs()?;
    let resumed = !staged.is_empty();
    let mut new = if resumed {
        let chain = keyd::service::chain_of(staged).context("the staged tree")?;
        let same = chain.state().root_keys() == Some(&successor)
            && chain.state().key(&path).map(|r| r.keys) == Some((&new_branch.public_keys()).into());
        if !same {
            return Err(Refusal::error(
                "other_rekey_under_way",
                "a root rekey with another bundle is half done in this store: finish it with that bundle",
            ));
        }
        chain
    } else {
        let mut chain = bundle_chain;
        open_branch_log(&mut chain, &path, &new_branch)?;
        let entries: Vec<_> = [&root, &path]
            .into_iter()
            .flat_map(|l| chain.entries(l).iter().cloned())
            .collect();
        let heads: Vec<_> = [&root, &path]
            .into_iter()
            .filter_map(|l| chain.head(l))
            .collect();
        let sealed = seal_branch(&hsm, &path, &new_branch)?;
        store.stage_logs(&entries, &heads, Some(&sealed))?;
        chain
    };

    let started = Instant::now();
    let now = keyd::unix_now();
    let plan = plan(&old, &path, now);
    let total = plan.len();
    let todo: Vec<&KeyPath> = plan
        .iter()
        .filter(|p| new.state().key(p).is_none())
        .collect();
    let mut done = total - todo.len();
    if resumed {
        eprintln!("keyd: resuming the re-wrap after {done} of {total} nodes");
    }
    let branch_key = new_branch.material();
    for chunk in todo.chunks(pace.batch.max(1)) {
        let from = new.entries(&path).len();
        for node in chunk {
            carry(&old, &mut new, (&path, &new_branch), node, now)?;
        }
        let head = new
            .sign_head(&path, branch_key.signing_key(), keyd::unix_now())?
            .clone();
        store.stage_logs(&new.entries(&path)[from..], &[&head], None)?;
        done += chunk.len();
        eprintln!("keyd: re-wrapped {done} of {total} nodes");
        std::thread::sleep(pace.pause);
    }
    let head = new
        .sign_head(&path, branch_key.signing_key(), keyd::unix_now())?
        .clone();
    store.stage_logs(&[], &[&head], None)?;
    let (retired, current) = store.swap_in_staged()?;
    hsm.write_mark(&keyd::chain::cbor_bytes(&head))?;
    drop(old_branch);
    let seconds = started.elapsed().as_secs_f64();
    let new_fp = keyd::chain::fingerprint(&successor.ed25519);
    Ok(Report {
        text: format!(
            "branch {path} ({name}) moved under root {new_fp}: {total} nodes re-wrapped{} in {seconds:.1} s; new branch log of {current} entries, the old tree's {retired} entries kept for decryption\nnext: start keyd; nodes sign with their new keys at once, and re-wrap their envelopes with rewrap; when they have, retire the old root: keyd retire-root",
            if resumed { " (resumed)" } else { "" },
        ),
        json: json!({
            "branch": path.to_string(),
            "root": new_fp,
            "nodes": total,
            "resumed": resumed,
            "seconds": seconds,
            "entries": current,
            "retired_entries": retired,
        }),
    })
}

/// The previous root's tree this store keeps (after a root rekey, until retired).
pub fn load_retired(store: &Store, hsm: &Hsm, path: &KeyPath) -> Result<Option<Retired>> {
    let Some(sealed) = store.meta(key::RETIRED_BRANCH_SEALED)? else {
        return Ok(None);
    };
    let branch = unseal_branch_secret(hsm, path, &sealed)?;
    let chain = keyd::service::chain_of(store.retired_logs()?).context("the retired tree")?;
    if chain.state().key(path).map(|r| r.keys) != Some((&branch.public_keys()).into()) {
        anyhow::bail!("the retired branch secret is not the branch the retired chain certifies");
    }
    Ok(Some(Retired { branch, chain }))
}

/// `keyd retire-root`: forgets the old tree kept since the last root rekey.
pub fn retire_root(config: &Config) -> Result<Report> {
    let (store, name, path, branch, _) = unseal_branch(config)?;
    if store.meta(key::RETIRED_BRANCH_SEALED)?.is_none() {
        return Err(Refusal::error(
            "nothing_to_retire",
            "this keyd keeps no tree of an earlier root",
        ));
    }
    let ca = Ca::from_branch(&branch.material(), &name, &path)?;
    let entries = store.retire_old_tree()?;
    let ca_file = config.data_dir.join("ca.pem");
    keyd::files::replace_atomic(&ca_file, ca.cert_pem().as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", ca_file.display()))?;
    Ok(Report {
        text: format!(
            "the old root's tree of branch {path} is retired: {entries} entries and the old branch secret removed; envelopes sealed under it no longer open here (the old root's token still opens them: keyctl ceremony decrypt)\nTLS moves to the new tree at the next start: {} holds the new CA, and every client certificate of the old CA ends; write an admin credential with keyd admin issue, and re-enroll nodes (keyctl node reenroll)",
            ca_file.display()
        ),
        json: json!({"branch": path.to_string(), "retired_entries": entries, "ca": ca_file}),
    })
}

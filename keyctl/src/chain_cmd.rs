//! `keyctl chain verify` and `keyctl chain show`: offline checks of a cluster-chain file
//! (the root log and branch logs, each closed by its signed head).

use std::collections::BTreeMap;
use std::path::Path;

use keyd::chain::{Chain, ChainState, KeyKind, KeyStatus};
use keyd::derive::KeyPath;
use serde_json::{Value, json};

use crate::error::CtlError;

/// Reads and verifies a chain file.
pub fn load(file: &Path) -> Result<Chain, CtlError> {
    Ok(keyd::client::load_chain(file)?)
}

/// Checks that every branch head of `v` is at most `max_age` seconds old.
pub fn check_fresh(file: &Path, v: &Chain, max_age: u64) -> Result<(), CtlError> {
    v.check_fresh(unix_now(), max_age)
        .map_err(|error| CtlError::Chain {
            file: file.to_owned(),
            error: Box::new(error),
        })
}

/// Parses an age: seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_age(text: &str) -> Result<u64, String> {
    keyd::parse_duration(text)
}

/// The logs of a chain as JSON: per log, its entries and its head.
fn logs_json(v: &Chain) -> Vec<Value> {
    let now = unix_now();
    v.logs()
        .map(|(log, l)| {
            let head = l.head.as_ref().map(|h| {
                json!({"seq": h.seq, "hash": hex::encode(h.hash), "signed_at": h.signed_at, "age_seconds": h.age(now)})
            });
            json!({"log": log.to_string(), "entries": l.len(), "head": head})
        })
        .collect()
}

/// One line per log: `m: 3 entries, head seq 2 signed 40 s ago`.
fn logs_text(v: &Chain) -> String {
    let now = unix_now();
    v.logs()
        .map(|(log, l)| match &l.head {
            Some(h) => format!(
                "log {log}: {} entries, head seq {} hash {} signed at {} ({} s ago)",
                l.len(),
                h.seq,
                hex::encode(h.hash),
                h.signed_at,
                h.age(now)
            ),
            None => format!("log {log}: {} entries, no head", l.len()),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Unix seconds now.
pub use keyd::unix_now;

/// Keys not revoked and keys revoked, now.
fn counts(v: &Chain) -> (usize, usize) {
    let s = v.state();
    let now = unix_now();
    let (mut live, mut revoked) = (0, 0);
    for (path, _) in s.keys() {
        match s.status_at(path, now) {
            KeyStatus::Revoked { .. } => revoked += 1,
            _ => live += 1,
        }
    }
    (live, revoked)
}

/// [`summary`] as JSON.
pub fn summary_json(file: &Path, v: &Chain) -> Value {
    let (live, revoked) = counts(v);
    json!({
        "file": file.display().to_string(),
        "verifies": true,
        "entries": v.len(),
        "logs": logs_json(v),
        "keys": v.state().len(),
        "not_revoked": live,
        "revoked": revoked,
        "trusted_clusters": v.state().trusted().count(),
        "root": root_fingerprint(v),
        "successor": v.state().successor().map(|k| keyd::chain::fingerprint(&k.ed25519)),
    })
}

/// The fingerprint of the chain's root (empty before genesis).
fn root_fingerprint(v: &Chain) -> String {
    v.state()
        .root_keys()
        .map(|k| keyd::chain::fingerprint(&k.ed25519))
        .unwrap_or_default()
}

/// The one-paragraph summary `chain verify` prints.
pub fn summary(file: &Path, v: &Chain) -> String {
    let s = v.state();
    let (live, revoked) = counts(v);
    let text = format!(
        "chain {} verifies: {} entries in {} log(s); {} keys ({} not revoked, {} revoked), {} trusted cluster(s)\n{}",
        file.display(),
        v.len(),
        v.logs().count(),
        s.len(),
        live,
        revoked,
        s.trusted().count(),
        logs_text(v)
    );
    let text = format!("{}\nroot: {}", text.trim_end(), root_fingerprint(v));
    match s.successor() {
        Some(next) => format!(
            "{text}\nsucceeded by root {} (this root signs nothing more; trust in it must be established again in the new root)",
            keyd::chain::fingerprint(&next.ed25519)
        ),
        None => text,
    }
}

fn status_json(status: &KeyStatus) -> Value {
    match status {
        KeyStatus::Valid { .. } => json!({"state": "valid"}),
        KeyStatus::Unknown => json!({"state": "unknown"}),
        KeyStatus::Revoked {
            revoked,
            by,
            seq,
            reason,
            ..
        } => {
            json!({"state": "revoked", "revoked": revoked.to_string(), "by": by.to_string(), "seq": seq, "reason": reason})
        }
        KeyStatus::Superseded { current, .. } => {
            json!({"state": "superseded", "current_epoch": current})
        }
        KeyStatus::Succeeded { seq, .. } => json!({"state": "succeeded", "succession_seq": seq}),
        KeyStatus::Expired {
            not_before,
            not_after,
            ..
        } => json!({"state": "expired", "not_before": not_before, "not_after": not_after}),
    }
}

fn status_text(status: &KeyStatus) -> String {
    match status {
        KeyStatus::Valid { .. } => "valid".into(),
        KeyStatus::Unknown => "unknown".into(),
        KeyStatus::Revoked {
            path,
            revoked,
            by,
            seq,
            reason,
        } if path == revoked => format!("REVOKED by {by} at seq {seq} ({reason})"),
        KeyStatus::Revoked { revoked, seq, .. } => {
            format!("REVOKED with ancestor {revoked} at seq {seq}")
        }
        KeyStatus::Superseded { current, .. } => format!("superseded by epoch {current}"),
        KeyStatus::Succeeded { seq, .. } => {
            format!("SUCCEEDED: its root named a successor at seq {seq}")
        }
        KeyStatus::Expired { not_after, .. } => {
            format!("EXPIRED (valid until {})", keyd::rfc3339(*not_after))
        }
    }
}

/// The chain as JSON: head, keys (sorted by path) and trusted clusters.
pub fn to_json(v: &Chain) -> Value {
    let s = v.state();
    let now = unix_now();
    let mut keys: Vec<_> = s.keys().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|(path, r)| {
            let mut k = json!({
                "path": path.to_string(),
                "key_id": r.key_id.to_string(),
                "ed25519_public": hex::encode(r.keys.ed25519),
                "x25519_public": hex::encode(r.keys.x25519),
                "log": keyd::chain::log_of(path).to_string(),
                "seq": r.seq,
                "status": status_json(&s.status_at(path, now)),
            });
            match &r.kind {
                KeyKind::Root { cluster } => {
                    k["kind"] = "root".into();
                    k["cluster"] = cluster.clone().into();
                }
                KeyKind::Node {
                    name,
                    role,
                    not_before,
                    not_after,
                    ..
                } => {
                    let named = matches!(path.role(), keyd::derive::PathRole::Named { .. });
                    k["kind"] = if named { "named key" } else { "node" }.into();
                    k["name"] = name.clone().into();
                    k["role"] = role.clone().into();
                    k["not_before"] = (*not_before).into();
                    k["not_after"] = (*not_after).into();
                    if let Some((e, _)) = s.current_epoch(path) {
                        k["current_epoch"] = e.into();
                    }
                }
                KeyKind::Epoch { epoch } => {
                    k["kind"] = "epoch".into();
                    k["epoch"] = (*epoch).into();
                }
            }
            k
        })
        .collect();
    let trusted: Vec<Value> = s
        .trusted()
        .map(|(root, t)| {
            json!({"cluster": t.cluster, "root": hex::encode(root), "level": format!("{:?}", t.level).to_lowercase(),
                   "permissions": t.permissions, "expires_at": t.expires_at, "log": t.log.to_string(), "seq": t.seq,
                   "introduced_by": t.introduced_by})
        })
        .collect();
    json!({
        "logs": logs_json(v),
        "entries": v.len(),
        "keys": keys,
        "trusted": trusted,
    })
}

/// The chain as a readable tree.
pub fn to_text(v: &Chain) -> String {
    let s = v.state();
    let now = unix_now();
    let mut out = String::new();
    tree(s, &KeyPath::root(), 0, now, &mut out);
    let mut trusted: Vec<_> = s.trusted().collect();
    trusted.sort_by_key(|(_, t)| t.seq);
    if !trusted.is_empty() {
        out.push_str("trusted clusters:\n");
        for (root, t) in trusted {
            out.push_str(&format!(
                "  {} root {} level {:?} permissions [{}] expires {}{}\n",
                t.cluster,
                hex::encode(root),
                t.level,
                t.permissions.join(", "),
                t.expires_at,
                t.introduced_by
                    .as_ref()
                    .map(|by| format!(" introduced by {by}"))
                    .unwrap_or_default()
            ));
        }
    }
    out.push_str(&logs_text(v));
    out.push('\n');
    out
}

/// Parent of a key in the displayed tree: an epoch key's node, a node's certifier.
fn display_parent(path: &KeyPath) -> Option<KeyPath> {
    match path.role() {
        keyd::derive::PathRole::Epoch { node, .. } => Some(node),
        _ => path.parent_node(),
    }
}

fn tree(s: &ChainState, path: &KeyPath, indent: usize, now: u64, out: &mut String) {
    let mut children: BTreeMap<KeyPath, Vec<KeyPath>> = BTreeMap::new();
    for (p, _) in s.keys() {
        if let Some(parent) = display_parent(p) {
            children.entry(parent).or_default().push(p.clone());
        }
    }
    for list in children.values_mut() {
        // Epochs (branch 0') sort before child nodes (branch 1').
        list.sort();
    }
    let mut stack = vec![(path.clone(), indent)];
    while let Some((path, indent)) = stack.pop() {
        line(s, &path, indent, now, out);
        if let Some(list) = children.get(&path) {
            stack.extend(list.iter().rev().map(|c| (c.clone(), indent + 1)));
        }
    }
}

fn line(s: &ChainState, path: &KeyPath, indent: usize, now: u64, out: &mut String) {
    let Some(r) = s.key(path) else { return };
    let pad = "  ".repeat(indent);
    let status = status_text(&s.status_at(path, now));
    match &r.kind {
        KeyKind::Root { cluster } => out.push_str(&format!(
            "{pad}{path} cluster {cluster:?} (root) key {} {status}\n",
            r.key_id
        )),
        KeyKind::Node { name, role, .. } => out.push_str(&format!(
            "{pad}{path} {name} [{role}] key {} {status}\n",
            r.key_id
        )),
        KeyKind::Epoch { epoch } => out.push_str(&format!(
            "{pad}epoch {epoch} {path} key {} {status}\n",
            r.key_id
        )),
    }
}

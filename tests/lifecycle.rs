//! Keys over time against a running keyd: scheduled rotation from the policy, a node
//! validity from the policy, a minimum decryption epoch refusing older envelopes, and
//! envelopes bound to a context that must be given again.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster};

fn code(status: u16, v: &Value) -> (u16, String) {
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

fn seal(node: &Client, text: &str, context: Option<&str>) -> Result<String> {
    let mut body = json!({"plaintext": B64.encode(text)});
    if let Some(c) = context {
        body["context"] = B64.encode(c).into();
    }
    let (status, v) = node.post("/v1/seal", &body)?;
    ensure!(status == 200, "seal: {status} {v}");
    Ok(v["envelope"].as_str().context("envelope")?.to_owned())
}

fn unseal(node: &Client, envelope: &str, context: Option<&str>) -> Result<(u16, Value)> {
    let mut body = json!({ "envelope": envelope });
    if let Some(c) = context {
        body["context"] = B64.encode(c).into();
    }
    node.post("/v1/unseal", &body)
}

#[test]
fn the_policy_rotates_nodes_on_schedule_and_sets_their_validity() -> Result<()> {
    let c = Cluster::start_with("rotation_check_seconds = 1\n")?;
    let admin = c.admin()?;
    let policy = format!(
        "{}\n[[lifecycle]]\nnodes = [\"name:rot-*\"]\nrotate_every = \"2s\"\n\n[[lifecycle]]\nnodes = [\"name:short-*\"]\nnode_validity = \"1d\"\n",
        keyd::policy::DEFAULT
    );
    let (status, v) = admin.post("/v1/policy", &json!({ "text": policy }))?;
    ensure!(status == 200, "{status} {v}");
    let (rot, _) = c.enrolled_node("rot-1")?;
    c.enrolled_node("still-1")?;
    // Within a few check intervals the rot- node is on a later epoch; the other is not.
    let start = Instant::now();
    loop {
        let v = admin.get_json("/v1/nodes/rot-1")?;
        if v["current_epoch"].as_u64() >= Some(1) {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("rot-1 was not rotated: {v}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ensure!(admin.get_json("/v1/nodes/still-1")?["current_epoch"] == 0);
    let (status, v) = rot.post("/v1/sign", &json!({"data": B64.encode("x")}))?;
    ensure!(
        status == 200 && v["epoch"].as_u64() >= Some(1),
        "{status} {v}"
    );
    // Recorded as keyd's own change.
    std::thread::sleep(Duration::from_millis(1200));
    let page = admin.get_json("/v1/audit")?;
    ensure!(
        page["records"].as_array().is_some_and(|r| r
            .iter()
            .any(|x| x["op"] == "rekey.scheduled" && x["principal"] == "keyd")),
        "{page}"
    );

    // node_validity: a node added without valid_seconds is certified for a day.
    let (status, v) = admin.post("/v1/nodes", &json!({"name": "short-1"}))?;
    ensure!(status == 201, "{status} {v}");
    let v = admin.get_json("/v1/nodes/short-1")?;
    let left = v["not_after"]
        .as_u64()
        .unwrap_or(0)
        .abs_diff(keyd::unix_now() + 86_400);
    ensure!(left < 60, "{v}");
    // An explicit valid_seconds still wins.
    let (status, _) = admin.post(
        "/v1/nodes",
        &json!({"name": "short-2", "valid_seconds": 600}),
    )?;
    ensure!(status == 201);
    let v = admin.get_json("/v1/nodes/short-2")?;
    let left = v["not_after"]
        .as_u64()
        .unwrap_or(0)
        .abs_diff(keyd::unix_now() + 600);
    ensure!(left < 60, "{v}");
    Ok(())
}

#[test]
fn a_minimum_decryption_epoch_retires_older_envelopes() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin()?;
    let (node, _) = c.enrolled_node("web")?;
    let old = seal(&node, "epoch zero", None)?;
    ensure!(node.post("/v1/rekey", &json!({}))?.0 == 200);
    let new = seal(&node, "epoch one", None)?;

    // The node raises its own minimum to 1: the epoch-0 envelope no longer opens.
    let (status, v) = node.post("/v1/nodes/web/min-epoch", &json!({"epoch": 1}))?;
    ensure!(
        status == 200 && v["min_decrypt_epoch"] == 1 && v["previous"] == 0,
        "{status} {v}"
    );
    let (status, v) = unseal(&node, &old, None)?;
    ensure!(
        code(status, &v) == (400, "epoch_retired".into()),
        "{status} {v}"
    );
    ensure!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("epoch 0") && m.contains("minimum decryption epoch 1")),
        "{v}"
    );
    let (status, v) = unseal(&node, &new, None)?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("epoch one"),
        "{status} {v}"
    );
    // Rewrap cannot launder a retired envelope either.
    let (status, v) = node.post("/v1/rewrap", &json!({ "envelope": old }))?;
    ensure!(code(status, &v).1 == "epoch_retired", "{status} {v}");
    // Beyond the current epoch: refused; the node may not lower it.
    let (status, v) = node.post("/v1/nodes/web/min-epoch", &json!({"epoch": 2}))?;
    ensure!(code(status, &v).0 == 400, "{status} {v}");
    let (status, v) = node.post("/v1/nodes/web/min-epoch", &json!({"epoch": 0}))?;
    ensure!(
        code(status, &v) == (403, "forbidden".into()),
        "{status} {v}"
    );
    ensure!(admin.get_json("/v1/nodes/web")?["min_decrypt_epoch"] == 1);
    // An admin lowers it: the old envelope opens again (the key was never revoked).
    let (status, v) = admin.post("/v1/nodes/web/min-epoch", &json!({"epoch": 0}))?;
    ensure!(status == 200 && v["previous"] == 1, "{status} {v}");
    let (status, v) = unseal(&node, &old, None)?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("epoch zero"),
        "{status} {v}"
    );
    Ok(())
}

#[test]
fn an_envelope_bound_to_a_context_opens_only_with_it() -> Result<()> {
    let c = Cluster::start()?;
    let (web, _) = c.enrolled_node("web")?;
    let (db, _) = c.enrolled_node("db")?;
    let sealed = seal(&web, "row 7", Some("table=users"))?;
    for (context, want) in [
        (None, "sealed with a context"),
        (Some("table=admins"), "another context"),
    ] {
        let (status, v) = unseal(&web, &sealed, context)?;
        ensure!(
            code(status, &v) == (400, "bad_envelope".into())
                && v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(want)),
            "{context:?}: {status} {v}"
        );
    }
    let (status, v) = unseal(&web, &sealed, Some("table=users"))?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("row 7"),
        "{status} {v}"
    );
    // Rewrap keeps it bound to the same context.
    let (status, v) = web.post(
        "/v1/rewrap",
        &json!({"envelope": sealed, "context": B64.encode("table=users")}),
    )?;
    ensure!(status == 200, "{status} {v}");
    let rewrapped = v["envelope"].as_str().context("envelope")?.to_owned();
    ensure!(unseal(&web, &rewrapped, None)?.0 == 400);
    ensure!(unseal(&web, &rewrapped, Some("table=users"))?.0 == 200);
    // A context on an envelope sealed without one is refused, not ignored.
    let plain = seal(&web, "x", None)?;
    let (status, v) = unseal(&web, &plain, Some("anything"))?;
    ensure!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("without a context")),
        "{status} {v}"
    );

    // Public-key envelopes: db must name the context web encrypted with.
    let (status, v) = web.post(
        "/v1/encrypt",
        &json!({"to": "db", "plaintext": B64.encode("hi"), "context": B64.encode("invoice 42")}),
    )?;
    ensure!(status == 200, "{status} {v}");
    let env = v["envelope"].as_str().context("envelope")?;
    ensure!(code_of(db.post("/v1/decrypt", &json!({"envelope": env}))?) == "bad_envelope");
    ensure!(
        code_of(db.post(
            "/v1/decrypt",
            &json!({"envelope": env, "context": B64.encode("invoice 43")})
        )?) == "bad_envelope"
    );
    let (status, v) = db.post(
        "/v1/decrypt",
        &json!({"envelope": env, "context": B64.encode("invoice 42")}),
    )?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("hi"),
        "{status} {v}"
    );
    // Too long a context is refused before anything is sealed.
    let (status, v) = web.post(
        "/v1/seal",
        &json!({"plaintext": "", "context": B64.encode(vec![b'x'; 5000])}),
    )?;
    ensure!(
        code(status, &v).0 == 400
            && v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("context")),
        "{status} {v}"
    );
    Ok(())
}

fn code_of((status, v): (u16, Value)) -> String {
    code(status, &v).1
}

#[test]
fn a_parent_renews_a_node_validity_in_the_chain() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin()?;
    let config = c.admin_config()?;
    let (status, v) = admin.post("/v1/nodes", &json!({"name": "short", "valid_seconds": 600}))?;
    ensure!(status == 201, "{status} {v}");
    let (node, _) = c.enrolled_node("self-renewer")?;
    let renewed = crate::cluster::keyctl(
        &[
            "node",
            "extend",
            "short",
            "--valid-for",
            "1d",
            "--config",
            &config,
        ],
        &[],
    )?;
    let not_after = renewed["not_after"].as_u64().context("not_after")?;
    ensure!(
        not_after.abs_diff(keyd::unix_now() + 86_400) < 60,
        "{renewed}"
    );
    ensure!(admin.get_json("/v1/nodes/short")?["not_after"] == not_after);
    // Only later: an earlier end is refused, nothing is appended.
    let err = crate::cluster::keyctl_fails(
        &[
            "node",
            "extend",
            "short",
            "--valid-for",
            "60",
            "--config",
            &config,
        ],
        &[],
    )?;
    ensure!(err.contains("an extension must end later"), "{err}");
    // A node does not renew itself; nor is a revoked node renewed.
    let (status, v) = node.post(
        "/v1/nodes/self-renewer/extend",
        &json!({"valid_seconds": 86_400}),
    )?;
    ensure!(code(status, &v).0 == 403, "{status} {v}");
    ensure!(
        admin
            .post("/v1/nodes/short/revoke", &json!({"reason": "done"}))?
            .0
            == 200
    );
    let (status, v) = admin.post(
        "/v1/nodes/short/extend",
        &json!({"valid_seconds": 2 * 86_400}),
    )?;
    ensure!(
        code(status, &v) == (409, "chain_refused".into()),
        "{status} {v}"
    );
    // The chain a verifier fetches holds the extension and verifies.
    let chain = c.dir.path().join("renewed.cbor");
    let fetched = crate::cluster::keyctl(
        &[
            "chain",
            "fetch",
            "--config",
            &config,
            "--out",
            chain.to_str().unwrap_or_default(),
        ],
        &[],
    )?;
    ensure!(fetched["new_entries"].as_u64() > Some(0), "{fetched}");
    Ok(())
}

#[test]
fn an_ordered_rekey_is_followed_by_the_node_on_its_next_chain_fetch() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin()?;
    let config = c.admin_config()?;
    crate::enroll::add_and_enroll(&c, &config, "edge", true)?;
    let node_config = c.dir.path().join("edge").join("keyctl.toml");
    let node_chain = c.dir.path().join("edge").join("chain.cbor");
    let ordered = crate::cluster::keyctl(
        &[
            "node",
            "rekey",
            "edge",
            "--order",
            "--reason",
            "key may have leaked",
            "--config",
            &config,
        ],
        &[],
    )?;
    ensure!(ordered["key"].as_str().is_some(), "{ordered}");
    let shown = admin.get_json("/v1/nodes/edge")?;
    ensure!(
        shown["current_epoch"] == 0
            && shown["rekey_order"]
                .as_str()
                .is_some_and(|o| o.contains("key may have leaked")),
        "{shown}"
    );
    // The node's keyctl sees the order when it fetches the chain, and follows it.
    let fetch = [
        "chain",
        "fetch",
        "--config",
        node_config.to_str().unwrap_or_default(),
        "--out",
        node_chain.to_str().unwrap_or_default(),
    ];
    let report = crate::cluster::keyctl(&fetch, &[])?;
    ensure!(
        report["rekey_order"]["followed"] == true
            && report["rekey_order"]["reason"] == "key may have leaked",
        "{report}"
    );
    let shown = admin.get_json("/v1/nodes/edge")?;
    ensure!(
        shown["current_epoch"] == 1 && shown["rekey_order"].is_null(),
        "{shown}"
    );
    // Followed once: the next fetch finds nothing to do.
    let report = crate::cluster::keyctl(&fetch, &[])?;
    ensure!(report["rekey_order"].is_null(), "{report}");
    // Only admins order; nodes cannot.
    let (node, _) = c.enrolled_node("other")?;
    let (status, v) = node.post("/v1/nodes/edge/rekey-order", &json!({"reason": "x"}))?;
    ensure!(code(status, &v).0 == 403, "{status} {v}");
    Ok(())
}

//! Recovery from above: an admin opens a descendant's envelopes through keyd, the root
//! opens any envelope of its cluster offline — revoked nodes' included — and an
//! envelope of another cluster is refused, naming why.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::Cluster;

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn envelope(v: &Value) -> Result<Vec<u8>> {
    Ok(B64.decode(v["envelope"].as_str().context("envelope")?)?)
}

#[test]
fn ancestors_open_descendants_envelopes_and_refuse_other_clusters() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin()?;
    let (web, _) = c.enrolled_node("web")?;
    let (db, _) = c.enrolled_node("db")?;
    let (status, sealed) = web.post(
        "/v1/seal",
        &json!({"plaintext": B64.encode("web's secret"), "context": B64.encode("row 1")}),
    )?;
    ensure!(status == 200, "{sealed}");
    let (status, encrypted) = web.post(
        "/v1/encrypt",
        &json!({"to": "db", "plaintext": B64.encode("for db")}),
    )?;
    ensure!(status == 200, "{encrypted}");
    // db is revoked: its envelopes still open for its ancestors.
    ensure!(
        admin
            .post("/v1/nodes/db/revoke", &json!({"reason": "lost"}))?
            .0
            == 200
    );
    drop(db);

    // Through keyd, as an admin (the ancestor of every node of its branch).
    let (status, v) = admin.post(
        "/v1/admin/recover",
        &json!({"envelope": sealed["envelope"], "context": B64.encode("row 1")}),
    )?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("web's secret") && v["kind"] == "sealed",
        "{status} {v}"
    );
    let (status, v) = admin.post(
        "/v1/admin/recover",
        &json!({"envelope": encrypted["envelope"]}),
    )?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("for db") && v["sender"].as_str().is_some(),
        "{status} {v}"
    );
    // The context is still needed; nodes may not recover.
    let (status, v) = admin.post(
        "/v1/admin/recover",
        &json!({"envelope": sealed["envelope"]}),
    )?;
    ensure!(
        status == 400 && v["error"]["code"] == "bad_envelope",
        "{status} {v}"
    );
    let (status, v) = web.post(
        "/v1/admin/recover",
        &json!({"envelope": sealed["envelope"]}),
    )?;
    ensure!(status == 403, "{status} {v}");
    // Recorded, with the key.
    let page = admin.get_json("/v1/audit")?;
    ensure!(
        page["records"].as_array().is_some_and(|r| r
            .iter()
            .filter(|x| x["op"] == "admin.recover")
            .count()
            == 2),
        "{page}"
    );

    // Offline, with the root: both envelopes (no context here: one per run).
    let dir = c.dir.path();
    let (status, plain) = web.post("/v1/seal", &json!({"plaintext": B64.encode("no context")}))?;
    ensure!(status == 200);
    std::fs::write(dir.join("sealed.env"), envelope(&plain)?)?;
    std::fs::write(dir.join("to-db.env"), envelope(&encrypted)?)?;
    let out = dir.join("opened");
    let report = c.ceremony_ok(&[
        "ceremony",
        "decrypt",
        "--hsm",
        c.root.uri(),
        "--in",
        s(&dir.join("sealed.env")),
        "--in",
        s(&dir.join("to-db.env")),
        "--out",
        s(&out),
        "--output",
        "json",
    ])?;
    let report: Value = serde_json::from_str(&report)?;
    ensure!(
        report["opened"].as_array().map(Vec::len) == Some(2),
        "{report}"
    );
    ensure!(std::fs::read(out.join("sealed.env.plain"))? == b"no context");
    ensure!(std::fs::read(out.join("to-db.env.plain"))? == b"for db");
    ensure!(crate::helpers::mode(&out.join("to-db.env.plain"))? == 0o600);
    let ctx_out = dir.join("opened-ctx");
    std::fs::write(dir.join("ctx.env"), envelope(&sealed)?)?;
    c.ceremony_ok(&[
        "ceremony",
        "decrypt",
        "--hsm",
        c.root.uri(),
        "--in",
        s(&dir.join("ctx.env")),
        "--context",
        "row 1",
        "--out",
        s(&ctx_out),
    ])?;
    ensure!(std::fs::read(ctx_out.join("ctx.env.plain"))? == b"web's secret");

    // Another cluster's envelope: refused by this root and by this keyd, nothing written.
    let other = Cluster::start()?;
    let (theirs, _) = other.enrolled_node("web")?;
    let (status, foreign) = theirs.post("/v1/seal", &json!({"plaintext": B64.encode("theirs")}))?;
    ensure!(status == 200);
    std::fs::write(dir.join("foreign.env"), envelope(&foreign)?)?;
    let refused_out = dir.join("refused");
    let out = crate::helpers::keyctl(
        &c.root,
        &[
            "ceremony",
            "decrypt",
            "--hsm",
            c.root.uri(),
            "--in",
            s(&dir.join("sealed.env")),
            "--in",
            s(&dir.join("foreign.env")),
            "--out",
            s(&refused_out),
        ],
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("foreign.env")
            && err.contains("not an envelope of this root's cluster"),
        "{err}"
    );
    ensure!(!refused_out.exists(), "all or nothing: nothing written");
    let (status, v) = admin.post(
        "/v1/admin/recover",
        &json!({"envelope": foreign["envelope"]}),
    )?;
    ensure!(
        status == 400
            && v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("key id")),
        "{status} {v}"
    );
    Ok(())
}

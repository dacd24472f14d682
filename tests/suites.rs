//! Suite policy: a recipient that requires X-Wing cannot be downgraded to X25519, by a
//! sender through keyd or by one that builds its envelope elsewhere.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster, keyctl};
use crate::hardening::code;

fn encrypt(from: &Client, to: &str, suite: &str) -> Result<(u16, Value)> {
    from.post(
        "/v1/encrypt",
        &json!({"to": to, "plaintext": B64.encode(b"hello"), "suite": suite}),
    )
}

#[test]
fn a_node_that_requires_x_wing_cannot_be_downgraded() -> Result<()> {
    let mut c = Cluster::start()?;
    let (web, _) = c.enrolled_node("web")?;
    let (db, _) = c.enrolled_node("db")?;
    // Before any policy: both suites reach db. The attacker keeps an X25519 envelope
    // (as a sender building envelopes outside keyd would make one).
    let (status, old) = encrypt(&web, "db", "x25519")?;
    ensure!(status == 200, "{old}");
    let downgraded = old["envelope"].as_str().context("envelope")?.to_owned();

    // Another node cannot set db's policy; db sets its own; an admin with keyctl too.
    let (status, v) = web.post("/v1/nodes/db/suite", &json!({"suite": "any"}))?;
    ensure!(status == 403, "{status} {v}");
    let (status, v) = db.post("/v1/nodes/db/suite", &json!({"suite": "x-wing"}))?;
    ensure!(status == 200 && v["suite"] == "x-wing", "{status} {v}");
    let (status, v) = db.post("/v1/nodes/db/suite", &json!({"suite": "rot13"}))?;
    ensure!(status == 400 && code(&v) == "bad_json", "{status} {v}");
    let said = keyctl(
        &[
            "--output",
            "json",
            "node",
            "suite",
            "--config",
            &c.admin_config()?,
            "db",
            "x-wing",
        ],
        &[],
    )?;
    ensure!(
        said["path"] == "m/1'/1'/1'" && said["suite"] == "x-wing",
        "{said}"
    );

    let check = |web: &Client, db: &Client| -> Result<()> {
        // keyd will not encrypt to db with X25519...
        let (status, v) = encrypt(web, "db", "x25519")?;
        ensure!(
            status == 400
                && code(&v) == "suite_not_allowed"
                && v.to_string().contains("requires x-wing"),
            "{status} {v}"
        );
        // ...nor open an X25519 envelope made for db, however it was made.
        let (status, v) = db.post("/v1/decrypt", &json!({"envelope": downgraded}))?;
        ensure!(
            status == 400 && code(&v) == "suite_not_allowed",
            "{status} {v}"
        );
        // X-Wing works as before.
        let (status, sent) = encrypt(web, "db", "x-wing")?;
        ensure!(status == 200, "{sent}");
        let (status, v) = db.post("/v1/decrypt", &json!({"envelope": sent["envelope"]}))?;
        ensure!(
            status == 200 && v["plaintext"] == B64.encode(b"hello"),
            "{status} {v}"
        );
        // web has no policy: X25519 to web still works.
        let (status, v) = encrypt(db, "web", "x25519")?;
        ensure!(status == 200, "{status} {v}");
        Ok(())
    };
    check(&web, &db)?;
    // The policy holds across a restart.
    c.kill9()?;
    c.serve()?;
    check(&web.at(&c.addr), &db.at(&c.addr))?;
    Ok(())
}

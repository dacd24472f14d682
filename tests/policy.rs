//! Policies against a running keyd: a denial over HTTPS with its stable code and rule,
//! a policy applied live (no restart) and kept across one, a bad policy changing
//! nothing, scoped admins, rates, batch limits, and `keyctl policy check` online and
//! offline.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Cluster, keyctl, keyctl_fails};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// The error code and rule of a refusal.
fn refusal(status: u16, v: &Value) -> (u16, String, String) {
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
        v["error"]["rule"].as_str().unwrap_or_default().to_owned(),
    )
}

const DENY_DB: &str = r#"
format = 1

[[rule]]
id = "db-never-encrypts"
effect = "deny"
principals = ["name:db"]
operations = ["encrypt"]

[[rule]]
id = "nodes-own-keys"
effect = "allow"
principals = ["role:node"]
operations = ["sign", "decrypt", "seal", "unseal", "datakey", "rekey"]
targets = ["self"]
max_batch = 3

[[rule]]
id = "nodes-encrypt"
effect = "allow"
principals = ["role:node"]
operations = ["encrypt"]
targets = ["same-cluster"]

[[rule]]
id = "admins-manage"
effect = "allow"
principals = ["role:admin"]
operations = ["node.*", "admin.*", "chain.*", "policy.*"]
"#;

#[test]
fn a_policy_applied_live_denies_with_its_rule_and_survives_a_restart() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin_config = c.admin_config()?;
    let (web, _) = c.enrolled_node("web")?;
    let (db, _) = c.enrolled_node("db")?;
    let hello = json!({"to": "web", "plaintext": B64.encode("hi")});

    // The built-in default: version 0, db may encrypt to web.
    let shown = keyctl(&["policy", "show", "--config", &admin_config], &[])?;
    ensure!(
        shown["version"] == 0 && shown["applied_by"] == "keyd",
        "{shown}"
    );
    ensure!(
        shown["text"]
            .as_str()
            .is_some_and(|t| t.contains("nodes-own-keys")),
        "{shown}"
    );
    ensure!(db.post("/v1/encrypt", &hello)?.0 == 200);

    // A bad policy: refused here, and by keyd, naming where; nothing changes.
    let bad = c.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "format = 1\n[[rule]]\nid = \"x\"\neffect = \"allow\"\nprincipals = [\"*\"]\noperations = [\"sing\"]\n",
    )?;
    let err = keyctl_fails(
        &["policy", "apply", s(&bad), "--config", &admin_config],
        &[],
    )?;
    ensure!(
        err.contains("rule[0] (\"x\").operations[0]") && err.contains("sing"),
        "{err}"
    );
    let (status, v) = c.admin()?.post(
        "/v1/policy",
        &json!({"text": std::fs::read_to_string(&bad)?}),
    )?;
    ensure!(
        status == 400
            && v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("operations[0]")),
        "{status} {v}"
    );
    ensure!(keyctl(&["policy", "show", "--config", &admin_config], &[])?["version"] == 0);

    // Applied: in force for the very next request, no restart.
    let file = c.dir.path().join("deny-db.toml");
    std::fs::write(&file, DENY_DB)?;
    let applied = keyctl(
        &["policy", "apply", s(&file), "--config", &admin_config],
        &[],
    )?;
    ensure!(
        applied["version"] == 1 && applied["rules"] == 4,
        "{applied}"
    );
    let (status, v) = db.post("/v1/encrypt", &hello)?;
    ensure!(
        refusal(status, &v) == (403, "forbidden".into(), "db-never-encrypts".into()),
        "{status} {v}"
    );
    ensure!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("encrypt denied by policy rule db-never-encrypts")),
        "{v}"
    );
    // Others are untouched; what no rule allows is refused by default.
    ensure!(
        web.post(
            "/v1/encrypt",
            &json!({"to": "db", "plaintext": B64.encode("hi")})
        )?
        .0 == 200
    );
    let (status, v) = web.post("/v1/verify", &json!({"data": "", "signature": B64.encode([0u8; 64]), "public_key": hex::encode([1u8; 32])}))?;
    ensure!(
        refusal(status, &v) == (403, "forbidden".into(), "default-deny".into()),
        "{status} {v}"
    );

    // max_batch 3: a batch of 4 seals has every item refused by that rule; 3 pass.
    let items = |n: usize| json!({"items": vec![json!({"plaintext": B64.encode("x")}); n]});
    let (status, v) = web.post("/v1/batch/seal", &items(4))?;
    ensure!(status == 200, "{status} {v}");
    let results = v["results"].as_array().context("results")?;
    ensure!(
        results.len() == 4
            && results
                .iter()
                .all(|r| r["error"]["rule"] == "nodes-own-keys"
                    && r["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("max_batch"))),
        "{v}"
    );
    let (_, v) = web.post("/v1/batch/seal", &items(3))?;
    ensure!(
        v["results"]
            .as_array()
            .is_some_and(|r| r.iter().all(|x| x["envelope"].is_string())),
        "{v}"
    );

    // Kept across a restart, same version.
    c.kill9()?;
    c.serve()?;
    let admin_config = c.admin_config()?;
    let db = db.at(&c.addr);
    let shown = keyctl(&["policy", "show", "--config", &admin_config], &[])?;
    ensure!(shown["version"] == 1 && shown["text"] == DENY_DB, "{shown}");
    let (status, v) = db.post("/v1/encrypt", &hello)?;
    ensure!(refusal(status, &v).2 == "db-never-encrypts", "{status} {v}");
    Ok(())
}

#[test]
fn the_default_rate_limits_a_node_rekeying_itself() -> Result<()> {
    let c = Cluster::start()?;
    let (node, _) = c.enrolled_node("spinner")?;
    for i in 0..10 {
        let (status, v) = node.post("/v1/rekey", &json!({}))?;
        ensure!(status == 200, "rekey {i}: {status} {v}");
    }
    let (status, v) = node.post("/v1/rekey", &json!({}))?;
    ensure!(
        refusal(status, &v) == (403, "forbidden".into(), "nodes-rekey".into()),
        "{status} {v}"
    );
    ensure!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate")),
        "{v}"
    );
    // An admin's rekey of the node is another operation, not limited by that rule.
    let (status, v) = c.admin()?.post("/v1/nodes/spinner/rekey", &json!({}))?;
    ensure!(status == 200, "{status} {v}");
    Ok(())
}

#[test]
fn a_scoped_admin_manages_only_its_subtree() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin()?;
    // Two team roots under the branch, and a node in each.
    for (name, parent) in [
        ("team-a", None),
        ("team-b", None),
        ("a-1", Some("team-a")),
        ("b-1", Some("team-b")),
    ] {
        let mut body = json!({"name": name});
        if let Some(p) = parent {
            body["parent"] = p.into();
        }
        let (status, v) = admin.post("/v1/nodes", &body)?;
        ensure!(status == 201, "{name}: {status} {v}");
    }
    let team_a = admin.get_json("/v1/nodes/team-a")?["path"]
        .as_str()
        .context("path")?
        .to_owned();
    // lead-a: an admin credential scoped to team-a's subtree.
    let dir = c.dir.path().join("creds");
    c.kill9()?;
    c.keyd(&["admin", "issue", "lead-a", "--out", s(&dir)])?;
    c.serve()?;
    let policy = format!(
        "{}\n[admins.lead-a]\nscope = \"{team_a}\"\n",
        keyd::policy::DEFAULT
    );
    let (status, v) = c.admin()?.post("/v1/policy", &json!({"text": policy}))?;
    ensure!(status == 200, "{status} {v}");
    let lead = crate::nodes::credential(&c, &dir, "lead-a")?;

    // Inside: add below team-a, revoke a-1.
    let (status, v) = lead.post("/v1/nodes", &json!({"name": "a-2", "parent": "team-a"}))?;
    ensure!(status == 201, "{status} {v}");
    let (status, v) = lead.post("/v1/nodes/a-1/revoke", &json!({"reason": "rotated out"}))?;
    ensure!(status == 200, "{status} {v}");
    // Outside: b-1, team-a itself, the branch, admins, the policy, the root log.
    for (path, body) in [
        ("/v1/nodes/b-1/revoke", json!({"reason": "x"})),
        ("/v1/nodes/team-a/revoke", json!({"reason": "x"})),
        ("/v1/nodes", json!({"name": "stray"})),
        ("/v1/admins/admin/revoke", json!({"reason": "x"})),
        ("/v1/policy", json!({"text": "format = 1"})),
    ] {
        let (status, v) = lead.post(path, &body)?;
        ensure!(
            refusal(status, &v) == (403, "forbidden".into(), "scope".into()),
            "{path}: {status} {v}"
        );
    }
    // It sees only its subtree.
    let listed = lead.get_json("/v1/nodes")?;
    let names: Vec<&str> = listed["nodes"]
        .as_array()
        .context("nodes")?
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    ensure!(
        names.contains(&"a-1")
            && names.contains(&"a-2")
            && !names.contains(&"b-1")
            && !names.contains(&"team-a"),
        "{names:?}"
    );
    ensure!(admin_sees(&c, "b-1")?, "b-1 untouched");
    Ok(())
}

fn admin_sees(c: &Cluster, name: &str) -> Result<bool> {
    let v = c.admin()?.get_json(&format!("/v1/nodes/{name}"))?;
    Ok(v["status"] == "valid")
}

#[test]
fn policy_check_online_and_offline() -> Result<()> {
    let c = Cluster::start()?;
    let admin_config = c.admin_config()?;
    let (_, enrolled) = c.enrolled_node("web")?;
    let web = enrolled["path"].as_str().context("path")?.to_owned();
    let check = |extra: &[&str]| -> Result<std::process::Output> {
        let mut args = vec!["policy", "check"];
        args.extend_from_slice(extra);
        Ok(std::process::Command::new(&crate::helpers::bins().keyctl)
            .args(&args)
            .output()?)
    };
    // Online, against the policy in force.
    let out = check(&[
        "--config",
        &admin_config,
        "--principal",
        "node:web",
        "--op",
        "sign",
        "--target",
        "web",
    ])?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        out.status.code() == Some(0)
            && v["allowed"] == true
            && v["rule"] == "nodes-own-keys"
            && v["version"] == 0,
        "{v}"
    );
    let out = check(&[
        "--config",
        &admin_config,
        "--principal",
        "node:web",
        "--op",
        "node.add",
        "--target",
        "web",
    ])?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        out.status.code() == Some(3) && v["allowed"] == false && v["rule"] == "default-deny",
        "{v}"
    );
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("denied by rule default-deny"),
        "{out:?}"
    );
    // Checking does not spend a rate: 20 checks of rekey, all allowed.
    for _ in 0..20 {
        let out = check(&[
            "--config",
            &admin_config,
            "--principal",
            "node:web",
            "--op",
            "rekey",
            "--target",
            "web",
        ])?;
        ensure!(out.status.code() == Some(0), "{out:?}");
    }
    // Offline, a file: paths, or names with --chain.
    let file = c.dir.path().join("deny.toml");
    std::fs::write(&file, DENY_DB)?;
    let chain = c.dir.path().join("fetched.cbor");
    keyctl(
        &[
            "chain",
            "fetch",
            "--config",
            &admin_config,
            "--out",
            s(&chain),
        ],
        &[],
    )?;
    let out = check(&[
        "--file",
        s(&file),
        "--principal",
        &format!("node:{web}"),
        "--op",
        "seal",
        "--target",
        &web,
    ])?;
    ensure!(out.status.code() == Some(0), "{out:?}");
    let out = check(&[
        "--file",
        s(&file),
        "--chain",
        s(&chain),
        "--principal",
        "node:db",
        "--op",
        "encrypt",
        "--target",
        "web",
    ])?;
    ensure!(
        out.status.code() == Some(1),
        "db is not in the chain yet: {out:?}"
    );
    let out = check(&[
        "--file",
        s(&file),
        "--principal",
        "node:m/1'/1'/0'",
        "--op",
        "seal",
        "--target",
        "m/1'/1'/0'",
        "--batch",
        "4",
    ])?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        out.status.code() == Some(3) && v["rule"] == "nodes-own-keys",
        "{v}"
    );
    let out = check(&[
        "--file",
        s(&file),
        "--principal",
        "admin:alice",
        "--op",
        "sing",
    ])?;
    ensure!(
        out.status.code() == Some(1)
            && String::from_utf8_lossy(&out.stderr).contains("\"sing\" is not an operation"),
        "{out:?}"
    );
    Ok(())
}

//! The audit log against a running keyd: events, counted key operations and refusals
//! recorded with principal, key and epoch; the log verified over the API and as an
//! export; records altered, removed and reordered — in an export and in the store
//! itself — found and named.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use redb::{Database, ReadableTable, TableDefinition};
use serde_json::{Value, json};

use crate::cluster::{Cluster, keyctl};
use crate::helpers::bins;

const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// keyctl's exit code, standard output and standard error.
fn run(args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let out = std::process::Command::new(&bins().keyctl)
        .args(args)
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The records `keyctl audit tail` prints, once the counts of the last second are in.
fn tail(config: &str) -> Result<Vec<Value>> {
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let (code, out, err) = run(&["audit", "tail", "-n", "1000", "--config", config])?;
    ensure!(code == Some(0), "{err}");
    out.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

#[test]
fn every_use_is_recorded_and_tampering_is_named() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin_config()?;
    let (web, enrolled) = c.enrolled_node("web")?;
    let web_path = enrolled["path"].as_str().context("path")?.to_owned();
    c.enrolled_node("db")?;
    for _ in 0..5 {
        let (status, _) = web.post("/v1/sign", &json!({"data": B64.encode("x")}))?;
        ensure!(status == 200);
    }
    let (status, _) = web.post("/v1/seal", &json!({"plaintext": B64.encode("x")}))?;
    ensure!(status == 200);
    // Refused by policy: a node setting another node's suite.
    let (status, v) = web.post("/v1/nodes/db/suite", &json!({"suite": "x-wing"}))?;
    ensure!(
        status == 403 && v["error"]["rule"] == "default-deny",
        "{status} {v}"
    );

    let records = tail(&admin)?;
    let find = |op: &str, principal: &str| {
        records
            .iter()
            .find(|r| {
                r["op"] == op
                    && r["principal"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(principal))
            })
            .cloned()
    };
    let added = find("node.add", "admin").context("node.add recorded")?;
    ensure!(
        added["target"] == web_path.as_str() && added["count"] == 1,
        "{added}"
    );
    ensure!(find("enroll", &web_path).is_some(), "enroll: {records:?}");
    ensure!(
        find("certificate.issue", &web_path).is_some(),
        "certificate: {records:?}"
    );
    let signs: u64 = records
        .iter()
        .filter(|r| r["op"] == "sign" && r["principal"] == format!("keyd:node:{web_path}"))
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum();
    ensure!(signs == 5, "5 signatures counted: {records:?}");
    let sign = find("sign", &web_path).context("sign")?;
    ensure!(
        sign["key"]
            .as_str()
            .is_some_and(|k| k.starts_with(&web_path))
            && sign["epoch"] == 0,
        "{sign}"
    );
    let denied = records
        .iter()
        .find(|r| r["outcome"] == "denied")
        .context("the refusal recorded")?;
    ensure!(
        denied["op"] == "node.suite"
            && denied["detail"] == "rule default-deny"
            && denied["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("m/")),
        "{denied}"
    );
    // Nodes do not read the audit log.
    ensure!(web.get("/v1/audit")?.0 == 403);

    // Verified over the API, and as an export.
    let (code, out, err) = run(&["audit", "verify", "--config", &admin])?;
    ensure!(code == Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out)?;
    ensure!(
        v["valid"] == true && v["records"].as_u64() > Some(5) && v["heads"].as_u64() >= Some(1),
        "{v}"
    );
    let export = c.dir.path().join("audit.jsonl");
    keyctl(
        &["audit", "export", "--config", &admin, "--out", s(&export)],
        &[],
    )?;
    let ca = c.data().join("ca.pem");
    let (code, _, err) = run(&["audit", "verify", "--file", s(&export), "--ca", s(&ca)])?;
    ensure!(code == Some(0), "{err}");

    // Tampered exports: each is named.
    let lines: Vec<String> = std::fs::read_to_string(&export)?
        .lines()
        .map(str::to_owned)
        .collect();
    let record_at = |seq: u64| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("{{\"record\":{{\"seq\":{seq},")))
            .unwrap_or(usize::MAX)
    };
    let check = |name: &str, lines: &[String], says: &str| -> Result<()> {
        let file = c.dir.path().join(name);
        std::fs::write(&file, lines.join("\n"))?;
        let (code, _, err) = run(&["audit", "verify", "--file", s(&file), "--ca", s(&ca)])?;
        ensure!(
            code == Some(3) && err.contains(says),
            "{name}: {code:?} {err}"
        );
        Ok(())
    };
    let mut altered = lines.clone();
    altered[record_at(2)] = altered[record_at(2)].replacen("\"count\":1", "\"count\":2", 1);
    check("altered.jsonl", &altered, "record 2: altered")?;
    let mut removed = lines.clone();
    removed.remove(record_at(3));
    check("removed.jsonl", &removed, "record 3: missing")?;
    let mut swapped = lines.clone();
    swapped.swap(record_at(2), record_at(3));
    check("swapped.jsonl", &swapped, "record 2: out of order")?;
    // Another key's CA: its heads are not the branch's.
    let other = c.dir.path().join("other-ca.pem");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    std::fs::write(
        &other,
        rcgen::CertificateParams::new(vec![])?
            .self_signed(&key)?
            .pem(),
    )?;
    let (code, _, err) = run(&["audit", "verify", "--file", s(&export), "--ca", s(&other)])?;
    ensure!(
        code == Some(3) && err.contains("not signed by the branch key"),
        "{err}"
    );

    // Tampered in the store itself, with keyd stopped: found over the API at once.
    c.kill9()?;
    {
        let db = Database::open(c.data().join("keyd.redb"))?;
        let tx = db.begin_write()?;
        {
            let mut table = tx.open_table(AUDIT)?;
            let bytes = table.get(4)?.context("record 4")?.value().to_vec();
            let mut r: keyd::audit::Record = ciborium::from_reader(bytes.as_slice())?;
            r.op = "node.show".into();
            let mut out = Vec::new();
            ciborium::into_writer(&r, &mut out)?;
            table.insert(4, out.as_slice())?;
        }
        tx.commit()?;
    }
    c.serve()?;
    let admin = c.admin_config()?;
    let (code, _, err) = run(&["audit", "verify", "--config", &admin])?;
    ensure!(
        code == Some(3) && err.contains("record 4: altered"),
        "{err}"
    );
    // keyd goes on writing after it: a restart continues the chain, it does not restart it.
    let (code, out, _) = run(&["audit", "tail", "-n", "1", "--config", &admin])?;
    ensure!(code == Some(0) && !out.contains("\"seq\":1,"), "{out}");
    Ok(())
}

//! Nested nodes and what admins and nodes see of them: children under a parent (API and
//! keyctl), a revocation that cascades to every descendant at once, `verify` naming a
//! key's id, epoch and why it is not valid, an enrollment token that expires, the
//! plaintext limit, incremental chain pulls, issued certificates checked outside keyd, and
//! admin credentials issued offline and revoked online.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use keyd::chain::{Chain, KeyStatus, format_positions, verify_file};
use keyd::derive::{KeyId, KeyPath};
use keyd::envelope::MAX_PLAINTEXT;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cluster::{Cluster, keyctl};

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn added(admin: &crate::cluster::Client, body: Value) -> Result<Value> {
    let (status, v) = admin.post("/v1/nodes", &body)?;
    ensure!(status == 201, "{body} -> {status} {v}");
    Ok(v)
}

fn code(reply: &(u16, Value)) -> (u16, &str) {
    (reply.0, reply.1["error"]["code"].as_str().unwrap_or(""))
}

#[test]
fn nested_nodes_and_cascading_revocation() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin()?;
    let app = added(&admin, json!({"name": "app"}))?;
    let app_path: KeyPath = app["path"].as_str().context("path")?.parse()?;
    // A child by the parent's name over the API, another by its path with keyctl.
    let worker = added(&admin, json!({"name": "worker", "parent": "app"}))?;
    let worker_path: KeyPath = worker["path"].as_str().context("path")?.parse()?;
    ensure!(
        app_path.is_prefix_of(&worker_path) && worker_path.depth() == app_path.depth() + 2,
        "{worker_path} is not a child of {app_path}"
    );
    let config = c.admin_config()?;
    let cron = keyctl(
        &[
            "node",
            "add",
            "cron",
            "--parent",
            &app_path.to_string(),
            "--config",
            &config,
        ],
        &[],
    )?;
    let cron_path: KeyPath = cron["path"].as_str().context("keyctl path")?.parse()?;
    ensure!(app_path.is_prefix_of(&cron_path), "{cron}");
    // An unknown parent is refused and adds nothing.
    let before = admin.get("/v1/chain")?.1;
    let reply = admin.post("/v1/nodes", &json!({"name": "x", "parent": "nope"}))?;
    ensure!(code(&reply) == (404, "not_found"), "{:?}", reply);
    ensure!(admin.get("/v1/chain")?.1.len() == before.len());

    let (status, ready) = c.anonymous()?.get("/readyz")?;
    let ready: Value = serde_json::from_slice(&ready)?;
    ensure!(
        status == 200 && ready["status"] == "ready" && ready["chain_entries"].as_u64() > Some(2),
        "{ready}"
    );
    let (app_node, _) = c.enroll(app["token"].as_str().context("token")?)?;
    let (worker_node, _) = c.enroll(worker["token"].as_str().context("token")?)?;
    let (other, _) = c.enrolled_node("other")?;
    let (status, shown) = {
        let (s, b) = admin.get("/v1/nodes/app")?;
        (s, serde_json::from_slice::<Value>(&b)?)
    };
    ensure!(status == 200, "{shown}");
    ensure!(
        shown["children"] == json!([worker_path.to_string(), cron_path.to_string()]),
        "{shown}"
    );

    // verify names the key id and epoch, and why a key is not valid.
    let data = B64.encode(b"nested");
    let (_, signed) = worker_node.post("/v1/sign", &json!({"data": data}))?;
    let public: [u8; 32] = {
        let shown = serde_json::from_slice::<Value>(&admin.get("/v1/nodes/worker")?.1)?;
        hex::decode(shown["epochs"][0]["ed25519"].as_str().context("ed25519")?)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("key length"))?
    };
    let request = json!({"data": data, "signature": signed["signature"],
        "public_key": hex::encode(public)});
    let (_, v) = other.post("/v1/verify", &request)?;
    ensure!(
        v["valid"] == true
            && v["epoch"] == 0
            && v["key_id"] == KeyId::of_bytes(&public).to_string()
            && v["key_id"] == signed["key_id"],
        "{v}"
    );
    // The same through keyctl's batch form, with a key the cluster does not know.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let unknown = json!({"data": data,
        "signature": B64.encode(ed25519_dalek::Signer::sign(&stranger, b"nested").to_bytes()),
        "public_key": hex::encode(stranger.verifying_key().to_bytes())});
    let items = c.dir.path().join("items.json");
    std::fs::write(&items, serde_json::to_vec(&json!([request, unknown]))?)?;
    let items_s = items.to_str().context("path")?;
    let batch = keyctl(
        &["batch", "verify", "--items", items_s, "--config", &config],
        &[],
    )?;
    ensure!(
        batch["results"][0]["valid"] == true
            && batch["results"][1]["status"] == "unknown"
            && batch["results"][1]["signature_ok"] == true,
        "{batch}"
    );
    std::fs::write(&items, b"{\"data\": 1}")?;
    let err = crate::cluster::keyctl_fails(
        &["batch", "sign", "--items", items_s, "--config", &config],
        &[],
    )?;
    ensure!(
        err.contains("--items") && err.contains("JSON array"),
        "{err}"
    );
    let (status, rekeyed) = admin.post("/v1/nodes/worker/rekey", &json!({}))?;
    ensure!(status == 200, "{rekeyed}");
    let (_, v) = other.post("/v1/verify", &request)?;
    ensure!(
        v["valid"] == false
            && v["signature_ok"] == true
            && v["status"] == "superseded"
            && v["epoch"] == 0
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("current epoch is 1")),
        "{v}"
    );
    let (_, v) = other.post("/v1/verify", &unknown)?;
    ensure!(
        v["valid"] == false
            && v["signature_ok"] == true
            && v["status"] == "unknown"
            && v["path"].is_null(),
        "{v}"
    );

    // Revoking the parent cuts off every descendant at once.
    let (status, revoked) =
        admin.post("/v1/nodes/app/revoke", &json!({"reason": "decommissioned"}))?;
    ensure!(status == 200, "{revoked}");
    let cut: Vec<&str> = revoked["revoked"]
        .as_array()
        .context("revoked")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for p in [&app_path, &worker_path, &cron_path] {
        ensure!(cut.contains(&p.to_string().as_str()), "{p} not in {cut:?}");
    }
    for node in [&app_node, &worker_node] {
        let reply = node.post("/v1/sign", &json!({"data": data}))?;
        ensure!(code(&reply) == (401, "key_not_valid"), "{:?}", reply);
    }
    let reply = other.post("/v1/encrypt", &json!({"to": "worker", "plaintext": data}))?;
    ensure!(
        code(&reply) == (400, "key_not_valid"),
        "encrypt to a revoked node: {:?}",
        reply
    );
    let reply = admin.post("/v1/nodes", &json!({"name": "late", "parent": "app"}))?;
    ensure!(code(&reply) == (409, "chain_refused"), "{:?}", reply);
    let (_, v) = other.post("/v1/verify", &request)?;
    ensure!(
        v["status"] == "revoked"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&app_path.to_string())),
        "{v}"
    );
    // The sibling is untouched, and the chain says the same offline.
    ensure!(other.post("/v1/sign", &json!({"data": data}))?.0 == 200);
    let chain = verify_file(&admin.get("/v1/chain")?.1)?;
    for p in [&worker_path, &cron_path] {
        let status = chain.state().status_at(p, unix_now());
        ensure!(
            matches!(status, KeyStatus::Revoked { .. }),
            "{p}: {status:?}"
        );
    }
    let listed = serde_json::from_slice::<Value>(&admin.get("/v1/nodes")?.1)?;
    let worker_status = listed["nodes"]
        .as_array()
        .context("nodes")?
        .iter()
        .find(|n| n["name"] == "worker")
        .and_then(|n| n["status"].as_str())
        .context("worker listed")?;
    ensure!(worker_status.contains("revoked"), "{listed}");
    // Admin changes and enrollments are counted by kind and outcome.
    let metrics = String::from_utf8(c.anonymous()?.get("/metrics")?.1)?;
    for want in [
        "keyd_operations_total{op=\"add_node\",outcome=\"ok\"} 4",
        "keyd_operations_total{op=\"add_node\",outcome=\"error\"} 2",
        "keyd_operations_total{op=\"enroll\",outcome=\"ok\"} 3",
        "keyd_operations_total{op=\"rekey\",outcome=\"ok\"} 1",
        "keyd_operations_total{op=\"revoke\",outcome=\"ok\"} 1",
    ] {
        ensure!(metrics.contains(want), "{want} not in:\n{metrics}");
    }
    Ok(())
}

#[test]
fn expiry_limits_chain_pulls_certificates_and_admin_credentials() -> Result<()> {
    let mut c = Cluster::start_with("enroll_token_seconds = 3\nlog_format = \"json\"\n")?;
    let admin = c.admin()?;
    // An expired token enrolls nothing.
    let late = added(&admin, json!({"name": "late"}))?;
    // Expiry is checked in whole seconds: 3 s of life are surely over after 4.1 s.
    std::thread::sleep(std::time::Duration::from_millis(4100));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)?
        .pem()?;
    let reply = c
        .anonymous()?
        .post("/v1/enroll", &json!({"token": late["token"], "csr": csr}))?;
    ensure!(code(&reply) == (401, "bad_token"), "{:?}", reply);

    let token = added(&admin, json!({"name": "n1"}))?;
    let (node, enrolled) = c.enroll(token["token"].as_str().context("token")?)?;

    // The issued certificate, checked outside keyd: signed by the CA key, which is the
    // branch identity key the chain certifies; short-lived; for client authentication.
    let chain_bytes = admin.get("/v1/chain")?.1;
    let mut held = verify_file(&chain_bytes)?;
    let ca_pem = std::fs::read(c.data().join("ca.pem"))?;
    let ca_der = pem_der(&ca_pem)?;
    let (_, ca) = X509Certificate::from_der(&ca_der)?;
    let ca_key: [u8; 32] = ca
        .public_key()
        .subject_public_key
        .data
        .as_ref()
        .try_into()?;
    let branch: KeyPath = "m/1'".parse()?;
    let branch_record = held.state().key(&branch).context("branch in chain")?;
    ensure!(
        branch_record.keys.ed25519 == ca_key,
        "the CA key is not the branch key"
    );
    let cert_der = pem_der(
        enrolled["certificate"]
            .as_str()
            .context("certificate")?
            .as_bytes(),
    )?;
    let (_, cert) = X509Certificate::from_der(&cert_der)?;
    let signature = Signature::from_slice(cert.signature_value.data.as_ref())?;
    VerifyingKey::from_bytes(&ca_key)?
        .verify_strict(cert.tbs_certificate.as_ref(), &signature)
        .context("the node certificate is not signed by the CA key")?;
    let validity = cert.validity();
    let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
    ensure!(
        lifetime > 0 && lifetime <= 7 * 86_400,
        "lifetime {lifetime} s"
    );
    let eku = cert.extended_key_usage()?.context("no EKU")?.value;
    ensure!(eku.client_auth && !eku.server_auth, "{eku:?}");
    let san = cert
        .subject_alternative_name()?
        .context("no SAN")?
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    ensure!(
        san.contains(&format!(
            "keyd:node:{}",
            token["path"].as_str().unwrap_or("?")
        )),
        "{san}"
    );

    // The plaintext limit: the largest plaintext seals and opens; one byte more is a 413.
    let most = vec![0x5au8; MAX_PLAINTEXT];
    let (status, sealed) = node.post("/v1/seal", &json!({"plaintext": B64.encode(&most)}))?;
    ensure!(status == 200, "{sealed}");
    let (status, opened) = node.post("/v1/unseal", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(
        status == 200 && opened["plaintext"] == json!(B64.encode(&most)),
        "unseal of the largest envelope: {status}"
    );
    let over = B64.encode(vec![0u8; MAX_PLAINTEXT + 1]);
    for (path, body) in [
        ("/v1/seal", json!({"plaintext": over})),
        ("/v1/encrypt", json!({"to": "n1", "plaintext": over})),
    ] {
        let reply = node.post(path, &body)?;
        ensure!(code(&reply) == (413, "too_large"), "{path}: {:?}", reply);
    }

    // Incremental pull: only what the node lacks, verified and applied.
    let before = held.state().keys().count();
    added(&admin, json!({"name": "n2"}))?;
    admin.post("/v1/nodes/n1/rekey", &json!({}))?;
    let held_at = format_positions(&held.positions());
    let tail = admin.get(&format!("/v1/chain?since={held_at}"))?.1;
    ensure!(tail.len() < chain_bytes.len());
    let new = held.update(&tail)?;
    ensure!(
        new == 3,
        "{new} new entries (certify, epoch 0, epoch 1 expected)"
    );
    ensure!(held.state().keys().count() == before + 3);
    ensure!(held.state().find("n2").is_some());
    // The updated chain is the chain keyd serves, byte for byte.
    ensure!(held.to_file() == admin.get("/v1/chain")?.1);
    // Pages: a page cut short carries no head for the log it cuts (it is not a head of
    // that log) and says so in x-keyd-chain-complete; pulled page after page from the
    // positions held, each verified, they make the whole chain; a header gives its
    // length over all logs.
    let anon = c.anonymous()?;
    let first = anon.get_reply("/v1/chain?limit=1")?;
    let length: usize = first.header("x-keyd-chain-length").parse()?;
    ensure!(length == held.len(), "{length}");
    ensure!(first.header("x-keyd-chain-complete") == "false");
    let mut paged = Chain::new();
    paged.update(&first.body)?;
    ensure!(paged.len() == 1 && paged.check_complete().is_err());
    loop {
        let since = format_positions(&paged.positions());
        let r = anon.get_reply(&format!("/v1/chain?since={since}&limit=3"))?;
        ensure!(paged.update(&r.body)? > 0 || r.header("x-keyd-chain-complete") == "true");
        if r.header("x-keyd-chain-complete") == "true" {
            break;
        }
    }
    paged.check_complete()?;
    ensure!(
        paged.to_file() == held.to_file(),
        "the pages differ from the chain"
    );
    for bad in [
        "limit=0",
        "limit=10001",
        "since=-1",
        "since=m:x",
        "since=m:1,m:2",
    ] {
        let r = anon.get_reply(&format!("/v1/chain?{bad}"))?;
        let v: Value = serde_json::from_slice(&r.body)?;
        ensure!(
            r.status == 400 && v["error"]["code"] == "bad_query",
            "{bad}: {v}"
        );
    }
    // A head that does not close what the node holds is refused: the node claims to
    // hold more of the branch log than it does, keyd sends only the head.
    let gap = admin.get("/v1/chain?since=m:2,1:1000")?.1;
    let mut fresh = verify_file(&chain_bytes)?;
    ensure!(fresh.update(&gap).is_err(), "a gap was accepted");

    // JSON logs: one object a line, access lines carry the request id, no secret.
    let log = c.log()?;
    let mut access = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}"))?;
        if v["target"] == "keyd::access" {
            ensure!(
                v["span"]["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{line}"
            );
            access += 1;
        }
    }
    ensure!(access > 10, "{access} access lines in:\n{log}");
    for leaked in [
        late["token"].as_str().context("token")?,
        token["token"].as_str().context("token")?,
        "PRIVATE KEY",
    ] {
        ensure!(!log.contains(leaked), "the log holds {leaked:?}");
    }

    // A node revokes no admin.
    let reply = node.post("/v1/admins/admin/revoke", &json!({"reason": "x"}))?;
    ensure!(code(&reply) == (403, "forbidden"), "{:?}", reply);

    // A new admin credential, offline: refused while keyd serves, issued once stopped.
    let out = c.dir.path().join("ops");
    let out_s = out.to_str().context("path")?;
    let busy = c.keyd(&["admin", "issue", "ops", "--out", out_s]);
    ensure!(
        busy.as_ref()
            .is_err_and(|e| e.to_string().contains("stop `keyd serve` first")),
        "{busy:?}"
    );
    c.kill9()?;
    let bad = c.keyd(&["admin", "issue", "no/slash", "--out", out_s]);
    ensure!(
        bad.as_ref()
            .is_err_and(|e| e.to_string().contains("admin name")),
        "{bad:?}"
    );
    c.keyd(&["admin", "issue", "ops", "--out", out_s])?;
    ensure!(crate::helpers::mode(&out.join("ops.key"))? == 0o600);
    let again = c.keyd(&["admin", "issue", "ops", "--out", out_s]);
    ensure!(
        again
            .as_ref()
            .is_err_and(|e| e.to_string().contains("exists")),
        "{again:?}"
    );
    c.serve()?;
    let ops = credential(&c, &out, "ops")?;
    let (status, listed) = ops.get("/v1/nodes")?;
    ensure!(
        status == 200 && serde_json::from_slice::<Value>(&listed)?["nodes"].is_array(),
        "{status}"
    );

    // Revoking an admin: refused to nodes and to oneself; at once for the revoked name,
    // across a restart, and the name is never issued again.
    let reply = ops.post("/v1/admins/ops/revoke", &json!({"reason": "x"}))?;
    ensure!(code(&reply) == (403, "forbidden"), "{:?}", reply);
    let reply = c
        .admin()?
        .post("/v1/admins/no%2Fslash/revoke", &json!({"reason": "x"}))?;
    ensure!(code(&reply) == (400, "bad_request"), "{:?}", reply);
    let config = c.admin_config()?;
    let revoked = keyctl(
        &[
            "admin",
            "revoke",
            "ops",
            "--reason",
            "left the team",
            "--config",
            &config,
        ],
        &[],
    )?;
    ensure!(
        revoked["name"] == "ops"
            && revoked["by"] == "admin"
            && revoked["reason"] == "left the team",
        "{revoked}"
    );
    let reply = ops.post("/v1/nodes", &json!({"name": "x"}))?;
    ensure!(code(&reply) == (401, "key_not_valid"), "{:?}", reply);
    ensure!(
        reply.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("admin credential ops was revoked by admin")),
        "{:?}",
        reply
    );
    let listed = keyctl(&["admin", "list", "--config", &config], &[])?;
    ensure!(listed["revoked"][0]["name"] == "ops", "{listed}");
    c.kill9()?;
    let again = c.keyd(&["admin", "issue", "ops", "--out", &format!("{out_s}2")]);
    ensure!(
        again
            .as_ref()
            .is_err_and(|e| e.to_string().contains("was revoked")),
        "{again:?}"
    );
    c.serve()?;
    let ops = credential(&c, &out, "ops")?;
    let (status, _) = ops.get("/v1/nodes")?;
    ensure!(
        status == 401,
        "a revoked admin came back after a restart: {status}"
    );
    ensure!(c.admin()?.get("/v1/nodes")?.0 == 200);
    // Tokens that expired unused were removed from the store at restarts: late surely
    // (it expired before the first), n2 if its second had passed.
    let log = c.log()?;
    let purged: u64 = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "expired enrollment tokens removed")
        .filter_map(|v| v["fields"]["purged"].as_u64())
        .sum();
    ensure!(
        (1..=2).contains(&purged),
        "{purged} expired tokens purged, 1 or 2 expected:\n{log}"
    );
    Ok(())
}

/// A client with the credential `keyd admin issue NAME --out DIR` wrote.
pub fn credential(
    c: &Cluster,
    dir: &std::path::Path,
    name: &str,
) -> Result<crate::cluster::Client> {
    c.client(
        &std::fs::read_to_string(dir.join(format!("{name}.pem")))?,
        &std::fs::read_to_string(dir.join(format!("{name}.key")))?,
    )
}

fn pem_der(pem: &[u8]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(pem)?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    Ok(B64.decode(body)?)
}

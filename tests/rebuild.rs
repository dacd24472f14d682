//! Disaster recovery: a keyd's data directory and seal token are destroyed; the root
//! is recovered from shares into a new token; the branch is rebuilt from it and the
//! branch log a peer keyd mirrored; the new keyd continues that log, and every envelope
//! issued before still opens, every signature still verifies, every revocation holds.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Cluster, keyctl};
use crate::helpers::{keyctl_ok, token};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn a_lost_keyd_is_rebuilt_from_recovered_shares_and_a_peers_logs() -> Result<()> {
    let fast = "head_seconds = 1\npeer_pull_seconds = 1\n";
    let mut k1 = Cluster::start_with(fast)?;
    let k2 = k1.join(2, "dc2", &format!("{fast}peers = [\"{}\"]\n", k1.url()))?;
    k1.reconfigure(&format!("peers = [\"{}\"]\n", k2.url()))?;
    let admin = k1.admin()?;
    let (web, _) = k1.enrolled_node("web")?;
    let (db, _) = k1.enrolled_node("db")?;
    let (gone, _) = k1.enrolled_node("gone")?;
    drop(gone);
    let (_, sealed) = web.post("/v1/seal", &json!({"plaintext": B64.encode("web's row")}))?;
    let (_, to_db) = db.post(
        "/v1/encrypt",
        &json!({"to": "web", "plaintext": B64.encode("db to web")}),
    )?;
    let (_, signed) = web.post("/v1/sign", &json!({"data": B64.encode("release 7")}))?;
    // A copy of the chain from before the revocation: stale, as an old copy would be.
    let stale = k2.dir.path().join("stale.cbor");
    let ca1 = k1.data().join("ca.pem");
    keyctl(
        &[
            "chain",
            "fetch",
            "--url",
            &k1.url(),
            "--ca",
            s(&ca1),
            "--out",
            s(&stale),
        ],
        &[],
    )?;
    ensure!(
        admin
            .post("/v1/nodes/gone/revoke", &json!({"reason": "stolen"}))?
            .0
            == 200
    );
    let k1_entries = k1.admin()?.get_json("/v1/nodes")?["nodes"]
        .as_array()
        .map(Vec::len);

    // The peer holds k1's branch log, up to the revocation.
    let ca2 = k2.data().join("ca.pem");
    let fetched = k1.dir.path().join("from-peer.cbor");
    let start = Instant::now();
    loop {
        let _ = std::fs::remove_file(&fetched);
        keyctl(
            &[
                "chain",
                "fetch",
                "--url",
                &k2.url(),
                "--ca",
                s(&ca2),
                "--out",
                s(&fetched),
            ],
            &[],
        )?;
        let shown = keyctl(&["chain", "verify", s(&fetched), "--output", "json"], &[])?;
        let revoked = shown["revoked"].as_u64().unwrap_or(0);
        if revoked >= 1 && shown.to_string().contains("m/1'") {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the peer did not mirror k1's log: {shown}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // Disaster: k1's keyd, data directory and seal token are gone.
    k1.kill9()?;
    let ceremony = k1.ceremony_dir();
    std::fs::remove_dir_all(k1.data())?;
    std::fs::remove_dir_all(k1.seal.dir())?;

    // The root, recovered from two shares into a new token.
    let recovered = token("recovered")?;
    keyctl_ok(
        &recovered,
        &[
            "ceremony",
            "recover",
            "--hsm",
            recovered.uri(),
            "--share",
            s(&ceremony.join("share-1.json")),
            "--share",
            s(&ceremony.join("share-3.json")),
            "--expect",
            s(&ceremony.join("root.json")),
            "--init-transcript",
            s(&ceremony.join("transcript.json")),
        ],
    )?;

    // A new keyd for branch m/1': its install key, the rebuilt bundle, import, serve.
    let mut k3 = k2.bare_peer(fast)?;
    let init = k3.keyd(&["init"])?;
    let install = init
        .lines()
        .find_map(|l| l.strip_prefix("install public key: "))
        .context("install key")?
        .to_owned();
    // The ceremony's own chain holds the root log only: nothing to continue, refused.
    let bare = crate::helpers::keyctl(
        &recovered,
        &[
            "ceremony",
            "rebuild",
            "--hsm",
            recovered.uri(),
            "--chain",
            s(&ceremony.join("chain.cbor")),
            "--index",
            "1",
            "--to",
            &install,
            "--out",
            s(&k3.dir.path().join("no.bundle")),
        ],
    )?;
    ensure!(
        !bare.status.success()
            && String::from_utf8_lossy(&bare.stderr).contains("holds no log of branch m/1'"),
        "{bare:?}"
    );
    let bundle = k3.dir.path().join("rebuilt.bundle");
    let said = keyctl_ok(
        &recovered,
        &[
            "ceremony",
            "rebuild",
            "--hsm",
            recovered.uri(),
            "--chain",
            s(&fetched),
            "--index",
            "1",
            "--to",
            &install,
            "--out",
            s(&bundle),
        ],
    )?;
    ensure!(
        said.contains("sealed to the new install key") && said.contains("not in this chain"),
        "{said}"
    );
    let imported = k3.keyd(&["import", s(&bundle), "--expect-root", &k2.fingerprint()?])?;
    ensure!(
        imported.contains("rebuilt: the branch log continues after seq"),
        "{imported}"
    );
    k3.serve()?;
    let admin3 = k3.admin()?;
    ensure!(
        admin3.get_json("/v1/nodes")?["nodes"]
            .as_array()
            .map(Vec::len)
            == k1_entries
    );

    // Every revocation holds; the old envelopes open and the signature verifies.
    ensure!(admin3.get_json("/v1/nodes/gone")?["status"] != "valid");
    let (status, v) = admin3.post(
        "/v1/admin/recover",
        &json!({"envelope": sealed["envelope"]}),
    )?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("web's row"),
        "{status} {v}"
    );
    let (status, v) = admin3.post("/v1/admin/recover", &json!({"envelope": to_db["envelope"]}))?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("db to web"),
        "{status} {v}"
    );
    let verify = json!({"data": B64.encode("release 7"), "signature": signed["signature"], "public_key": signed["public_key"]});
    let (status, v) = admin3.post("/v1/verify", &verify)?;
    ensure!(status == 200 && v["valid"] == true, "{status} {v}");
    // Credential records lived in the lost store: a node's old certificate is refused
    // (fail closed) and says what to do; re-enrolled, the node uses its keys as before.
    let (status, v) = web
        .at(&k3.addr)
        .post("/v1/unseal", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(
        status == 401
            && v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("re-enrolls")),
        "{status} {v}"
    );
    let (status, token) = admin3.post("/v1/nodes/web/reenroll", &json!({}))?;
    ensure!(status == 201, "{status} {token}");
    let (web3, _) = k3.enroll(token["token"].as_str().context("token")?)?;
    let (status, v) = web3.post("/v1/unseal", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("web's row"),
        "{status} {v}"
    );
    // The log goes on from where it was: a new node is the next child, not the first.
    let (status, added) = admin3.post("/v1/nodes", &json!({"name": "after"}))?;
    ensure!(
        status == 201 && added["path"] == "m/1'/1'/3'",
        "{status} {added}"
    );
    let shown: Value = keyctl(
        &[
            "chain",
            "fetch",
            "--config",
            &k3.admin_config()?,
            "--out",
            s(&k3.dir.path().join("after.cbor")),
        ],
        &[],
    )?;
    ensure!(shown["new_entries"].as_u64() > Some(0), "{shown}");

    // Rebuilt from the stale copy, beside a peer that holds the newer log: the keyd sees
    // it is behind and refuses to write its log (which would fork it), saying why.
    let mut k4 = k2.bare_peer(&format!("{fast}peers = [\"{}\"]\n", k2.url()))?;
    let init = k4.keyd(&["init"])?;
    let install = init
        .lines()
        .find_map(|l| l.strip_prefix("install public key: "))
        .context("install key")?
        .to_owned();
    let old_bundle = k4.dir.path().join("stale.bundle");
    keyctl_ok(
        &recovered,
        &[
            "ceremony",
            "rebuild",
            "--hsm",
            recovered.uri(),
            "--chain",
            s(&stale),
            "--index",
            "1",
            "--to",
            &install,
            "--out",
            s(&old_bundle),
        ],
    )?;
    k4.keyd(&[
        "import",
        s(&old_bundle),
        "--expect-root",
        &k2.fingerprint()?,
    ])?;
    k4.serve()?;
    let admin4 = k4.admin()?;
    let start = Instant::now();
    for n in 0.. {
        let (status, v) = admin4.post("/v1/nodes", &json!({"name": format!("fork-{n}")}))?;
        if status == 503 {
            ensure!(v["error"]["code"] == "branch_behind", "{v}");
            ensure!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("beyond seq") || m.contains("the logs forked")),
                "{v}"
            );
            break;
        }
        ensure!(status == 201, "{status} {v}");
        if start.elapsed() > Duration::from_secs(20) {
            bail!("the stale keyd never noticed its peer's newer log: {v}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

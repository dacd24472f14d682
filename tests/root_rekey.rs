//! Root rekey: a new root on a new token succeeds the old one; keyd moves its tree under
//! it — killed with `kill -9` in the middle and resumed — and then signs with new keys,
//! still opens (and re-wraps) envelopes of the old tree, keeps every revocation, no
//! longer vouches for old keys, and forgets the old tree when retired.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster, keyctl};
use crate::helpers::{bins, keyctl_err, keyctl_ok};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Posts `envelope` to `path` and requires `plaintext` back.
fn opens(client: &Client, path: &str, envelope: &Value, plaintext: &str) -> Result<()> {
    let (status, v) = client.post(path, &json!({ "envelope": envelope }))?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode(plaintext),
        "{path}: {status} {v}"
    );
    Ok(())
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A second token in the root token's SoftHSM2 directory (one process sees both).
pub(crate) fn new_token(c: &Cluster, label: &str) -> Result<String> {
    let out = std::process::Command::new(&bins().hsm_sim)
        .args(["init", "--output", "json", "--label", label, "--dir"])
        .arg(c.root.dir())
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["uri"].as_str().context("uri")?.to_owned())
}

#[test]
fn a_new_root_succeeds_and_keyd_moves_its_tree_resuming_after_kill_9() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin()?;
    let (web, _) = c.enrolled_node("web")?;
    let (db, _) = c.enrolled_node("db")?;
    let (_gone, _) = c.enrolled_node("gone")?;
    for i in 0..6 {
        let (status, v) = admin.post("/v1/nodes", &json!({"name": format!("n{i}")}))?;
        ensure!(status == 201, "{status} {v}");
    }
    ensure!(
        admin
            .post("/v1/nodes/gone/revoke", &json!({"reason": "stolen"}))?
            .0
            == 200
    );
    let (_, sealed) = web.post("/v1/seal", &json!({"plaintext": B64.encode("web's row")}))?;
    let (_, to_web) = db.post(
        "/v1/encrypt",
        &json!({"to": "web", "plaintext": B64.encode("db to web")}),
    )?;
    let (_, signed) = web.post("/v1/sign", &json!({"data": B64.encode("release 7")}))?;
    // A named key of web (transit facade) with two versions, a ciphertext of each.
    let transit = |path: &str, body: Value| crate::transit::ok(&web, "POST", path, body);
    transit("/v1/transit/keys/rows", json!({}))?;
    let row = json!({"plaintext": B64.encode("named row")});
    let named_v1 = transit("/v1/transit/encrypt/rows", row.clone())?["ciphertext"].clone();
    transit("/v1/transit/keys/rows/rotate", json!({}))?;
    let named_v2 = transit("/v1/transit/encrypt/rows", row)?["ciphertext"].clone();
    let nodes_before = admin.get_json("/v1/nodes")?["nodes"].clone();
    // A node's copy of the chain, as nodes keep it.
    let held = c.dir.path().join("node-chain.cbor");
    let fetch_held = |c: &Cluster| c.fetch_chain(&held);
    fetch_held(&c)?;
    let old_fp = c.fingerprint()?;

    // The ceremony: bad input first (a live branch left out), then the real one.
    let uri2 = new_token(&c, "root2")?;
    // keyd stops for the ceremony and its move (the store is its alone while it runs).
    c.kill9()?;
    let install = install_key(&c)?;
    let out = c.dir.path().join("rekey");
    let chain_file = c.chain_file();
    let ceremony = |chain: &Path, branch: &str, out: &Path| -> Vec<String> {
        [
            "ceremony",
            "root-rekey",
            "--old-hsm",
            c.root.uri(),
            "--new-hsm",
            &uri2,
            "--chain",
            s(chain),
            "--plain-shares",
            "--shares",
            "3",
            "--threshold",
            "2",
            "--branch",
            branch,
            "--out",
            s(out),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let wrong = ceremony(&chain_file, &format!("2={install}"), &out);
    let err = keyctl_err(&c.root, &strs(&wrong))?;
    ensure!(
        err.contains("live branches of the chain are [1]") && !out.exists(),
        "{err}"
    );
    let right = format!("1={install}");
    let said = keyctl_ok(&c.root, &strs(&ceremony(&chain_file, &right, &out)))?;
    ensure!(
        said.contains(&format!("root {old_fp} succeeded by root"))
            && said.contains("branch m/1' (dc1) re-issued")
            && said.contains("trust:"),
        "{said}"
    );
    // A root is replaced once.
    let again = ceremony(
        &out.join("succession.cbor"),
        &right,
        &out.with_file_name("again"),
    );
    let err = keyctl_err(&c.root, &strs(&again))?;
    ensure!(err.contains("already names a successor"), "{err}");
    // A serving keyd does not take the succession as a root-log push: its tree moves
    // only with keyd root-rekey.
    c.serve()?;
    let err = crate::cluster::keyctl_fails(
        &[
            "chain",
            "push",
            "--config",
            &c.admin_config()?,
            s(&out.join("succession.cbor")),
        ],
        &[],
    )?;
    ensure!(err.contains("keyd root-rekey"), "{err}");
    let (status, v) = web
        .at(&c.url())
        .post("/v1/sign", &json!({"data": B64.encode("still serving")}))?;
    ensure!(
        status == 200 && v["key_id"] == signed["key_id"],
        "{status} {v}"
    );
    c.kill9()?;
    let new_root: Value =
        serde_json::from_slice(&std::fs::read(out.join("new-root").join("root.json"))?)?;
    let new_fp = new_root["fingerprint"].as_str().context("fingerprint")?;

    // keyd moves its tree: killed after a few batches, then resumed.
    let bundle = out.join("branch-1.bundle");
    let succession = out.join("succession.cbor");
    let rekey = [
        "root-rekey",
        "--bundle",
        s(&bundle),
        "--succession",
        s(&succession),
    ];
    let mut child = c
        .keyd_command()
        .args(rekey)
        .args(["--batch", "2", "--pause-ms", "400"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("re-wrapped 4 of") {
            break;
        }
    }
    child.kill()?;
    let status = child.wait()?;
    ensure!(
        !status.success(),
        "the re-wrap finished before kill -9:\n{seen}"
    );
    // 9 nodes and web's named key `rows`, carried like a node.
    ensure!(seen.contains("re-wrapped 2 of 10 nodes"), "{seen}");
    let done = c.keyd(&rekey)?;
    ensure!(
        done.contains("10 nodes re-wrapped (resumed)") && done.contains(new_fp),
        "{done}"
    );
    // Run again once done (say its report was lost): nothing moves twice.
    let again = c.keyd(&rekey)?;
    ensure!(again.contains("already moved"), "{again}");

    // Served under the new root; the old TLS identities still work.
    c.serve()?;
    let (admin, web) = (admin.at(&c.url()), web.at(&c.url()));
    let fetched = c.dir.path().join("new-chain.cbor");
    let ca = c.data().join("ca.pem");
    c.fetch_chain(&fetched)?;
    let shown = keyctl(&["chain", "verify", s(&fetched)], &[])?;
    ensure!(shown.to_string().contains(new_fp), "{shown}");
    // The node's old copy follows the succession: checked, replaced, the old kept.
    let followed = fetch_held(&c)?;
    ensure!(
        followed["succession"]["new_root"] == new_fp
            && followed["succession"]["old_root"] == old_fp.as_str()
            && followed["root"] == new_fp,
        "{followed}"
    );
    let old_copy = keyctl(
        &["chain", "verify", s(&held.with_extension("succeeded"))],
        &[],
    )?;
    ensure!(
        old_copy.to_string().contains("succeeded by root"),
        "{old_copy}"
    );
    // Every node, by name and path, valid or revoked as before (a revocation now says
    // it was carried over).
    let nodes_after = admin.get_json("/v1/nodes")?["nodes"].clone();
    let standing = |v: &Value| -> Vec<(String, String, bool)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                (
                    n["name"].to_string(),
                    n["path"].to_string(),
                    n["status"] == "valid",
                )
            })
            .collect()
    };
    ensure!(
        standing(&nodes_after) == standing(&nodes_before),
        "{nodes_before}\n{nodes_after}"
    );
    let gone = admin.get_json("/v1/nodes/gone")?;
    ensure!(
        gone.to_string()
            .contains("revoked under the previous root: stolen"),
        "{gone}"
    );
    let (_, signed2) = web.post("/v1/sign", &json!({"data": B64.encode("release 8")}))?;
    ensure!(
        signed2["key_id"] != signed["key_id"] && signed2["epoch"] == signed["epoch"],
        "{signed} {signed2}"
    );
    let verify = |signed: &Value, data: &str| {
        web.post(
            "/v1/verify",
            &json!({"data": B64.encode(data), "signature": signed["signature"], "public_key": signed["public_key"]}),
        )
    };
    let (_, v) = verify(&signed2, "release 8")?;
    ensure!(v["valid"] == true, "{v}");
    // The old key no longer vouches for anything.
    let (_, v) = verify(&signed, "release 7")?;
    ensure!(v["valid"] == false && v["signature_ok"] == true, "{v}");
    // Old envelopes open, and re-wrap under the new tree.
    opens(&web, "/v1/unseal", &sealed["envelope"], "web's row")?;
    opens(&web, "/v1/decrypt", &to_web["envelope"], "db to web")?;
    // The named key's ciphertexts of both versions open too, and rewrap under the new
    // tree.
    let transit = |path: &str, body: Value| crate::transit::ok(&web, "POST", path, body);
    for ct in [&named_v1, &named_v2] {
        let opened = transit("/v1/transit/decrypt/rows", json!({"ciphertext": ct}))?;
        ensure!(
            opened["plaintext"] == B64.encode("named row"),
            "{ct}: {opened}"
        );
    }
    let moved = transit("/v1/transit/rewrap/rows", json!({"ciphertext": named_v1}))?;
    let opened = transit(
        "/v1/transit/decrypt/rows",
        json!({"ciphertext": moved["ciphertext"]}),
    )?;
    ensure!(
        opened["plaintext"] == B64.encode("named row"),
        "{moved} {opened}"
    );
    let (status, rewrapped) = web.post("/v1/rewrap", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(status == 200, "{status} {rewrapped}");
    opens(
        &admin,
        "/v1/admin/recover",
        &sealed["envelope"],
        "web's row",
    )?;

    // Retired: the old tree is gone, TLS moved to the new CA.
    c.kill9()?;
    let old_ca = std::fs::read(&ca)?;
    let retired = c.keyd(&["retire-root"])?;
    ensure!(retired.contains("is retired"), "{retired}");
    ensure!(std::fs::read(&ca)? != old_ca, "ca.pem did not change");
    let creds = c.dir.path().join("creds");
    c.keyd(&["admin", "issue", "ops", "--out", s(&creds)])?;
    c.serve()?;
    let ops = c.client(
        &std::fs::read_to_string(creds.join("ops.pem"))?,
        &std::fs::read_to_string(creds.join("ops.key"))?,
    )?;
    opens(
        &ops,
        "/v1/admin/recover",
        &rewrapped["envelope"],
        "web's row",
    )?;
    let (status, v) = ops.post(
        "/v1/admin/recover",
        &json!({"envelope": sealed["envelope"]}),
    )?;
    ensure!(
        status == 400
            && v["error"]["code"] == "bad_envelope"
            && v["error"]["message"].to_string().contains("names key id"),
        "{status} {v}"
    );
    // The old root's token still opens it, offline.
    let env_file = c.dir.path().join("old.env");
    std::fs::write(
        &env_file,
        B64.decode(sealed["envelope"].as_str().context("envelope")?)?,
    )?;
    let opened = c.dir.path().join("opened");
    keyctl_ok(
        &c.root,
        &[
            "ceremony",
            "decrypt",
            "--hsm",
            c.root.uri(),
            "--in",
            s(&env_file),
            "--out",
            s(&opened),
        ],
    )?;
    ensure!(std::fs::read(opened.join("old.env.plain"))? == b"web's row");
    // The old admin credential (old CA) no longer connects.
    if admin.at(&c.url()).get_json("/v1/nodes").is_ok() {
        bail!("a certificate of the retired CA was accepted");
    }
    Ok(())
}

/// `keyctl ceremony root-rekey` of `c`'s root to the token `uri2` (clear shares, 2 of
/// 2), re-issuing `branches` (`I=INSTALL_KEY`), into `out`: its text.
pub(crate) fn root_rekey_ceremony(
    c: &Cluster,
    uri2: &str,
    branches: &[&str],
    out: &Path,
) -> Result<String> {
    let chain = c.chain_file();
    let mut args = vec![
        "ceremony",
        "root-rekey",
        "--old-hsm",
        c.root.uri(),
        "--new-hsm",
        uri2,
        "--chain",
        s(&chain),
        "--plain-shares",
        "--shares",
        "2",
        "--threshold",
        "2",
        "--out",
        s(out),
    ];
    for b in branches {
        args.extend(["--branch", b]);
    }
    keyctl_ok(&c.root, &args)
}

/// `keyd install-key` of a stopped keyd.
pub(crate) fn install_key(c: &Cluster) -> Result<String> {
    let said = c.keyd(&["install-key"])?;
    Ok(said
        .trim()
        .strip_prefix("install public key: ")
        .context("install key")?
        .to_owned())
}

#[test]
fn two_keyds_move_under_the_new_root_and_mirror_each_other_again() -> Result<()> {
    let fast = "head_seconds = 1\npeer_pull_seconds = 1\n";
    let mut k1 = Cluster::start_with(fast)?;
    let mut k2 = k1.join(2, "dc2", &format!("{fast}peers = [\"{}\"]\n", k1.url()))?;
    k1.reconfigure(&format!("peers = [\"{}\"]\n", k2.url()))?;
    k2.reconfigure("")?;
    let (a, _) = k1.enrolled_node("a")?;
    let (b, _) = k2.enrolled_node("b")?;
    k1.kill9()?;
    k2.kill9()?;

    let uri2 = new_token(&k1, "root2")?;
    let out = k1.dir.path().join("rekey");
    let (i1, i2) = (
        format!("1={}", install_key(&k1)?),
        format!("2={}", install_key(&k2)?),
    );
    let said = root_rekey_ceremony(&k1, &uri2, &[&i1, &i2], &out)?;
    ensure!(
        said.contains("branch m/1' (dc1) re-issued")
            && said.contains("branch m/2' (dc2) re-issued"),
        "{said}"
    );
    let succession = out.join("succession.cbor");
    // Each keyd takes only its own branch's bundle.
    let wrong = k2
        .keyd_command()
        .args([
            "root-rekey",
            "--bundle",
            s(&out.join("branch-1.bundle")),
            "--succession",
            s(&succession),
        ])
        .output()?;
    ensure!(!wrong.status.success(), "{wrong:?}");
    for (k, i) in [(&mut k1, 1), (&mut k2, 2)] {
        let bundle = out.join(format!("branch-{i}.bundle"));
        k.keyd(&[
            "root-rekey",
            "--bundle",
            s(&bundle),
            "--succession",
            s(&succession),
        ])?;
        k.serve()?;
    }

    // Under the new root, each mirrors the other's new branch log again: a node of keyd
    // 1 verifies, through keyd 1, what a node of keyd 2 signs with its new key.
    let (a, b) = (a.at(&k1.url()), b.at(&k2.url()));
    let (status, signed) = b.post("/v1/sign", &json!({"data": B64.encode("from b")}))?;
    ensure!(status == 200, "{signed}");
    let ask = json!({"data": B64.encode("from b"), "signature": signed["signature"], "public_key": signed["public_key"]});
    let mirrored = crate::logs::wait_for(std::time::Duration::from_secs(20), || {
        let (status, v) = a.post("/v1/verify", &ask)?;
        ensure!(status == 200, "{v}");
        Ok((v["valid"] == true).then_some(()))
    });
    ensure!(mirrored.is_ok(), "keyd 2's log:\n{}", k2.log()?);
    Ok(())
}

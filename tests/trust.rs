//! Trust between two clusters with separate roots, each a keyd on loopback: the whole
//! exchange through keyctl (invite, accept, consent, the code compared, confirmed),
//! then nodes of one verifying nodes of the other as far as the trust allows; a
//! revocation in one cluster is refused by the other within one sync interval; a
//! replayed invitation, a wrong digit and a "no" record nothing; temporary trust ends
//! by itself; revoking the trust blocklists the other root; and a man in the middle
//! running his own keyd between two clusters gets two different codes and no trust,
//! in each of 100 runs.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster, keyctl, keyctl_fails};

const FAST: &str = "head_seconds = 1\ntrust_sync_seconds = 1\n";
/// A limited trust that allows verifying and opening envelopes, for a day.
const VERIFY_DECRYPT_A_DAY: [&str; 6] = [
    "--level",
    "limited",
    "--permissions",
    "verify,decrypt",
    "--expires",
    "1d",
];
/// A limited trust that allows verifying, for a day.
const VERIFY_A_DAY: [&str; 6] = [
    "--level",
    "limited",
    "--permissions",
    "verify",
    "--expires",
    "1d",
];

/// keyctl trust … with this cluster's admin config.
fn trust(c: &Cluster, args: &[&str]) -> Result<Value> {
    let config = c.admin_config()?;
    let mut all = vec!["trust", args[0], "--config", config.as_str()];
    all.extend(&args[1..]);
    keyctl(&all, &[])
}

fn trust_fails(c: &Cluster, args: &[&str]) -> Result<String> {
    let config = c.admin_config()?;
    let mut all = vec!["trust", args[0], "--config", config.as_str()];
    all.extend(&args[1..]);
    keyctl_fails(&all, &[])
}

fn text(v: &Value, key: &str) -> Result<String> {
    Ok(v[key]
        .as_str()
        .with_context(|| format!("{key} in {v}"))?
        .to_owned())
}

/// A signature by `node` over `data`, as a verify request.
fn signed(node: &Client, data: &str) -> Result<Value> {
    let (status, v) = node.post("/v1/sign", &json!({"data": B64.encode(data)}))?;
    ensure!(status == 200, "{v}");
    Ok(
        json!({"data": B64.encode(data), "signature": v["signature"], "public_key": v["public_key"]}),
    )
}

/// Runs the exchange: A invites granting `a_grants`, B accepts granting `b_grants`;
/// both see the same code; A types its last digit, B confirms. The session id.
fn exchange(a: &Cluster, b: &Cluster, a_grants: &[&str], b_grants: &[&str]) -> Result<String> {
    let invited = trust(a, &[&["invite"], a_grants].concat())?;
    let (session, link) = (text(&invited, "session")?, text(&invited, "link")?);
    ensure!(link.starts_with("keyd-trust:"), "{link}");
    let accepted = trust(b, &[&["accept", link.as_str(), "--yes"], b_grants].concat())?;
    let b_code = text(&accepted, "code")?;
    ensure!(accepted["peer"]["cluster"] == "keyd", "{accepted}");
    let seen = trust(a, &["status", &session])?;
    ensure!(seen["state"] == "identified", "{seen}");
    let a_code = text(&seen, "code")?;
    ensure!(a_code == b_code, "codes {a_code} and {b_code}");
    let digit = a_code.chars().last().context("digit")?.to_string();
    trust(a, &["confirm", &session, "--digit", &digit])?;
    let done = trust(b, &["confirm", &session, "--matches", "yes"])?;
    ensure!(done["state"] == "trusted", "{done}");
    let done = trust(a, &["status", &session])?;
    ensure!(done["state"] == "trusted", "{done}");
    Ok(session)
}

fn wait_until(limit: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = std::time::Instant::now();
    while !check()? {
        ensure!(start.elapsed() < limit, "not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

#[test]
fn two_clusters_exchange_trust_and_verify_each_other_as_granted() -> Result<()> {
    let a = Cluster::start_with(FAST)?;
    let b = Cluster::start_with(FAST)?;
    ensure!(a.fingerprint()? != b.fingerprint()?);
    let (a_node, _) = a.enrolled_node("web")?;
    let (b_node, _) = b.enrolled_node("api")?;
    let (b_gone, _) = b.enrolled_node("gone")?;

    // Before any trust, A does not vouch for B's keys.
    let ask = signed(&b_node, "from b")?;
    let (_, v) = a_node.post("/v1/verify", &ask)?;
    ensure!(v["valid"] == false && v["status"] == "unknown", "{v}");

    // A grants B verify and decrypt; B grants A encrypt only (no verify).
    exchange(
        &a,
        &b,
        &VERIFY_DECRYPT_A_DAY,
        &[
            "--level",
            "limited",
            "--permissions",
            "encrypt",
            "--expires",
            "1d",
        ],
    )?;
    let shown = trust(&a, &["show", &b.fingerprint()?])?;
    ensure!(
        shown["root"] == b.fingerprint()? && shown["chain_entries"].as_u64() > Some(1),
        "{shown}"
    );
    let synced = trust(&a, &["sync"])?;
    ensure!(synced["answered"] == 1, "{synced}");
    let listed = trust(&a, &["list"])?;
    let clusters = listed["clusters"].as_array().context("clusters")?;
    ensure!(
        clusters.len() == 1 && clusters[0]["root"] == b.fingerprint()?,
        "{listed}"
    );
    ensure!(
        clusters[0]["permissions"] == json!(["verify", "decrypt"]),
        "{listed}"
    );
    // Nodes read the list too.
    let (status, v) = a_node
        .get_reply("/v1/trust/clusters")
        .map(|r| (r.status, r.body))?;
    ensure!(status == 200, "{status}");
    ensure!(String::from_utf8_lossy(&v).contains(&b.fingerprint()?));

    // A's node verifies B's node through A: the trust allows it.
    let (_, v) = a_node.post("/v1/verify", &ask)?;
    ensure!(
        v["valid"] == true && v["cluster"] == "keyd" && v["path"] == "m/1'/1'/0'/0'/0'",
        "{v}"
    );
    // B's node verifying A's node: B granted A encrypt, not verify.
    let (_, v) = b_node.post("/v1/verify", &signed(&a_node, "from a")?)?;
    ensure!(
        v["valid"] == false
            && v["signature_ok"] == true
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("does not allow verify")),
        "{v}"
    );

    // B's node encrypts to A's node (B allows encrypt; X25519, the chain has no X-Wing
    // key), and A's node opens it (A allows decrypt from B's nodes).
    let to_web = format!("{}:web", a.fingerprint()?);
    let (status, v) = b_node.post(
        "/v1/encrypt",
        &json!({"to": to_web, "plaintext": B64.encode("b to a")}),
    )?;
    ensure!(
        status == 400 && v.to_string().contains("x25519"),
        "{status} {v}"
    );
    let (status, sealed) = b_node.post(
        "/v1/encrypt",
        &json!({"to": to_web, "suite": "x25519", "plaintext": B64.encode("b to a")}),
    )?;
    ensure!(status == 200, "{status} {sealed}");
    let (status, v) = a_node.post("/v1/decrypt", &json!({"envelope": sealed["envelope"]}))?;
    ensure!(
        status == 200 && v["plaintext"] == B64.encode("b to a"),
        "{status} {v}"
    );
    // A does not allow its nodes to encrypt to B's.
    let (status, v) = a_node.post(
        "/v1/encrypt",
        &json!({"to": format!("{}:api", b.fingerprint()?), "suite": "x25519", "plaintext": B64.encode("no")}),
    )?;
    ensure!(
        status == 403 && v.to_string().contains("does not allow encrypt"),
        "{status} {v}"
    );

    // The root of A trusts B cluster-wide, at full, in a ceremony: the root's word wins
    // over A's keyd's grant, so A's node may now encrypt to B's; an untrust ends it.
    let to_api = json!({"to": format!("{}:api", b.fingerprint()?), "suite": "x25519", "plaintext": B64.encode("root says yes")});
    let b_root_json = b.ceremony_dir().join("root.json");
    let chain = a.chain_file();
    let push = |a: &Cluster| -> Result<Value> {
        let config = a.admin_config()?;
        keyctl(
            &[
                "chain",
                "push",
                "--config",
                &config,
                chain.to_str().unwrap_or_default(),
            ],
            &[],
        )
    };
    a.ceremony_ok(&[
        "ceremony",
        "trust",
        "--hsm",
        a.root.uri(),
        "--chain",
        chain.to_str().unwrap_or_default(),
        "--cluster",
        "keyd",
        "--root-json",
        b_root_json.to_str().unwrap_or_default(),
        "--level",
        "full",
        "--expires",
        "30d",
    ])?;
    push(&a)?;
    let shown = trust(&a, &["show", &b.fingerprint()?])?;
    ensure!(
        shown["cluster_wide"] == true && shown["level"] == "full",
        "{shown}"
    );
    let (status, v) = a_node.post("/v1/encrypt", &to_api)?;
    ensure!(status == 200, "{status} {v}");
    a.ceremony_ok(&[
        "ceremony",
        "untrust",
        "--hsm",
        a.root.uri(),
        "--chain",
        chain.to_str().unwrap_or_default(),
        "--root-json",
        b_root_json.to_str().unwrap_or_default(),
        "--reason",
        "ceremony ended",
    ])?;
    push(&a)?;
    let (status, _) = a_node.post("/v1/encrypt", &to_api)?;
    ensure!(status == 403, "back to the keyd's own grant: {status}");

    // A revocation in B is refused by A within one sync interval.
    let gone_ask = signed(&b_gone, "gone's")?;
    let (_, v) = a_node.post("/v1/verify", &gone_ask)?;
    ensure!(v["valid"] == true, "{v}");
    let (status, _) = b
        .admin()?
        .post("/v1/nodes/gone/revoke", &json!({"reason": "lost"}))?;
    ensure!(status == 200);
    wait_until(Duration::from_secs(15), || {
        let (_, v) = a_node.post("/v1/verify", &gone_ask)?;
        Ok(v["valid"] == false && v["status"] == "revoked")
    })?;

    // Revoking the trust: B's keys are unknown to A again, and B is blocklisted.
    let root_b = b.fingerprint()?;
    let revoked = trust(&a, &["revoke", &root_b, "--reason", "contract ended"])?;
    ensure!(revoked["clusters"] == json!([]), "{revoked}");
    let (_, v) = a_node.post("/v1/verify", &ask)?;
    ensure!(v["valid"] == false, "{v}");
    let invited = trust(&a, &["invite", "--level", "full", "--expires", "1d"])?;
    let link = text(&invited, "link")?;
    let err = trust_fails(&b, &["accept", &link, "--yes", "--expires", "1d"])?;
    ensure!(
        err.contains("blocklisted") || err.contains("revoked"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_replayed_or_expired_invitation_a_wrong_digit_and_a_no_record_nothing_and_temporary_trust_ends()
-> Result<()> {
    let a = Cluster::start_with(FAST)?;
    let b = Cluster::start_with(FAST)?;
    let c = Cluster::start_with(FAST)?;
    let grant = ["--level", "full", "--expires", "1d"];

    // The responder says the codes differ: both sessions close, nothing recorded.
    let invited = trust(&a, &[&["invite"], &grant[..]].concat())?;
    let (session, link) = (text(&invited, "session")?, text(&invited, "link")?);
    trust(
        &b,
        &[&["accept", link.as_str(), "--yes"], &grant[..]].concat(),
    )?;
    let err = trust_fails(&b, &["confirm", &session, "--matches", "no"])?;
    ensure!(err.contains("do not match"), "{err}");
    let seen = trust(&a, &["status", &session]);
    ensure!(
        seen.as_ref()
            .is_err_and(|e| e.to_string().contains("codes do not match")),
        "{seen:?}"
    );
    // The same invitation, replayed by a third cluster: refused.
    let err = trust_fails(&c, &["accept", &link, "--yes", "--expires", "1d"])?;
    ensure!(
        err.contains("used") || err.contains("no such trust session"),
        "{err}"
    );

    // The inviter types another digit than the code's: closed, nothing recorded.
    let invited = trust(&a, &[&["invite"], &grant[..]].concat())?;
    let (session, link) = (text(&invited, "session")?, text(&invited, "link")?);
    let accepted = trust(
        &b,
        &[&["accept", link.as_str(), "--yes"], &grant[..]].concat(),
    )?;
    let code = text(&accepted, "code")?;
    let last: u32 = code
        .chars()
        .last()
        .and_then(|d| d.to_digit(10))
        .context("digit")?;
    let wrong = ((last + 1) % 10).to_string();
    let err = trust_fails(&a, &["confirm", &session, "--digit", &wrong])?;
    ensure!(err.contains("last digit"), "{err}");
    let err = trust_fails(&b, &["confirm", &session, "--matches", "yes"])?;
    ensure!(err.contains("refused"), "{err}");

    for cl in [&a, &b, &c] {
        let listed = trust(cl, &["list"])?;
        ensure!(listed["clusters"] == json!([]), "{listed}");
    }

    // Temporary trust ends by itself.
    let (a_node, _) = a.enrolled_node("web")?;
    let (b_node, _) = b.enrolled_node("api")?;
    exchange(
        &a,
        &b,
        &[
            "--level",
            "temporary",
            "--permissions",
            "verify",
            "--expires",
            "4s",
        ],
        &VERIFY_A_DAY,
    )?;
    let ask = signed(&b_node, "while it lasts")?;
    let (_, v) = a_node.post("/v1/verify", &ask)?;
    ensure!(v["valid"] == true, "{v}");
    wait_until(Duration::from_secs(15), || {
        let (_, v) = a_node.post("/v1/verify", &ask)?;
        Ok(v["valid"] == false)
    })?;
    ensure!(trust(&a, &["list"])?["clusters"] == json!([]));
    ensure!(trust(&b, &["list"])?["clusters"].as_array().map(Vec::len) == Some(1));

    // An invitation whose session ended is refused.
    let d = Cluster::start_with(&format!("{FAST}trust_session_seconds = 1\n"))?;
    let invited = trust(&d, &[&["invite"], &grant[..]].concat())?;
    std::thread::sleep(Duration::from_millis(2200));
    let err = trust_fails(
        &b,
        &[
            "accept",
            &text(&invited, "link")?,
            "--yes",
            "--expires",
            "1d",
        ],
    )?;
    ensure!(err.contains("unknown, used or expired"), "{err}");

    // A link that is not one: a clear error naming what is wrong.
    let err = trust_fails(
        &b,
        &["accept", "keyd-trust:@@@", "--yes", "--expires", "1d"],
    )?;
    ensure!(err.contains("not a keyd trust invitation"), "{err}");
    Ok(())
}

/// The admin API of a cluster, in process (fast enough for a hundred runs).
fn post(c: &Client, path: &str, body: &Value) -> Result<Value> {
    let (status, v) = c.post(path, body)?;
    ensure!((200..300).contains(&status), "{path}: {status} {v}");
    Ok(v)
}

#[test]
fn a_man_in_the_middle_with_his_own_keyd_never_gets_matching_codes_nor_any_trust() -> Result<()> {
    let a = Cluster::start_with(FAST)?;
    let b = Cluster::start_with(FAST)?;
    let m = Cluster::start_with(FAST)?;
    let (aa, ba, ma) = (a.admin()?, b.admin()?, m.admin()?);
    let grant = json!({"level": "full", "expires_at": keyd::unix_now() + 86_400});
    for run in 0..100 {
        // A invites B, but the link reaches Mallory's keyd, which answers A as the
        // responder and invites B itself, relaying: its own keys on both sides.
        let link_a = post(&aa, "/v1/trust/invite", &grant)?["link"].clone();
        let sa = post(&ma, "/v1/trust/accept", &json!({"token": link_a}))?;
        let sa = text(&sa, "session")?;
        post(&ma, &format!("/v1/trust/sessions/{sa}/consent"), &grant)?;
        let code_a = text(&aa.get_json(&format!("/v1/trust/sessions/{sa}"))?, "code")?;
        let link_m = post(&ma, "/v1/trust/invite", &grant)?["link"].clone();
        let sb = post(&ba, "/v1/trust/accept", &json!({"token": link_m}))?;
        let sb = text(&sb, "session")?;
        let code_b = text(
            &post(&ba, &format!("/v1/trust/sessions/{sb}/consent"), &grant)?,
            "code",
        )?;
        ensure!(code_a != code_b, "run {run}: the codes matched ({code_a})");
        // The admins of A and B compare and see two codes: both say no.
        let (status, _) = aa.post(
            &format!("/v1/trust/sessions/{sa}/confirm"),
            &json!({"matches": false}),
        )?;
        ensure!(status == 409, "run {run}: {status}");
        let (status, _) = ba.post(
            &format!("/v1/trust/sessions/{sb}/confirm"),
            &json!({"matches": false}),
        )?;
        ensure!(status == 409, "run {run}: {status}");
    }
    for (name, admin) in [("A", &aa), ("B", &ba), ("M", &ma)] {
        let listed = admin.get_json("/v1/trust/clusters")?;
        ensure!(listed["clusters"] == json!([]), "{name}: {listed}");
    }
    Ok(())
}

#[test]
fn a_reset_after_a_keyd_moved_restores_sync_and_keeps_each_grant() -> Result<()> {
    let mut a = Cluster::start_with(FAST)?;
    let b = Cluster::start_with(FAST)?;
    exchange(&a, &b, &VERIFY_A_DAY, &VERIFY_DECRYPT_A_DAY)?;
    // A's keyd moves (another address): B's copy of A's chain can no longer be pulled.
    a.kill9()?;
    a.serve()?;
    let (a_node, _) = a.enrolled_node("web")?;
    let (b_node, _) = b.enrolled_node("api")?;
    let ask = signed(&a_node, "after the move")?;
    std::thread::sleep(Duration::from_millis(2500));
    let (_, v) = b_node.post("/v1/verify", &ask)?;
    ensure!(v["valid"] == false && v["status"] == "unknown", "{v}");

    // A resets the trust over the keys recorded: no code, and B follows A's new address.
    let done = trust(&a, &["reset", &b.fingerprint()?])?;
    ensure!(done["state"] == "trusted", "{done}");
    wait_until(Duration::from_secs(15), || {
        let (_, v) = b_node.post("/v1/verify", &ask)?;
        Ok(v["valid"] == true)
    })?;
    // Each side kept what it granted.
    let of = |c: &Cluster| -> Result<Value> { Ok(trust(c, &["list"])?["clusters"][0].clone()) };
    ensure!(of(&a)?["permissions"] == json!(["verify"]), "{}", of(&a)?);
    ensure!(
        of(&b)?["permissions"] == json!(["verify", "decrypt"]),
        "{}",
        of(&b)?
    );
    ensure!(of(&b)?["url"] == json!(a.url()), "{}", of(&b)?);
    // A reset with a cluster not trusted is refused.
    let err = trust_fails(&a, &["reset", &"0".repeat(64)])?;
    ensure!(err.contains("no trusted cluster"), "{err}");
    Ok(())
}

#[test]
fn a_cluster_trusted_by_two_introduces_them_at_most_limited_and_the_chain_names_it() -> Result<()> {
    let a = Cluster::start_with(FAST)?;
    let b = Cluster::start_with(FAST)?;
    let c = Cluster::start_with(FAST)?;
    let full = ["--level", "full", "--expires", "1d"];
    exchange(&a, &b, &full, &full)?;
    exchange(&c, &b, &full, &full)?;
    let (fa, fb, fc) = (a.fingerprint()?, b.fingerprint()?, c.fingerprint()?);
    // B does not trust a cluster of this root: refused, nothing recorded.
    let err = trust_fails(&a, &["introduce", &fb, "--to", &"ab".repeat(32)])?;
    ensure!(err.contains("does not trust the cluster named"), "{err}");

    // A asks B to introduce it to C: no code, limited trust on both sides.
    let done = trust(
        &a,
        &["introduce", &fb, "--to", &fc, "--permissions", "verify"],
    )?;
    ensure!(done["state"] == "trusted", "{done}");
    let entry = |x: &Cluster, root: &str| -> Result<Value> {
        let listed = trust(x, &["list"])?;
        listed["clusters"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["root"] == root).cloned())
            .with_context(|| format!("{root} in {listed}"))
    };
    for (x, other) in [(&a, &fc), (&c, &fa)] {
        let e = entry(x, other)?;
        ensure!(
            e["level"] == "limited" && e["introduced_by"] == fb.as_str(),
            "{e}"
        );
    }
    // The chain says who introduced whom.
    let chain = c.dir.path().join("c-chain.cbor");
    c.fetch_chain(&chain)?;
    let shown = keyctl(&["chain", "show", chain.to_str().unwrap_or_default()], &[])?;
    ensure!(shown.to_string().contains(&fb), "{shown}");
    // And the introduced trust works: C's node verifies A's node (once C pulled A's
    // chain, which has the node since).
    let (a_node, _) = a.enrolled_node("web")?;
    let (c_node, _) = c.enrolled_node("api")?;
    let ask = signed(&a_node, "introduced")?;
    wait_until(Duration::from_secs(15), || {
        let (_, v) = c_node.post("/v1/verify", &ask)?;
        Ok(v["valid"] == true)
    })?;
    // A second introduction of the same pair is refused (C has a record of A).
    let err = trust_fails(&a, &["introduce", &fb, "--to", &fc])?;
    ensure!(err.contains("already has a record"), "{err}");
    Ok(())
}

#[test]
fn a_reset_after_a_root_rekey_moves_the_trust_to_the_new_root_and_keeps_the_grant() -> Result<()> {
    let mut a = Cluster::start_with(FAST)?;
    let b = Cluster::start_with(FAST)?;
    exchange(&a, &b, &VERIFY_A_DAY, &VERIFY_DECRYPT_A_DAY)?;
    let old_fp = a.fingerprint()?;

    // A's root is replaced and A's keyd moves its tree under the new one.
    a.kill9()?;
    let uri2 = crate::root_rekey::new_token(&a, "root2")?;
    let install = format!("1={}", crate::root_rekey::install_key(&a)?);
    let out = a.dir.path().join("rekey");
    crate::root_rekey::root_rekey_ceremony(&a, &uri2, &[&install], &out)?;
    let new_root: Value =
        serde_json::from_slice(&std::fs::read(out.join("new-root").join("root.json"))?)?;
    let new_fp = text(&new_root, "fingerprint")?;
    a.keyd(&[
        "root-rekey",
        "--bundle",
        out.join("branch-1.bundle").to_str().unwrap_or_default(),
        "--succession",
        out.join("succession.cbor").to_str().unwrap_or_default(),
    ])?;
    a.serve()?;
    let (a_node, _) = a.enrolled_node("web")?;
    let (b_node, _) = b.enrolled_node("api")?;
    let ask = signed(&a_node, "under the new root")?;
    let (_, v) = b_node.post("/v1/verify", &ask)?;
    ensure!(v["valid"] == false, "{v}");

    // A resets the trust: B follows A's succession, moves the trust to the new root
    // with the grant it had, and blocklists the old root.
    let done = trust(&a, &["reset", &b.fingerprint()?])?;
    ensure!(done["state"] == "trusted", "{done}");
    let listed = trust(&b, &["list"])?;
    let clusters = listed["clusters"].as_array().context("clusters")?;
    ensure!(
        clusters.len() == 1
            && clusters[0]["root"] == new_fp.as_str()
            && clusters[0]["level"] == "limited"
            && clusters[0]["permissions"] == json!(["verify", "decrypt"]),
        "{listed}"
    );
    ensure!(!listed.to_string().contains(&old_fp), "{listed}");
    wait_until(Duration::from_secs(15), || {
        let (_, v) = b_node.post("/v1/verify", &ask)?;
        Ok(v["valid"] == true)
    })?;
    // A's new branch log states its trust in B again, with the grant A had.
    let shown = trust(&a, &["show", &b.fingerprint()?])?;
    ensure!(shown["permissions"] == json!(["verify"]), "{shown}");
    Ok(())
}

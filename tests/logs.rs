//! One cluster, many keyds (DESIGN.md section 4): the root log written by ceremonies and
//! pushed to keyd, one branch log per keyd, peers mirroring each other, fresh heads, a
//! revoked branch that stops, stores that cannot be rolled back, bundles of the right
//! root only. Real keyd processes, real SoftHSM2 tokens, real TLS.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyd::chain::{self, Chain, encode_log, verify_file};
use keyd::derive::KeyPath;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster, keyctl, keyctl_fails};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn p(text: &str) -> KeyPath {
    text.parse().unwrap_or_else(|_| KeyPath::root())
}

/// Polls `check` every 100 ms until it gives `Some`, for at most `limit`: the value and
/// how long it took.
pub(crate) fn wait_for<T>(
    limit: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(v) = check()? {
            return Ok((v, start.elapsed()));
        }
        if start.elapsed() > limit {
            bail!("not reached within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The whole chain a keyd serves, verified.
fn served(c: &Cluster) -> Result<Chain> {
    Ok(verify_file(&c.anonymous()?.get("/v1/chain")?.1)?)
}

/// Signs `data` as `node`: (signature, Ed25519 public key of the signing epoch key, via
/// the chain of `keyd`).
fn sign(node: &Client, keyd: &Cluster, data: &[u8]) -> Result<(String, String)> {
    let (status, signed) = node.post("/v1/sign", &json!({"data": B64.encode(data)}))?;
    ensure!(status == 200, "{signed}");
    let path = p(signed["path"].as_str().context("path")?);
    let chain = served(keyd)?;
    let key = chain.state().key(&path).context("epoch key in the chain")?;
    Ok((
        signed["signature"]
            .as_str()
            .context("signature")?
            .to_owned(),
        hex::encode(key.keys.ed25519),
    ))
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn two_keyds_mirror_each_other_and_a_pushed_root_revocation_stops_the_revoked_one() -> Result<()> {
    let fast = "head_seconds = 1\npeer_pull_seconds = 1\n";
    let mut k1 = Cluster::start_with(fast)?;
    let k2 = k1.join(2, "dc2", &format!("{fast}peers = [\"{}\"]\n", k1.url()))?;
    k1.reconfigure(&format!("peers = [\"{}\"]\n", k2.url()))?;
    let (a, _) = k1.enrolled_node("app-a")?;
    let (b, _) = k2.enrolled_node("app-b")?;
    // A node of keyd 2 enrolled with keyctl: it keeps the chain it got (chain.cbor).
    crate::enroll::add_and_enroll(&k2, &k2.admin_config()?, "cli-b", false)?;
    let cli_b = k2.dir.path().join("cli-b");
    let report = cli_b.join("report.txt");
    std::fs::write(&report, "report")?;
    let cli_config = cli_b.join("keyctl.toml");
    let cli_sign = ["sign", "--config", s(&cli_config), "--in", s(&report)];
    keyctl(&cli_sign, &[])?;

    // A node of keyd 1 verifies, through keyd 1, a signature made by a node of keyd 2:
    // keyd 1 mirrors keyd 2's branch log.
    let data = b"release 1.2.3";
    let (signature, public_key) = sign(&b, &k2, data)?;
    let ask = json!({"data": B64.encode(data), "signature": signature, "public_key": public_key});
    let (verdict, _) = wait_for(Duration::from_secs(20), || {
        let (status, v) = a.post("/v1/verify", &ask)?;
        ensure!(status == 200, "{v}");
        Ok((v["valid"] == true).then_some(v))
    })
    .with_context(|| {
        format!(
            "keyd 1:\n{}\nkeyd 2:\n{}",
            k1.log().unwrap_or_default(),
            k2.log().unwrap_or_default()
        )
    })?;
    ensure!(verdict["path"] == "m/2'/1'/0'/0'/0'", "{verdict}");
    // keyd 1 knows keyd 2's nodes, and adds nothing below them.
    let (status, v) = k1
        .admin()?
        .post("/v1/nodes", &json!({"name": "intruder", "parent": "app-b"}))?;
    ensure!(
        status == 403 && error_code(&v) == "forbidden",
        "{status} {v}"
    );
    // Any keyd serves the whole cluster chain (each within a pull interval).
    for k in [&k1, &k2] {
        wait_for(Duration::from_secs(20), || {
            let chain = served(k)?;
            let logs: Vec<String> = chain.logs().map(|(l, _)| l.to_string()).collect();
            Ok((logs == ["m", "m/1'", "m/2'"]).then_some(()))
        })?;
    }

    // The ceremony revokes m/2' (its host is stolen); the revocation is pushed to keyd 1
    // and reaches keyd 2 from its peer.
    k1.ceremony_ok(&[
        "ceremony",
        "revoke",
        "--hsm",
        k1.root.uri(),
        "--chain",
        s(&k1.chain_file()),
        "--path",
        "m/2'",
        "--reason",
        "host stolen",
    ])?;
    let admin1 = k1.admin_config()?;
    let pushed = keyctl(
        &[
            "chain",
            "push",
            "--config",
            &admin1,
            s(&k1.chain_file()),
            "--output",
            "json",
        ],
        &[],
    )?;
    ensure!(
        pushed["new_entries"] == 1 && pushed["branch_revoked"] == false,
        "{pushed}"
    );
    let pushed_at = Instant::now();
    let (refusal, _) = wait_for(Duration::from_secs(20), || {
        let (status, v) = b.post("/v1/sign", &json!({"data": B64.encode(data)}))?;
        Ok((status == 503).then_some(v))
    })?;
    let took = pushed_at.elapsed();
    eprintln!("push at keyd 1 to refusal at keyd 2: {took:?} (pull interval 1 s)");
    ensure!(error_code(&refusal) == "branch_revoked", "{refusal}");
    ensure!(
        refusal["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("host stolen") && m.contains("m/2'")),
        "{refusal}"
    );
    let ready = k2.anonymous()?.get_reply("/readyz")?;
    ensure!(ready.status == 503, "readyz {}", ready.status);
    let ready: Value = serde_json::from_slice(&ready.body)?;
    ensure!(error_code(&ready) == "branch_revoked", "{ready}");
    // keyd 2 enrolls and changes nothing more.
    let (status, v) = k2.admin()?.post("/v1/nodes", &json!({"name": "late"}))?;
    ensure!(
        status == 503 && error_code(&v) == "branch_revoked",
        "{status} {v}"
    );
    // keyd 1 reports keyd 2's node as revoked, and serves on.
    let (_, verdict) = a.post("/v1/verify", &ask)?;
    ensure!(
        verdict["valid"] == false && verdict["status"] == "revoked",
        "{verdict}"
    );
    let (still, _) = sign(&a, &k1, b"still serving")?;
    ensure!(!still.is_empty());

    // A node that learns of the revocation from another keyd refuses its own keyd,
    // whatever that keyd says (a stolen keyd may never take the revocation in).
    let ca1 = k1.data().join("ca.pem");
    let cli_chain = cli_b.join("chain.cbor");
    keyctl(
        &[
            "chain",
            "fetch",
            "--url",
            &k1.url(),
            "--ca",
            s(&ca1),
            "--out",
            s(&cli_chain),
        ],
        &[],
    )?;
    let err = keyctl_fails(&cli_sign, &[])?;
    ensure!(
        err.contains("keyd's branch m/2' is revoked") && err.contains("host stolen"),
        "{err}"
    );

    // Offline: the whole cluster chain fetched from keyd 1 with its URL and CA only,
    // verified with a bound on head age, and shown.
    let file = k1.dir.path().join("cluster.cbor");
    let ca = k1.data().join("ca.pem");
    let fetched = keyctl(
        &[
            "chain",
            "fetch",
            "--url",
            &k1.url(),
            "--ca",
            s(&ca),
            "--out",
            s(&file),
            "--max-age",
            "1h",
            "--output",
            "json",
        ],
        &[],
    )?;
    ensure!(
        fetched["logs"].as_array().is_some_and(|l| l.len() == 3),
        "{fetched}"
    );
    let said = keyctl(&["chain", "verify", s(&file), "--max-age", "1h"], &[])?;
    ensure!(said.to_string().contains("3 log(s)"), "{said}");
    let shown = keyctl(&["chain", "show", s(&file), "--output", "json"], &[])?;
    let keys = shown["keys"].as_array().context("keys")?;
    let status_of = |path: &str| {
        keys.iter()
            .find(|k| k["path"] == path)
            .map(|k| k["status"]["state"].clone())
    };
    ensure!(status_of("m/2'") == Some(json!("revoked")), "{shown}");
    ensure!(status_of("m/2'/1'/0'") == Some(json!("revoked")), "{shown}");
    ensure!(status_of("m/1'/1'/0'") == Some(json!("valid")), "{shown}");
    Ok(())
}

#[test]
fn branches_issued_in_either_order_never_fork() -> Result<()> {
    // m/2' first, then m/1', from one ceremony file.
    let k2 = Cluster::start_branch(2, "dc2", "")?;
    let k1 = k2.join(1, "dc1", "")?;
    // keyd 2's root log is older than the ceremony's: the push brings the certify of
    // m/1'; a second push of the same file brings nothing.
    let admin2 = k2.admin_config()?;
    for want in [1, 0] {
        let pushed = keyctl(
            &[
                "chain",
                "push",
                "--config",
                &admin2,
                s(&k2.chain_file()),
                "--output",
                "json",
            ],
            &[],
        )?;
        ensure!(pushed["new_entries"] == want, "{pushed}");
    }
    let (c1, c2) = (served(&k1)?, served(&k2)?);
    ensure!(
        c1.file_of([&KeyPath::root()]) == c2.file_of([&KeyPath::root()]),
        "both keyds hold the same root log"
    );
    // Both branch logs in one file: fetched from one keyd, then brought up to date
    // from the other; it verifies with both logs.
    let file = k1.dir.path().join("both.cbor");
    for k in [&k1, &k2] {
        let ca = k.data().join("ca.pem");
        keyctl(
            &[
                "chain",
                "fetch",
                "--url",
                &k.url(),
                "--ca",
                s(&ca),
                "--out",
                s(&file),
            ],
            &[],
        )?;
    }
    let both = verify_file(&std::fs::read(&file)?)?;
    let logs: Vec<String> = both.logs().map(|(l, _)| l.to_string()).collect();
    ensure!(logs == ["m", "m/1'", "m/2'"], "{logs:?}");
    for branch in ["m/1'", "m/2'"] {
        ensure!(both.state().status_at(&p(branch), chain_now()).is_valid());
        ensure!(
            matches!(
                &both.entries(&p(branch))[0].statement.body,
                chain::Body::Anchor(_)
            ),
            "log {branch} opens with its anchor"
        );
    }
    Ok(())
}

fn chain_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every entry of every log a keyd serves (heads are re-signed over time; entries only
/// change when something is appended).
fn entries_of(c: &Cluster) -> Result<Vec<keyd::chain::Entry>> {
    Ok(served(c)?
        .logs()
        .flat_map(|(_, l)| l.entries.clone())
        .collect())
}

#[test]
fn pushes_that_do_not_verify_are_refused_and_nothing_is_stored() -> Result<()> {
    let k = Cluster::start()?;
    let other = Cluster::start()?;
    let admin = k.admin()?;
    let root = KeyPath::root();
    let before = entries_of(&k)?;
    let push = |bytes: Vec<u8>| admin.post_raw("/v1/chain/root", "application/cbor", bytes);
    let refused = |bytes: Vec<u8>, code: &str, want: &str| -> Result<()> {
        let (status, v) = push(bytes)?;
        ensure!(
            (400..500).contains(&status) && error_code(&v) == code,
            "{status} {v}"
        );
        let message = v["error"]["message"].as_str().unwrap_or("");
        ensure!(message.contains(want), "want {want:?} in {message:?}");
        ensure!(
            entries_of(&k)? == before,
            "a refused push changed the chain"
        );
        Ok(())
    };

    // The root log of another root.
    refused(
        std::fs::read(other.chain_file())?,
        "bad_chain",
        "log m entry 0",
    )?;

    // A gap, a bad signature, a fork: the ceremony issues m/2' and m/3' (entries 2 and 3
    // of the root log); the fork is m/4' issued from a copy taken before them.
    let copy = k.dir.path().join("fork.cbor");
    std::fs::copy(k.chain_file(), &copy)?;
    let install = "11".repeat(32);
    let after_dc2 = k.dir.path().join("after-dc2.cbor");
    for (index, name) in [("2", "dc2"), ("3", "dc3")] {
        issue_from(&k, &k.chain_file(), name, index, &install)?;
        if name == "dc2" {
            std::fs::copy(k.chain_file(), &after_dc2)?;
        }
    }
    let good = verify_file(&std::fs::read(k.chain_file())?)?;
    let entries = good.entries(&root);
    let head = good.head(&root).context("root head")?;
    let mut gap = Vec::new();
    encode_log(
        &mut gap,
        &[entries[0].clone(), entries[1].clone(), entries[3].clone()],
        Some(head),
    );
    refused(gap, "bad_chain", "log m entry 3")?;
    let mut forged = entries[2].clone();
    forged.statement.signature[10] ^= 1;
    let mut bad_sig = Vec::new();
    encode_log(&mut bad_sig, &[forged, entries[3].clone()], Some(head));
    refused(bad_sig, "bad_chain", "bad signature")?;
    issue_from(&k, &copy, "dc4", "4", &install)?;
    // Good pushes land; what is older or forked than what is held is refused.
    let (status, v) = push(std::fs::read(k.chain_file())?)?;
    ensure!(status == 200 && v["new_entries"] == 2, "{status} {v}");
    let before_now = entries_of(&k)?;
    let refused_now = |bytes: Vec<u8>, want: &str| -> Result<()> {
        let (status, v) = push(bytes)?;
        ensure!(
            status == 400 && error_code(&v) == "bad_chain",
            "{status} {v}"
        );
        ensure!(v.to_string().contains(want), "want {want:?} in {v}");
        ensure!(
            entries_of(&k)? == before_now,
            "a refused push changed the chain"
        );
        Ok(())
    };
    refused_now(std::fs::read(&copy)?, "entry 2 differs")?;
    refused_now(std::fs::read(other.chain_file())?, "log m entry 0")?;
    // A stale head: the root log as the ceremony signed it before the last issue.
    refused_now(std::fs::read(&after_dc2)?, "the head names seq 2")?;
    // Only the root log is pushed; only by an admin.
    let (status, v) = push(k.anonymous()?.get("/v1/chain")?.1)?;
    ensure!(
        status == 400 && error_code(&v) == "bad_request",
        "{status} {v}"
    );
    let (node, _) = k.enrolled_node("n1")?;
    let (status, v) = node.post_raw(
        "/v1/chain/root",
        "application/cbor",
        std::fs::read(k.chain_file())?,
    )?;
    ensure!(status == 403, "{status} {v}");
    // keyctl refuses a file that does not verify before sending it.
    let bad = k.dir.path().join("bad.cbor");
    let mut bytes = std::fs::read(k.chain_file())?;
    let at = bytes.len() - 5;
    bytes[at] ^= 1;
    std::fs::write(&bad, bytes)?;
    let err = keyctl_fails(
        &["chain", "push", "--config", &k.admin_config()?, s(&bad)],
        &[],
    )?;
    ensure!(
        err.contains("does not verify") || err.contains("log m"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_peer_serving_a_fork_or_an_older_log_is_refused_and_marked_unhealthy() -> Result<()> {
    let fast = "head_seconds = 1\npeer_pull_seconds = 1\n";
    let mut k1 = Cluster::start_with(fast)?;
    let mut k2 = k1.join(2, "dc2", fast)?;
    k2.admin()?.post("/v1/nodes", &json!({"name": "n1"}))?;
    // A thief copies keyd 2's data directory (with the seal token, it runs a second
    // keyd 2) twice: one copy serves what it has, the other appends its own entries.
    std::thread::sleep(Duration::from_millis(1500));
    k2.kill9()?;
    let mut thieves = Thieves(Vec::new());
    for name in ["older", "fork"] {
        let dir = k2.dir.path().join(name);
        copy_dir(&k2.data(), &dir.join("data"))?;
        let config = dir.join("keyd.toml");
        std::fs::copy(k2.config(), &config)?;
        let (child, addr) = k2.spawn(&config, &dir.join("keyd.log"))?;
        thieves.0.push((child, addr));
    }
    k2.serve()?;
    let fork_admin = k2.admin_at(&thieves.0[1].1)?;
    let (status, v) = fork_admin.post("/v1/nodes", &json!({"name": "evil"}))?;
    ensure!(status == 201, "{v}");
    k2.admin()?.post("/v1/nodes", &json!({"name": "n2"}))?;

    // keyd 1 mirrors the real keyd 2.
    k1.reconfigure(&format!("peers = [\"{}\"]\n", k2.url()))?;
    let m2 = p("m/2'");
    let real = served(&k2)?.entries(&m2).to_vec();
    wait_for(Duration::from_secs(20), || {
        Ok((served(&k1)?.entries(&m2) == real.as_slice()).then_some(()))
    })?;
    // Then it is pointed at the thieves: each is refused, marked unhealthy, and keyd 1
    // keeps what it held.
    for (i, want) in [(0, "the head names seq"), (1, "hash")] {
        let thief = thieves.0[i].1.clone();
        k1.reconfigure(&format!("peers = [\"{thief}\"]\n"))?;
        let metric = format!("keyd_peer_healthy{{peer=\"{thief}\"}} 0");
        wait_for(Duration::from_secs(20), || {
            let (_, m) = k1.anonymous()?.get("/metrics")?;
            Ok(String::from_utf8_lossy(&m).contains(&metric).then_some(()))
        })?;
        ensure!(
            served(&k1)?.entries(&m2) == real.as_slice(),
            "keyd 1's copy changed"
        );
        let log = k1.log()?;
        ensure!(
            log.lines()
                .any(|l| l.contains("peer: pull refused") && l.contains(want)),
            "want {want:?} in keyd 1's log:\n{log}"
        );
    }
    Ok(())
}

/// keyd processes started from copies of a data directory, stopped when dropped.
struct Thieves(Vec<(std::process::Child, String)>);

impl Drop for Thieves {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The ceremony issues branch `m/index'` named `name` to `install` from `chain`.
fn issue_from(k: &Cluster, chain: &Path, name: &str, index: &str, install: &str) -> Result<()> {
    let out = k.dir.path().join(format!("{name}.bundle"));
    k.ceremony_ok(&[
        "ceremony",
        "issue",
        "--hsm",
        k.root.uri(),
        "--chain",
        s(chain),
        "--name",
        name,
        "--index",
        index,
        "--to",
        install,
        "--out",
        s(&out),
    ])?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

#[test]
fn a_rolled_back_data_directory_is_refused() -> Result<()> {
    let mut k = Cluster::start()?;
    k.kill9()?;
    let backup = k.dir.path().join("backup");
    copy_dir(&k.data(), &backup)?;
    k.serve()?;
    for name in ["n1", "n2"] {
        let (status, v) = k.admin()?.post("/v1/nodes", &json!({"name": name}))?;
        ensure!(status == 201, "{v}");
    }
    // The mark on the seal token follows the branch head within a second.
    std::thread::sleep(Duration::from_millis(2500));
    k.kill9()?;
    std::fs::remove_dir_all(k.data())?;
    copy_dir(&backup, &k.data())?;
    let err = k.serve().expect_err("a rolled-back store must not serve");
    ensure!(err.to_string().contains("did not start"), "{err:#}");
    let log = k.log()?;
    ensure!(
        log.contains("rolled back") && log.contains("at seq 4") && log.contains("ends at seq 0"),
        "keyd says why:\n{log}"
    );
    Ok(())
}

#[test]
fn a_bundle_of_another_root_is_refused_at_import() -> Result<()> {
    let ours = Cluster::start()?;
    let theirs = Cluster::start()?;
    let fresh = theirs.bare_peer("")?;
    let bundle = fresh.issue(7, "dc7")?;
    let err = fresh
        .keyd(&["import", s(&bundle), "--expect-root", &ours.fingerprint()?])
        .expect_err("another root's bundle");
    let msg = format!("{err:#}");
    ensure!(
        msg.contains(&theirs.fingerprint()?) && msg.contains(&ours.fingerprint()?),
        "names both roots: {msg}"
    );
    let err = fresh
        .keyd(&["import", s(&bundle)])
        .expect_err("no root given");
    ensure!(format!("{err:#}").contains("--expect-root"), "{err:#}");
    // Nothing was stored: the right root imports.
    fresh.keyd(&[
        "import",
        s(&bundle),
        "--expect-root",
        &theirs.fingerprint()?,
    ])?;
    Ok(())
}

#[test]
fn a_stale_head_is_refused_by_chain_verify_max_age() -> Result<()> {
    let k = Cluster::start_with("head_seconds = 3600\n")?;
    let file = k.dir.path().join("chain.cbor");
    std::fs::write(&file, k.anonymous()?.get("/v1/chain")?.1)?;
    std::thread::sleep(Duration::from_millis(2100));
    let err = keyctl_fails(&["chain", "verify", s(&file), "--max-age", "1"], &[])?;
    ensure!(
        err.contains("log m/1'") && err.contains("s old") && err.contains("at most 1 s"),
        "{err}"
    );
    keyctl(&["chain", "verify", s(&file), "--max-age", "1h"], &[])?;
    Ok(())
}

#[test]
fn a_peer_withholding_its_log_behind_a_stale_head_is_refused() -> Result<()> {
    let mut k1 = Cluster::start_with("peer_pull_seconds = 1\npeer_max_age_seconds = 2\n")?;
    // keyd 2 re-signs its head only every hour: soon its head is older than keyd 1
    // allows, as when a keyd withholds what it appended.
    let k2 = k1.join(2, "dc2", "head_seconds = 3600\n")?;
    k1.reconfigure(&format!("peers = [\"{}\"]\n", k2.url()))?;
    let peer = k2.url();
    let healthy = |v: u8| {
        let metric = format!("keyd_peer_healthy{{peer=\"{peer}\"}} {v}");
        wait_for(Duration::from_secs(20), || {
            let (_, m) = k1.anonymous()?.get("/metrics")?;
            Ok(String::from_utf8_lossy(&m).contains(&metric).then_some(()))
        })
    };
    healthy(1)?;
    healthy(0)?;
    let log = k1.log()?;
    ensure!(
        log.lines()
            .any(|l| l.contains("peer: pull refused") && l.contains("s old")),
        "keyd 1 says the head is stale:\n{log}"
    );
    Ok(())
}

#[test]
fn a_peer_that_hangs_does_not_slow_key_operations() -> Result<()> {
    // A "peer" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let peer = format!("https://{}", silent.local_addr()?);
    let k = Cluster::start_with(&format!("peer_pull_seconds = 1\npeers = [\"{peer}\"]\n"))?;
    let (node, _) = k.enrolled_node("web")?;
    // Key operations answer while the pull waits on the silent peer.
    for i in 0..20 {
        let (status, v) = node.post("/v1/sign", &json!({"data": B64.encode([i as u8])}))?;
        ensure!(status == 200, "{v}");
    }
    // The pull gives up at its deadline and the peer is marked unhealthy.
    let metric = format!("keyd_peer_healthy{{peer=\"{peer}\"}} 0");
    wait_for(Duration::from_secs(30), || {
        let (_, m) = k.anonymous()?.get("/metrics")?;
        Ok(String::from_utf8_lossy(&m).contains(&metric).then_some(()))
    })?;
    drop(silent);
    Ok(())
}

#[test]
fn a_peer_behind_on_the_root_log_is_still_mirrored() -> Result<()> {
    let mut k1 = Cluster::start_with("peer_pull_seconds = 1\n")?;
    let k2 = k1.join(2, "dc2", "")?;
    k1.reconfigure(&format!("peers = [\"{}\"]\n", k2.url()))?;
    let m2 = p("m/2'");
    // keyd 1 takes a root-log extension that keyd 2 (which pulls from nobody) lacks.
    issue_from(&k1, &k1.chain_file(), "dc3", "3", &"22".repeat(32))?;
    let pushed = keyctl(
        &[
            "chain",
            "push",
            "--config",
            &k1.admin_config()?,
            s(&k1.chain_file()),
            "--output",
            "json",
        ],
        &[],
    )?;
    ensure!(pushed["root_length"] == 4, "{pushed}");
    // keyd 2's older view of the root log does not stop keyd 1 from taking its branch
    // log, and keyd 1 keeps its longer root log.
    k2.admin()?.post("/v1/nodes", &json!({"name": "late"}))?;
    let theirs = served(&k2)?.entries(&m2).to_vec();
    wait_for(Duration::from_secs(20), || {
        Ok((served(&k1)?.entries(&m2) == theirs.as_slice()).then_some(()))
    })?;
    ensure!(served(&k1)?.entries(&KeyPath::root()).len() == 4);
    let metric = format!("keyd_peer_healthy{{peer=\"{}\"}} 1", k2.url());
    let (_, m) = k1.anonymous()?.get("/metrics")?;
    ensure!(
        String::from_utf8_lossy(&m).contains(&metric),
        "keyd 2 is healthy"
    );
    Ok(())
}

/// The gauges operators alert on: entries per log, the branch head's age, the server
/// certificate's end, the seal token answering, and the process's own figures.
#[test]
fn metrics_carry_the_gauges_operators_alert_on() -> Result<()> {
    let c = Cluster::start()?;
    let (_, body) = c.anonymous()?.get("/metrics")?;
    let text = String::from_utf8(body)?;
    let value = |name: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("{name} in /metrics:\n{text}"))
    };
    let (_, chain) = c.anonymous()?.get("/v1/chain")?;
    let chain = keyd::chain::verify_file(&chain)?;
    let root = keyd::derive::KeyPath::root();
    let branch: keyd::derive::KeyPath = "m/1'".parse()?;
    ensure!(value("keyd_chain_entries{log=\"m\"}")? as usize == chain.entries(&root).len());
    ensure!(value("keyd_chain_entries{log=\"m/1'\"}")? as usize == chain.entries(&branch).len());
    ensure!(value("keyd_branch_head_age_seconds")? < 120.0);
    let now = keyd::unix_now() as f64;
    let not_after = value("keyd_server_certificate_not_after_seconds")?;
    ensure!(
        not_after > now && not_after < now + 31.0 * 86_400.0,
        "{not_after}"
    );
    ensure!(value("keyd_seal_token_up")? == 1.0);
    ensure!(value("process_resident_memory_bytes")? > 1e6);
    ensure!(value("process_open_fds")? > 2.0);
    ensure!(value("process_start_time_seconds")? <= now);
    ensure!(text.contains("# EOF"), "OpenMetrics text ends with # EOF");
    Ok(())
}

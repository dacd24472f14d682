//! keyd replicas of one branch on a real 3-member etcd cluster (issue 18): each replica
//! has its own seal token and install key; a new replica is approved at a running one
//! (no root); every replica serves everything; changes are linearizable appends and
//! reach the other replicas through etcd's watch.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use crate::cluster::{Client, Cluster, keyctl};
use crate::etcd::{Etcd, Netns};

/// Replica `a` (init, ceremony issue, import: the group's first) and replica `b`
/// (init, approved at `a` with `keyctl replica add`, import: joins), both serving.
fn group(etcd: &Etcd, prefix: &str) -> Result<(Cluster, Cluster)> {
    let a = Cluster::start_with(&etcd.keyd_config("a", prefix))?;
    let mut b = a.bare_peer(&etcd.keyd_config("b", prefix))?;
    join(&a, &b)?;
    b.serve()?;
    Ok((a, b))
}

/// Replica `b` (configured, not yet initialised) joins `a`'s group: keyd init, approved
/// at `a` with `keyctl replica add`, keyd import.
fn join(a: &Cluster, b: &Cluster) -> Result<()> {
    let init = b.keyd(&["init"])?;
    let install = init
        .lines()
        .find_map(|l| l.strip_prefix("install public key: "))
        .context("keyd init printed no install key")?
        .to_owned();
    let bundle = b.dir.path().join("b.bundle");
    let added = keyctl(
        &[
            "--output",
            "json",
            "replica",
            "add",
            "b",
            "--install-key",
            &install,
            "--out",
            bundle.to_str().context("path")?,
            "--config",
            &a.admin_config()?,
        ],
        &[],
    )?;
    ensure!(added["replica"] == "b", "{added}");
    let joined = b.keyd(&[
        "import",
        bundle.to_str().context("path")?,
        "--expect-root",
        &a.fingerprint()?,
    ])?;
    ensure!(joined.contains("replica b joined the group"), "{joined}");
    Ok(())
}

/// The logs of a fetched chain summary: per log, its entries and its head's seq and
/// hash (not its age, which differs by the second it was fetched).
fn logs(summary: &serde_json::Value) -> Result<Vec<(String, u64, u64, String)>> {
    summary["logs"]
        .as_array()
        .context("no logs in the chain summary")?
        .iter()
        .map(|l| {
            Ok((
                l["log"].as_str().context("log")?.to_owned(),
                l["entries"].as_u64().context("entries")?,
                l["head"]["seq"].as_u64().context("head seq")?,
                l["head"]["hash"].as_str().context("head hash")?.to_owned(),
            ))
        })
        .collect()
}

/// Fetches and verifies the chain from both replicas (keyctl chain fetch) and checks
/// they hold the same logs: `a`'s summary.
fn same_logs(a: &Cluster, b: &Cluster, tag: &str) -> Result<serde_json::Value> {
    let ca = a.fetch_chain(&a.dir.path().join(format!("{tag}-a.cbor")))?;
    let cb = b.fetch_chain(&b.dir.path().join(format!("{tag}-b.cbor")))?;
    let (la, lb) = (logs(&ca)?, logs(&cb)?);
    ensure!(la == lb, "{la:?} / {lb:?}");
    Ok(ca)
}

/// Polls `f` until it is true or `within` passed: how long it took.
fn until(within: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if f()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// POSTs until the answer is not a conflict with the other replica's concurrent change
/// or the watch not yet having brought the node (both said, nothing written).
fn until_answered(
    admin: &Client,
    path: &str,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value)> {
    let start = Instant::now();
    loop {
        let (status, reply) = admin.post(path, body)?;
        if !matches!(status, 404 | 409) || start.elapsed() > Duration::from_secs(2) {
            return Ok((status, reply));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sign(node: &Client) -> Result<u16> {
    Ok(node.post("/v1/sign", &json!({"data": "aGk="}))?.0)
}

#[test]
fn replicas_serve_one_branch_and_follow_each_other() -> Result<()> {
    let etcd = Etcd::start(3)?;
    let (a, b) = group(&etcd, "/keyd/t1/")?;
    let admin_b = a.admin_at(&b.addr)?;
    // A node added and enrolled at replica a signs at replica b.
    let (web_a, _) = a.enrolled_node("web-1")?;
    let web_b = web_a.at(&b.addr);
    until(Duration::from_secs(2), || Ok(sign(&web_b)? == 200))?;
    // An enrollment token is single-use across the group: spent at b, refused at a.
    let (status, added) = admin_b.post("/v1/nodes", &json!({"name": "web-2"}))?;
    ensure!(status == 201, "{status} {added}");
    let token = added["token"].as_str().context("token")?;
    b.enroll(token)?;
    ensure!(
        a.enroll(token).is_err(),
        "a token spent at b enrolled again at a"
    );
    // A revocation at b refuses the node at a within one watch round-trip.
    let (status, body) = admin_b.post("/v1/nodes/web-1/revoke", &json!({"reason": "test"}))?;
    ensure!(status == 200, "{status} {body}");
    let took = until(Duration::from_secs(2), || Ok(sign(&web_a)? == 401))?;
    ensure!(
        took < Duration::from_secs(1),
        "revocation took {took:?} to reach a"
    );
    eprintln!("revocation at b in force at a after {took:?}");
    // Both replicas hold the same verified log.
    let ca = same_logs(&a, &b, "chain")?;
    ensure!(ca["revoked"].as_u64() >= Some(1), "{ca}");
    // The audit logs are per replica: b's names the revocation.
    let audit = admin_b.get_json("/v1/audit?since=0&limit=1000")?;
    ensure!(audit.to_string().contains("node.revoke"), "{audit}");
    // Health: b reports etcd up and the lag of a's heartbeats through the watch.
    until(Duration::from_secs(5), || {
        let (_, body) = b.anonymous()?.get("/metrics")?;
        let text = String::from_utf8_lossy(&body);
        Ok(text.contains("keyd_etcd_up 1")
            && text
                .lines()
                .any(|l| l.starts_with("keyd_replica_watch_lag_seconds ") && !l.ends_with(" 0.0")))
    })?;
    // The branch log records both replicas; removing b stops it.
    let list = keyctl(
        &[
            "--output",
            "json",
            "replica",
            "list",
            "--config",
            &a.admin_config()?,
        ],
        &[],
    )?;
    let names: Vec<&str> = list
        .as_array()
        .context("replica list")?
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    ensure!(names == ["a", "b"], "{list}");
    let (web3, _) = a.enrolled_node("web-3")?;
    let web3_b = web3.at(&b.addr);
    until(Duration::from_secs(2), || Ok(sign(&web3_b)? == 200))?;
    let removed = keyctl(
        &[
            "--output",
            "json",
            "replica",
            "remove",
            "b",
            "--config",
            &a.admin_config()?,
        ],
        &[],
    )?;
    ensure!(removed["removed_seq"].is_u64(), "{removed}");
    until(Duration::from_secs(2), || Ok(sign(&web3_b)? == 403))?;
    ensure!(b.anonymous()?.get("/readyz")?.0 == 503);
    ensure!(sign(&web3)? == 200, "replica a serves on");
    // Removed once: a second removal is refused, nothing written.
    let (status, body) = a.admin()?.post("/v1/admin/replicas/b/remove", &json!({}))?;
    ensure!(status == 404, "{status} {body}");
    Ok(())
}

#[test]
fn racing_replicas_never_write_one_seq_twice() -> Result<()> {
    let etcd = Etcd::start(3)?;
    let (a, b) = group(&etcd, "/keyd/t2/")?;
    let admins = [a.admin()?, a.admin_at(&b.addr)?];
    let before = a.fetch_chain(&a.dir.path().join("before.cbor"))?["entries"]
        .as_u64()
        .context("entries")?;
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = admins
            .iter()
            .enumerate()
            .map(|(r, admin)| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..20 {
                        let name = format!("r{r}-{i}");
                        let (status, body) = admin.post("/v1/nodes", &json!({"name": name}))?;
                        ensure!(
                            status == 201
                                || (status == 409 && body["error"]["code"] == "replica_conflict"),
                            "{status} {body}"
                        );
                        out.push((name, status));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("thread panicked")))
            .collect::<Result<Vec<_>>>()
    })?;
    let results: Vec<_> = results.into_iter().flatten().collect();
    let won: Vec<&String> = results
        .iter()
        .filter(|(_, s)| *s == 201)
        .map(|(n, _)| n)
        .collect();
    eprintln!(
        "{} of {} racing adds committed, the rest told of the conflict",
        won.len(),
        results.len()
    );
    ensure!(!won.is_empty());
    // Every acknowledged node is at both replicas, every refused one at neither, and
    // the log (fetched from either) verifies with one entry per seq.
    for admin in &admins {
        until(Duration::from_secs(2), || {
            Ok(admin.get(&format!("/v1/nodes/{}", won[won.len() - 1]))?.0 == 200)
        })?;
        for (name, status) in &results {
            let (got, _) = admin.get(&format!("/v1/nodes/{name}"))?;
            ensure!(
                (got == 200) == (*status == 201),
                "{name}: added {status}, shown {got}"
            );
        }
    }
    let ca = same_logs(&a, &b, "race")?;
    // Exactly the acknowledged adds are in the log, each once.
    let added = ca["entries"].as_u64().context("entries")? - before;
    ensure!(
        added > 0 && added % won.len() as u64 == 0 && added / won.len() as u64 <= 2,
        "{added} new entries for {} acknowledged adds",
        won.len()
    );
    Ok(())
}

#[test]
fn replica_and_etcd_leader_die_under_load_nothing_acknowledged_is_lost() -> Result<()> {
    let mut etcd = Etcd::start(3)?;
    let (mut a, b) = group(&etcd, "/keyd/t3/")?;
    let admin_a = a.admin()?;
    let admin_b = a.admin_at(&b.addr)?;
    let mut acked = Vec::new();
    let mut revoked = Vec::new();
    // A stream of adds, rekeys and revocations through both replicas (each change made
    // at the other replica than the node's add).
    for i in 0..10 {
        for (r, admin, other) in [(0, &admin_a, &admin_b), (1, &admin_b, &admin_a)] {
            let name = format!("n{r}-{i}");
            let (status, body) = admin.post("/v1/nodes", &json!({"name": name}))?;
            ensure!(status == 201 || status == 409, "{status} {body}");
            if status != 201 {
                continue;
            }
            acked.push(name.clone());
            let change = match i % 3 {
                1 => Some((format!("/v1/nodes/{name}/rekey"), json!({}))),
                2 => Some((
                    format!("/v1/nodes/{name}/revoke"),
                    json!({"reason": "stream"}),
                )),
                _ => None,
            };
            if let Some((path, body)) = change {
                let (status, reply) = until_answered(other, &path, &body)?;
                ensure!(status == 200, "{path}: {status} {reply}");
                if path.ends_with("revoke") {
                    revoked.push(name);
                }
            }
        }
    }
    // kill -9 replica a: b keeps serving, and takes changes.
    a.kill9()?;
    for i in 0..5 {
        let name = format!("after-kill-{i}");
        let (status, body) = admin_b.post("/v1/nodes", &json!({"name": name}))?;
        ensure!(status == 201, "{status} {body}");
        acked.push(name);
    }
    // Kill etcd's leader: appends pause (503 store_unavailable, or a slow answer) and
    // resume once a new leader is elected; nothing is written twice.
    let leader = etcd.leader()?;
    etcd.kill(leader)?;
    let mut i = 0;
    let resumed = until(Duration::from_secs(20), || {
        i += 1;
        let name = format!("after-leader-{i}");
        let (status, body) = admin_b.post("/v1/nodes", &json!({"name": name}))?;
        ensure!(
            status == 201 || (status == 503 && body["error"]["code"] == "store_unavailable"),
            "{status} {body}"
        );
        if status == 201 {
            acked.push(name);
        }
        Ok(status == 201)
    })?;
    eprintln!("appends resumed {resumed:?} after the etcd leader was killed");
    for name in &acked {
        let (got, _) = admin_b.get(&format!("/v1/nodes/{name}"))?;
        ensure!(got == 200, "acknowledged node {name} is lost ({got})");
    }
    for name in &revoked {
        let node = admin_b.get_json(&format!("/v1/nodes/{name}"))?;
        ensure!(
            node["status"]
                .as_str()
                .is_some_and(|s| s.contains("revoked")),
            "{node}"
        );
    }
    b.fetch_chain(&b.dir.path().join("after.cbor"))?;
    Ok(())
}

#[test]
fn a_replica_cut_off_from_quorum_refuses_changes_and_keeps_signing() -> Result<()> {
    let etcd = Etcd::start(3)?;
    let (a, b) = group(&etcd, "/keyd/t4/")?;
    let admin_b = a.admin_at(&b.addr)?;
    let (node, _) = a.enrolled_node("cut-1")?;
    let node_b = node.at(&b.addr);
    until(Duration::from_secs(2), || Ok(sign(&node_b)? == 200))?;
    // Two of three members stopped: no quorum anywhere.
    etcd.signal(1, "-STOP")?;
    etcd.signal(2, "-STOP")?;
    let (status, body) = admin_b.post("/v1/nodes", &json!({"name": "forked"}))?;
    ensure!(
        status == 503 && body["error"]["code"] == "store_unavailable",
        "{status} {body}"
    );
    // Key operations go on from the last verified state (the grace); /readyz says no.
    ensure!(sign(&node_b)? == 200);
    until(Duration::from_secs(10), || {
        Ok(b.anonymous()?.get("/readyz")?.0 == 503)
    })?;
    etcd.signal(1, "-CONT")?;
    etcd.signal(2, "-CONT")?;
    // Appends resume; a write not answered while cut off may land once the quorum is
    // back, so each attempt uses a new name.
    let mut last = None;
    let mut attempt = 0;
    let mut healed_name = String::new();
    let healed = until(Duration::from_secs(20), || {
        attempt += 1;
        healed_name = format!("after-heal-{attempt}");
        let (status, body) = admin_b.post("/v1/nodes", &json!({"name": healed_name}))?;
        last = Some((status, body));
        Ok(status == 201)
    });
    if healed.is_err() {
        bail!(
            "no change after the members came back: {last:?}\n{}",
            b.log()?
        );
    }
    // No fork: a write that was not answered may have been applied once the quorum came
    // back (the 503 says so), but then at both replicas, in one log.
    let admin_a = a.admin()?;
    until(Duration::from_secs(5), || {
        Ok(admin_a.get(&format!("/v1/nodes/{healed_name}"))?.0 == 200)
    })?;
    ensure!(admin_a.get("/v1/nodes/forked")?.0 == admin_b.get("/v1/nodes/forked")?.0);
    same_logs(&a, &b, "healed")?;
    Ok(())
}

#[test]
fn a_partitioned_replica_refuses_changes_while_the_others_go_on() -> Result<()> {
    // Member e0 and replica b in a network namespace of their own; e1, e2 and replica a
    // here. Cutting e0's raft traffic partitions b's member from the quorum, while this
    // test still reaches b.
    let ns = Netns::new()?;
    let etcd = Etcd::start_on(&[
        (ns.ns_ip.as_str(), Some(ns.name.as_str())),
        (ns.root_ip.as_str(), None),
        (ns.root_ip.as_str(), None),
    ])?;
    let prefix = "/keyd/t5/";
    let a = Cluster::start_with(&etcd.keyd_config_at("a", prefix, &[1, 2]))?;
    let mut b = a.bare_peer(&etcd.keyd_config_at("b", prefix, &[0]))?;
    let text = std::fs::read_to_string(b.config())?.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{0}:0\"\nserver_names = [\"{0}\"]", ns.ns_ip),
    );
    std::fs::write(b.config(), text)?;
    join(&a, &b)?;
    b.serve_in(Some(&ns.name))?;
    let admin_a = a.admin()?;
    let admin_b = a.admin_at(&b.addr)?;
    let (node, _) = a.enrolled_node("part-1")?;
    let node_b = node.at(&b.addr);
    until(Duration::from_secs(5), || Ok(sign(&node_b)? == 200))?;

    ns.cut(
        etcd.members[0].peer_port,
        &[etcd.members[1].peer_port, etcd.members[2].peer_port],
    )?;
    // (A change racing the cut itself may still land: the cut is the network's.)
    std::thread::sleep(Duration::from_secs(1));
    // b cannot reach a quorum: it refuses changes rather than fork the log …
    let mut refused = None;
    let cut_off = until(Duration::from_secs(15), || {
        let (status, body) = admin_b.post("/v1/nodes", &json!({"name": "from-b"}))?;
        ensure!(
            status != 201 || refused.is_none(),
            "b took a change while cut off: {body}"
        );
        let done = status == 503 && body["error"]["code"] == "store_unavailable";
        refused = Some((status, body));
        Ok(done)
    });
    if cut_off.is_err() {
        bail!("b was not refused while cut off: {refused:?}\n{}", b.log()?);
    }
    // … keeps serving key operations from its last verified state (the grace), and says
    // it is not ready.
    ensure!(sign(&node_b)? == 200);
    until(Duration::from_secs(10), || {
        Ok(b.anonymous()?.get("/readyz")?.0 == 503)
    })?;
    // The others go on: a (with the quorum) takes changes meanwhile.
    let (status, body) = admin_a.post("/v1/nodes", &json!({"name": "during-cut"}))?;
    ensure!(status == 201, "{status} {body}");

    ns.heal()?;
    // b catches up with what a committed, and takes changes again.
    until(Duration::from_secs(30), || {
        Ok(admin_b.get("/v1/nodes/during-cut")?.0 == 200)
    })?;
    let mut attempt = 0;
    until(Duration::from_secs(30), || {
        attempt += 1;
        let name = format!("after-heal-{attempt}");
        Ok(admin_b.post("/v1/nodes", &json!({"name": name}))?.0 == 201)
    })?;
    until(Duration::from_secs(10), || {
        Ok(b.anonymous()?.get("/readyz")?.0 == 200)
    })?;
    // One log: a write b could not get answered may have landed after the heal, but the
    // same at both replicas.
    until(Duration::from_secs(5), || {
        Ok(admin_a.get(&format!("/v1/nodes/after-heal-{attempt}"))?.0 == 200)
    })?;
    ensure!(admin_a.get("/v1/nodes/from-b")?.0 == admin_b.get("/v1/nodes/from-b")?.0);
    same_logs(&a, &b, "part")?;
    Ok(())
}

#[test]
fn replicas_reach_etcd_over_tls_with_client_certificates() -> Result<()> {
    let etcd = Etcd::start_tls()?;
    let (a, b) = group(&etcd, "/keyd/t6/")?;
    let (node, _) = a.enrolled_node("tls-1")?;
    until(Duration::from_secs(5), || {
        Ok(sign(&node.at(&b.addr))? == 200)
    })?;
    // Without its client certificate a replica is refused by etcd, and says where.
    let c = a.bare_peer(
        &etcd
            .keyd_config("c", "/keyd/t6/")
            .lines()
            .filter(|l| !l.starts_with("cert") && !l.starts_with("key"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )?;
    c.keyd(&["init"])?;
    let out = c
        .keyd_command()
        .args([
            "import",
            "/nonexistent.bundle",
            "--expect-root",
            &a.fingerprint()?,
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("etcd https://127.0.0.1")
            && err.contains("unavailable"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_replica_mirrors_a_long_peer_log_and_starts_again_from_etcd() -> Result<()> {
    let etcd = Etcd::start(3)?;
    let fast = "head_seconds = 1\npeer_pull_seconds = 1\n";
    // A keyd of m/1' on redb whose log outgrows one etcd transaction …
    let peer = Cluster::start_with(fast)?;
    let admin_p = peer.admin()?;
    for i in 0..80 {
        let (status, body) = admin_p.post("/v1/nodes", &json!({"name": format!("p{i}")}))?;
        ensure!(status == 201, "{status} {body}");
    }
    let peer_entries = logs(&peer.fetch_chain(&peer.dir.path().join("p.cbor"))?)?
        .into_iter()
        .find(|(l, ..)| l == "m/1'")
        .context("m/1'")?
        .1;
    ensure!(peer_entries > 150, "{peer_entries}");
    // … mirrored by a replica of m/2' (in several transactions, the head with the last).
    let mut a = peer.join(
        2,
        "dc2",
        &format!(
            "{fast}peers = [\"{}\"]\n{}",
            peer.url(),
            etcd.keyd_config("a", "/keyd/t7/")
        ),
    )?;
    let mirrored = |c: &Cluster| -> Result<u64> {
        Ok(logs(&c.fetch_chain(&c.dir.path().join("a.cbor"))?)?
            .into_iter()
            .find(|(l, ..)| l == "m/1'")
            .map_or(0, |l| l.1))
    };
    until(
        Duration::from_secs(30),
        || Ok(mirrored(&a)? == peer_entries),
    )?;
    // Restarted, it restores everything from etcd, the mirrored log included.
    a.kill9()?;
    a.serve()?;
    ensure!(mirrored(&a)? == peer_entries);
    Ok(())
}

//! keyd replicas of one branch on a real 3-member etcd cluster (issue 18): each replica
//! has its own seal token and install key; a new replica is approved at a running one
//! (no root); every replica serves everything; changes are linearizable appends and
//! reach the other replicas through etcd's watch.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use crate::cluster::{Client, Cluster, keyctl};
use crate::etcd::Etcd;

/// Replica `a` (init, ceremony issue, import: the group's first) and replica `b`
/// (init, approved at `a` with `keyctl replica add`, import: joins), both serving.
fn group(etcd: &Etcd, prefix: &str) -> Result<(Cluster, Cluster)> {
    let a = Cluster::start_with(&etcd.keyd_config("a", prefix))?;
    let mut b = a.bare_peer(&etcd.keyd_config("b", prefix))?;
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
    b.serve()?;
    Ok((a, b))
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
    let out = a.dir.path().join("chain-a.cbor");
    let (ca, cb) = (
        a.fetch_chain(&out)?,
        b.fetch_chain(&b.dir.path().join("chain-b.cbor"))?,
    );
    ensure!(
        logs(&ca)? == logs(&cb)?,
        "{:?} / {:?}",
        logs(&ca)?,
        logs(&cb)?
    );
    ensure!(ca["revoked"].as_u64() >= Some(1), "{ca}");
    // The audit logs are per replica: b's names the revocation.
    let audit = admin_b.get_json("/v1/audit?since=0&limit=1000")?;
    ensure!(audit.to_string().contains("node.revoke"), "{audit}");
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
    let ca = a.fetch_chain(&a.dir.path().join("race-a.cbor"))?;
    let cb = b.fetch_chain(&b.dir.path().join("race-b.cbor"))?;
    ensure!(logs(&ca)? == logs(&cb)?, "{ca} / {cb}");
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
    // A stream of adds and revocations through both replicas.
    for i in 0..10 {
        for (r, admin) in [(0, &admin_a), (1, &admin_b)] {
            let name = format!("n{r}-{i}");
            let (status, body) = admin.post("/v1/nodes", &json!({"name": name}))?;
            ensure!(status == 201 || status == 409, "{status} {body}");
            if status == 201 {
                acked.push(name);
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
    let mut last = None;
    let healed = until(Duration::from_secs(20), || {
        let (status, body) = admin_b.post("/v1/nodes", &json!({"name": "after-heal"}))?;
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
        Ok(admin_a.get("/v1/nodes/after-heal")?.0 == 200)
    })?;
    ensure!(admin_a.get("/v1/nodes/forked")?.0 == admin_b.get("/v1/nodes/forked")?.0);
    let ca = a.fetch_chain(&a.dir.path().join("healed-a.cbor"))?;
    let cb = b.fetch_chain(&b.dir.path().join("healed-b.cbor"))?;
    ensure!(
        logs(&ca)? == logs(&cb)?,
        "{:?} / {:?}",
        logs(&ca)?,
        logs(&cb)?
    );
    Ok(())
}

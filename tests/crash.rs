//! `kill -9` in the middle of enrollments, node additions, rekeys and revocations: after
//! a restart everything keyd acknowledged is there, and every change is all or nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use keyd::chain::{KeyKind, verify_file};
use keyd::derive::KeyPath;
use keyd::tls_key::TlsKey;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster};

/// What one worker saw acknowledged (2xx) before keyd died.
type Acked = Arc<Mutex<Vec<Value>>>;

/// Runs `op(i)` for i = 0, 1, ... until it fails (keyd killed) or `n` are done;
/// records each acknowledged answer.
fn worker(
    n: usize,
    acked: Acked,
    count: Arc<AtomicUsize>,
    op: impl Fn(usize) -> Result<Option<Value>> + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for i in 0..n {
            match op(i) {
                Ok(Some(v)) => {
                    acked.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                Ok(None) => {}
                Err(_) => return, // the connection died with keyd
            }
        }
    })
}

fn ok(status: u16, body: Value) -> Option<Value> {
    (200..300).contains(&status).then_some(body)
}

#[test]
fn kill_9_mid_operations_loses_nothing_acknowledged() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin()?;
    // Targets: nodes to rekey, to revoke, and tokens to redeem during the crash.
    let mut tokens = Vec::new();
    for i in 0..140 {
        let (status, added) = admin.post("/v1/nodes", &json!({"name": format!("t{i}")}))?;
        ensure!(status == 201, "{added}");
        tokens.push(added["token"].as_str().context("token")?.to_owned());
    }
    let count = Arc::new(AtomicUsize::new(0));
    let (adds, rekeys, revokes, enrolls): (Acked, Acked, Acked, Acked) = Default::default();
    // Four workers add nodes at once, so that changes commit in groups (several nodes
    // and their tokens in one transaction).
    let mut workers = Vec::new();
    for w in 0..4 {
        workers.push(worker(10_000, adds.clone(), count.clone(), {
            let admin = c.admin()?;
            move |i| {
                let (s, b) = admin.post("/v1/nodes", &json!({"name": format!("a{w}-{i}")}))?;
                Ok(ok(s, b))
            }
        }));
    }
    workers.extend([
        worker(10_000, rekeys.clone(), count.clone(), {
            let admin = c.admin()?;
            move |i| {
                let (s, b) = admin.post(&format!("/v1/nodes/t{}/rekey", i % 8), &json!({}))?;
                Ok(ok(s, b))
            }
        }),
        worker(60, revokes.clone(), count.clone(), {
            let admin = c.admin()?;
            move |i| {
                let name = format!("t{}", 10 + i);
                let (s, b) = admin.post(
                    &format!("/v1/nodes/{name}/revoke"),
                    &json!({"reason": "crash test"}),
                )?;
                Ok(ok(s, b).map(|_| json!(name)))
            }
        }),
        worker(70, enrolls.clone(), count.clone(), {
            let anon = c.anonymous()?;
            let tokens = tokens[70..].to_vec();
            move |i| {
                let key = TlsKey::generate()?;
                let (s, b) = anon.post(
                    "/v1/enroll",
                    &json!({"token": tokens[i], "csr": key.csr_pem()?}),
                )?;
                Ok(ok(s, b).map(|b| {
                    json!({"token": tokens[i], "certificate": b["certificate"],
                        "key": key.to_pem().as_str(), "path": b["path"]})
                }))
            }
        }),
    ]);
    // Kill once every kind of change has been acknowledged at least once and none of
    // the workers is done: requests of every kind are in flight.
    let len = |a: &Acked| a.lock().unwrap_or_else(|e| e.into_inner()).len();
    let started = std::time::Instant::now();
    loop {
        let n = [len(&adds), len(&rekeys), len(&revokes), len(&enrolls)];
        if n.iter().all(|&k| k >= 2) && count.load(Ordering::SeqCst) >= 20 {
            ensure!(
                n[2] < 60 && n[3] < 70,
                "the revocations or enrollments ran out before the kill: {n:?}"
            );
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no progress: {n:?}"
        );
        thread::sleep(Duration::from_millis(2));
    }
    c.kill9()?;
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("worker panicked"))?;
    }
    c.serve()?;

    let (_, bytes) = c.anonymous()?.get("/v1/chain")?;
    let chain = verify_file(&bytes)?;
    let state = &chain.state();
    let take = |a: &Acked| a.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (adds, rekeys, revokes, enrolls) =
        (take(&adds), take(&rekeys), take(&revokes), take(&enrolls));
    eprintln!(
        "acknowledged before the kill: {} adds, {} rekeys, {} revocations, {} enrollments",
        adds.len(),
        rekeys.len(),
        revokes.len(),
        enrolls.len()
    );
    ensure!(
        !adds.is_empty() && !rekeys.is_empty() && !revokes.is_empty() && !enrolls.is_empty(),
        "the crash came too early to test every kind of change"
    );

    // Every acknowledged node is certified, with its epoch 0, and its token still enrolls.
    for a in &adds {
        let path: KeyPath = a["path"].as_str().context("path")?.parse()?;
        ensure!(
            state.key(&path.epoch_key(0).context("epoch")?).is_some(),
            "{a}"
        );
    }
    // The last acknowledged adds came from groups committed just before the kill.
    for a in adds.iter().rev().take(4) {
        c.enroll(a["token"].as_str().context("token")?)?;
    }
    // Every acknowledged epoch is there.
    for r in &rekeys {
        let key: KeyPath = r["key"].as_str().context("key")?.parse()?;
        ensure!(state.key(&key).is_some(), "acknowledged rekey {key} lost");
    }
    // Every acknowledged revocation holds.
    for name in &revokes {
        let name = name.as_str().context("name")?;
        let (path, _) = state.find(name).context("revoked node")?;
        ensure!(
            !state.status_at(path, u64::MAX / 2).is_valid(),
            "{name} revived"
        );
    }
    // Every acknowledged enrollment's certificate still works, and its token stays spent.
    for e in &enrolls {
        let node = c.client(
            e["certificate"].as_str().context("cert")?,
            e["key"].as_str().context("key")?,
        )?;
        let (status, body) = node.post("/v1/sign", &json!({"data": "aGk="}))?;
        ensure!(status == 200 && body["path"].as_str().is_some(), "{body}");
        let csr = TlsKey::generate()?.csr_pem()?;
        let (status, _) = c
            .anonymous()?
            .post("/v1/enroll", &json!({"token": e["token"], "csr": csr}))?;
        ensure!(
            status == 401,
            "a spent token enrolled again after the restart"
        );
    }
    // All or nothing: every node in the chain has its epoch 0 (certify and epoch are one
    // transaction), and keyd goes on serving changes.
    for (path, record) in state.keys() {
        if let KeyKind::Node { epochs, .. } = &record.kind
            && path.depth() > 1
        {
            ensure!(
                epochs.first() == Some(&0),
                "{path} certified without its epoch 0"
            );
        }
    }
    let admin: Client = c.admin()?;
    let (status, body) = admin.post("/v1/nodes", &json!({"name": "after"}))?;
    ensure!(status == 201, "{body}");
    Ok(())
}

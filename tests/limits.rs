//! Limits on what anonymous callers cost keyd: connections per client address
//! (`max_connections_per_ip`), and `GET /v1/chain` pages encoded once per chain state.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::cluster::Cluster;

/// One `GET /healthz` on a fresh connection that asks to be closed: the raw answer.
fn healthz_once(c: &Cluster) -> Result<String> {
    let mut tls = c.raw_tls()?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: keyd\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The attack: one address opens connections and holds them (TLS done, no request).
/// Past the limit its connections are answered 429 and closed; nodes elsewhere are
/// unaffected (here: the same address once the holder lets go); a closed connection
/// frees its place at once.
#[test]
fn one_address_cannot_hold_more_than_its_share_of_connections() -> Result<()> {
    let c = Cluster::start_with("max_connections_per_ip = 4\nbody_timeout_seconds = 60\n")?;
    let answer = healthz_once(&c)?;
    ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut held: Vec<_> = (0..4).map(|_| c.raw_tls()).collect::<Result<_>>()?;
    let answer = healthz_once(&c)?;
    ensure!(
        answer.starts_with("HTTP/1.1 429") && answer.contains("too_many_connections"),
        "the fifth connection: {answer}"
    );
    // The refused connection was closed by keyd (read_to_end returned), and a held one
    // still works.
    let first = &mut held[0];
    first.write_all(b"GET /healthz HTTP/1.1\r\nHost: keyd\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    let _ = first.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    ensure!(
        answer.starts_with("HTTP/1.1 200"),
        "a held connection: {answer}"
    );
    held.remove(0);

    // That connection closed: its place is free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = healthz_once(&c)?;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        ensure!(Instant::now() < deadline, "no place freed: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    Ok(())
}

/// `keyd_chain_pages_total{source="..."}` from `/metrics`.
fn pages(c: &Cluster, source: &str) -> Result<u64> {
    let (_, body) = c.anonymous()?.get("/metrics")?;
    let text = String::from_utf8(body)?;
    let want = format!("keyd_chain_pages_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .context("keyd_chain_pages_total in /metrics")
}

/// Repeated anonymous pulls of the same positions are answered from bytes encoded once;
/// a change to the chain is served at once (the cache never answers with an old chain).
#[test]
fn chain_pages_are_encoded_once_per_chain_state() -> Result<()> {
    let c = Cluster::start_with("head_seconds = 3600\n")?;
    let anon = c.anonymous()?;
    let first = anon.get_reply("/v1/chain")?;
    ensure!(first.status == 200);
    let (cached, encoded) = (pages(&c, "cache")?, pages(&c, "encoded")?);
    for _ in 0..5 {
        let again = anon.get_reply("/v1/chain")?;
        ensure!(again.body == first.body, "a cached page is the same page");
        ensure!(again.header("x-keyd-chain-complete") == "true");
    }
    ensure!(
        pages(&c, "cache")? == cached + 5,
        "five pulls from the cache"
    );
    ensure!(pages(&c, "encoded")? == encoded, "none encoded again");

    // The chain changes (a node is added): the next pull has it.
    let (status, v) = c.admin()?.post("/v1/nodes", &json!({"name": "web"}))?;
    ensure!(status == 201, "{v}");
    let after = anon.get_reply("/v1/chain")?;
    ensure!(
        after.body.len() > first.body.len(),
        "the new entry is served"
    );
    let len = |r: &crate::cluster::Reply| r.header("x-keyd-chain-length").parse::<u64>().ok();
    ensure!(
        len(&after) > len(&first),
        "{:?} {:?}",
        len(&after),
        len(&first)
    );
    ensure!(
        pages(&c, "encoded")? == encoded + 1,
        "encoded once for the new state"
    );
    Ok(())
}

//! `keyd serve`: the store checked against the mark on the seal token, the service
//! loaded, the HTTPS server and the background work.

use std::io::Write;

use anyhow::{Context, Result, bail};
use keyd::chain::{Chain, KeySet};
use keyd::config::Config;
use keyd::derive::KeyPath;
use keyd::hsm::Hsm;
use keyd::service::Service;

use super::provision::unseal_branch;

/// Checks the store against the mark on the seal token (the latest head this keyd
/// signed): the store's branch log must hold that entry, or the store was rolled back
/// or replaced. Without a mark (a store imported before marks), the current head
/// becomes the mark.
/// Whether `chain`'s log `branch` holds the entry `mark` names.
fn holds(chain: &Chain, branch: &KeyPath, mark: &keyd::chain::Head) -> bool {
    chain.entry_hash(branch, mark.seq) == Some(mark.hash)
}

fn check_mark(
    hsm: &Hsm,
    chain: &Chain,
    branch: &KeyPath,
    key: &ed25519_dalek::VerifyingKey,
    retired: Option<&keyd::service::Retired>,
) -> Result<()> {
    let mut marks = Vec::new();
    for bytes in hsm.read_marks()? {
        let mark: keyd::chain::Head = keyd::chain::decode_exact(&bytes, 1024)
            .map_err(|e| anyhow::anyhow!("the mark on the seal token does not decode: {e}"))?;
        // A root rekey stopped between its swap and the new mark: the mark is the old
        // tree's last head, which the kept old chain must hold; the current head
        // becomes the mark.
        if let Some(old) = retired
            && old
                .chain
                .state()
                .key(branch)
                .and_then(|r| r.keys.verifying_key())
                .is_some_and(|k| mark.log == *branch && mark.verify(&k))
            && holds(&old.chain, branch, &mark)
        {
            let head = chain.head(branch).context("no head of the branch log")?;
            hsm.write_mark(&keyd::chain::cbor_bytes(head))?;
            return Ok(());
        }
        if mark.log != *branch || !mark.verify(key) {
            bail!(
                "the mark on the seal token is not a head signed by this keyd's branch {branch} (it names log {}): this seal token belongs to another keyd",
                mark.log
            );
        }
        marks.push(mark);
    }
    let Some(mark) = marks.into_iter().max_by_key(|m| (m.seq, m.signed_at)) else {
        let head = chain.head(branch).context("no head of the branch log")?;
        hsm.write_mark(&keyd::chain::cbor_bytes(head))?;
        tracing::warn!(log = %branch, seq = head.seq, "no mark on the seal token: the current branch head is now the mark");
        return Ok(());
    };
    let len = chain.log_len(branch);
    if !holds(chain, branch, &mark) {
        bail!(
            "the store was rolled back or replaced: this keyd signed a head of its branch log {branch} at seq {} (signed at {}), but the store's branch log ends at seq {}{}; keyd refuses to serve from it (restore the latest copy of {}, or rebuild the branch from the root and the logs)",
            mark.seq,
            keyd::rfc3339(mark.signed_at),
            len.saturating_sub(1),
            if len > mark.seq {
                " with another entry at that seq"
            } else {
                ""
            },
            "the data directory"
        );
    }
    Ok(())
}

fn load_service(config: Config) -> Result<(Service, Hsm)> {
    let (store, name, path, branch, hsm) = unseal_branch(&config)?;
    let started = std::time::Instant::now();
    let chain = keyd::service::restore_serving(&store).context("the stored chain")?;
    tracing::info!(
        entries = chain.len(),
        millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "chain restored"
    );
    let certified = chain.state().key(&path).map(|r| r.keys);
    if certified != Some(KeySet::from(&branch.public_keys())) {
        bail!("the unsealed branch secret is not the branch the stored chain certifies");
    }
    let retired = super::root_rekey::load_retired(&store, &hsm, &path)?;
    check_mark(
        &hsm,
        &chain,
        &path,
        &branch.public_keys().ed25519,
        retired.as_ref(),
    )?;
    let mut svc = Service::new(store, config, name, path, branch, chain)?;
    if let Some(retired) = retired {
        tracing::info!(
            entries = retired.chain.len(),
            "the previous root's tree is kept for decryption until keyd retire-root"
        );
        svc = svc.keep_retired(retired)?;
    }
    if let Some(e) = svc.branch_revoked() {
        tracing::error!(error = %e, "serving the chain only");
    }
    Ok((svc, hsm))
}

/// `keyd serve`: prints where it listens (`keyd listening on https://ADDR`, or with
/// `--output json` `{"listening": "https://ADDR"}`), then serves until stopped.
pub fn serve(config: Config, output: super::report::Output) -> Result<()> {
    // Log lines are written by their own thread; dropping the guard (when serve returns)
    // writes what is left.
    let _log = init_tracing(config.log_json);
    let (listen, workers) = (config.listen, config.workers);
    let (max_connections, tls_handshake, head_timeout) = (
        config.max_connections,
        config.tls_handshake,
        config.body_timeout,
    );
    let per_ip = keyd::api::PerIp::new(config.max_connections_per_ip);
    // The address first: a port already taken is said before the token is touched.
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (svc, hsm) = load_service(config)?;
    let tls = keyd::tls::server_config(svc.ca().clone(), svc.config().server_names.clone())?;
    let addr = listener.local_addr()?;
    let data = actix_web::web::Data::new(svc);
    background(&data, hsm);
    let svc = data.clone();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(keyd::api::observe))
            .configure(keyd::api::routes)
    })
    .on_connect(keyd::api::on_connect(per_ip))
    .workers(workers)
    .max_connections(max_connections)
    .tls_handshake_timeout(tls_handshake)
    // The request head has the body's deadline too.
    .client_request_timeout(head_timeout)
    .listen_rustls_0_23(listener, tls)?;
    match output {
        super::report::Output::Json => {
            println!(
                "{}",
                serde_json::json!({"listening": format!("https://{addr}")})
            );
        }
        super::report::Output::Text => println!("keyd listening on https://{addr}"),
    }
    std::io::stdout().flush()?;
    actix_rt::System::new().block_on(server.run())?;
    // Stopped (SIGTERM, SIGINT): the counts of the last seconds go to the audit log.
    svc.flush_audit(true)?;
    Ok(())
}

/// How often expired enrollment tokens are removed.
const TOKEN_PURGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How often the audit log's counts of finished seconds are written.
const AUDIT_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// How soon a replica tries again to apply a change it could not read from etcd.
const FOLLOW_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// How often a replica checks that etcd answers a quorum read.
const ETCD_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the mark on the seal token is brought up to the latest branch head.
const MARK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Every this many mark intervals with nothing to write, the seal token is read.
const SEAL_PROBE: u64 = 10;

/// The work keyd does besides answering requests, each on its own thread so that key
/// operations never wait for it: writing the audit log's counts, rotating the nodes the
/// policy puts on a schedule, re-signing the branch head at its interval, keeping
/// the mark on the seal token at the latest head it signed, and pulling each peer's
/// logs at the pull interval.
fn background(svc: &actix_web::web::Data<Service>, hsm: Hsm) {
    // Expired enrollment tokens are refused when presented; removing them is
    // housekeeping, done once keyd serves (a scan of every token row: seconds with a
    // million of them) and every day after.
    let s = svc.clone();
    std::thread::spawn(move || {
        loop {
            match s.purge_expired_tokens() {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "expired enrollment tokens removed"),
                Err(e) => tracing::error!(error = %e, "removing expired enrollment tokens"),
            }
            std::thread::sleep(TOKEN_PURGE);
        }
    });
    let s = svc.clone();
    std::thread::spawn(move || {
        let metrics = keyd::api::metrics();
        metrics.seal_token(true);
        let mut marked = s.own_head().map(|h| h.seq);
        for tick in 1u64.. {
            std::thread::sleep(MARK_INTERVAL);
            // Every SEAL_PROBE ticks without a mark to write, a read tells whether the
            // seal token still answers (keyd_seal_token_up).
            let head = s.own_head();
            let Some(head) = head.filter(|h| marked != Some(h.seq)) else {
                if tick % SEAL_PROBE == 0 {
                    let up = hsm.read_marks().is_ok();
                    if !up {
                        tracing::error!("the seal token does not answer");
                    }
                    metrics.seal_token(up);
                }
                continue;
            };
            match hsm.write_mark(&keyd::chain::cbor_bytes(&head)) {
                Ok(()) => {
                    marked = Some(head.seq);
                    metrics.seal_token(true);
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not write the mark on the seal token");
                    metrics.seal_token(false);
                }
            }
        }
    });
    let s = svc.clone();
    std::thread::spawn(move || {
        // Trusted clusters' chains, kept in sync (a revocation there is in force here
        // within one interval).
        loop {
            std::thread::sleep(s.config().trust_sync_interval);
            s.sync_trusted();
        }
    });
    let s = svc.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(AUDIT_FLUSH);
            if let Err(e) = s.flush_audit(false) {
                tracing::error!(error = %e, "could not write the audit log; its counts are kept for the next try");
                keyd::api::metrics().error("audit_write");
            }
            super::backup::answer_requests(&s);
        }
    });
    let s = svc.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(s.config().rotation_check);
            match s.rotate_due() {
                Ok(keys) if !keys.is_empty() => {
                    tracing::info!(rotated = keys.len(), "scheduled rotation");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "scheduled rotation failed"),
            }
        }
    });
    let s = svc.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(s.config().head_interval);
            if let Err(e) = s.refresh_head() {
                tracing::error!(error = %e, "could not re-sign the branch head");
            }
        }
    });
    if let Some(changes) = svc.watch() {
        // A replica: what the others commit, in force here within a watch round-trip.
        let s = svc.clone();
        std::thread::spawn(move || {
            // What changed and is not yet applied: a failed reload (an etcd timeout) is
            // tried again until it succeeds, so no change made elsewhere is skipped.
            let mut pending: Option<std::collections::BTreeSet<String>> = None;
            loop {
                let wait = if pending.is_some() {
                    FOLLOW_RETRY
                } else {
                    std::time::Duration::from_secs(3600)
                };
                match changes.recv_timeout(wait) {
                    Ok(tables) => {
                        let set = pending.get_or_insert_with(Default::default);
                        if tables.is_empty() {
                            set.insert(String::new()); // everything
                        }
                        set.extend(tables);
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let Some(set) = pending.take() else { continue };
                let tables: Vec<String> = if set.contains("") {
                    Vec::new()
                } else {
                    set.iter().cloned().collect()
                };
                let started = std::time::Instant::now();
                match s.follow(&tables) {
                    Ok(()) => keyd::api::metrics().watch_applied(started.elapsed()),
                    Err(e) => {
                        tracing::error!(error = %e, ?tables, "replica: could not apply a change made at another replica; trying again");
                        pending = Some(set);
                    }
                }
            }
        });
        let s = svc.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(ETCD_PROBE);
                let up = s.ping_store();
                if let Err(e) = &up {
                    tracing::warn!(error = %e, "replica: etcd does not answer");
                }
                if let Some(health) = s.store_health() {
                    keyd::api::metrics().etcd(up.is_ok(), &health);
                }
            }
        });
    }
    for url in svc.config().peers.clone() {
        let s = svc.clone();
        std::thread::spawn(move || {
            let mut peer = keyd::peers::Peer::new(&url);
            loop {
                let now = keyd::service::unix_now();
                match peer.pull(&s) {
                    Ok(got) => {
                        if got.new_entries > 0 {
                            tracing::info!(peer = %url, new_entries = got.new_entries, "peer: logs pulled");
                        }
                        keyd::api::metrics().peer_pull(&url, true, now);
                    }
                    Err(e) => {
                        tracing::warn!(peer = %url, error = %e, "peer: pull refused or failed; local state unchanged");
                        keyd::api::metrics().peer_pull(&url, false, now);
                    }
                }
                s.wait_pull(s.config().peer_pull_interval);
            }
        });
    }
}

/// Logs to stderr through a writer thread, so that a request does not wait for the
/// write (never lossy: when the thread falls behind, requests wait rather than a line
/// being dropped).
fn init_tracing(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KEYD_LOG").unwrap_or_else(|_| "info".into());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("keyd-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

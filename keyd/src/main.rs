//! `keyd`: the keyd daemon. `keyd init`, `keyd import BUNDLE`, `keyd serve`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use keyd::bundle::{BranchBundle, InstallKey};
use keyd::chain::{Anchor, Body, Chain, KeySet, Statement};
use keyd::config::Config;
use keyd::derive::{KeyPath, NodeSecret};
use keyd::hsm::Hsm;
use keyd::identity::Ca;
use keyd::service::Service;
use keyd::store::{Store, key};
use zeroize::{Zeroize, Zeroizing};

/// keyd: hierarchical key management — the daemon.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file (see keyd.example.toml).
    #[arg(long, global = true, default_value = "keyd.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the store, the install key pair (prints its public key for `keyctl
    /// ceremony issue --to`) and the AES-256 seal key on the seal token.
    Init,
    /// Load the branch bundle from `keyctl ceremony issue`: seal the branch secret with
    /// the seal token, store the chain, write ca.pem and the first admin credential.
    Import {
        /// The bundle file.
        bundle: PathBuf,
        /// The cluster's root fingerprint (64 hex digits, from the ceremony's
        /// root.json); instead of `root_fingerprint` in keyd.toml. A bundle of any other
        /// root is refused.
        #[arg(long, value_name = "FINGERPRINT")]
        expect_root: Option<String>,
    },
    /// Serve the REST API over HTTPS with client certificates.
    Serve,
    /// Admin credentials, offline (with `keyd serve` stopped).
    Admin {
        #[command(subcommand)]
        command: AdminCmd,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Issue a new admin credential through the seal token: for another operator, or
    /// when every admin certificate has expired (break-glass). Writes OUT/NAME.pem and
    /// OUT/NAME.key (0600); refuses to overwrite.
    Issue {
        /// The admin's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// Directory for the credential (created 0700 when missing).
        #[arg(long)]
        out: PathBuf,
    },
}

const INSTALL_AAD: &[u8] = b"keyd/v1/install-key";

fn branch_aad(path: &KeyPath) -> Vec<u8> {
    format!("keyd/v1/branch-secret {path}").into_bytes()
}

fn main() {
    let cli = Cli::parse();
    // keyd holds the branch secret and every key derived from it: never in a core dump.
    if let Err(e) = keyd::disable_core_dumps() {
        eprintln!("keyd: error: cannot disable core dumps: {e}");
        std::process::exit(1);
    }
    if let Err(e) = run(cli) {
        eprintln!("keyd: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Cmd::Init => init(&config),
        Cmd::Import {
            bundle,
            expect_root,
        } => import(&config, &bundle, expect_root.as_deref()),
        Cmd::Serve => serve(config),
        Cmd::Admin {
            command: AdminCmd::Issue { name, out },
        } => issue_admin(&config, &name, &out),
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    keyd::sync_dir(path)
        .with_context(|| format!("cannot sync the directory of {}", path.display()))?;
    Ok(())
}

fn init(config: &Config) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let hsm = Hsm::open(&config.seal_hsm)?;
    let db = config.db_path();
    let store = Store::create(&db)?;
    let mut generated = false;
    let done = (|| -> Result<[u8; 32]> {
        hsm.generate_seal_key()?;
        generated = true;
        let install = InstallKey::generate();
        let sealed = hsm.seal(INSTALL_AAD, install.danger_secret())?;
        store.set_meta(&[
            (key::INSTALL_SEALED, &sealed),
            (key::INSTALL_PUBLIC, &install.public()),
        ])?;
        // The row integrity key, sealed beside the install key.
        store.unlock(&hsm)?;
        Ok(install.public())
    })();
    match done {
        Ok(public) => {
            println!("keyd initialised: {}", db.display());
            println!("install public key: {}", hex::encode(public));
            println!(
                "next: keyctl ceremony issue … --to {} --out BUNDLE, then keyd import BUNDLE",
                hex::encode(public)
            );
            Ok(())
        }
        Err(e) => {
            // Leave nothing behind: no store, no seal key (nothing is sealed under it).
            drop(store);
            let _ = std::fs::remove_file(&db);
            // Only a key this run made: an existing one may seal another store.
            if generated && let Err(undo) = hsm.danger_destroy_seal_key() {
                eprintln!("keyd: could not remove the new seal key: {undo}");
            }
            Err(e)
        }
    }
}

fn unseal_install(store: &Store, hsm: &Hsm) -> Result<InstallKey> {
    let sealed = store
        .meta(key::INSTALL_SEALED)?
        .context("the store has no install key; run keyd init")?;
    let secret = hsm.unseal(INSTALL_AAD, &sealed)?;
    let bytes: [u8; 32] = secret.as_slice().try_into().context("install key length")?;
    let bytes = Zeroizing::new(bytes);
    Ok(InstallKey::from_secret(&bytes)?)
}

fn import(config: &Config, bundle_file: &Path, expect_root: Option<&str>) -> Result<()> {
    let expected = match (expect_root, &config.root_fingerprint) {
        (Some(f), _) => {
            keyd::config::check_fingerprint(f).map_err(|m| anyhow::anyhow!("--expect-root: {m}"))?
        }
        (None, Some(f)) => f.clone(),
        (None, None) => bail!(
            "give the cluster's root fingerprint (from the ceremony's root.json) with --expect-root FINGERPRINT or root_fingerprint in keyd.toml: keyd imports a bundle only of the root it expects"
        ),
    };
    let store = Store::open(&config.db_path())?;
    if store.meta(key::BRANCH_SEALED)?.is_some() {
        bail!("this keyd already holds a branch; a keyd instance serves one branch");
    }
    let hsm = Hsm::open(&config.seal_hsm)?;
    let install = unseal_install(&store, &hsm)?;
    store.unlock(&hsm)?;
    let bytes = std::fs::read(bundle_file)
        .with_context(|| format!("cannot read {}", bundle_file.display()))?;
    let bundle = BranchBundle::from_cbor(&bytes)?;
    let (branch, mut chain) = bundle.open(&install)?;
    let carried = chain
        .state()
        .root_keys()
        .map(|k| keyd::chain::fingerprint(&k.ed25519))
        .context("the bundle's chain has no root")?;
    if carried != expected {
        bail!(
            "the bundle was issued from root {carried}, not from the expected root {expected}: refused (check the bundle and the fingerprint in root.json)"
        );
    }
    open_branch_log(&mut chain, &bundle.path, &branch)?;
    let mut secret = Zeroizing::new([0u8; 64]);
    secret[..32].copy_from_slice(branch.danger_key());
    secret[32..].copy_from_slice(branch.danger_chain_code());
    let sealed = hsm.seal(&branch_aad(&bundle.path), secret.as_ref())?;
    let ca = Ca::from_branch(&branch.material(), &bundle.name, &bundle.path)?;
    let (admin_cert, admin_key) =
        keyd::service::credentials::issue_admin(&store, &ca, "admin", config.client_cert_seconds)?;
    let admin_cert = admin_cert.pem;
    // The files are written under temporary names and moved into place, then the store
    // takes the branch in one transaction; if that fails, the files go again: a failure
    // leaves no half-imported keyd behind.
    let dir = &config.data_dir;
    let files = [
        ("ca.pem", ca.cert_pem().as_bytes(), 0o644),
        ("admin.pem", admin_cert.as_bytes(), 0o600),
        ("admin.key", admin_key.as_bytes(), 0o600),
    ];
    for (name, _, _) in &files {
        if dir.join(name).exists() {
            bail!(
                "{} exists already; remove it first",
                dir.join(name).display()
            );
        }
    }
    let staged: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|(name, _, _)| (dir.join(format!(".{name}.new")), dir.join(name)))
        .collect();
    let written = files
        .iter()
        .zip(&staged)
        .try_for_each(|((_, contents, mode), (tmp, _))| {
            let _ = std::fs::remove_file(tmp);
            write_file(tmp, contents, *mode)
        })
        .and_then(|()| {
            staged.iter().try_for_each(|(tmp, path)| {
                std::fs::rename(tmp, path)
                    .and_then(|()| keyd::sync_dir(path))
                    .with_context(|| format!("cannot move {} into place", path.display()))
            })
        })
        .and_then(|()| {
            let root = KeyPath::root();
            let entries: Vec<_> = [&root, &bundle.path]
                .into_iter()
                .flat_map(|l| chain.entries(l).iter().cloned())
                .collect();
            let heads: Vec<_> = [&root, &bundle.path]
                .into_iter()
                .filter_map(|l| chain.head(l))
                .collect();
            Ok(store.import(
                &entries,
                &heads,
                &[
                    (key::BRANCH_PATH, bundle.path.to_string().as_bytes()),
                    (key::BRANCH_NAME, bundle.name.as_bytes()),
                    (key::BRANCH_SEALED, &sealed),
                ],
            )?)
        });
    if let Err(e) = written {
        for (tmp, path) in &staged {
            let _ = std::fs::remove_file(tmp);
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    let head = chain
        .head(&bundle.path)
        .context("the branch log has no head")?;
    hsm.write_mark(&keyd::chain::cbor_bytes(head))?;
    println!(
        "branch {} ({}) of root {expected} imported; root log of {} entries and branch log {} stored",
        bundle.path,
        bundle.name,
        chain.entries(&KeyPath::root()).len(),
        bundle.path
    );
    println!("CA certificate:   {}", dir.join("ca.pem").display());
    println!(
        "admin credential: {} and {}",
        dir.join("admin.pem").display(),
        dir.join("admin.key").display()
    );
    Ok(())
}

/// Opens the branch's log: its anchor to the root-log entry that certified the branch,
/// signed by the branch key, and a head.
fn open_branch_log(chain: &mut Chain, path: &KeyPath, branch: &NodeSecret) -> Result<()> {
    let (root_seq, root_entry) = chain
        .entries(&KeyPath::root())
        .iter()
        .find(|e| matches!(&e.statement.body, Body::Certify(c) if c.path == *path))
        .map(|e| (e.seq, e.hash()))
        .with_context(|| format!("the bundle's root log does not certify {path}"))?;
    let material = branch.material();
    let now = keyd::service::unix_now();
    let anchor = Statement::sign(
        Body::Anchor(Anchor {
            root_seq,
            root_entry,
        }),
        path.clone(),
        now,
        material.signing_key(),
    );
    chain.append(path, anchor, now)?;
    chain.sign_head(path, material.signing_key(), now)?;
    Ok(())
}

/// The imported branch, unsealed through the seal token: the store, the branch name,
/// path and secret, and the token.
fn unseal_branch(config: &Config) -> Result<(Store, String, KeyPath, NodeSecret, Hsm)> {
    let store = Store::open(&config.db_path())?;
    let hsm = Hsm::open(&config.seal_hsm)?;
    let path: KeyPath = String::from_utf8(
        store
            .meta(key::BRANCH_PATH)?
            .context("no branch imported; run keyd import BUNDLE")?,
    )?
    .parse()?;
    let name = String::from_utf8(
        store
            .meta(key::BRANCH_NAME)?
            .context("branch name missing")?,
    )?;
    let sealed = store
        .meta(key::BRANCH_SEALED)?
        .context("branch secret missing")?;
    let secret = hsm.unseal(&branch_aad(&path), &sealed)?;
    store.unlock(&hsm)?;
    if secret.len() != 64 {
        bail!("the stored branch secret has the wrong length");
    }
    let mut k = [0u8; 32];
    let mut c = [0u8; 32];
    k.copy_from_slice(&secret[..32]);
    c.copy_from_slice(&secret[32..]);
    let branch = NodeSecret::danger_from_parts(k, c);
    k.zeroize();
    c.zeroize();
    Ok((store, name, path, branch, hsm))
}

fn issue_admin(config: &Config, name: &str, out: &Path) -> Result<()> {
    keyd::chain::check_name(name).map_err(|e| anyhow::anyhow!("admin name {name:?}: {e}"))?;
    let (store, branch_name, path, branch, _) = unseal_branch(config)?;
    if store
        .revoked_admins()?
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        bail!("admin {name} was revoked; a revoked name is never issued again: choose another");
    }
    let ca = Ca::from_branch(&branch.material(), &branch_name, &path)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let (cert_file, key_file) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
    );
    if cert_file.exists() || key_file.exists() {
        bail!(
            "{} or {} exists already; choose another --out or remove them",
            cert_file.display(),
            key_file.display()
        );
    }
    // A new credential generation for the name: every earlier credential of it ends
    // (only once the files can be written).
    let (cert, key) =
        keyd::service::credentials::issue_admin(&store, &ca, name, config.client_cert_seconds)?;
    let cert = cert.pem;
    write_file(&key_file, key.as_bytes(), 0o600)?;
    write_file(&cert_file, cert.as_bytes(), 0o600)?;
    println!(
        "admin credential for {name}: {} and {} (valid {} s; renew with keyctl renew)",
        cert_file.display(),
        key_file.display(),
        config.client_cert_seconds
    );
    Ok(())
}

/// Checks the store against the mark on the seal token (the latest head this keyd
/// signed): the store's branch log must hold that entry, or the store was rolled back
/// or replaced. Without a mark (a store imported before marks), the current head
/// becomes the mark.
fn check_mark(
    hsm: &Hsm,
    chain: &Chain,
    branch: &KeyPath,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<()> {
    let mut marks = Vec::new();
    for bytes in hsm.read_marks()? {
        let mark: keyd::chain::Head = keyd::chain::decode_exact(&bytes, 1024)
            .map_err(|e| anyhow::anyhow!("the mark on the seal token does not decode: {e}"))?;
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
    let entries = chain.entries(branch);
    let held = usize::try_from(mark.seq)
        .ok()
        .and_then(|i| entries.get(i))
        .is_some_and(|e| e.hash() == mark.hash);
    if !held {
        bail!(
            "the store was rolled back or replaced: this keyd signed a head of its branch log {branch} at seq {} (signed at {}), but the store's branch log ends at seq {}{}; keyd refuses to serve from it (restore the latest copy of {}, or rebuild the branch from the root and the logs)",
            mark.seq,
            mark.signed_at,
            entries.len().saturating_sub(1),
            if entries.len() as u64 > mark.seq {
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
    let chain = keyd::service::restore_chain(&store).context("the stored chain")?;
    tracing::info!(
        entries = chain.len(),
        millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "chain restored"
    );
    let certified = chain.state().key(&path).map(|r| r.keys);
    if certified != Some(KeySet::from(&branch.public_keys())) {
        bail!("the unsealed branch secret is not the branch the stored chain certifies");
    }
    check_mark(&hsm, &chain, &path, &branch.public_keys().ed25519)?;
    let svc = Service::new(store, config, name, path, branch, chain)?;
    let purged = svc.purge_expired_tokens()?;
    if purged > 0 {
        tracing::info!(purged, "expired enrollment tokens removed");
    }
    if let Some(e) = svc.branch_revoked() {
        tracing::error!(error = %e, "serving the chain only");
    }
    Ok((svc, hsm))
}

fn serve(config: Config) -> Result<()> {
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
    let (svc, hsm) = load_service(config)?;
    let tls = keyd::tls::server_config(svc.ca().clone(), svc.config().server_names.clone())?;
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let data = actix_web::web::Data::new(svc);
    background(&data, hsm);
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
    println!("keyd listening on https://{addr}");
    std::io::stdout().flush()?;
    actix_rt::System::new().block_on(server.run())?;
    Ok(())
}

/// How often the mark on the seal token is brought up to the latest branch head.
const MARK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The work keyd does besides answering requests, each on its own thread so that key
/// operations never wait for it: re-signing the branch head at its interval, keeping
/// the mark on the seal token at the latest head it signed, and pulling each peer's
/// logs at the pull interval.
fn background(svc: &actix_web::web::Data<Service>, hsm: Hsm) {
    let s = svc.clone();
    std::thread::spawn(move || {
        let mut marked = s.own_head().map(|h| h.seq);
        loop {
            std::thread::sleep(MARK_INTERVAL);
            let Some(head) = s.own_head() else { continue };
            if marked == Some(head.seq) {
                continue;
            }
            match hsm.write_mark(&keyd::chain::cbor_bytes(&head)) {
                Ok(()) => marked = Some(head.seq),
                Err(e) => tracing::error!(error = %e, "could not write the mark on the seal token"),
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

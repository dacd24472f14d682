//! `keyd`: the keyd daemon. `keyd init`, `keyd import BUNDLE`, `keyd serve`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use keyd::bundle::{BranchBundle, InstallKey};
use keyd::chain::KeySet;
use keyd::config::Config;
use keyd::derive::{KeyPath, NodeSecret};
use keyd::hsm::Hsm;
use keyd::identity::{Ca, Principal};
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
    if let Err(e) = run(cli) {
        eprintln!("keyd: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Cmd::Init => init(&config),
        Cmd::Import { bundle } => import(&config, &bundle),
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

fn import(config: &Config, bundle_file: &Path) -> Result<()> {
    let store = Store::open(&config.db_path())?;
    if store.meta(key::BRANCH_SEALED)?.is_some() {
        bail!("this keyd already holds a branch; a keyd instance serves one branch");
    }
    let hsm = Hsm::open(&config.seal_hsm)?;
    let install = unseal_install(&store, &hsm)?;
    let bytes = std::fs::read(bundle_file)
        .with_context(|| format!("cannot read {}", bundle_file.display()))?;
    let bundle = BranchBundle::from_cbor(&bytes)?;
    let (branch, verified) = bundle.open(&install)?;
    let mut secret = Zeroizing::new([0u8; 64]);
    secret[..32].copy_from_slice(branch.danger_key());
    secret[32..].copy_from_slice(branch.danger_chain_code());
    let sealed = hsm.seal(&branch_aad(&bundle.path), secret.as_ref())?;
    let ca = Ca::from_branch(&branch.material(), &bundle.name, &bundle.path)?;
    let (admin_cert, admin_key) = ca.client_credential(
        &Principal::Admin("admin".into()),
        "admin",
        config.client_cert_seconds,
    )?;
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
                    .with_context(|| format!("cannot move {} into place", path.display()))
            })
        })
        .and_then(|()| {
            Ok(store.import(
                &verified.entries,
                &verified.head,
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
    println!(
        "branch {} ({}) imported; chain of {} entries stored",
        bundle.path,
        bundle.name,
        verified.entries.len()
    );
    println!("CA certificate:   {}", dir.join("ca.pem").display());
    println!(
        "admin credential: {} and {}",
        dir.join("admin.pem").display(),
        dir.join("admin.key").display()
    );
    Ok(())
}

/// The imported branch, unsealed through the seal token: the store, the branch name,
/// path and secret.
fn unseal_branch(config: &Config) -> Result<(Store, String, KeyPath, NodeSecret)> {
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
    Ok((store, name, path, branch))
}

fn issue_admin(config: &Config, name: &str, out: &Path) -> Result<()> {
    keyd::chain::check_name(name).map_err(|e| anyhow::anyhow!("admin name {name:?}: {e}"))?;
    let (store, branch_name, path, branch) = unseal_branch(config)?;
    if store
        .revoked_admins()?
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        bail!("admin {name} was revoked; a revoked name is never issued again: choose another");
    }
    let ca = Ca::from_branch(&branch.material(), &branch_name, &path)?;
    let (cert, key) = ca.client_credential(
        &Principal::Admin(name.to_owned()),
        name,
        config.client_cert_seconds,
    )?;
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

fn load_service(config: Config) -> Result<Service> {
    let (store, name, path, branch) = unseal_branch(&config)?;
    let started = std::time::Instant::now();
    let chain = keyd::service::restore_chain(&store).context("the stored chain")?;
    tracing::info!(
        entries = chain.entries().len(),
        millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "chain restored"
    );
    let certified = chain.state().key(&path).map(|r| r.keys);
    if certified != Some(KeySet::from(&branch.public_keys())) {
        bail!("the unsealed branch secret is not the branch the stored chain certifies");
    }
    let svc = Service::new(store, config, name, path, branch, chain)?;
    let purged = svc.purge_expired_tokens()?;
    if purged > 0 {
        tracing::info!(purged, "expired enrollment tokens removed");
    }
    Ok(svc)
}

fn serve(config: Config) -> Result<()> {
    init_tracing(config.log_json);
    let (listen, workers) = (config.listen, config.workers);
    let svc = load_service(config)?;
    let tls = keyd::tls::server_config(svc.ca().clone(), svc.config().server_names.clone())?;
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let data = actix_web::web::Data::new(svc);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(keyd::api::observe))
            .configure(keyd::api::routes)
    })
    .on_connect(keyd::api::on_connect)
    .workers(workers)
    .listen_rustls_0_23(listener, tls)?;
    println!("keyd listening on https://{addr}");
    std::io::stdout().flush()?;
    actix_rt::System::new().block_on(server.run())?;
    Ok(())
}

fn init_tracing(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KEYD_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

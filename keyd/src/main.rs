//! `keyd`: the keyd daemon. `keyd init`, `keyd import BUNDLE`, `keyd serve`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use keyd::config::Config;

mod cmd;

use cmd::report::{self, Output};

/// keyd: hierarchical key management — the daemon.
///
/// Exit status: 0 done; 1 error; 2 usage (a bad command line).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The configuration file (see keyd.example.toml).
    #[arg(long, global = true, default_value = "keyd.toml")]
    config: PathBuf,
    /// Output format: text, or json (one object on stdout; errors as one object on
    /// stderr with a stable code).
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: Output,
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
        /// The cluster's root: the ceremony's root.json, or its fingerprint (64 hex
        /// digits); instead of `root_fingerprint` in keyd.toml. A bundle of any other root
        /// is refused.
        #[arg(long, value_name = "ROOT_JSON|FINGERPRINT")]
        expect_root: Option<String>,
    },
    /// Print this keyd's install public key (what `keyctl ceremony issue`, `rebuild` and
    /// `root-rekey` seal a branch to).
    InstallKey,
    /// Serve the REST API over HTTPS with client certificates.
    Serve,
    /// Write a consistent copy of the store to a new file (0600): taken by the serving
    /// keyd when it runs, else from the store. Secrets in it stay sealed by the seal
    /// token: without that token the backup opens nothing.
    Backup {
        /// The new backup file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a backup in place of the store (keyd stopped; the store is kept beside it).
    /// Refused when the backup ends before the last head this keyd signed, unless
    /// --force (which also moves the seal token's mark back to the backup's head).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Roll the branch log back to the backup even though this keyd signed later
        /// heads (what came after is lost; nodes revoked after it are valid again).
        #[arg(long)]
        force: bool,
    },
    /// Move this keyd's tree under a new root (keyd stopped), after `keyctl ceremony
    /// root-rekey`: every node of the branch log is certified again under the new
    /// branch key (same paths, names, epochs; revocations kept), batch by batch with
    /// progress on stderr; after a crash, the same command resumes. The old tree is kept
    /// for decryption only until `keyd retire-root`.
    RootRekey {
        /// This branch's bundle from the ceremony (branch-I.bundle).
        #[arg(long)]
        bundle: PathBuf,
        /// The old root log ending in the succession (the ceremony's succession.cbor).
        #[arg(long)]
        succession: PathBuf,
        /// Nodes per transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Pause after each batch, in milliseconds (to stop it in the middle, in tests).
        #[arg(long, default_value_t = 0, hide = true)]
        pause_ms: u64,
    },
    /// Forget the previous root's tree kept since `keyd root-rekey` (keyd stopped):
    /// envelopes under it no longer open here, and TLS moves to the new tree's CA.
    RetireRoot,
    /// Print shell completions for keyd: `source <(keyd completions bash)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write keyd's man pages (keyd.1 and one per subcommand) to DIR.
    Man {
        /// Where to write them (created when missing).
        #[arg(long)]
        out: PathBuf,
    },
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

fn main() {
    let cli = Cli::parse();
    let output = cli.output;
    // keyd holds the branch secret and every key derived from it: never in a core dump.
    let result = keyd::disable_core_dumps()
        .map_err(|e| anyhow::anyhow!("cannot disable core dumps: {e}"))
        .and_then(|()| run(cli));
    if let Err(e) = result {
        report::error(&e, output);
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    // The two commands that need no configuration.
    match &cli.command {
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "keyd", &mut std::io::stdout());
            return Ok(());
        }
        Cmd::Man { out } => {
            std::fs::create_dir_all(out)?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), out)?;
            return Ok(());
        }
        _ => {}
    }
    let config = Config::load(&cli.config)?;
    let report = match cli.command {
        Cmd::Init => cmd::provision::init(&config)?,
        Cmd::Import {
            bundle,
            expect_root,
        } => cmd::provision::import(&config, &bundle, expect_root.as_deref())?,
        Cmd::InstallKey => cmd::provision::install_key(&config)?,
        Cmd::Serve => return cmd::serve::serve(config, cli.output),
        Cmd::Backup { out } => cmd::backup::backup(&config, &out)?,
        Cmd::Restore { file, force } => cmd::backup::restore(&config, &file, force)?,
        Cmd::Admin {
            command: AdminCmd::Issue { name, out },
        } => cmd::provision::issue_admin(&config, &name, &out)?,
        Cmd::RootRekey {
            bundle,
            succession,
            batch,
            pause_ms,
        } => cmd::root_rekey::root_rekey(
            &config,
            &bundle,
            &succession,
            cmd::root_rekey::Pace {
                batch,
                pause: std::time::Duration::from_millis(pause_ms),
            },
        )?,
        Cmd::RetireRoot => cmd::root_rekey::retire_root(&config)?,
        Cmd::Completions { .. } | Cmd::Man { .. } => return Ok(()),
    };
    report.print(cli.output);
    Ok(())
}

//! `hsm-sim`: provisions isolated SoftHSM2 tokens for keyd tests, demos and CI.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hsm_sim::{Layout, Provisioned, SimError};

/// Provision isolated SoftHSM2 tokens (config, token store, 0600 PIN files) in a directory.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create DIR with its own softhsm2.conf, a token labelled LABEL, and random SO and
    /// user PINs in DIR/so.pin and DIR/user.pin (0600). Prints the SOFTHSM2_CONF to export
    /// and the token's RFC 7512 URI.
    Init {
        /// The simulation directory (created; must not hold a simulation yet).
        #[arg(long)]
        dir: PathBuf,
        /// The token label (1-32 characters).
        #[arg(long)]
        label: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show the tokens of DIR.
    Status {
        /// The simulation directory.
        #[arg(long)]
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Delete the tokens, configuration and PIN files of DIR.
    Destroy {
        /// The simulation directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// (internal) initialise the token; run with SOFTHSM2_CONF set.
    #[command(name = "__token-init", hide = true)]
    TokenInit {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        label: String,
    },
    /// (internal) list tokens as JSON; run with SOFTHSM2_CONF set.
    #[command(name = "__status", hide = true)]
    StatusChild {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsm-sim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Init { dir, label, output } => init(&dir, &label, output),
        Cmd::Status { dir, output } => status(&dir, output),
        Cmd::Destroy { dir } => {
            hsm_sim::destroy(&dir)?;
            println!("destroyed the hsm-sim tokens in {}", dir.display());
            Ok(())
        }
        Cmd::TokenInit { dir, label } => {
            let layout = Layout::of(&dir)?;
            hsm_sim::init_token_in_process(&layout, &label, &hsm_sim::find_module()?)?;
            Ok(())
        }
        Cmd::StatusChild { dir } => {
            let layout = Layout::of(&dir)?;
            let tokens = hsm_sim::status_in_process(&layout, &hsm_sim::find_module()?)?;
            println!("{}", serde_json::to_string(&tokens)?);
            Ok(())
        }
    }
}

fn init(dir: &Path, label: &str, output: Output) -> Result<()> {
    hsm_sim::check_label(label)?;
    let module = hsm_sim::find_module()?;
    let layout = hsm_sim::prepare(dir)?;
    let child = child(&layout, ["__token-init", "--label", label]);
    if let Err(e) = child {
        // Leave nothing half-made behind.
        let _ = hsm_sim::destroy(&layout.dir);
        return Err(e.context(format!("cannot initialise token {label:?}")));
    }
    let out = Provisioned {
        softhsm2_conf: layout.softhsm2_conf.clone(),
        uri: layout.uri(label, &module),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string(&out)?),
        Output::Text => {
            println!("export SOFTHSM2_CONF={}", out.softhsm2_conf.display());
            println!("{}", out.uri);
        }
    }
    Ok(())
}

fn status(dir: &Path, output: Output) -> Result<()> {
    let layout = Layout::of(dir)?;
    if !layout.is_sim() {
        return Err(SimError::NotSim(layout.dir).into());
    }
    let json = child(&layout, ["__status"])?;
    let tokens: Vec<hsm_sim::TokenStatus> =
        serde_json::from_str(&json).context("unreadable token list")?;
    match output {
        Output::Json => println!("{json}"),
        Output::Text => {
            println!("SOFTHSM2_CONF={}", layout.softhsm2_conf.display());
            if tokens.is_empty() {
                println!("no initialised token");
            }
            for t in tokens {
                println!(
                    "token {:?} serial {}: {} object(s), root secret {}",
                    t.label,
                    t.serial,
                    t.objects,
                    if t.has_root { "present" } else { "absent" }
                );
            }
        }
    }
    Ok(())
}

/// Runs this binary again with SOFTHSM2_CONF set for the layout, returning its stdout.
fn child<const N: usize>(layout: &Layout, args: [&str; N]) -> Result<String> {
    let exe = std::env::current_exe().context("cannot locate the hsm-sim executable")?;
    let out = Command::new(exe)
        .args(args)
        .arg("--dir")
        .arg(&layout.dir)
        .env("SOFTHSM2_CONF", &layout.softhsm2_conf)
        .output()
        .context("cannot run hsm-sim")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{}", err.trim().trim_start_matches("hsm-sim: error: "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

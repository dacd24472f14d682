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

/// A token of a simulation directory, and the object its URI names.
#[derive(clap::Args)]
struct Token {
    /// The simulation directory (for init: created, or an hsm-sim directory to add a
    /// token to).
    #[arg(long)]
    dir: PathBuf,
    /// The token label (1-32 characters; for init: new in DIR).
    #[arg(long)]
    label: String,
    /// The object the URI names: `root` for a root token (keyctl ceremony), `seal` for a
    /// keyd seal token (as keyd.example.toml has it).
    #[arg(long, default_value = "root")]
    object: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create DIR with its own softhsm2.conf, a token labelled LABEL, and random SO and
    /// user PINs in DIR/so.pin and DIR/user.pin (0600); or, when DIR already is an hsm-sim
    /// directory, add the token LABEL to it (same configuration and PINs, so one
    /// SOFTHSM2_CONF serves, say, a root token and a seal token). Prints the SOFTHSM2_CONF
    /// to export and the token's RFC 7512 URI, naming the object OBJECT. Quote the URI
    /// on a shell line: its `;` and `&` would split it.
    Init(Token),
    /// Print the RFC 7512 URI of the token LABEL of DIR, naming the object OBJECT (what
    /// `init` printed): for `--hsm "$(hsm-sim uri …)"` and `seal_hsm` in keyd.toml.
    Uri(Token),
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
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print shell completions for hsm-sim: `source <(hsm-sim completions bash)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write hsm-sim's man pages (hsm-sim.1 and one per subcommand) to DIR.
    Man {
        /// Where to write them (created when missing).
        #[arg(long)]
        out: PathBuf,
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

impl Cmd {
    fn output(&self) -> Output {
        match self {
            Cmd::Init(Token { output, .. })
            | Cmd::Uri(Token { output, .. })
            | Cmd::Status { output, .. }
            | Cmd::Destroy { output, .. } => *output,
            Cmd::TokenInit { .. }
            | Cmd::StatusChild { .. }
            | Cmd::Completions { .. }
            | Cmd::Man { .. } => Output::Text,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = cli.command.output();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<SimError>().map_or("error", SimError::code);
            match output {
                Output::Json => eprintln!(
                    "{}",
                    serde_json::json!({"error": {"code": code, "message": format!("{e:#}")}})
                ),
                Output::Text => eprintln!("hsm-sim: error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Completions { shell } => {
            // Without the internal subcommands (hidden from --help, and from here).
            let full = <Cli as clap::CommandFactory>::command();
            let mut cmd = clap::Command::new("hsm-sim")
                .version(env!("CARGO_PKG_VERSION"))
                .args(full.get_arguments().cloned())
                .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
            clap_complete::generate(shell, &mut cmd, "hsm-sim", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man { out } => {
            std::fs::create_dir_all(&out)?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &out)?;
            Ok(())
        }
        Cmd::Init(t) => init(&t),
        Cmd::Uri(t) => uri(&t),
        Cmd::Status { dir, output } => status(&dir, output),
        Cmd::Destroy { dir, output } => {
            hsm_sim::destroy(&dir)?;
            match output {
                Output::Json => println!("{}", serde_json::json!({"destroyed": dir})),
                Output::Text => println!("destroyed the hsm-sim tokens in {}", dir.display()),
            }
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

fn init(t: &Token) -> Result<()> {
    let (dir, label, object, output) = (
        t.dir.as_path(),
        t.label.as_str(),
        t.object.as_str(),
        t.output,
    );
    hsm_sim::check_label(label)?;
    hsm_sim::check_object(object)?;
    let module = hsm_sim::find_module()?;
    let (layout, created) = hsm_sim::prepare(dir)?;
    if !created && tokens(&layout)?.iter().any(|t| t.label == label) {
        return Err(SimError::LabelTaken {
            dir: layout.dir,
            label: label.to_owned(),
        }
        .into());
    }
    let child = child(&layout, ["__token-init", "--label", label]);
    if let Err(e) = child {
        // Leave nothing half-made behind; a directory that was there keeps its tokens.
        if created {
            let _ = hsm_sim::destroy(&layout.dir);
        }
        return Err(e);
    }
    let out = Provisioned {
        softhsm2_conf: layout.softhsm2_conf.clone(),
        uri: layout.uri_of(label, object, &module),
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

fn uri(t: &Token) -> Result<()> {
    let (dir, label, object, output) = (
        t.dir.as_path(),
        t.label.as_str(),
        t.object.as_str(),
        t.output,
    );
    hsm_sim::check_object(object)?;
    let layout = Layout::of(dir)?;
    layout.require_sim()?;
    if !tokens(&layout)?.iter().any(|t| t.label == label) {
        return Err(SimError::NoToken {
            dir: layout.dir,
            label: label.to_owned(),
        }
        .into());
    }
    let uri = layout.uri_of(label, object, &hsm_sim::find_module()?);
    match output {
        Output::Json => println!("{}", serde_json::json!({ "uri": uri })),
        Output::Text => println!("{uri}"),
    }
    Ok(())
}

fn status(dir: &Path, output: Output) -> Result<()> {
    let layout = Layout::of(dir)?;
    layout.require_sim()?;
    let tokens = tokens(&layout)?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&tokens)?),
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

/// The tokens of the simulation in `layout`.
fn tokens(layout: &Layout) -> Result<Vec<hsm_sim::TokenStatus>> {
    let json = child(layout, ["__status"])?;
    serde_json::from_str(&json).context("unreadable token list")
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

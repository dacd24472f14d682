//! `keyctl policy`: show and apply the policy of a running keyd, and ask how a policy
//! decides a request — keyd's policy in force, or a file, offline.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use keyd::client::Client;
use keyd::derive::KeyPath;
use keyd::policy::{Op, Policy, Request, Subject, Target};
use keyd::wire::PolicyCheck;
use serde_json::{Value, json};

use crate::cli::default_config;
use crate::error::CtlError;
use crate::files;

/// Policy commands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Show the policy in force (its version, who applied it, its text).
    Show {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Write the policy's text to FILE (a new file) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Replace the policy with FILE: checked here and by keyd first (nothing changes when
    /// it is not valid), then in force for the next request, without a restart.
    Apply {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The policy file (TOML; see policies/).
        file: PathBuf,
    },
    /// Say whether a request would be allowed, and by which rule: against keyd's policy
    /// in force (--config), or a policy file offline (--file). Exits 3 when denied.
    Check {
        /// Who asks: node:NAME_OR_PATH or admin:NAME (offline, nodes by path, or by
        /// name with --chain).
        #[arg(long)]
        principal: String,
        /// The operation: sign, encrypt, node.add, policy.apply, …
        #[arg(long)]
        op: String,
        /// What it acts on: a node name or path, admin:NAME, or nothing.
        #[arg(long, default_value = "")]
        target: String,
        /// Offline: the policy file to decide with, instead of keyd's.
        #[arg(long, value_name = "FILE", conflicts_with = "config")]
        file: Option<PathBuf>,
        /// Offline: the deciding keyd's branch (for same-branch).
        #[arg(long, default_value = "m/1'", requires = "file")]
        branch: String,
        /// Offline: a chain file to find nodes by name (and rules naming names).
        #[arg(long, requires = "file")]
        chain: Option<PathBuf>,
        /// Offline: the size of the batch the request is an item of (for max_batch).
        #[arg(long, default_value_t = 1, requires = "file")]
        batch: u32,
        /// keyctl.toml with an admin credential (the default when no --file).
        #[arg(long, env = "KEYCTL_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn read(path: &Path) -> Result<String, CtlError> {
    std::fs::read_to_string(path).map_err(CtlError::io("cannot read", path))
}

/// A policy file, checked.
fn parse(file: &Path) -> Result<Policy, CtlError> {
    Policy::parse(&read(file)?).map_err(|e| CtlError::Arg {
        flag: "FILE",
        message: format!("{} is not a valid policy: {e}", file.display()),
    })
}

/// Runs a policy command: the JSON to print, and whether it is a refusal (exit 3).
pub fn run(cmd: PolicyCmd) -> Result<(Value, bool), CtlError> {
    Ok(match cmd {
        PolicyCmd::Show { config, out } => {
            let shown = Client::from_config(&config)?.policy()?;
            let mut v = serde_json::to_value(&shown)?;
            if let (Some(out), Some(text)) = (out, &shown.text) {
                files::write_private(&out, text.as_bytes())?;
                v["text"] = Value::Null;
                v["out"] = out.display().to_string().into();
            }
            (v, false)
        }
        PolicyCmd::Apply { config, file } => {
            let text = read(&file)?;
            parse(&file)?;
            let applied = Client::from_config(&config)?.apply_policy(&text)?;
            (serde_json::to_value(&applied)?, false)
        }
        PolicyCmd::Check {
            principal,
            op,
            target,
            file: None,
            config,
            ..
        } => {
            let config = config.unwrap_or_else(default_config);
            let d = Client::from_config(&config)?.check_policy(&PolicyCheck {
                principal,
                op,
                target,
            })?;
            let denied = !d.allowed;
            (serde_json::to_value(&d)?, denied)
        }
        PolicyCmd::Check {
            principal,
            op,
            target,
            file: Some(file),
            branch,
            chain,
            batch,
            ..
        } => offline(
            &file,
            &principal,
            &op,
            &target,
            &branch,
            chain.as_deref(),
            batch,
        )?,
    })
}

/// `policy check --file`: the decision of a policy file, with names from a chain.
fn offline(
    file: &Path,
    principal: &str,
    op: &str,
    target: &str,
    branch: &str,
    chain: Option<&Path>,
    batch: u32,
) -> Result<(Value, bool), CtlError> {
    let policy = parse(file)?;
    let chain = chain.map(crate::chain_cmd::load).transpose()?;
    let arg = |flag: &'static str, message: String| CtlError::Arg { flag, message };
    let op = Op::parse(op).ok_or_else(|| arg("--op", format!("{op:?} is not an operation")))?;
    let branch: KeyPath = branch
        .parse()
        .map_err(|e| arg("--branch", format!("{branch}: {e}")))?;
    // A node by path, or by name in the chain; its name from the chain when there is one.
    let node = |flag: &'static str, text: &str| -> Result<(KeyPath, Option<String>), CtlError> {
        let state = chain.as_ref().map(|c| c.state());
        let path = match (text.parse::<KeyPath>(), &state) {
            (Ok(p), _) => p,
            (Err(_), Some(s)) => s
                .find(text)
                .map(|(p, _)| p.clone())
                .ok_or_else(|| arg(flag, format!("the chain has no node {text:?}")))?,
            (Err(e), None) => {
                return Err(arg(
                    flag,
                    format!("{text:?}: {e} (give a path, or --chain to find names)"),
                ));
            }
        };
        let name = state.and_then(|s| s.name_of(&path).map(str::to_owned));
        Ok((path, name))
    };
    let who = match principal.split_once(':') {
        Some(("node", n)) => Some(node("--principal", n)?),
        Some(("admin", _)) => None,
        _ => {
            return Err(arg(
                "--principal",
                format!("{principal:?}: give node:NAME_OR_PATH or admin:NAME"),
            ));
        }
    };
    let subject = match (&who, principal.split_once(':')) {
        (Some((path, name)), _) => Subject::Node {
            path,
            name: name.as_deref(),
        },
        (None, Some((_, admin))) => Subject::Admin(admin),
        (None, None) => Subject::Admin(""),
    };
    let it = match target.split_once(':') {
        _ if target.is_empty() => None,
        Some(("admin", _)) => None,
        _ => Some(node(
            "--target",
            target.strip_prefix("node:").unwrap_or(target),
        )?),
    };
    let target = match (&it, target.split_once(':')) {
        (Some((path, name)), _) => Target::Node {
            path,
            name: name.as_deref(),
        },
        (None, Some(("admin", a))) => Target::Admin(a),
        _ => Target::None,
    };
    let d = policy.explain(
        &Request {
            subject,
            op,
            target,
            batch,
            branch: &branch,
        },
        keyd::unix_now(),
    );
    let mut v = json!({"allowed": d.allowed, "rule": &*d.rule, "file": file.display().to_string()});
    if !d.allowed {
        v["reason"] = d.reason.into();
    }
    Ok((v, !d.allowed))
}

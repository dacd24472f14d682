//! `keyctl replica add|list|remove`: the replicas of a keyd group (etcd), at a running
//! replica — a new one approved by its install key (the branch sealed to it, no root
//! needed), each recorded in the branch log.

use std::path::PathBuf;

use clap::Subcommand;
use keyd::client::Client;
use serde_json::{Value, json};

use crate::cli::default_config;
use crate::error::CtlError;
use crate::files;

/// Replica commands.
#[derive(Debug, Subcommand)]
pub enum ReplicaCmd {
    /// Seal the branch to a new replica's install key (its `keyd init` printed it) and
    /// write the bundle for its `keyd import` (admin credential; recorded in the audit
    /// log).
    Add {
        /// keyctl.toml of an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The new replica's name (its `[etcd] replica`).
        name: String,
        /// Its install public key (hex).
        #[arg(long)]
        install_key: String,
        /// The bundle file to write (new, 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// The replicas the branch log records, with their install keys.
    List {
        /// keyctl.toml of an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
    },
    /// Remove a replica: its install key revoked in the branch log; it stops serving
    /// when it sees the entry.
    Remove {
        /// keyctl.toml of an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The replica's name.
        name: String,
    },
}

/// Runs a replica command.
pub fn run(cmd: ReplicaCmd) -> Result<Value, CtlError> {
    match cmd {
        ReplicaCmd::Add {
            config,
            name,
            install_key,
            out,
        } => {
            let client = Client::from_config(&config)?;
            let reply = client.add_replica(&name, &install_key)?;
            files::write_private(&out, &reply.bundle.0)?;
            Ok(json!({
                "replica": reply.name,
                "bundle": out,
                "next": format!("on the new replica: keyd import {}", out.display()),
            }))
        }
        ReplicaCmd::List { config } => {
            let list = Client::from_config(&config)?.replicas()?;
            Ok(serde_json::to_value(list).unwrap_or_default())
        }
        ReplicaCmd::Remove { config, name } => {
            let removed = Client::from_config(&config)?.remove_replica(&name)?;
            Ok(serde_json::to_value(removed).unwrap_or_default())
        }
    }
}

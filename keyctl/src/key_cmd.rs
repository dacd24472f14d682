//! `keyctl key create|list|show|rotate`: a node's named keys (what transit calls keys),
//! through keyd's transit facade with the node's credential.

use std::path::PathBuf;

use clap::Subcommand;
use keyd::client::Client;
use serde_json::{Value, json};

use crate::cli::default_config;
use crate::error::CtlError;

/// Named-key commands (node credential).
#[derive(Debug, Subcommand)]
pub enum NamedKeyCmd {
    /// Create a named key of the node (certified by the node in the branch log).
    Create {
        /// keyctl.toml of a node credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Its name (1-64 of A-Z a-z 0-9 . _ -).
        name: String,
        /// ed25519 (signing) or aes256-gcm96 (encryption: keyd's sealed envelope).
        #[arg(long = "type", default_value = "aes256-gcm96")]
        key_type: String,
    },
    /// The node's named keys.
    List {
        /// keyctl.toml of a node credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
    },
    /// One named key: type, path, versions, minimum versions.
    Show {
        /// keyctl.toml of a node credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The key's name.
        name: String,
    },
    /// Move a named key to a new version (its next epoch).
    Rotate {
        /// keyctl.toml of a node credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The key's name.
        name: String,
    },
}

/// Runs a named-key command: the key (or the list) as JSON.
pub fn run(cmd: NamedKeyCmd) -> Result<Value, CtlError> {
    match cmd {
        NamedKeyCmd::Create {
            config,
            name,
            key_type,
        } => Ok(Client::from_config(&config)?.transit_on(
            "POST",
            ("keys", &name, ""),
            &json!({"type": key_type}),
        )?),
        NamedKeyCmd::List { config } => {
            let client = Client::from_config(&config)?;
            match client.transit("GET", "keys?list=true", &Value::Null) {
                Ok(data) => Ok(json!({"keys": data["keys"]})),
                // transit answers an empty list with a 404.
                Err(keyd::client::ClientError::Api { status: 404, .. }) => Ok(json!({"keys": []})),
                Err(e) => Err(e.into()),
            }
        }
        NamedKeyCmd::Show { config, name } => {
            let client = Client::from_config(&config)?;
            match client.transit_on("GET", ("keys", &name, ""), &Value::Null) {
                Err(keyd::client::ClientError::Api { status: 404, .. }) => {
                    Err(CtlError::NotValid(format!("no named key {name:?}")))
                }
                other => Ok(other?),
            }
        }
        NamedKeyCmd::Rotate { config, name } => Ok(Client::from_config(&config)?.transit_on(
            "POST",
            ("keys", &name, "/rotate"),
            &Value::Null,
        )?),
    }
}

//! keyctl commands against a running keyd.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cli::{Command, NodeCmd};
use crate::client::Client;
use crate::error::CtlError;
use crate::files;

fn read(path: &Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(CtlError::io("cannot read", path))
}

fn field(v: &Value, name: &str) -> Result<Vec<u8>, CtlError> {
    B64.decode(v[name].as_str().unwrap_or_default())
        .map_err(|e| CtlError::Http(format!("keyd returned a bad {name}: {e}")))
}

/// Runs a remote command, returning the JSON to print (None when it printed itself).
pub fn run(command: Command) -> Result<Option<Value>, CtlError> {
    Ok(Some(match command {
        Command::Node(NodeCmd::Add { config, name, parent }) => {
            let mut body = json!({"name": name});
            if let Some(p) = parent {
                body["parent"] = p.into();
            }
            Client::from_config(&config)?.post("/v1/nodes", &body)?
        }
        Command::Node(NodeCmd::List { config }) => Client::from_config(&config)?.get("/v1/nodes")?,
        Command::Node(NodeCmd::Revoke { config, name, reason }) => Client::from_config(&config)?
            .post(&format!("/v1/nodes/{name}/revoke"), &json!({"reason": reason}))?,
        Command::Node(NodeCmd::Rekey { config, name }) => {
            Client::from_config(&config)?.post(&format!("/v1/nodes/{name}/rekey"), &json!({}))?
        }
        Command::Sign { config, input } => Client::from_config(&config)?
            .post("/v1/sign", &json!({"data": B64.encode(read(&input)?)}))?,
        Command::Verify { config, input, signature, public_key } => Client::from_config(&config)?.post(
            "/v1/verify",
            &json!({"data": B64.encode(read(&input)?), "signature": signature, "public_key": public_key}),
        )?,
        Command::Encrypt { config, to, input, out } => {
            let resp = Client::from_config(&config)?
                .post("/v1/encrypt", &json!({"to": to, "plaintext": B64.encode(read(&input)?)}))?;
            files::write_private(&out, &field(&resp, "envelope")?)?;
            json!({"recipient": resp["recipient"], "out": out.display().to_string()})
        }
        Command::Decrypt { config, input, out } => {
            let resp = Client::from_config(&config)?
                .post("/v1/decrypt", &json!({"envelope": B64.encode(read(&input)?)}))?;
            files::write_private(&out, &field(&resp, "plaintext")?)?;
            json!({"sender": resp["sender"], "out": out.display().to_string()})
        }
        Command::Chain(crate::cli::ChainCmd::Fetch { config, out }) => {
            let bytes = Client::from_config(&config)?.get_bytes("/v1/chain")?;
            let v = keyd::chain::verify_file(&bytes).map_err(|error| CtlError::Chain {
                file: out.clone(),
                error: Box::new(error),
            })?;
            files::replace_atomic(&out, &bytes, 0o644)?;
            println!("{}", crate::chain_cmd::summary(&out, &v));
            return Ok(None);
        }
        _ => return Err(CtlError::Http("not a remote command".into())),
    }))
}

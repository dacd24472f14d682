//! keyctl commands against a running keyd.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cli::{AdminCmd, CaCmd, Command, CredentialsCmd, FileOp, NodeCmd, Output};
use crate::client::Client;
use crate::error::CtlError;
use crate::{enroll, files};

fn read(path: &Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(CtlError::io("cannot read", path))
}

/// A base64 field of a keyd answer, decoded.
pub fn field(v: &Value, name: &str) -> Result<Vec<u8>, CtlError> {
    B64.decode(v[name].as_str().unwrap_or_default())
        .map_err(|e| CtlError::Http(format!("keyd returned a bad {name}: {e}")))
}

/// Posts `{field: base64(file)}` to `path` and writes the answer's `out_field` to `out`
/// (a new file, 0600): the shape of encrypt, decrypt, seal, unseal and rewrap.
fn file_op(
    io: &FileOp,
    path: &str,
    mut body: Value,
    in_field: &str,
    out_field: &str,
) -> Result<Value, CtlError> {
    body[in_field] = B64.encode(read(&io.input)?).into();
    let mut resp = Client::from_config(&io.config)?.post(path, &body)?;
    files::write_private(&io.out, &field(&resp, out_field)?)?;
    if let Some(m) = resp.as_object_mut() {
        m.remove(out_field);
        m.insert("out".into(), io.out.display().to_string().into());
    }
    Ok(resp)
}

/// `keyctl sign`'s JSON saved in `file`: its signature and public key.
fn signed_file(file: &Path) -> Result<(String, String), CtlError> {
    let bad = |message: String| CtlError::Arg {
        flag: "--signed",
        message: format!("{}: {message}", file.display()),
    };
    let v: Value = serde_json::from_slice(&read(file)?)
        .map_err(|e| bad(format!("not the JSON `keyctl sign` prints: {e}")))?;
    match (v["signature"].as_str(), v["public_key"].as_str()) {
        (Some(s), Some(k)) => Ok((s.to_owned(), k.to_owned())),
        _ => Err(bad(
            "has no signature and public_key (save what `keyctl sign` prints)".into(),
        )),
    }
}

/// Refuses, before anything is asked of keyd, a token file that is already there.
fn refuse_existing(out: Option<&Path>) -> Result<(), CtlError> {
    match out {
        Some(out) if out.exists() => Err(CtlError::Arg {
            flag: "--token-out",
            message: format!("{} already exists; give a new file", out.display()),
        }),
        _ => Ok(()),
    }
}

/// The token as a QR code of Unicode half blocks, quiet zone included.
pub fn token_qr(token: &str) -> Result<String, CtlError> {
    let code = qrcode::QrCode::new(token.as_bytes()).map_err(|e| CtlError::Arg {
        flag: "--qr",
        message: format!("cannot draw the token: {e}"),
    })?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

/// A node add or re-enroll answer, its token moved to `out` (a new 0600 file) when asked,
/// and drawn as a QR code on standard error with `qr`.
fn token_to_file(mut resp: Value, out: Option<&Path>, qr: bool) -> Result<Value, CtlError> {
    let token = resp["token"]
        .as_str()
        .ok_or_else(|| CtlError::Http("keyd's answer has no token".into()))?
        .to_owned();
    if qr {
        eprintln!("{}", token_qr(&token)?);
    }
    if let Some(out) = out {
        files::write_private(out, format!("{token}\n").as_bytes())?;
        if let Some(m) = resp.as_object_mut() {
            m.remove("token");
            m.insert("token_file".into(), out.display().to_string().into());
        }
    }
    Ok(resp)
}

/// Why a `/v1/verify` answer is not valid, in words.
pub fn not_valid_reason(v: &Value) -> String {
    if v["signature_ok"] != true {
        return "the signature does not verify with this public key".into();
    }
    let key = v["path"].as_str().unwrap_or("the key");
    match v["reason"].as_str() {
        Some(reason) => format!("{key}: {reason}"),
        None => format!("{key} is {}", v["status"].as_str().unwrap_or("not valid")),
    }
}

/// Runs a remote command, returning the JSON to print (None when it printed itself).
pub fn run(command: Command, output: Option<Output>) -> Result<Option<Value>, CtlError> {
    Ok(Some(match command {
        Command::Node(NodeCmd::Add {
            config,
            name,
            parent,
            mode,
            valid_for,
            token_out,
            qr,
        }) => {
            let mut body = json!({"name": name, "mode": mode.name()});
            if let Some(p) = parent {
                body["parent"] = p.into();
            }
            if let Some(age) = valid_for {
                let seconds =
                    crate::chain_cmd::parse_age(&age).map_err(|message| CtlError::Arg {
                        flag: "--valid-for",
                        message,
                    })?;
                body["valid_seconds"] = seconds.into();
            }
            refuse_existing(token_out.as_deref())?;
            let resp = Client::from_config(&config)?.post("/v1/nodes", &body)?;
            token_to_file(resp, token_out.as_deref(), qr)?
        }
        Command::Node(NodeCmd::List { config }) => {
            Client::from_config(&config)?.get("/v1/nodes")?
        }
        Command::Node(NodeCmd::Show { config, name }) => {
            Client::from_config(&config)?.get(&format!("/v1/nodes/{name}"))?
        }
        Command::Node(NodeCmd::Revoke {
            config,
            name,
            reason,
        }) => Client::from_config(&config)?.post(
            &format!("/v1/nodes/{name}/revoke"),
            &json!({"reason": reason}),
        )?,
        Command::Node(NodeCmd::Rekey { config, name }) => {
            Client::from_config(&config)?.post(&format!("/v1/nodes/{name}/rekey"), &json!({}))?
        }
        Command::Admin(AdminCmd::Revoke {
            config,
            name,
            reason,
        }) => Client::from_config(&config)?.post(
            &format!("/v1/admins/{name}/revoke"),
            &json!({"reason": reason}),
        )?,
        Command::Node(NodeCmd::Credentials(CredentialsCmd::Revoke {
            config,
            name,
            reason,
        })) => Client::from_config(&config)?.post(
            &format!("/v1/nodes/{name}/credentials/revoke"),
            &json!({"reason": reason}),
        )?,
        Command::Admin(AdminCmd::Credentials(CredentialsCmd::Revoke {
            config,
            name,
            reason,
        })) => Client::from_config(&config)?.post(
            &format!("/v1/admins/{name}/credentials/revoke"),
            &json!({"reason": reason}),
        )?,
        Command::Node(NodeCmd::Reenroll {
            config,
            name,
            mode,
            token_out,
            qr,
        }) => {
            refuse_existing(token_out.as_deref())?;
            let resp = Client::from_config(&config)?.post(
                &format!("/v1/nodes/{name}/reenroll"),
                &json!({"mode": mode.name()}),
            )?;
            token_to_file(resp, token_out.as_deref(), qr)?
        }
        Command::Node(NodeCmd::Suite {
            config,
            name,
            suite,
        }) => Client::from_config(&config)?
            .post(&format!("/v1/nodes/{name}/suite"), &json!({"suite": suite}))?,
        Command::Admin(AdminCmd::List { config }) => {
            Client::from_config(&config)?.get("/v1/admins")?
        }
        Command::Batch { config, op, items } => {
            let items: Value =
                serde_json::from_slice(&read(&items)?).map_err(|e| CtlError::Arg {
                    flag: "--items",
                    message: format!("{} is not JSON: {e}", items.display()),
                })?;
            if !items
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.len() <= 1000)
            {
                return Err(CtlError::Arg {
                    flag: "--items",
                    message: "give a JSON array of 1 to 1,000 request bodies".into(),
                });
            }
            Client::from_config(&config)?.post(
                &format!("/v1/batch/{}", op.name()),
                &json!({ "items": items }),
            )?
        }
        Command::Rekey { config } => Client::from_config(&config)?.post("/v1/rekey", &json!({}))?,
        Command::Sign { config, input } => Client::from_config(&config)?
            .post("/v1/sign", &json!({"data": B64.encode(read(&input)?)}))?,
        Command::Verify {
            config,
            input,
            signed,
            signature,
            public_key,
        } => {
            let (signature, public_key) = match (signed, signature, public_key) {
                (Some(file), _, _) => signed_file(&file)?,
                (None, Some(s), Some(k)) => (s, k),
                _ => {
                    return Err(CtlError::Arg {
                        flag: "--signed",
                        message: "give --signed FILE, or --signature and --public-key".into(),
                    });
                }
            };
            Client::from_config(&config)?.post(
                "/v1/verify",
                &json!({"data": B64.encode(read(&input)?), "signature": signature, "public_key": public_key}),
            )?
        }
        Command::Encrypt { io, to, suite } => {
            let mut body = json!({ "to": to });
            if let Some(s) = suite {
                body["suite"] = s.into();
            }
            file_op(&io, "/v1/encrypt", body, "plaintext", "envelope")?
        }
        Command::Decrypt(io) => file_op(&io, "/v1/decrypt", json!({}), "envelope", "plaintext")?,
        Command::Seal(io) => file_op(&io, "/v1/seal", json!({}), "plaintext", "envelope")?,
        Command::Unseal(io) => file_op(&io, "/v1/unseal", json!({}), "envelope", "plaintext")?,
        Command::Rewrap(io) => file_op(&io, "/v1/rewrap", json!({}), "envelope", "envelope")?,
        Command::Datakey {
            config,
            out,
            envelope,
        } => {
            let resp = Client::from_config(&config)?.post("/v1/datakey", &json!({}))?;
            files::write_private(&out, &field(&resp, "key")?)?;
            files::write_private(&envelope, &field(&resp, "envelope")?)?;
            json!({"out": out.display().to_string(), "envelope": envelope.display().to_string()})
        }
        Command::Enroll {
            url,
            ca,
            token_file,
            out,
        } => enroll::enroll(&url, &ca, token_file.as_deref(), &out)?,
        Command::Renew { config } => enroll::renew(&config)?,
        Command::Ca(CaCmd::Export { config, out }) => {
            let pem = Client::from_config(&config)?.get_bytes("/v1/ca")?;
            match (out, output) {
                (Some(out), _) => {
                    files::replace_atomic(&out, &pem, 0o644)?;
                    json!({"out": out.display().to_string()})
                }
                (None, Some(Output::Json)) => json!({"ca": String::from_utf8_lossy(&pem)}),
                (None, _) => {
                    // The PEM itself, for `> ca.pem`.
                    print!("{}", String::from_utf8_lossy(&pem));
                    return Ok(None);
                }
            }
        }
        Command::Chain(crate::cli::ChainCmd::Fetch {
            config,
            url,
            ca,
            out,
            page,
            max_age,
        }) => {
            let max_age = max_age
                .map(|a| crate::chain_cmd::parse_age(&a))
                .transpose()
                .map_err(|message| CtlError::Arg {
                    flag: "--max-age",
                    message,
                })?;
            let client = match (config, url, ca) {
                (Some(config), _, _) => {
                    let cfg = crate::client::ClientConfig::read(&config)?;
                    Client::new(&cfg.url, &cfg.ca, None)?
                }
                (None, Some(url), Some(ca)) => Client::new(&url, &ca, None)?,
                _ => {
                    return Err(CtlError::Arg {
                        flag: "--url",
                        message: "give --url and --ca (or --config keyctl.toml)".into(),
                    });
                }
            };
            let bad = |error| CtlError::Chain {
                file: out.clone(),
                error: Box::new(error),
            };
            // A chain already here (and verified) is brought up to date with only what
            // it lacks; otherwise it is fetched from the start. Page after page, each
            // verified and applied, until keyd says every log reached its head.
            let mut v = if out.exists() {
                crate::chain_cmd::load(&out)?
            } else {
                keyd::chain::Chain::new()
            };
            let mut new = 0;
            // A bar on a terminal (indicatif draws nothing when stderr is not one).
            let progress = crate::progress::bar(0, "entries verified");
            progress.set_position(v.len() as u64);
            loop {
                let since = keyd::chain::format_positions(&v.positions());
                let (bytes, complete, total) =
                    client.get_chain_page(&format!("/v1/chain?since={since}&limit={page}"))?;
                if let Some(total) = total {
                    progress.set_length(total);
                }
                let added = v.update(&bytes).map_err(bad)?;
                new += added;
                progress.inc(added as u64);
                if complete {
                    break;
                }
                if added == 0 {
                    return Err(CtlError::Http(
                        "keyd answered an incomplete page with nothing new".into(),
                    ));
                }
            }
            progress.finish_and_clear();
            v.check_complete().map_err(bad)?;
            if let Some(age) = max_age {
                crate::chain_cmd::check_fresh(&out, &v, age)?;
            }
            files::replace_atomic(&out, &v.to_file(), 0o644)?;
            let mut report = crate::chain_cmd::summary_json(&out, &v);
            report["new_entries"] = new.into();
            report
        }
        Command::Chain(crate::cli::ChainCmd::Push { config, file }) => {
            // Verified here first: a file that does not verify is not sent.
            let v = crate::chain_cmd::load(&file)?;
            let root = keyd::derive::KeyPath::root();
            if v.logs().any(|(log, _)| *log != root) {
                return Err(CtlError::Arg {
                    flag: "FILE",
                    message: format!(
                        "{} holds branch logs; push the ceremony's chain file (the root log only)",
                        file.display()
                    ),
                });
            }
            Client::from_config(&config)?.post_cbor("/v1/chain/root", v.file_of([&root]))?
        }
        _ => return Err(CtlError::Http("not a remote command".into())),
    }))
}

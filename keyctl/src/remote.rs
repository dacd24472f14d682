//! keyctl commands against a running keyd, through the library's typed client.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyd::client::Client;
use keyd::wire::{AddNode, Bytes, SuitePolicy};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{AdminCmd, CaCmd, Command, CredentialsCmd, FileOp, NodeCmd, Output};
use crate::error::CtlError;
use crate::{enroll, files};

fn read(path: &Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(CtlError::io("cannot read", path))
}

/// An answer as the JSON keyctl prints.
fn json_of<T: Serialize>(value: &T) -> Result<Value, CtlError> {
    Ok(serde_json::to_value(value)?)
}

/// Writes `bytes` to `io.out` (a new file, 0600) and prints the rest of the answer, with
/// `out` naming the file instead of the bytes: the shape of encrypt, decrypt, seal,
/// unseal and rewrap.
fn to_file<T: Serialize>(
    io: &FileOp,
    answer: &T,
    bytes: &Bytes,
    field: &str,
) -> Result<Value, CtlError> {
    files::write_private(&io.out, bytes.as_slice())?;
    let mut v = json_of(answer)?;
    if let Some(m) = v.as_object_mut() {
        m.remove(field);
        m.insert("out".into(), io.out.display().to_string().into());
    }
    Ok(v)
}

/// `keyctl sign`'s JSON saved in `file`: its signature and public key.
fn signed_file(file: &Path) -> Result<(Vec<u8>, String), CtlError> {
    let bad = |message: String| CtlError::Arg {
        flag: "--signed",
        message: format!("{}: {message}", file.display()),
    };
    let v: keyd::wire::SignResponse = serde_json::from_slice(&read(file)?).map_err(|e| {
        bad(format!(
            "not the JSON `keyctl sign` prints (signature and public_key): {e}"
        ))
    })?;
    Ok((v.signature.as_slice().to_vec(), v.public_key))
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
fn token_to_file<T: Serialize>(
    answer: &T,
    token: &str,
    out: Option<&Path>,
    qr: bool,
) -> Result<Value, CtlError> {
    if qr {
        eprintln!("{}", token_qr(token)?);
    }
    let mut v = json_of(answer)?;
    if let Some(out) = out {
        files::write_private(out, format!("{token}\n").as_bytes())?;
        if let Some(m) = v.as_object_mut() {
            m.remove("token");
            m.insert("token_file".into(), out.display().to_string().into());
        }
    }
    Ok(v)
}

/// A signature given on the command line: base64.
fn signature_arg(text: &str) -> Result<Vec<u8>, CtlError> {
    B64.decode(text.trim()).map_err(|e| CtlError::Arg {
        flag: "--signature",
        message: format!("not base64: {e}"),
    })
}

/// A node's keyctl acts on a rekey order its ancestor put in the chain: when the chain
/// holds one for the node the config's certificate names, the node moves to its next
/// epoch now, and the report says so.
fn act_on_rekey_order(
    config: &Path,
    v: &keyd::chain::Chain,
    report: &mut Value,
) -> Result<(), CtlError> {
    let cfg = keyd::client::ClientConfig::read(config)?;
    let Some(node) = keyd::tls_key::certificate_node(&read(&cfg.cert)?) else {
        return Ok(());
    };
    let Some(order) = v.state().rekey_order(&node).cloned() else {
        return Ok(());
    };
    let rekeyed = Client::from_config(config)?.rekey()?;
    report["rekey_order"] = json!({
        "by": order.by.to_string(), "log": order.log.to_string(), "seq": order.seq,
        "reason": order.reason, "followed": true, "new_epoch_key": rekeyed.key,
    });
    Ok(())
}

/// Why a `/v1/verify` answer is not valid, in words.
pub fn not_valid_reason(v: &Value) -> String {
    serde_json::from_value::<keyd::wire::Verification>(v.clone()).map_or_else(
        |_| "keyd's answer is not a verification".into(),
        |v| v.not_valid_reason(),
    )
}

/// Runs a remote command, returning the JSON to print (None when it printed itself).
pub fn run(command: Command, output: Option<Output>) -> Result<Option<Value>, CtlError> {
    let client = |config: &Path| Client::from_config(config).map_err(CtlError::from);
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
            let valid_seconds = valid_for
                .map(|age| crate::chain_cmd::parse_age(&age))
                .transpose()
                .map_err(|message| CtlError::Arg {
                    flag: "--valid-for",
                    message,
                })?;
            refuse_existing(token_out.as_deref())?;
            let added = client(&config)?.add_node(&AddNode {
                name,
                parent,
                mode: mode.wire(),
                valid_seconds,
            })?;
            token_to_file(&added, &added.token, token_out.as_deref(), qr)?
        }
        Command::Node(NodeCmd::List { config }) => json_of(&client(&config)?.nodes()?)?,
        Command::Node(NodeCmd::Show { config, name }) => json_of(&client(&config)?.node(&name)?)?,
        Command::Node(NodeCmd::Revoke {
            config,
            name,
            reason,
        }) => json_of(&client(&config)?.revoke_node(&name, &reason)?)?,
        Command::Node(NodeCmd::Rekey {
            config,
            name,
            order: false,
            ..
        }) => json_of(&client(&config)?.rekey_node(&name)?)?,
        Command::Node(NodeCmd::Rekey {
            config,
            name,
            order: true,
            reason,
        }) => json_of(&client(&config)?.order_rekey(&name, &reason)?)?,
        Command::Admin(AdminCmd::Revoke {
            config,
            name,
            reason,
        }) => json_of(&client(&config)?.revoke_admin(&name, &reason)?)?,
        Command::Node(NodeCmd::Credentials(CredentialsCmd::Revoke {
            config,
            name,
            reason,
        })) => json_of(&client(&config)?.revoke_node_credentials(&name, &reason)?)?,
        Command::Admin(AdminCmd::Credentials(CredentialsCmd::Revoke {
            config,
            name,
            reason,
        })) => json_of(&client(&config)?.revoke_admin_credentials(&name, &reason)?)?,
        Command::Node(NodeCmd::Reenroll {
            config,
            name,
            mode,
            token_out,
            qr,
        }) => {
            refuse_existing(token_out.as_deref())?;
            let token = client(&config)?.reenroll(&name, mode.wire())?;
            token_to_file(&token, &token.token, token_out.as_deref(), qr)?
        }
        Command::Node(NodeCmd::Suite {
            config,
            name,
            suite,
        }) => {
            let suite = SuitePolicy::parse(suite.as_bytes()).ok_or_else(|| CtlError::Arg {
                flag: "SUITE",
                message: format!("{suite:?}: give x-wing or any"),
            })?;
            json_of(&client(&config)?.set_suite(&name, suite)?)?
        }
        Command::Node(NodeCmd::Extend {
            config,
            name,
            valid_for,
        }) => {
            let seconds = keyd::parse_duration(&valid_for).map_err(|message| CtlError::Arg {
                flag: "--valid-for",
                message,
            })?;
            json_of(&client(&config)?.extend_node(&name, seconds)?)?
        }
        Command::Node(NodeCmd::MinEpoch {
            config,
            name,
            epoch,
        }) => json_of(&client(&config)?.set_min_epoch(&name, epoch)?)?,
        Command::Admin(AdminCmd::List { config }) => json_of(&client(&config)?.admins()?)?,
        Command::Batch { config, op, items } => {
            let items: Vec<Value> =
                serde_json::from_slice(&read(&items)?).map_err(|e| CtlError::Arg {
                    flag: "--items",
                    message: format!("{} is not a JSON array: {e}", items.display()),
                })?;
            if items.is_empty() || items.len() > 1000 {
                return Err(CtlError::Arg {
                    flag: "--items",
                    message: "give a JSON array of 1 to 1,000 request bodies".into(),
                });
            }
            json_of(&client(&config)?.batch::<Value, Value>(op.name(), items)?)?
        }
        Command::Rekey { config } => json_of(&client(&config)?.rekey()?)?,
        Command::Sign { config, input } => json_of(&client(&config)?.sign(&read(&input)?)?)?,
        Command::Verify {
            config,
            input,
            signed,
            signature,
            public_key,
        } => {
            let (signature, public_key) = match (signed, signature, public_key) {
                (Some(file), _, _) => signed_file(&file)?,
                (None, Some(s), Some(k)) => (signature_arg(&s)?, k),
                _ => {
                    return Err(CtlError::Arg {
                        flag: "--signed",
                        message: "give --signed FILE, or --signature and --public-key".into(),
                    });
                }
            };
            json_of(&client(&config)?.verify(&read(&input)?, &signature, &public_key)?)?
        }
        Command::Encrypt { io, to, suite } => {
            let sealed = client(&io.config)?.encrypt(
                &to,
                &read(&io.input)?,
                suite.as_deref(),
                io.context_bytes(),
            )?;
            to_file(&io, &sealed, &sealed.envelope, "envelope")?
        }
        Command::Decrypt(io) => {
            let opened = client(&io.config)?.decrypt(&read(&io.input)?, io.context_bytes())?;
            to_file(&io, &opened, &opened.plaintext, "plaintext")?
        }
        Command::Seal(io) => {
            let sealed = client(&io.config)?.seal(&read(&io.input)?, io.context_bytes())?;
            to_file(&io, &sealed, &sealed.envelope, "envelope")?
        }
        Command::Unseal(io) => {
            let opened = client(&io.config)?.unseal(&read(&io.input)?, io.context_bytes())?;
            to_file(&io, &opened, &opened.plaintext, "plaintext")?
        }
        Command::Rewrap(io) => {
            let sealed = client(&io.config)?.rewrap(&read(&io.input)?, io.context_bytes())?;
            to_file(&io, &sealed, &sealed.envelope, "envelope")?
        }
        Command::Datakey {
            config,
            out,
            envelope,
            context,
        } => {
            let context = context.unwrap_or_default();
            let key = client(&config)?.datakey(context.as_bytes())?;
            files::write_private(&out, key.key.as_slice())?;
            files::write_private(&envelope, key.envelope.as_slice())?;
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
            let pem = client(&config)?.ca()?;
            match (out, output) {
                (Some(out), _) => {
                    files::replace_atomic(&out, pem.as_bytes(), 0o644)?;
                    json!({"out": out.display().to_string()})
                }
                (None, Some(Output::Json)) => json!({ "ca": pem }),
                (None, _) => {
                    // The PEM itself, for `> ca.pem`.
                    print!("{pem}");
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
            let keyd = match (&config, url, ca) {
                (Some(config), _, _) => {
                    let cfg = keyd::client::ClientConfig::read(config)?;
                    Client::anonymous(&cfg.url, &cfg.ca)?
                }
                (None, Some(url), Some(ca)) => Client::anonymous(&url, &ca)?,
                _ => {
                    return Err(CtlError::Arg {
                        flag: "--url",
                        message: "give --url and --ca (or --config keyctl.toml)".into(),
                    });
                }
            };
            // A chain already here (and verified) is brought up to date with only what
            // it lacks; otherwise it is fetched from the start.
            let mut v = if out.exists() {
                crate::chain_cmd::load(&out)?
            } else {
                keyd::chain::Chain::new()
            };
            // A bar on a terminal (indicatif draws nothing when stderr is not one).
            let progress = crate::progress::bar(0, "entries verified");
            progress.set_position(v.len() as u64);
            let fetched = keyd.fetch_chain(&mut v, page, |added, total| {
                if let Some(total) = total {
                    progress.set_length(total);
                }
                progress.inc(added as u64);
            });
            progress.finish_and_clear();
            // A held chain keyd's no longer extends: keyd may have moved to a new root.
            let mut followed = None;
            let new = match fetched {
                Ok(n) => n,
                Err(keyd::client::ChainFetchError::Chain(error)) => {
                    match crate::succession::follow(&keyd, &out, page)? {
                        Some((chain, said)) => {
                            v = chain;
                            followed = Some(said);
                            v.len()
                        }
                        None => {
                            return Err(CtlError::Chain {
                                file: out.clone(),
                                error,
                            });
                        }
                    }
                }
                Err(keyd::client::ChainFetchError::Client(e)) => return Err(e.into()),
            };
            let bad = |error| CtlError::Chain {
                file: out.clone(),
                error: Box::new(error),
            };
            v.check_complete().map_err(bad)?;
            if let Some(age) = max_age {
                crate::chain_cmd::check_fresh(&out, &v, age)?;
            }
            files::replace_atomic(&out, &v.to_file(), 0o644)?;
            let mut report = crate::chain_cmd::summary_json(&out, &v);
            report["new_entries"] = new.into();
            if let Some(said) = followed {
                report["succession"] = said["succession"].clone();
            }
            if let Some(config) = &config {
                act_on_rekey_order(config, &v, &mut report)?;
            }
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
            json_of(&client(&config)?.push_root(v.file_of([&root]))?)?
        }
        _ => return Err(CtlError::Http("not a remote command".into())),
    }))
}

//! `keyctl`: the keyd admin CLI and offline root ceremonies.

use keyctl::{ceremony, chain_cmd, cli, error, files, public, remote};

use std::process::ExitCode;

use clap::Parser;
use keyd::derive::{self, KeyPath, SoftwareRoot};
use keyd::hsm::ROOT_SECRET_LEN;
use zeroize::Zeroizing;

use cli::{Ceremony, ChainCmd, Cli, Command, KeyCmd, Output};
use error::CtlError;
use public::PublicJson;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ceremonies hold the root secret and shares, nodes their keys: never in a core dump.
    if let Err(e) = keyd::disable_core_dumps() {
        eprintln!("keyctl: error: cannot disable core dumps: {e}");
        return ExitCode::FAILURE;
    }
    let output = cli.output;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, output);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints an error to stderr: text (the message, each cause not already in it, and what
/// to try), or with `--output json` one object `{"error": {"code", "message", "try"}}`.
fn report(e: &CtlError, output: Option<Output>) {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let cause = s.to_string();
        if !message.contains(&cause) {
            message.push_str(&format!("\n  caused by: {cause}"));
        }
        source = s.source();
    }
    if output == Some(Output::Json) {
        let mut error = serde_json::json!({"code": e.code(), "message": message});
        if let Some(hint) = e.hint() {
            error["try"] = hint.into();
        }
        eprintln!("{}", serde_json::json!({ "error": error }));
    } else {
        eprintln!("keyctl: error: {message}");
        if let Some(hint) = e.hint() {
            eprintln!("  try: {hint}");
        }
    }
}

fn run(cli: Cli) -> Result<(), CtlError> {
    let output = cli.output;
    // Prints `json` as asked, or `text` (default: the text).
    let text_first = |json: serde_json::Value, text: String| -> Result<(), CtlError> {
        match output {
            Some(Output::Json) => print_json(&json),
            _ => {
                println!("{text}");
                Ok(())
            }
        }
    };
    match cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "keyctl", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out } => {
            std::fs::create_dir_all(&out).map_err(CtlError::io("cannot create", &out))?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &out)
                .map_err(CtlError::io("cannot write the man pages to", &out))?;
            emit(
                output,
                &serde_json::json!({"out": out.display().to_string()}),
            )
        }
        Command::Vectors { root_hex, path } => {
            let root_hex = Zeroizing::new(root_hex);
            emit(output, &serde_json::to_value(vectors(&root_hex, &path)?)?)
        }
        Command::Ceremony(Ceremony::Decrypt {
            hsm,
            input,
            context,
            out,
        }) => emit(
            output,
            &ceremony::decrypt::decrypt(&hsm, &input, context.as_deref(), &out)?,
        ),
        Command::Ceremony(Ceremony::Rebuild {
            hsm,
            chain,
            index,
            to,
            out,
        }) => {
            let done = ceremony::rebuild::rebuild(&hsm, &chain, index, &to, &out)?;
            let (seq, at) = done.head.unwrap_or((0, 0));
            text_first(
                serde_json::json!({
                    "path": done.path.to_string(), "name": done.name,
                    "branch_log_entries": done.entries, "head_seq": seq, "head_signed_at": at,
                    "bundle": out.display().to_string(),
                }),
                format!(
                    "branch {} ({}) sealed to the new install key: {}\n  its log: {} entries, head seq {seq} signed at {}\n  anything the lost keyd wrote after that head is not in this chain: fetch the newest copy from every peer first",
                    done.path,
                    done.name,
                    out.display(),
                    done.entries,
                    keyd::rfc3339(at)
                ),
            )
        }
        Command::Ceremony(Ceremony::RootRekey {
            old_hsm,
            new_hsm,
            chain,
            shares,
            branches,
            out,
        }) => {
            let share_to = ceremony::init::ShareTo::from_args(&shares)?;
            let done = ceremony::root_rekey::run(
                &old_hsm,
                &new_hsm,
                &chain,
                &share_to,
                shares.threshold,
                &branches,
                &out,
            )?;
            text_first(root_rekey_json(&done), root_rekey_text(&done))
        }
        Command::Ceremony(Ceremony::Trust {
            hsm,
            chain,
            cluster,
            root_json,
            level,
            permissions,
            expires,
        }) => {
            let seconds = chain_cmd::parse_age(&expires).map_err(|message| CtlError::Arg {
                flag: "--expires",
                message,
            })?;
            let seq = ceremony::trust::trust(
                &hsm,
                &chain,
                (&cluster, &root_json),
                (
                    level.into(),
                    permissions,
                    keyd::unix_now().saturating_add(seconds),
                ),
            )?;
            emit(
                output,
                &serde_json::json!({"seq": seq, "chain": chain.display().to_string()}),
            )
        }
        Command::Ceremony(Ceremony::Untrust {
            hsm,
            chain,
            root_json,
            reason,
        }) => {
            let seq = ceremony::trust::untrust(&hsm, &chain, &root_json, &reason)?;
            emit(
                output,
                &serde_json::json!({"seq": seq, "chain": chain.display().to_string()}),
            )
        }
        Command::Ceremony(Ceremony::Derive { hsm, path }) => emit(
            output,
            &serde_json::to_value(ceremony::derive(&hsm, &path)?)?,
        ),
        Command::Ceremony(Ceremony::Init {
            hsm,
            shares,
            cluster,
            out,
        }) => {
            let share_to = ceremony::init::ShareTo::from_args(&shares)?;
            let threshold = shares.threshold;
            let done = ceremony::init::run(&hsm, &share_to, threshold, &cluster, &out)?;
            let file = |n: &str| done.out.join(n).display().to_string();
            let shares: Vec<String> = done
                .share_files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            let mut text = format!(
                "root created on the token\n  key id:      {}\n  fingerprint: {}\n  shares:      {} ({} needed to recover), one per custodian:\n",
                done.root.key_id, done.root.fingerprint, done.root.shares, done.root.threshold
            );
            for f in &shares {
                text.push_str(&format!("    {f}\n"));
            }
            text.push_str(&format!(
                "  public:      {}\n  chain:       {}\n  transcript:  {}",
                file("root.json"),
                file("chain.cbor"),
                file("transcript.json")
            ));
            text_first(
                serde_json::json!({
                    "key_id": done.root.key_id.to_string(),
                    "fingerprint": done.root.fingerprint.to_string(),
                    "shares": shares,
                    "threshold": done.root.threshold,
                    "public": file("root.json"),
                    "chain": file("chain.cbor"),
                    "transcript": file("transcript.json"),
                }),
                text,
            )
        }
        Command::Ceremony(Ceremony::Issue {
            hsm,
            chain,
            name,
            index,
            to,
            days,
            out,
        }) => {
            let done = ceremony::branch::issue(&hsm, &chain, &name, index, days, &to, &out)?;
            text_first(
                serde_json::json!({
                    "path": done.path.to_string(), "name": name, "seq": done.seq,
                    "key_id": done.key_id.to_string(), "bundle": out.display().to_string(),
                    "chain": chain.display().to_string(),
                }),
                format!(
                    "branch {} ({name}) certified at seq {}, key id {}\n  bundle (sealed to the install key): {}\n  chain updated: {}",
                    done.path,
                    done.seq,
                    done.key_id,
                    out.display(),
                    chain.display()
                ),
            )
        }
        Command::Ceremony(Ceremony::Revoke {
            hsm,
            chain,
            path,
            reason,
        }) => {
            let cut = ceremony::branch::revoke(&hsm, &chain, &path, &reason)?;
            let cut: Vec<String> = cut.iter().map(ToString::to_string).collect();
            let mut text = format!("revoked {} key(s):\n", cut.len());
            for p in &cut {
                text.push_str(&format!("  {p}\n"));
            }
            text.push_str(&format!("chain updated: {}", chain.display()));
            text_first(
                serde_json::json!({"revoked": cut, "chain": chain.display().to_string()}),
                text,
            )
        }
        remote @ (Command::Node(_)
        | Command::Admin(_)
        | Command::Batch { .. }
        | Command::Sign { .. }
        | Command::Verify { .. }
        | Command::Encrypt { .. }
        | Command::Decrypt { .. }
        | Command::Seal { .. }
        | Command::Unseal { .. }
        | Command::Rewrap { .. }
        | Command::Datakey { .. }
        | Command::Rekey { .. }
        | Command::Enroll { .. }
        | Command::Renew { .. }
        | Command::Ca(_)
        | Command::Chain(ChainCmd::Fetch { .. } | ChainCmd::Push { .. })) => {
            let verify = matches!(remote, Command::Verify { .. });
            match remote::run(remote, output)? {
                Some(v) => {
                    emit(output, &v)?;
                    // The answer is printed either way; "not valid" also fails the command.
                    if verify && v["valid"] != true {
                        return Err(CtlError::NotValid(remote::not_valid_reason(&v)));
                    }
                    Ok(())
                }
                None => Ok(()),
            }
        }
        Command::Chain(ChainCmd::Verify { file, max_age }) => {
            let v = chain_cmd::load(&file)?;
            if let Some(age) = max_age {
                let age = chain_cmd::parse_age(&age).map_err(|message| CtlError::Arg {
                    flag: "--max-age",
                    message,
                })?;
                chain_cmd::check_fresh(&file, &v, age)?;
            }
            text_first(
                chain_cmd::summary_json(&file, &v),
                chain_cmd::summary(&file, &v),
            )
        }
        Command::Replica(cmd) => emit(output, &keyctl::replica_cmd::run(cmd)?),
        Command::Key(KeyCmd::Named(cmd)) => emit(output, &keyctl::key_cmd::run(cmd)?),
        Command::Audit(cmd) => match keyctl::audit_cmd::run(cmd)? {
            Some(v) => emit(output, &v),
            None => Ok(()),
        },
        Command::Trust(cmd) => {
            let (v, refused) = keyctl::trust_cmd::run(cmd)?;
            emit(output, &v)?;
            if refused {
                return Err(CtlError::NotValid(format!(
                    "the trust session closed: {}",
                    v["closed"].as_str().unwrap_or("refused")
                )));
            }
            Ok(())
        }
        Command::Policy(cmd) => {
            let (v, denied) = keyctl::policy_cmd::run(cmd)?;
            emit(output, &v)?;
            if denied {
                let rule = v["rule"].as_str().unwrap_or("default-deny");
                let reason = v["reason"].as_str().unwrap_or_default();
                return Err(CtlError::NotValid(format!(
                    "denied by rule {rule}: {reason}"
                )));
            }
            Ok(())
        }
        Command::Key(KeyCmd::Export {
            key,
            chain,
            format,
            key_use,
            out,
        }) => {
            let bytes = public::export(&chain, &key, format, key_use)?;
            match out {
                Some(out) => {
                    files::replace_atomic(&out, &bytes, 0o644)?;
                    emit(
                        output,
                        &serde_json::json!({"out": out.display().to_string()}),
                    )
                }
                None => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&bytes)
                        .map_err(CtlError::io("cannot write", "standard output"))
                }
            }
        }
        Command::Chain(ChainCmd::Show { file }) => {
            let v = chain_cmd::load(&file)?;
            match output {
                Some(Output::Json) => print_json(&chain_cmd::to_json(&v)),
                _ => {
                    print!("{}", chain_cmd::to_text(&v));
                    Ok(())
                }
            }
        }
        Command::Ceremony(Ceremony::CustodianKey { out }) => {
            let recipient = ceremony::custodian::keygen(&out)?;
            if output != Some(Output::Json) {
                // The recipient alone on stdout (`R=$(keyctl ceremony custodian-key …)`),
                // the note for people on stderr.
                eprintln!(
                    "(identity written to {}: the custodian keeps it, offline; give the recipient to `ceremony init --custodian NAME=…`)",
                    out.display()
                );
            }
            text_first(
                serde_json::json!({"recipient": recipient, "identity": out.display().to_string()}),
                recipient,
            )
        }
        Command::Ceremony(Ceremony::Recover {
            hsm,
            shares,
            identities,
            passphrase_files,
            expect,
            init_transcript,
            transcript,
        }) => {
            let keys = ceremony::custodian::Keys::load(&identities, &passphrase_files)?;
            let root = ceremony::recover::run(
                &hsm,
                &shares,
                &keys,
                &expect,
                &init_transcript,
                transcript.as_deref(),
            )?;
            text_first(
                serde_json::json!({"key_id": root.key_id.to_string(),
                    "fingerprint": root.fingerprint.to_string(), "matches": expect.display().to_string()}),
                format!(
                    "root {} recovered into the token; its identity matches {} (fingerprint {})",
                    root.key_id,
                    expect.display(),
                    root.fingerprint
                ),
            )
        }
    }
}

fn vectors(root_hex: &str, path: &str) -> Result<PublicJson, CtlError> {
    let path: KeyPath = path.parse()?;
    let mut secret = Zeroizing::new([0u8; ROOT_SECRET_LEN]);
    hex::decode_to_slice(root_hex.trim(), secret.as_mut()).map_err(|e| CtlError::Arg {
        flag: "--root-hex",
        message: format!(
            "expected {} hex digits (a 64-byte root): {e}",
            ROOT_SECRET_LEN * 2
        ),
    })?;
    let root = SoftwareRoot::danger_from_bytes(secret.as_ref());
    let node = derive::derive_node(&root, &path)?;
    Ok(PublicJson::new(&path, &node.public_keys()))
}

/// Prints a JSON answer: one line of JSON (the default), or `--output text`: one
/// `key: value` line per field.
fn emit(output: Option<Output>, value: &serde_json::Value) -> Result<(), CtlError> {
    match output {
        Some(Output::Text) => {
            let mut out = String::new();
            text_lines(value, 0, &mut out);
            print!("{out}");
            Ok(())
        }
        _ => print_json(value),
    }
}

fn text_lines(value: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        text_lines(v, indent + 1, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        text_lines(v, indent + 1, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(v))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CtlError> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn root_rekey_json(done: &ceremony::root_rekey::RootRekeyed) -> serde_json::Value {
    serde_json::json!({
        "old_fingerprint": done.old_fingerprint,
        "new_fingerprint": done.new.root.fingerprint,
        "new_key_id": done.new.root.key_id,
        "new_root": done.new.out.display().to_string(),
        "shares": done.new.share_files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "succession": done.succession_file.display().to_string(),
        "succession_seq": done.succession_seq,
        "branches": done.branches.iter().map(|b| serde_json::json!({
            "path": b.path.to_string(), "name": b.name, "key_id": b.key_id,
            "bundle": b.bundle.display().to_string(),
        })).collect::<Vec<_>>(),
        "trust_to_reestablish": done.trust_ended,
    })
}

fn root_rekey_text(done: &ceremony::root_rekey::RootRekeyed) -> String {
    let mut text = format!(
        "root {} succeeded by root {} (succession at seq {} of the old root log: {})
  new root: {} (shares, root.json, chain.cbor, transcript.json)
",
        done.old_fingerprint,
        done.new.root.fingerprint,
        done.succession_seq,
        done.succession_file.display(),
        done.new.out.display(),
    );
    for b in &done.branches {
        text.push_str(&format!(
            "  branch {} ({}) re-issued, key id {}: {}
",
            b.path,
            b.name,
            b.key_id,
            b.bundle.display()
        ));
    }
    text.push_str("next, on each keyd (stopped): keyd root-rekey --bundle BRANCH-BUNDLE --succession SUCCESSION, then start it; nodes re-wrap their envelopes with rewrap, then an admin retires the old root with keyd retire-root
");
    if done.trust_ended.is_empty() {
        text.push_str("trust: this cluster trusted no other cluster under the old root; clusters that trust it must establish trust in the new root again");
    } else {
        text.push_str(&format!(
            "trust: every trust given under the old root ends; establish it again with each of: {}; and every cluster that trusts this one must establish trust in the new root again",
            done.trust_ended.join(", ")
        ));
    }
    text
}

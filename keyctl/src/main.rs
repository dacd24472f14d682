//! `keyctl`: the keyd admin CLI and offline root ceremonies.

mod ceremony;
mod chain_cmd;
mod cli;
mod client;
mod enroll;
mod error;
mod files;
mod public;
mod remote;

use std::process::ExitCode;

use clap::Parser;
use keyd::derive::{self, KeyPath, SoftwareRoot};
use keyd::hsm::ROOT_SECRET_LEN;
use zeroize::Zeroizing;

use cli::{Ceremony, ChainCmd, Cli, Command, Output};
use error::CtlError;
use public::PublicJson;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyctl: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            if let Some(hint) = e.hint() {
                eprintln!("  try: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), CtlError> {
    match cli.command {
        Command::Vectors { root_hex, path } => {
            let root_hex = Zeroizing::new(root_hex);
            print_json(&vectors(&root_hex, &path)?)
        }
        Command::Ceremony(Ceremony::Derive { hsm, path }) => {
            print_json(&ceremony::derive(&hsm, &path)?)
        }
        Command::Ceremony(Ceremony::Init {
            hsm,
            shares,
            threshold,
            cluster,
            out,
        }) => {
            let done = ceremony::init::run(&hsm, shares, threshold, &cluster, &out)?;
            println!("root created on the token");
            println!("  key id:      {}", done.root.key_id);
            println!("  fingerprint: {}", done.root.fingerprint);
            println!(
                "  shares:      {} ({} needed to recover), one per custodian:",
                done.root.shares, done.root.threshold
            );
            for f in &done.share_files {
                println!("    {}", f.display());
            }
            println!("  public:      {}", done.out.join("root.json").display());
            println!("  chain:       {}", done.out.join("chain.cbor").display());
            println!(
                "  transcript:  {}",
                done.out.join("transcript.json").display()
            );
            Ok(())
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
            println!(
                "branch {} ({name}) certified at seq {}, key id {}",
                done.path, done.seq, done.key_id
            );
            println!("  bundle (sealed to the install key): {}", out.display());
            println!("  chain updated: {}", chain.display());
            Ok(())
        }
        Command::Ceremony(Ceremony::Revoke {
            hsm,
            chain,
            path,
            reason,
        }) => {
            let cut = ceremony::branch::revoke(&hsm, &chain, &path, &reason)?;
            println!("revoked {} key(s):", cut.len());
            for p in cut {
                println!("  {p}");
            }
            println!("chain updated: {}", chain.display());
            Ok(())
        }
        remote @ (Command::Node(_)
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
        | Command::Chain(ChainCmd::Fetch { .. })) => match remote::run(remote)? {
            Some(v) => print_json(&v),
            None => Ok(()),
        },
        Command::Chain(ChainCmd::Verify { file }) => {
            let v = chain_cmd::load(&file)?;
            println!("{}", chain_cmd::summary(&file, &v));
            Ok(())
        }
        Command::Chain(ChainCmd::Show { file, output }) => {
            let v = chain_cmd::load(&file)?;
            match output {
                Output::Json => print_json(&chain_cmd::to_json(&v)),
                Output::Text => {
                    print!("{}", chain_cmd::to_text(&v));
                    Ok(())
                }
            }
        }
        Command::Ceremony(Ceremony::Recover {
            hsm,
            shares,
            expect,
            transcript,
        }) => {
            let root = ceremony::recover::run(&hsm, &shares, &expect, transcript.as_deref())?;
            println!(
                "root {} recovered into the token; its identity matches {} (fingerprint {})",
                root.key_id,
                expect.display(),
                root.fingerprint
            );
            Ok(())
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

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CtlError> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

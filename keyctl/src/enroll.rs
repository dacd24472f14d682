//! A node joining keyd: enrollment with a one-time token, and certificate renewal (the
//! library's [`keyd::client::enroll`], with the token from a file or the environment).

use std::path::Path;

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::CtlError;
use crate::files;

/// Where the token comes from when no `--token-file` is given.
const TOKEN_ENV: &str = "KEYD_ENROLL_TOKEN";

fn token(file: Option<&Path>) -> Result<Zeroizing<String>, CtlError> {
    let text = match file {
        Some(f) => {
            Zeroizing::new(std::fs::read_to_string(f).map_err(CtlError::io("cannot read", f))?)
        }
        None => Zeroizing::new(std::env::var(TOKEN_ENV).map_err(|_| CtlError::Arg {
            flag: "--token-file",
            message: format!("give the enrollment token in a file, or in {TOKEN_ENV}"),
        })?),
    };
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// Enrolls and writes DIR (see [`keyd::client::enroll`]); DIR is checked before the
/// token is spent.
pub fn enroll(
    url: &str,
    ca: &Path,
    token_file: Option<&Path>,
    out: &Path,
) -> Result<Value, CtlError> {
    let token = token(token_file)?;
    if !files::is_absent_or_empty(out) {
        return Err(CtlError::OutExists(out.to_owned()));
    }
    let enrolled = keyd::client::enroll::enroll(url, ca, &token)?;
    let saved = enrolled.save(out)?;
    let mut report = json!({
        "path": enrolled.path,
        "mode": enrolled.mode,
        "config": saved.config.display().to_string(),
        "chain": saved.chain.display().to_string(),
        "chain_entries": enrolled.chain.len(),
    });
    if let Some((bundle, install)) = saved.bundle {
        report["bundle"] = bundle.display().to_string().into();
        report["install_key"] = install.display().to_string().into();
    }
    Ok(report)
}

/// Renews the certificate of a keyctl.toml for the same key.
pub fn renew(config: &Path) -> Result<Value, CtlError> {
    let cert = keyd::client::enroll::renew(config)?;
    Ok(json!({"certificate": cert.display().to_string()}))
}

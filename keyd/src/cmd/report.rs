//! How keyd's commands answer: a result as text or as one JSON object on stdout; an
//! error as `keyd: error: …` with a `try:` line where there is something to try, or, with
//! `--output json`, as one JSON object `{"error": {"code", "message", "try"}}` on stderr
//! with a stable code.

use std::fmt::Write as _;

use keyd::config::ConfigError;
use keyd::hsm::HsmError;
use serde_json::{Value, json};
use thiserror::Error;

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
}

/// What a command did, for people and for programs.
pub struct Report {
    /// The `--output json` form.
    pub json: Value,
    /// The text form.
    pub text: String,
}

impl Report {
    /// Prints the report in `output`'s form.
    pub fn print(&self, output: Output) {
        match output {
            Output::Json => println!("{}", self.json),
            Output::Text => println!("{}", self.text),
        }
    }
}

/// A refusal of keyd's own, with a stable code and what to try.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct Refusal {
    /// The stable code.
    pub code: &'static str,
    /// What was refused and why.
    pub message: String,
    /// What to try.
    pub hint: Option<&'static str>,
}

impl Refusal {
    /// A refusal with `code`, as an error.
    pub fn error(code: &'static str, message: impl Into<String>) -> anyhow::Error {
        Refusal {
            code,
            message: message.into(),
            hint: None,
        }
        .into()
    }

    /// A refusal with `code` and what to try.
    pub fn with_hint(
        code: &'static str,
        message: impl Into<String>,
        hint: &'static str,
    ) -> anyhow::Error {
        Refusal {
            code,
            message: message.into(),
            hint: Some(hint),
        }
        .into()
    }
}

/// The error's stable code and what to try, from the first cause that says.
fn classify(e: &anyhow::Error) -> (&'static str, Option<&'static str>) {
    for cause in e.chain() {
        if let Some(r) = cause.downcast_ref::<Refusal>() {
            return (r.code, r.hint);
        }
        if let Some(c) = cause.downcast_ref::<ConfigError>() {
            return match c {
                ConfigError::Read { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    (
                        "no_config",
                        Some(
                            "pass --config FILE, or copy keyd/keyd.example.toml to keyd.toml and edit it",
                        ),
                    )
                }
                _ => ("bad_config", None),
            };
        }
        if let Some(h) = cause.downcast_ref::<HsmError>() {
            return match h {
                HsmError::SealKeyExists { .. } => (
                    "seal_key_exists",
                    Some(
                        "name another object (object=) in seal_hsm, or use a fresh token (`hsm-sim init --dir DIR --label LABEL --object seal`)",
                    ),
                ),
                HsmError::TokenNotFound { .. } => (
                    "hsm",
                    Some(
                        "check token= in seal_hsm and SOFTHSM2_CONF (`hsm-sim status --dir DIR` lists a simulation's tokens)",
                    ),
                ),
                _ => ("hsm", None),
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::AddrInUse
        {
            return (
                "address_in_use",
                Some(
                    "another process listens there: change `listen` in keyd.toml (port 0 picks a free one)",
                ),
            );
        }
        if cause.is::<keyd::bundle::BundleError>() {
            return ("bad_bundle", None);
        }
        if cause.is::<keyd::store::StoreError>() {
            return ("store", None);
        }
    }
    ("error", None)
}

/// The error's message with its causes, each said once: a cause whose text the message
/// already carries is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
    }
    out
}

/// Prints `e` to stderr in `output`'s form.
pub fn error(e: &anyhow::Error, output: Output) {
    let (code, hint) = classify(e);
    let message = message(e);
    match output {
        Output::Json => {
            let mut error = json!({"code": code, "message": message});
            if let Some(hint) = hint {
                error["try"] = hint.into();
            }
            eprintln!("{}", json!({ "error": error }));
        }
        Output::Text => {
            eprintln!("keyd: error: {message}");
            if let Some(hint) = hint {
                eprintln!("  try: {hint}");
            }
        }
    }
}

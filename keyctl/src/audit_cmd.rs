//! `keyctl audit`: read keyd's audit log (tail, follow), export it as JSON lines for a
//! SIEM, and verify it — its hash chain and the branch key's signed heads — naming the
//! first record removed, reordered or altered.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use ed25519_dalek::VerifyingKey;
use keyd::audit::{Head, Record};
use keyd::client::{Client, ClientConfig};
use serde_json::{Value, json};

use crate::cli::default_config;
use crate::error::CtlError;
use crate::files;

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Print the last records, one JSON line each; with --follow, then every new one.
    Tail {
        /// keyctl.toml of an admin or auditor credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// How many of the last records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        /// Keep printing new records as keyd writes them (until interrupted).
        #[arg(long)]
        follow: bool,
    },
    /// Write the whole log as JSON lines (a header, then records and signed heads) to a
    /// new file, for a SIEM or for `keyctl audit verify --file`.
    Export {
        /// keyctl.toml of an admin or auditor credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The file to write (new, 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify the log: every record chained to the one before, every signed head by
    /// the branch key (keyd's CA key). Exits 3 naming the first bad record.
    Verify {
        /// keyctl.toml of an admin or auditor credential (the log is fetched, and keyd's
        /// CA certificate in it gives the branch key). Default: $KEYCTL_CONFIG.
        #[arg(long, env = "KEYCTL_CONFIG", conflicts_with = "file")]
        config: Option<PathBuf>,
        /// An export to verify instead (needs --ca).
        #[arg(long, requires = "ca")]
        file: Option<PathBuf>,
        /// keyd's CA certificate (its key is the branch key that signs heads).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

/// The branch key, from keyd's CA certificate.
fn branch_key(ca: &Path) -> Result<VerifyingKey, CtlError> {
    let pem = std::fs::read(ca).map_err(CtlError::io("cannot read", ca))?;
    keyd::tls_key::certificate_ed25519_key(&pem)
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
        .ok_or_else(|| CtlError::Arg {
            flag: "--ca",
            message: format!("{}: not keyd's CA certificate", ca.display()),
        })
}

/// Every record and head after `since`, page by page.
fn fetch(client: &Client, since: u64) -> Result<(Vec<Record>, Vec<Head>, u64), CtlError> {
    let (mut records, mut heads, mut at) = (Vec::new(), Vec::new(), since);
    loop {
        let page = client.audit_page(at, 10_000)?;
        let got = page.records.len();
        at = page.records.last().map_or(at, |r| r.seq);
        records.extend(page.records);
        heads.extend(page.heads);
        if got == 0 || at >= page.last {
            return Ok((records, heads, page.last));
        }
    }
}

fn line(v: &impl serde::Serialize) -> Result<String, CtlError> {
    Ok(serde_json::to_string(v)?)
}

/// Runs an audit command: the JSON to print at the end (None when it printed lines).
pub fn run(cmd: AuditCmd) -> Result<Option<Value>, CtlError> {
    match cmd {
        AuditCmd::Tail {
            config,
            lines,
            follow,
        } => {
            let client = Client::from_config(&config)?;
            let last = client.audit_page(u64::MAX - 1, 1)?.last;
            let mut at = last.saturating_sub(lines);
            let mut out = std::io::stdout().lock();
            loop {
                let page = client.audit_page(at, 10_000)?;
                for r in &page.records {
                    writeln!(out, "{}", line(r)?)
                        .and_then(|()| out.flush())
                        .map_err(CtlError::io("cannot write", "standard output"))?;
                    at = r.seq;
                }
                if !follow {
                    return Ok(None);
                }
                if page.records.is_empty() {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
        AuditCmd::Export { config, out } => {
            let cfg = ClientConfig::read(&config)?;
            let key = branch_key(&cfg.ca)?;
            let client = Client::from_config(&config)?;
            let (records, heads, last) = fetch(&client, 0)?;
            let mut text = line(&json!({
                "keyd_audit_export": 1,
                "url": client.url(),
                "branch_key": hex::encode(key.to_bytes()),
                "exported_at": keyd::unix_now(),
            }))?;
            text.push('\n');
            let mut heads_at = heads.iter().peekable();
            for r in &records {
                // Fields in the record's own order (a JSON object would sort them).
                text.push_str(&format!("{{\"record\":{}}}", line(r)?));
                text.push('\n');
                while let Some(h) = heads_at.next_if(|h| h.seq <= r.seq) {
                    text.push_str(&format!("{{\"head\":{}}}", line(h)?));
                    text.push('\n');
                }
            }
            files::write_private(&out, text.as_bytes())?;
            Ok(Some(json!({
                "out": out.display().to_string(),
                "records": records.len(),
                "heads": heads.len(),
                "last": last,
            })))
        }
        AuditCmd::Verify { config, file, ca } => {
            let (records, heads, key, source) = match (file, config) {
                (Some(file), _) => {
                    let ca = ca.ok_or_else(|| CtlError::Arg {
                        flag: "--ca",
                        message: "give keyd's CA certificate with --file".into(),
                    })?;
                    let (records, heads) = read_export(&file)?;
                    (records, heads, branch_key(&ca)?, file.display().to_string())
                }
                (None, config) => {
                    let config = config.unwrap_or_else(default_config);
                    let cfg = ClientConfig::read(&config)?;
                    let key = match &ca {
                        Some(ca) => branch_key(ca)?,
                        None => branch_key(&cfg.ca)?,
                    };
                    let (records, heads, _) = fetch(&Client::from_config(&config)?, 0)?;
                    (records, heads, key, cfg.url)
                }
            };
            let v = keyd::audit::verify(&records, &heads, &key, true).map_err(|e| {
                CtlError::NotValid(format!("{source}: the audit log does not verify: {e}"))
            })?;
            Ok(Some(json!({
                "valid": true,
                "source": source,
                "records": v.records,
                "heads": v.heads,
                "last": v.last,
                "signed_to": v.signed_to,
                "unsigned": v.last - v.signed_to,
            })))
        }
    }
}

/// Records and heads of an export.
fn read_export(file: &Path) -> Result<(Vec<Record>, Vec<Head>), CtlError> {
    let bad = |n: usize, message: String| CtlError::Arg {
        flag: "--file",
        message: format!("{} line {n}: {message}", file.display()),
    };
    let f = std::fs::File::open(file).map_err(CtlError::io("cannot read", file))?;
    let (mut records, mut heads) = (Vec::new(), Vec::new());
    for (i, text) in std::io::BufReader::new(f).lines().enumerate() {
        let text = text.map_err(CtlError::io("cannot read", file))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(i + 1, e.to_string()))?;
        if let Some(r) = v.get("record") {
            records.push(serde_json::from_value(r.clone()).map_err(|e| bad(i + 1, e.to_string()))?);
        } else if let Some(h) = v.get("head") {
            heads.push(serde_json::from_value(h.clone()).map_err(|e| bad(i + 1, e.to_string()))?);
        } else if v.get("keyd_audit_export").is_none() {
            return Err(bad(i + 1, "neither a record, a head nor the header".into()));
        }
    }
    Ok((records, heads))
}

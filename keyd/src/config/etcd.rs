//! The `[etcd]` table of keyd.toml: where a replica group's shared state lives
//! (`store = "etcd"`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::store::EtcdConfig;

/// `[etcd]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    /// Member URLs: `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// This replica's name, unique in its group (letters, digits, `-`, `_`).
    pub replica: String,
    /// Key prefix of the group (one per branch); default `/keyd/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// CA certificate (PEM) of the members, for `https://` endpoints.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), with `key`, for etcd's certificate auth.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// etcd user; the password comes from `password_file` or `KEYD_ETCD_PASSWORD`.
    #[serde(default)]
    pub user: Option<String>,
    /// File holding the etcd password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How long one etcd call may take before keyd calls etcd unavailable.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// How long key operations go on from the last verified state while etcd cannot be
    /// reached (state changes are refused at once).
    #[serde(default = "default_grace")]
    pub grace_seconds: u64,
}

fn default_prefix() -> String {
    "/keyd/".into()
}
fn default_timeout() -> u64 {
    5
}
fn default_grace() -> u64 {
    60
}

/// The checked `[etcd]` table: the connection and the grace.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// How to reach etcd.
    pub store: EtcdConfig,
    /// Key operations go on this long without etcd.
    pub grace: Duration,
}

impl RawEtcd {
    /// Checks the table; relative paths are taken from `base` (keyd.toml's directory).
    /// `Err((key, message))` names what is wrong.
    pub fn check(self, base: &Path) -> Result<EtcdSettings, (&'static str, String)> {
        if self.endpoints.is_empty() {
            return Err(("etcd.endpoints", "name at least one member URL".into()));
        }
        for e in &self.endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                return Err((
                    "etcd.endpoints",
                    format!("{e:?} is not an http(s)://host:port URL"),
                ));
            }
        }
        crate::chain::check_replica_name(&self.replica).map_err(|m| ("etcd.replica", m))?;
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') {
            return Err((
                "etcd.prefix",
                format!("{:?} must begin and end with /", self.prefix),
            ));
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > 300 {
            return Err(("etcd.timeout_seconds", "must be 1 to 300".into()));
        }
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let client_cert = match (self.cert, self.key) {
            (Some(c), Some(k)) => Some((resolve(c), resolve(k))),
            (None, None) => None,
            _ => return Err(("etcd.cert", "give cert and key together".into())),
        };
        let password = match (&self.password_file, std::env::var("KEYD_ETCD_PASSWORD")) {
            (Some(f), _) => {
                let f = resolve(f.clone());
                let text = std::fs::read_to_string(&f).map_err(|e| {
                    (
                        "etcd.password_file",
                        format!("cannot read {}: {e}", f.display()),
                    )
                })?;
                Some(Zeroizing::new(
                    text.trim_end_matches(['\r', '\n']).to_owned(),
                ))
            }
            (None, Ok(p)) => Some(Zeroizing::new(p)),
            (None, Err(_)) => None,
        };
        let user = match (self.user, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (Some(_), None) => {
                return Err((
                    "etcd.user",
                    "needs a password: etcd.password_file or KEYD_ETCD_PASSWORD".into(),
                ));
            }
            (None, _) => None,
        };
        Ok(EtcdSettings {
            store: EtcdConfig {
                endpoints: self.endpoints,
                prefix: self.prefix,
                replica: self.replica,
                ca: self.ca.map(resolve),
                client_cert,
                user,
                timeout: Duration::from_secs(self.timeout_seconds),
            },
            grace: Duration::from_secs(self.grace_seconds),
        })
    }
}

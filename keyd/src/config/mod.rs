//! `keyd.toml`: parsed into [`RawConfig`] (unknown keys refused), then checked into
//! [`Config`]. Errors name the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod etcd;
pub use etcd::{EtcdSettings, RawEtcd};
use thiserror::Error;

use crate::hsm::Pkcs11Uri;

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML or an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (names the key).
        message: String,
    },
    /// A value that does not make sense.
    #[error("{path}: {key}: {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Directory for keyd.redb, the CA certificate and the first admin credential.
    pub data_dir: PathBuf,
    /// RFC 7512 URI of the seal token and its AES key object.
    pub seal_hsm: String,
    /// Where the state lives: `redb` (this machine, the default) or `etcd` (a replica
    /// group; needs the `[etcd]` table).
    #[serde(default = "default_store")]
    pub store: String,
    /// The etcd connection (`store = "etcd"`).
    #[serde(default)]
    pub etcd: Option<etcd::RawEtcd>,
    /// Lifetime of node and admin client certificates, in hours.
    #[serde(default)]
    pub client_cert_hours: Option<u64>,
    /// The same in seconds, for very short-lived certificates (instead of hours).
    #[serde(default)]
    pub client_cert_seconds: Option<u64>,
    /// Lifetime of an enrollment token, in seconds.
    #[serde(default = "default_token_seconds")]
    pub enroll_token_seconds: u64,
    /// Log format: `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// DNS names and IP addresses the server certificate names.
    #[serde(default = "default_server_names")]
    pub server_names: Vec<String>,
    /// HTTP worker threads (default: the CPUs keyd may run on).
    #[serde(default)]
    pub workers: Option<usize>,
    /// The cluster's root fingerprint (64 hex digits, from the ceremony's `root.json`):
    /// `keyd import` refuses a bundle of any other root.
    #[serde(default)]
    pub root_fingerprint: Option<String>,
    /// Seconds between re-signings of this keyd's branch head (default 60).
    #[serde(default = "default_head_seconds")]
    pub head_seconds: u64,
    /// Seconds between checks for nodes due for scheduled rotation (the policy's
    /// `[[lifecycle]]` `rotate_every`; default 60).
    #[serde(default = "default_rotation_check_seconds")]
    pub rotation_check_seconds: u64,
    /// Peer keyds of the cluster (`https://host:port`) whose logs keyd mirrors.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Seconds between pulls from each peer (default 30).
    #[serde(default = "default_peer_pull_seconds")]
    pub peer_pull_seconds: u64,
    /// Seconds between pulls of each trusted cluster's chain (default 60).
    #[serde(default = "default_trust_sync_seconds")]
    pub trust_sync_seconds: u64,
    /// Seconds a trust exchange session lives (default 600).
    #[serde(default = "default_trust_session_seconds")]
    pub trust_session_seconds: u64,
    /// Seconds a client has to send a request body once its head arrived (default 10).
    #[serde(default = "default_body_timeout_seconds")]
    pub body_timeout_seconds: u64,
    /// Most open client connections per worker (default 1024).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most open connections from one client address (default 512): more are answered
    /// 429 too_many_connections and closed.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Seconds a client has for the TLS handshake (default 5).
    #[serde(default = "default_tls_handshake_seconds")]
    pub tls_handshake_seconds: u64,
    /// Most total life of a credential generation, in days (default 90): renewal is
    /// refused after it, and an admin's re-enrollment is needed.
    #[serde(default)]
    pub credential_max_days: Option<u64>,
    /// The same in seconds (instead of days).
    #[serde(default)]
    pub credential_max_seconds: Option<u64>,
    /// How long after its node's next epoch an epoch key is still accepted as the
    /// sender of an envelope, in seconds (default 86400; 0: only current epochs).
    #[serde(default = "default_sender_grace_seconds")]
    pub sender_grace_seconds: u64,
    /// Oldest head a peer may serve for its own branch log, in seconds (default 300).
    #[serde(default = "default_peer_max_age_seconds")]
    pub peer_max_age_seconds: u64,
}

fn default_store() -> String {
    "redb".into()
}

fn default_body_timeout_seconds() -> u64 {
    10
}

fn default_max_connections() -> usize {
    1024
}

fn default_max_connections_per_ip() -> usize {
    512
}

fn default_tls_handshake_seconds() -> u64 {
    5
}

fn default_sender_grace_seconds() -> u64 {
    86_400
}

fn default_peer_max_age_seconds() -> u64 {
    300
}

fn default_head_seconds() -> u64 {
    60
}

fn default_rotation_check_seconds() -> u64 {
    60
}

fn default_peer_pull_seconds() -> u64 {
    30
}

fn default_trust_sync_seconds() -> u64 {
    60
}

fn default_trust_session_seconds() -> u64 {
    600
}

fn default_server_names() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
}

/// A DNS name (letters, digits, `-`, dot-separated labels) or an IP address.
fn check_server_name(name: &str) -> Result<(), String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("{name:?} is neither a DNS name nor an IP address"));
    }
    Ok(())
}

fn default_token_seconds() -> u64 {
    600
}
fn default_log_format() -> String {
    "text".into()
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The seal token.
    pub seal_hsm: Pkcs11Uri,
    /// Client certificate lifetime, seconds.
    pub client_cert_seconds: u64,
    /// Enrollment token lifetime, seconds.
    pub enroll_token_seconds: u64,
    /// JSON logs.
    pub log_json: bool,
    /// Names in the server certificate.
    pub server_names: Vec<String>,
    /// HTTP worker threads.
    pub workers: usize,
    /// The expected root fingerprint (lowercase hex), if configured.
    pub root_fingerprint: Option<String>,
    /// Branch head re-signing interval.
    pub head_interval: std::time::Duration,
    /// Between checks for nodes due for scheduled rotation.
    pub rotation_check: std::time::Duration,
    /// Peer base URLs (`https://host:port`, no trailing slash).
    pub peers: Vec<String>,
    /// Pull interval per peer.
    pub peer_pull_interval: std::time::Duration,
    /// Pull interval of the trusted clusters' chains.
    pub trust_sync_interval: std::time::Duration,
    /// Lifetime of a trust exchange session (seconds).
    pub trust_session: u64,
    /// Oldest head a peer may serve for its own branch log.
    pub peer_max_age: std::time::Duration,
    /// Grace for superseded senders.
    pub sender_grace: std::time::Duration,
    /// Most total life of a credential generation.
    pub credential_max: std::time::Duration,
    /// Deadline for a request body.
    pub body_timeout: std::time::Duration,
    /// Most open connections per worker.
    pub max_connections: usize,
    /// Most open connections per client address.
    pub max_connections_per_ip: usize,
    /// Deadline for the TLS handshake.
    pub tls_handshake: std::time::Duration,
    /// With `store = "etcd"`: the replica group's shared store.
    pub etcd: Option<etcd::EtcdSettings>,
}

/// Checks a root fingerprint: 64 hex digits (SHA-256 of the root identity key);
/// returns it in lowercase.
pub fn check_fingerprint(text: &str) -> Result<String, String> {
    let t = text.trim().to_ascii_lowercase();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a root fingerprint (64 hex digits, as in the ceremony's root.json)"
        ));
    }
    Ok(t)
}

/// A TOML error by line and column, without the line itself (it may hold a secret
/// written where it does not belong).
fn parse_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: parse_error(&text, &e),
        })?;
        let value = |key, message: String| ConfigError::Value {
            path: path.to_owned(),
            key,
            message,
        };
        let listen = raw
            .listen
            .parse()
            .map_err(|e| value("listen", format!("{:?} is not host:port: {e}", raw.listen)))?;
        let seal_hsm = raw
            .seal_hsm
            .parse()
            .map_err(|e: crate::hsm::UriError| value("seal_hsm", e.to_string()))?;
        let client_cert_seconds = match (raw.client_cert_hours, raw.client_cert_seconds) {
            (Some(_), Some(_)) => {
                return Err(value(
                    "client_cert_seconds",
                    "give client_cert_hours or client_cert_seconds, not both".into(),
                ));
            }
            (Some(h), None) if h == 0 || h > 24 * 366 => {
                return Err(value("client_cert_hours", "must be 1 to 8784".into()));
            }
            (None, Some(s)) if s == 0 || s > 24 * 366 * 3600 => {
                return Err(value("client_cert_seconds", "must be 1 to 31622400".into()));
            }
            (Some(h), None) => h * 3600,
            (None, Some(s)) => s,
            (None, None) => 24 * 3600,
        };
        if raw.enroll_token_seconds == 0 || raw.enroll_token_seconds > 7 * 86_400 {
            return Err(value("enroll_token_seconds", "must be 1 to 604800".into()));
        }
        let log_json = match raw.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(value(
                    "log_format",
                    format!("{other:?} is not text or json"),
                ));
            }
        };
        if raw.server_names.is_empty() {
            return Err(value("server_names", "name at least one host".into()));
        }
        for n in &raw.server_names {
            check_server_name(n).map_err(|m| value("server_names", m))?;
        }
        let workers = match raw.workers {
            Some(n) if n == 0 || n > 256 => {
                return Err(value("workers", "must be 1 to 256".into()));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let root_fingerprint = raw
            .root_fingerprint
            .as_deref()
            .map(check_fingerprint)
            .transpose()
            .map_err(|m| value("root_fingerprint", m))?;
        if raw.head_seconds == 0 || raw.head_seconds > 86_400 {
            return Err(value("head_seconds", "must be 1 to 86400".into()));
        }
        if raw.rotation_check_seconds == 0 || raw.rotation_check_seconds > 86_400 {
            return Err(value("rotation_check_seconds", "must be 1 to 86400".into()));
        }
        if raw.peer_pull_seconds == 0 || raw.peer_pull_seconds > 86_400 {
            return Err(value("peer_pull_seconds", "must be 1 to 86400".into()));
        }
        if raw.trust_sync_seconds == 0 || raw.trust_sync_seconds > 86_400 {
            return Err(value("trust_sync_seconds", "must be 1 to 86400".into()));
        }
        if raw.trust_session_seconds == 0 || raw.trust_session_seconds > 3_600 {
            return Err(value("trust_session_seconds", "must be 1 to 3600".into()));
        }
        let credential_max = match (raw.credential_max_days, raw.credential_max_seconds) {
            (Some(_), Some(_)) => {
                return Err(value(
                    "credential_max_seconds",
                    "give credential_max_days or credential_max_seconds, not both".into(),
                ));
            }
            (Some(d), None) if d == 0 || d > 3660 => {
                return Err(value("credential_max_days", "must be 1 to 3660".into()));
            }
            (None, Some(0)) => {
                return Err(value("credential_max_seconds", "must be at least 1".into()));
            }
            (Some(d), None) => d * 86_400,
            (None, Some(s)) => s,
            (None, None) => 90 * 86_400,
        };
        for (key, v) in [
            ("body_timeout_seconds", raw.body_timeout_seconds),
            ("tls_handshake_seconds", raw.tls_handshake_seconds),
        ] {
            if v == 0 || v > 600 {
                return Err(value(key, "must be 1 to 600".into()));
            }
        }
        if raw.max_connections == 0 || raw.max_connections > 1_000_000 {
            return Err(value("max_connections", "must be 1 to 1000000".into()));
        }
        if raw.max_connections_per_ip == 0 || raw.max_connections_per_ip > 1_000_000 {
            return Err(value(
                "max_connections_per_ip",
                "must be 1 to 1000000".into(),
            ));
        }
        if raw.peer_max_age_seconds == 0 {
            return Err(value("peer_max_age_seconds", "must be at least 1".into()));
        }
        let mut peers = Vec::new();
        for p in &raw.peers {
            let base = p.trim_end_matches('/');
            let hostport = base
                .strip_prefix("https://")
                .ok_or_else(|| value("peers", format!("{p:?} is not an https://host:port URL")))?;
            if hostport.is_empty() || hostport.contains('/') {
                return Err(value(
                    "peers",
                    format!("{p:?} is not an https://host:port URL (no path)"),
                ));
            }
            peers.push(base.to_owned());
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let etcd = match (raw.store.as_str(), raw.etcd) {
            ("redb", None) => None,
            ("redb", Some(_)) => {
                return Err(value(
                    "etcd",
                    "an [etcd] table needs store = \"etcd\"".into(),
                ));
            }
            ("etcd", Some(t)) => Some(t.check(base).map_err(|(k, m)| value(k, m))?),
            ("etcd", None) => {
                return Err(value(
                    "etcd",
                    "store = \"etcd\" needs an [etcd] table (endpoints, replica)".into(),
                ));
            }
            (other, _) => {
                return Err(value("store", format!("{other:?}: redb or etcd")));
            }
        };
        let data_dir = if raw.data_dir.is_relative() {
            path.parent().unwrap_or(Path::new(".")).join(&raw.data_dir)
        } else {
            raw.data_dir
        };
        Ok(Config {
            listen,
            data_dir,
            seal_hsm,
            client_cert_seconds,
            enroll_token_seconds: raw.enroll_token_seconds,
            log_json,
            server_names: raw.server_names,
            workers,
            root_fingerprint,
            head_interval: std::time::Duration::from_secs(raw.head_seconds),
            rotation_check: std::time::Duration::from_secs(raw.rotation_check_seconds),
            peers,
            peer_pull_interval: std::time::Duration::from_secs(raw.peer_pull_seconds),
            trust_sync_interval: std::time::Duration::from_secs(raw.trust_sync_seconds),
            trust_session: raw.trust_session_seconds,
            peer_max_age: std::time::Duration::from_secs(raw.peer_max_age_seconds),
            sender_grace: std::time::Duration::from_secs(raw.sender_grace_seconds),
            credential_max: std::time::Duration::from_secs(credential_max),
            body_timeout: std::time::Duration::from_secs(raw.body_timeout_seconds),
            max_connections: raw.max_connections,
            max_connections_per_ip: raw.max_connections_per_ip,
            tls_handshake: std::time::Duration::from_secs(raw.tls_handshake_seconds),
            etcd,
        })
    }

    /// The database file (with etcd: this replica's own sealed secrets only).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("keyd.redb")
    }

    /// Opens the store: the redb file, and etcd when the state is shared there.
    pub fn open_store(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        let store = crate::store::Store::open(&self.db_path())?;
        match &self.etcd {
            Some(e) => store.with_etcd(&e.store),
            None => Ok(store),
        }
    }
}

#[cfg(test)]
mod tests;

//! keyd: hierarchical key management rooted in a PKCS#11 HSM.
//!
//! The library is the protocol: the key tree and its derivation ([`mod@derive`]) and the
//! PKCS#11 adapter that holds the root secret ([`hsm`]). Nodes may depend on it to
//! check keys offline; `keyctl` uses it for the root ceremonies.

#[cfg(feature = "server")]
pub mod api;
pub mod audit;
pub mod bundle;
pub mod chain;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod config;
pub mod derive;
pub mod envelope;
#[cfg(feature = "client")]
pub mod export;
#[cfg(feature = "client")]
pub mod files;
pub mod hsm;
#[cfg(feature = "server")]
pub mod identity;
#[cfg(feature = "server")]
pub mod peers;
#[cfg(feature = "client")]
pub mod policy;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "client")]
pub mod tls_key;
#[cfg(feature = "client")]
pub mod trust;
#[cfg(feature = "client")]
pub mod wire;

#[doc(hidden)]
pub mod fuzzing;

/// Makes this process undumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core dump, and no
/// `ptrace` or `/proc/PID/mem` by other processes of the same user, so secrets in memory
/// do not end up on disk or in another process. keyd and the ceremonies call it first.
pub fn disable_core_dumps() -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A duration: seconds, or a number with a unit `s`, `m`, `h` or `d` (`90`, `5m`, `30d`).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90, 90s, 5m, 2h, 1d)"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `unix` seconds as RFC 3339 UTC (`2026-11-30T04:27:16Z`), as messages name times; the
/// number of seconds itself when it is past what a date can say.
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} s after 1970"))
}

/// Syncs the directory that holds `path`, so that a file or directory created or renamed
/// there survives a crash, not only its contents.
pub fn sync_dir(path: &std::path::Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// How an enrollment token for an exported-mode node begins: the node's first request
/// carries its install key, instead of learning the mode from a refusal.
pub const EXPORTED_TOKEN_PREFIX: &str = "exported-";

/// The prefix of every domain tag under which keyd signs for itself (statements, heads,
/// envelope headers: `keyd/v1/statement\0`, `keyd/v1/head\0`, `keyd/v1/encrypted\0`).
/// `POST /v1/sign` refuses caller data that begins with it, so a node application that
/// signs data an attacker chooses cannot be made to sign something keyd would take as
/// its own (an envelope "from" that node). Raw signatures stay plain Ed25519 over the
/// caller's bytes, verifiable by any tool.
pub const RESERVED_SIGNING_PREFIX: &[u8] = b"keyd/";

#[cfg(test)]
mod tests {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_process_is_made_undumpable() {
        super::disable_core_dumps().expect("prctl");
        assert_eq!(
            rustix::process::dumpable_behavior().expect("prctl"),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }

    #[test]
    fn every_signing_domain_is_under_the_reserved_prefix() {
        for domain in [
            crate::chain::STATEMENT_DOMAIN,
            crate::chain::HEAD_DOMAIN,
            crate::envelope::SIGN_DOMAIN,
            crate::audit::RECORD_DOMAIN,
            crate::audit::HEAD_DOMAIN,
        ] {
            assert!(
                domain.starts_with(super::RESERVED_SIGNING_PREFIX),
                "{domain:?}"
            );
        }
    }
}

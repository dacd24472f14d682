//! Where a PIN comes from: a file or an environment variable, never argv.

use std::fmt;
use std::path::PathBuf;

use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::{HsmError, UriError};

/// The `pin-source` of a PKCS#11 URI.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// `file:/path` (or `file:///path`): the first line of the file. Must be mode 0600 or
    /// stricter.
    File(PathBuf),
    /// `env:NAME`: the value of an environment variable.
    Env(String),
}

impl PinSource {
    /// Parses a `pin-source` value.
    pub fn parse(value: &str) -> Result<Self, UriError> {
        if let Some(var) = value.strip_prefix("env:") {
            if var.is_empty() {
                return Err(UriError::PinSource(value.to_owned()));
            }
            return Ok(PinSource::Env(var.to_owned()));
        }
        if let Some(rest) = value.strip_prefix("file:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(UriError::PinSource(value.to_owned()));
            }
            return Ok(PinSource::File(PathBuf::from(path)));
        }
        Err(UriError::PinSource(value.to_owned()))
    }

    /// Reads the PIN.
    pub fn read(&self) -> Result<AuthPin, HsmError> {
        let text: Zeroizing<String> = match self {
            PinSource::File(path) => {
                check_mode(path)?;
                Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                    HsmError::PinFile {
                        path: path.clone(),
                        source,
                    }
                })?)
            }
            PinSource::Env(var) => Zeroizing::new(
                std::env::var(var).map_err(|_| HsmError::PinEnv { var: var.clone() })?,
            ),
        };
        let pin = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if pin.is_empty() {
            return Err(HsmError::PinEmpty {
                source_name: self.to_string(),
            });
        }
        Ok(AuthPin::from(pin.to_owned()))
    }
}

#[cfg(unix)]
fn check_mode(path: &std::path::Path) -> Result<(), HsmError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| HsmError::PinFile {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(HsmError::PinFileMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &std::path::Path) -> Result<(), HsmError> {
    Ok(())
}

impl fmt::Display for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Always `file://` + path: parse strips one leading `//`, so this prints
            // back to the same path even when the path itself starts with `//`.
            PinSource::File(p) => write!(f, "file://{}", p.display()),
            PinSource::Env(v) => write!(f, "env:{v}"),
        }
    }
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinSource({self})")
    }
}

//! A fresh token per test, provisioned through the `hsm-sim` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Provisioned, SimError};

/// Variable naming the `hsm-sim` binary, when it is not beside the test executable.
pub const BIN_ENV: &str = "HSM_SIM_BIN";

/// An isolated SoftHSM2 token in a temporary directory, removed on drop.
///
/// Give child processes `SOFTHSM2_CONF` with [`TestToken::command`] or
/// [`TestToken::softhsm2_conf`].
#[derive(Debug)]
pub struct TestToken {
    dir: tempfile::TempDir,
    provisioned: Provisioned,
    label: String,
}

impl TestToken {
    /// Provisions a token labelled `label` with `bin` (the `hsm-sim` binary).
    pub fn with_binary(bin: &Path, label: &str) -> Result<Self, SimError> {
        let dir = tempfile::Builder::new()
            .prefix("hsm-sim-")
            .tempdir()
            .map_err(|source| SimError::Io {
                what: "cannot create temp dir",
                path: std::env::temp_dir(),
                source,
            })?;
        let sim = dir.path().join("hsm");
        let out = Command::new(bin)
            .args(["init", "--output", "json", "--label", label, "--dir"])
            .arg(&sim)
            .output()
            .map_err(|source| SimError::Io {
                what: "cannot run",
                path: bin.to_owned(),
                source,
            })?;
        if !out.status.success() {
            return Err(SimError::Child(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let provisioned: Provisioned = serde_json::from_slice(&out.stdout)
            .map_err(|e| SimError::Child(format!("unreadable hsm-sim output: {e}")))?;
        Ok(TestToken {
            dir,
            provisioned,
            label: label.to_owned(),
        })
    }

    /// Provisions a token with the `hsm-sim` binary from `$HSM_SIM_BIN`, else the one
    /// in the cargo target directory of the running test (`target/<profile>/hsm-sim`).
    pub fn new(label: &str) -> Result<Self, SimError> {
        Self::with_binary(&binary()?, label)
    }

    /// The token's RFC 7512 URI (object `root`, PIN from the 0600 user PIN file).
    pub fn uri(&self) -> &str {
        &self.provisioned.uri
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The `SOFTHSM2_CONF` value for processes using this token.
    pub fn softhsm2_conf(&self) -> &Path {
        &self.provisioned.softhsm2_conf
    }

    /// The simulation directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("hsm")
    }

    /// A command with `SOFTHSM2_CONF` set for this token.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", self.softhsm2_conf());
        c
    }
}

/// Locates the `hsm-sim` binary for tests.
pub fn binary() -> Result<PathBuf, SimError> {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|source| SimError::Io {
        what: "cannot locate",
        path: PathBuf::from("current executable"),
        source,
    })?;
    // target/<profile>/deps/<test> -> target/<profile>/hsm-sim
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("hsm-sim"))
        .filter(|p| p.exists());
    candidate.ok_or_else(|| {
        SimError::Child(format!(
            "the hsm-sim binary is not built next to {}; run `cargo build -p hsm-sim` or set {BIN_ENV}",
            exe.display()
        ))
    })
}

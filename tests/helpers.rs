//! Shared test helpers: the binaries (built once per test process), fresh tokens, and
//! running a test body inside a child process that has a token's `SOFTHSM2_CONF`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use hsm_sim::TestToken;

/// The workspace binaries the tests run.
pub struct Bins {
    /// `keyctl`.
    pub keyctl: PathBuf,
    /// `hsm-sim`.
    pub hsm_sim: PathBuf,
    /// `keyd`.
    pub keyd: PathBuf,
    /// keyd's example node (`keyd/examples/node.rs`).
    pub example_node: PathBuf,
}

/// Builds `keyd`, `keyctl` and `hsm-sim` once per test process, in the same target directory
/// and profile as this test binary, and returns their paths.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| build().unwrap_or_else(|e| panic!("cannot build the binaries: {e:#}")))
}

fn build() -> Result<Bins> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-HASH
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target/<profile> directory")?
        .to_owned();
    let target_dir = profile_dir.parent().context("no target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The whole workspace's binaries and tests, as `cargo test --workspace` selects them:
    // with the tests selected, dev-dependencies take part in feature unification exactly as
    // they did for this test binary, so after `cargo test --workspace` (which builds the
    // examples too) this is a no-op.
    // Without `--tests`, the dev-dependencies' features drop out, every crate between them
    // and the binaries gets another hash, and the whole tree is compiled (and stored) twice.
    cmd.args([
        "build",
        "--quiet",
        "--workspace",
        "--bins",
        "--tests",
        "--examples",
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // Not the variables cargo set for this test process: a build script that watches
    // one of them (ring's watches CARGO_MANIFEST_DIR) would run again, and everything
    // built on it, this very test binary included, would be rebuilt under it.
    for (name, _) in std::env::vars_os() {
        let set_for_tests = name.to_str().is_some_and(|n| {
            n.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&n)
        });
        if set_for_tests {
            cmd.env_remove(name);
        }
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed: {status}");
    }
    Ok(Bins {
        keyctl: profile_dir.join("keyctl"),
        hsm_sim: profile_dir.join("hsm-sim"),
        keyd: profile_dir.join("keyd"),
        example_node: profile_dir.join("examples").join("node"),
    })
}

/// A fresh SoftHSM2 token labelled `label`.
pub fn token(label: &str) -> Result<TestToken> {
    Ok(TestToken::with_binary(&bins().hsm_sim, label)?)
}

/// Runs keyctl with the token's SOFTHSM2_CONF.
pub fn keyctl(token: &TestToken, args: &[&str]) -> Result<Output> {
    Ok(token.command(&bins().keyctl).args(args).output()?)
}

/// Runs keyctl and requires success, returning stdout.
pub fn keyctl_ok(token: &TestToken, args: &[&str]) -> Result<String> {
    let out = keyctl(token, args)?;
    if !out.status.success() {
        bail!(
            "keyctl {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs keyctl and requires a clean failure (exit 1, 2 or 3, not a panic), returning stderr.
pub fn keyctl_err(token: &TestToken, args: &[&str]) -> Result<String> {
    let out = keyctl(token, args)?;
    if out.status.success() {
        bail!(
            "keyctl {args:?} succeeded but should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // 1: error; 2: usage error (clap); 3: refused. A panic exits 101, a signal has no code.
    if !matches!(out.status.code(), Some(1..=3)) {
        bail!("keyctl {args:?} ended with {} (a crash?)", out.status);
    }
    Ok(String::from_utf8(out.stderr)?)
}

/// Whether the token holds a root secret, per `hsm-sim status`.
pub fn has_root(token: &TestToken) -> Result<bool> {
    let out = Command::new(&bins().hsm_sim)
        .args(["status", "--output", "json", "--dir"])
        .arg(token.dir())
        .output()?;
    if !out.status.success() {
        bail!(
            "hsm-sim status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tokens: Vec<hsm_sim::TokenStatus> = serde_json::from_slice(&out.stdout)?;
    Ok(tokens
        .iter()
        .any(|t| t.label == token.label() && t.has_root))
}

const CHILD_URI: &str = "KEYD_TEST_TOKEN_URI";

/// A fresh token in the parent process; `None` inside the child of [`in_token_process`],
/// which uses the parent's token.
pub fn parent_token(label: &str) -> Result<Option<TestToken>> {
    if std::env::var_os(CHILD_URI).is_some() {
        return Ok(None);
    }
    token(label).map(Some)
}

/// Runs `body` with the token's URI in a child process started with the token's
/// `SOFTHSM2_CONF` (SoftHSM2 reads it once per process, and tests may not set
/// environment variables in their own process). `test_name` is the calling test's path
/// in this binary, e.g. `hsm::pkcs11_root_matches_software_root`.
///
/// In the parent this provisions nothing itself: pass the token. In the child (detected
/// by the variable) it runs `body`.
pub fn in_token_process(
    test_name: &str,
    token: Option<&TestToken>,
    body: impl FnOnce(&str) -> Result<()>,
) -> Result<()> {
    if let Ok(uri) = std::env::var(CHILD_URI) {
        return body(&uri);
    }
    let token = token.context("the parent must pass a token")?;
    let out = token
        .command(std::env::current_exe()?)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_URI, token.uri())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("1 passed") {
        bail!(
            "child test {test_name} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// File mode bits.
pub fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

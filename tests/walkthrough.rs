//! README.md's "A cluster by hand", run as written: the block between the
//! `walkthrough:begin` and `walkthrough:end` markers, with the built binaries on PATH, in
//! an empty directory. If the README drifts from what the binaries do, this fails.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::helpers::bins;

/// The shell block of the walk-through.
fn walkthrough() -> Result<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))?;
    let start = readme
        .find("<!-- walkthrough:begin -->")
        .context("README.md has no walkthrough:begin marker")?;
    let end = readme
        .find("<!-- walkthrough:end -->")
        .context("README.md has no walkthrough:end marker")?;
    let block = &readme[start..end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .map(|(body, _)| body)
        .context("the walk-through is not one sh code block")?;
    Ok(body.to_owned())
}

/// Kills the walk-through's process group (keyd, if the script stopped before its last
/// line) when dropped.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() -> Result<()> {
    let script = walkthrough()?;
    ensure!(
        script.contains("keyctl verify") && script.contains("hsm-sim init"),
        "the walk-through lost its steps:\n{script}"
    );
    let bin_dir = bins().keyd.parent().context("bin dir")?.to_owned();
    let dir = tempfile::tempdir()?;
    let logs = tempfile::tempdir()?;
    let (out_file, err_file) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYCTL_CONFIG")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file)?)
        .stderr(std::fs::File::create(&err_file)?)
        .spawn()?;
    let _group = Group(i32::try_from(child.id())?);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            bail!(
                "the walk-through did not finish in 180 s:\n{}",
                std::fs::read_to_string(&err_file).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_file)?;
    let stderr = std::fs::read_to_string(&err_file)?;
    ensure!(
        status.success(),
        "the walk-through failed ({status}):\n{stdout}\n{stderr}"
    );
    // The last command that matters: the signature verified, so "deploy" ran.
    ensure!(
        stdout.lines().any(|l| l == "deploy"),
        "no deploy:\n{stdout}"
    );
    ensure!(stdout.contains("\"valid\":true"), "{stdout}");
    // What it left is what the README says: a node directory with its config, and the
    // token in a 0600 file.
    let web = dir.path().join("web-1");
    for f in [
        "keyctl.toml",
        "node.key",
        "node.pem",
        "ca.pem",
        "chain.cbor",
    ] {
        ensure!(web.join(f).exists(), "web-1/{f} missing");
    }
    ensure!(crate::helpers::mode(&dir.path().join("web-1.token"))? == 0o600);
    Ok(())
}

//! The hsm-sim binary: init, status, destroy, and its refusals.

use std::process::Command;

use anyhow::{Result, ensure};

use crate::helpers::{bins, mode};

fn hsm_sim(args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(&bins().hsm_sim).args(args).output()?)
}

#[test]
fn init_status_destroy() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("sim");
    let dir_s = dir.to_str().unwrap_or_default();

    let out = hsm_sim(&["init", "--dir", dir_s, "--label", "keyd-root"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let conf = dir.join("softhsm2.conf");
    ensure!(
        text.contains(&format!("export SOFTHSM2_CONF={}", conf.display())),
        "{text}"
    );
    ensure!(
        text.contains("pkcs11:token=keyd-root;object=root?module-path="),
        "{text}"
    );
    ensure!(text.contains(&format!(
        "pin-source=file:{}",
        dir.join("user.pin").display()
    )));
    ensure!(mode(&dir.join("user.pin"))? == 0o600);
    ensure!(mode(&dir.join("so.pin"))? == 0o600);
    let pin = std::fs::read_to_string(dir.join("user.pin"))?;
    ensure!(!text.contains(pin.trim()), "the PIN is never printed");

    let out = hsm_sim(&["status", "--dir", dir_s])?;
    ensure!(out.status.success());
    let status = String::from_utf8(out.stdout)?;
    ensure!(status.contains("token \"keyd-root\""), "{status}");
    ensure!(status.contains("root secret absent"), "{status}");

    // A second init into the same directory adds a token with the same configuration
    // and PINs, its URI naming the object asked for.
    let out = hsm_sim(&[
        "init",
        "--dir",
        dir_s,
        "--label",
        "keyd-seal",
        "--object",
        "seal",
    ])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    ensure!(
        text.contains(&format!("export SOFTHSM2_CONF={}", conf.display()))
            && text.contains("pkcs11:token=keyd-seal;object=seal?module-path="),
        "{text}"
    );
    ensure!(std::fs::read_to_string(dir.join("user.pin"))? == pin);
    let status = String::from_utf8(hsm_sim(&["status", "--dir", dir_s])?.stdout)?;
    ensure!(
        status.contains("token \"keyd-root\"") && status.contains("token \"keyd-seal\""),
        "{status}"
    );
    // A label already there, or a bad object name, is refused and changes nothing.
    let out = hsm_sim(&[
        "init",
        "--dir",
        dir_s,
        "--label",
        "keyd-root",
        "--output",
        "json",
    ])?;
    ensure!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stderr)?;
    ensure!(err["error"]["code"] == "label_taken", "{err}");
    let out = hsm_sim(&["init", "--dir", dir_s, "--label", "x", "--object", "a;b"])?;
    ensure!(!out.status.success());
    ensure!(String::from_utf8(out.stderr)?.contains("object name \"a;b\" must be"));
    let status = String::from_utf8(hsm_sim(&["status", "--dir", dir_s])?.stdout)?;
    ensure!(status.matches("token \"").count() == 2, "{status}");

    let out = hsm_sim(&["destroy", "--dir", dir_s, "--output", "json"])?;
    ensure!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(v["destroyed"] == dir_s, "{v}");
    ensure!(!dir.exists(), "destroy removes the directory");
    // status names what is wrong: a missing directory, or one that is something else.
    let out = hsm_sim(&["status", "--dir", dir_s])?;
    ensure!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    ensure!(err.contains("does not exist; `hsm-sim init"), "{err}");
    let out = hsm_sim(&["status", "--dir", tmp.path().to_str().unwrap_or_default()])?;
    ensure!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        err.contains("is not an hsm-sim directory") && !err.contains("hsm-sim init --dir"),
        "{err}"
    );
    Ok(())
}

#[test]
fn json_output() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("sim");
    let out = hsm_sim(&[
        "init",
        "--output",
        "json",
        "--label",
        "t",
        "--dir",
        dir.to_str().unwrap_or_default(),
    ])?;
    ensure!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(v["softhsm2_conf"] == dir.join("softhsm2.conf").to_str().unwrap_or_default());
    ensure!(
        v["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("pkcs11:token=t;"))
    );
    Ok(())
}

#[test]
fn refuses_bad_labels_and_missing_softhsm() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("sim");
    let dir_s = dir.to_str().unwrap_or_default();
    for label in ["", "a;b", &"x".repeat(33)] {
        let out = hsm_sim(&["init", "--dir", dir_s, "--label", label])?;
        ensure!(!out.status.success(), "label {label:?}");
        ensure!(String::from_utf8(out.stderr)?.contains("must be 1 to 32 printable ASCII"));
        ensure!(!dir.exists(), "nothing written for label {label:?}");
    }
    let out = Command::new(&bins().hsm_sim)
        .args(["init", "--dir", dir_s, "--label", "x"])
        .env("TEST_PKCS11_MODULE", "/nonexistent/libsofthsm2.so")
        .output()?;
    ensure!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    ensure!(err.contains("apt-get install softhsm2"), "{err}");
    ensure!(!dir.exists(), "nothing written without SoftHSM2");
    // destroy refuses a directory hsm-sim did not write.
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("keep"), "mine")?;
    let out = hsm_sim(&["destroy", "--dir", dir_s])?;
    ensure!(!out.status.success());
    ensure!(dir.join("keep").exists());
    Ok(())
}

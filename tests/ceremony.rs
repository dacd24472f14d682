//! Root ceremonies through the real keyctl binary and real SoftHSM2 tokens.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use ed25519_dalek::{Signature, VerifyingKey};
use hsm_sim::TestToken;
use serde_json::Value;

use crate::helpers::{has_root, keyctl_err, keyctl_ok, mode, token};

const NODE: &str = "m/3'/1'/7'/0'/2'";

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn init(token: &TestToken, out: &Path, shares: &str, threshold: &str) -> Result<String> {
    keyctl_ok(
        token,
        &[
            "ceremony",
            "init",
            "--hsm",
            token.uri(),
            "--plain-shares",
            "--shares",
            shares,
            "--threshold",
            threshold,
            "--out",
            s(out),
        ],
    )
}

fn derive(token: &TestToken, path: &str) -> Result<Value> {
    Ok(serde_json::from_str(&keyctl_ok(
        token,
        &["ceremony", "derive", "--hsm", token.uri(), "--path", path],
    )?)?)
}

fn recover_args<'a>(token: &'a TestToken, shares: &'a [PathBuf], expect: &'a Path) -> Vec<&'a str> {
    let mut args = vec![
        "ceremony",
        "recover",
        "--hsm",
        token.uri(),
        "--expect",
        s(expect),
    ];
    if let Some(dir) = expect.parent() {
        args.extend(["--init-transcript", leak(dir.join("transcript.json"))]);
    }
    for share in shares {
        args.extend(["--share", s(share)]);
    }
    args
}

/// A path as a `&'static str` for an argument list (tests only: a few bytes per call).
fn leak(p: PathBuf) -> &'static str {
    Box::leak(
        p.into_os_string()
            .into_string()
            .unwrap_or_default()
            .into_boxed_str(),
    )
}

fn read_json(p: &Path) -> Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
}

/// The README demo, as a test: init 3-of-5, destroy the token, recover from 3 shares into
/// a new token, and get the same root and the same node key.
#[test]
fn init_destroy_recover_gives_the_same_keys() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("ceremony");
    let first = token("keyd-root")?;
    let summary = init(&first, &out, "5", "3")?;
    ensure!(summary.contains("5 (3 needed to recover)"), "{summary}");
    ensure!(has_root(&first)?);

    // Outputs: five 0600 shares, root.json, a transcript signed by the root identity.
    let root = read_json(&out.join("root.json"))?;
    for i in 1..=5 {
        let share = out.join(format!("share-{i}.json"));
        ensure!(mode(&share)? == 0o600, "share {i} mode");
        let v = read_json(&share)?;
        ensure!(v["index"] == i && v["threshold"] == 3 && v["shares"] == 5);
        ensure!(v["root_fingerprint"] == root["fingerprint"]);
        ensure!(v["format"] == "keyd-share/v1" && v["checksum"].as_str().is_some());
    }
    ensure!(
        std::fs::read_dir(tmp.path())?.count() == 1,
        "no staging directory left behind"
    );
    let transcript = read_json(&out.join("transcript.json"))?;
    let public: [u8; 32] = hex::decode(root["ed25519_public"].as_str().context("public")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("public key length"))?;
    let signature: [u8; 64] = hex::decode(transcript["signature"].as_str().context("sig")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("signature length"))?;
    VerifyingKey::from_bytes(&public)?
        .verify_strict(
            &serde_json::to_vec(&transcript["body"])?,
            &Signature::from_bytes(&signature),
        )
        .context("transcript signature")?;
    ensure!(transcript["body"]["ceremony"] == "init");
    ensure!(transcript["signer_key_id"] == root["key_id"]);

    let root_before = derive(&first, "m")?;
    let node_before = derive(&first, NODE)?;
    ensure!(root_before["key_id"] == root["key_id"]);
    ensure!(root_before["ed25519_public"] == root["ed25519_public"]);
    drop(first); // destroys the token and its directory

    let second = token("keyd-root-2")?;
    let shares = [2, 4, 5].map(|i| out.join(format!("share-{i}.json")));
    let transcript2 = tmp.path().join("recover-transcript.json");
    let root_json = out.join("root.json");
    let mut args = recover_args(&second, &shares, &root_json);
    args.extend(["--transcript", s(&transcript2)]);
    let said = keyctl_ok(&second, &args)?;
    ensure!(said.contains("recovered"), "{said}");
    ensure!(derive(&second, "m")? == root_before);
    ensure!(derive(&second, NODE)? == node_before);
    ensure!(read_json(&transcript2)?["body"]["shares_used"] == serde_json::json!([2, 4, 5]));
    Ok(())
}

#[test]
fn init_refuses_a_token_with_a_root_and_bad_splits() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let t = token("init-refusals")?;
    for (shares, threshold, want) in [
        ("5", "6", "--threshold: 6 is more than the 5 shares"),
        ("5", "1", "--threshold: 1 is too small"),
        ("1", "1", "--shares"),
        ("300", "2", "--shares"),
    ] {
        let out = tmp.path().join(format!("bad-{shares}-{threshold}"));
        let err = keyctl_err(
            &t,
            &[
                "ceremony",
                "init",
                "--hsm",
                t.uri(),
                "--plain-shares",
                "--shares",
                shares,
                "--threshold",
                threshold,
                "--out",
                s(&out),
            ],
        )?;
        ensure!(err.contains(want), "{shares}/{threshold}: {err}");
        ensure!(!out.exists());
        ensure!(!has_root(&t)?, "no root after a refused init");
    }
    // A non-empty --out is refused before the token is touched.
    let busy = tmp.path().join("busy");
    std::fs::create_dir_all(&busy)?;
    std::fs::write(busy.join("x"), "keep")?;
    let err = keyctl_err(
        &t,
        &[
            "ceremony",
            "init",
            "--hsm",
            t.uri(),
            "--plain-shares",
            "--shares",
            "3",
            "--threshold",
            "2",
            "--out",
            s(&busy),
        ],
    )?;
    ensure!(err.contains("already exists and is not empty"), "{err}");
    ensure!(!has_root(&t)?);

    init(&t, &tmp.path().join("first"), "3", "2")?;
    let before = derive(&t, "m")?;
    let again = tmp.path().join("second");
    let err = keyctl_err(
        &t,
        &[
            "ceremony",
            "init",
            "--hsm",
            t.uri(),
            "--plain-shares",
            "--shares",
            "3",
            "--threshold",
            "2",
            "--out",
            s(&again),
        ],
    )?;
    ensure!(err.contains("already holds a root secret"), "{err}");
    ensure!(err.contains("try: provision a fresh token"), "{err}");
    ensure!(!again.exists(), "no outputs from a refused init");
    ensure!(derive(&t, "m")? == before, "the root is unchanged");
    Ok(())
}

/// Every bad share set is refused naming the share and the problem, and the token is
/// left untouched.
#[test]
fn recover_refuses_bad_shares_and_leaves_the_token_untouched() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let a = token("root-a")?;
    let b = token("root-b")?;
    let out_a = tmp.path().join("a");
    let out_b = tmp.path().join("b");
    init(&a, &out_a, "5", "3")?;
    init(&b, &out_b, "5", "3")?;
    let share = |dir: &Path, i: u32| dir.join(format!("share-{i}.json"));
    let expect = out_a.join("root.json");

    // Corrupted: one hex digit of the value changed.
    let corrupted = tmp.path().join("corrupted.json");
    let mut v = read_json(&share(&out_a, 3))?;
    let value = v["value"].as_str().context("value")?.to_owned();
    let flipped = match value.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", &value[1..]),
    };
    v["value"] = Value::String(flipped);
    std::fs::write(&corrupted, serde_json::to_vec(&v)?)?;
    // Truncated: half a file.
    let truncated = tmp.path().join("truncated.json");
    let bytes = std::fs::read(share(&out_a, 3))?;
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])?;

    let fresh = token("fresh")?;
    let cases: Vec<(Vec<PathBuf>, &Path, String)> = vec![
        (
            vec![share(&out_a, 1), share(&out_a, 2)],
            &expect,
            "3 shares are needed to rebuild this root, 2 given".into(),
        ),
        (
            vec![share(&out_a, 1), share(&out_a, 2), share(&out_a, 2)],
            &expect,
            format!("share {} duplicates share #2", share(&out_a, 2).display()),
        ),
        (
            vec![share(&out_a, 1), share(&out_a, 2), share(&out_b, 3)],
            &expect,
            format!("share {} belongs to root", share(&out_b, 3).display()),
        ),
        (
            vec![share(&out_a, 1), share(&out_a, 2), corrupted.clone()],
            &expect,
            format!("share {}: checksum mismatch", corrupted.display()),
        ),
        (
            vec![share(&out_a, 1), share(&out_a, 2), truncated.clone()],
            &expect,
            format!("share {}: not a keyd share file", truncated.display()),
        ),
        (
            vec![
                share(&out_a, 1),
                share(&out_a, 2),
                tmp.path().join("missing.json"),
            ],
            &expect,
            "missing.json: cannot read".into(),
        ),
        (
            vec![share(&out_b, 1), share(&out_b, 2), share(&out_b, 3)],
            &expect,
            format!("share {} belongs to root", share(&out_b, 1).display()),
        ),
    ];
    for (shares, expect, want) in &cases {
        let err = keyctl_err(&fresh, &recover_args(&fresh, shares, expect))?;
        ensure!(err.contains(want.as_str()), "want {want:?} in:\n{err}");
        ensure!(!has_root(&fresh)?, "token touched after: {want}");
    }

    // Into a token that already holds a root: refused, that root unchanged.
    let before = derive(&b, "m")?;
    let shares = [1, 2, 3].map(|i| share(&out_a, i));
    let err = keyctl_err(&b, &recover_args(&b, &shares, &expect))?;
    ensure!(err.contains("already holds a root secret"), "{err}");
    ensure!(derive(&b, "m")? == before);

    // And finally the good set works on the untouched token.
    keyctl_ok(&fresh, &recover_args(&fresh, &shares, &expect))?;
    ensure!(derive(&fresh, "m")?["key_id"] == read_json(&expect)?["key_id"]);
    Ok(())
}

/// Token-level bad input through the CLI: wrong PIN, unknown label, missing module, a
/// PIN in the URI, a non-hardened path.
#[test]
fn bad_token_input_is_named() -> Result<()> {
    let t = token("cli-errors")?;
    let tmp = tempfile::tempdir()?;
    let wrong_pin = tmp.path().join("wrong.pin");
    hsm_sim::write_secret_file(&wrong_pin, "000000")?;
    let base = t.uri().split('?').next().unwrap_or_default().to_owned();
    let module = hsm_sim::find_module()?;
    let cases = [
        (
            format!(
                "{base}?module-path={}&pin-source=file:{}",
                module.display(),
                wrong_pin.display()
            ),
            "m",
            "the PIN for token \"cli-errors\" is incorrect",
        ),
        (
            t.uri().replace("token=cli-errors", "token=nope"),
            "m",
            "no PKCS#11 token labelled \"nope\" (tokens present: cli-errors)",
        ),
        (
            format!(
                "{base}?module-path=/nonexistent/lib.so&pin-source=file:{}",
                wrong_pin.display()
            ),
            "m",
            "apt-get install softhsm2",
        ),
        (
            format!("{base}?module-path={}&pin-value=1234", module.display()),
            "m",
            "must not carry pin-value",
        ),
        ("token=x".to_owned(), "m", "starts with \"pkcs11:\""),
        (
            t.uri().to_owned(),
            "m/1'/2",
            "component 2 (2) is not hardened",
        ),
        (t.uri().to_owned(), "m", "holds no root secret"),
    ];
    for (uri, path, want) in cases {
        let err = keyctl_err(&t, &["ceremony", "derive", "--hsm", &uri, "--path", path])?;
        ensure!(err.contains(want), "want {want:?} in:\n{err}");
        ensure!(
            !err.contains(std::fs::read_to_string(t.dir().join("user.pin"))?.trim()),
            "PIN leaked"
        );
    }
    Ok(())
}

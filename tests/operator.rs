//! What an operator meets first: where keyctl finds its config, `keyctl sign` feeding
//! `keyctl verify --signed` and the exit status that makes `verify && deploy` safe,
//! errors as JSON with stable codes, and keyd's JSON output and `try:` lines.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use keyd::chain::verify_file;
use serde_json::Value;

use crate::cluster::{Cluster, keyctl};
use crate::helpers::bins;

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Runs keyctl with exactly `env` added and KEYCTL_CONFIG / XDG_CONFIG_HOME / HOME as
/// given (removed when not): its whole output.
pub fn run_keyctl(args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let mut cmd = Command::new(&bins().keyctl);
    cmd.args(args)
        .env_remove("KEYCTL_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HOME");
    Ok(cmd.envs(env.iter().copied()).output()?)
}

fn stderr_json(out: &Output) -> Result<Value> {
    serde_json::from_slice(&out.stderr).with_context(|| {
        format!(
            "stderr is not one JSON object: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn sign_then_verify_signed_config_lookup_and_exit_codes() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin_config()?;
    crate::enroll::add_and_enroll(&c, &admin, "web", false)?;
    let dir = c.dir.path();
    let web_config = dir.join("web/keyctl.toml");
    let data = dir.join("release.txt");
    std::fs::write(&data, "release 1.0")?;

    // No --config: KEYCTL_CONFIG names it. sign prints the key that made the signature.
    let out = run_keyctl(
        &["sign", "--in", s(&data)],
        &[("KEYCTL_CONFIG", s(&web_config))],
    )?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed: Value = serde_json::from_slice(&out.stdout)?;
    let chain = verify_file(&std::fs::read(dir.join("web/chain.cbor"))?)?;
    let path = signed["path"].as_str().context("path")?.parse()?;
    let certified = chain
        .state()
        .key(&path)
        .context("the signing key is in the chain")?;
    ensure!(
        signed["public_key"] == hex::encode(certified.keys.ed25519)
            && signed["key_id"] == certified.key_id.to_string()
            && signed["epoch"] == 0,
        "{signed}"
    );
    let sig_file = dir.join("release.sig");
    std::fs::write(&sig_file, &out.stdout)?;

    // Then $XDG_CONFIG_HOME/keyctl/config.toml (absolute paths: relative ones are read
    // from the file's own directory). verify --signed: exit 0, valid.
    let xdg = tempfile::tempdir()?;
    std::fs::create_dir_all(xdg.path().join("keyctl"))?;
    let web = dir.join("web");
    std::fs::write(
        xdg.path().join("keyctl/config.toml"),
        format!(
            "url = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            c.addr,
            web.join("ca.pem").display(),
            web.join("node.pem").display(),
            web.join("node.key").display()
        ),
    )?;
    let xdg_env = [("XDG_CONFIG_HOME", s(xdg.path()))];
    let verify = ["verify", "--in", s(&data), "--signed", s(&sig_file)];
    let out = run_keyctl(&verify, &xdg_env)?;
    ensure!(
        out.status.code() == Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(answer["valid"] == true, "{answer}");

    // Attack: the data changed after signing. The answer is printed, and the command
    // fails with 3 and the reason, so `verify && deploy` does not deploy.
    let tampered = dir.join("tampered.txt");
    std::fs::write(&tampered, "release 1.0 with a backdoor")?;
    let out = run_keyctl(
        &["verify", "--in", s(&tampered), "--signed", s(&sig_file)],
        &xdg_env,
    )?;
    ensure!(out.status.code() == Some(3), "{}", out.status);
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        err.contains("not valid: the signature does not verify with this public key"),
        "{err}"
    );
    let shell = format!(
        "{} verify --in {} --signed {} >/dev/null 2>&1 && echo deployed || echo refused",
        bins().keyctl.display(),
        s(&tampered),
        s(&sig_file)
    );
    let out = Command::new("sh")
        .args(["-c", &shell])
        .env("XDG_CONFIG_HOME", xdg.path())
        .output()?;
    ensure!(String::from_utf8(out.stdout)?.trim() == "refused");

    // Attack: a good signature by a node revoked since. verify fails with 3, naming
    // the revocation; sign is refused by keyd, exit 3, in JSON with keyd's code.
    keyctl(
        &[
            "node", "revoke", "web", "--reason", "stolen", "--config", &admin,
        ],
        &[],
    )?;
    let out = run_keyctl(&verify, &xdg_env)?;
    ensure!(out.status.code() == Some(3), "{}", out.status);
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        err.contains("not valid: m/") && err.contains("revoked"),
        "{err}"
    );
    let out = run_keyctl(&["--output", "json", "sign", "--in", s(&data)], &xdg_env)?;
    ensure!(out.status.code() == Some(3), "{}", out.status);
    let e = stderr_json(&out)?;
    ensure!(e["error"]["code"] == "key_not_valid", "{e}");
    ensure!(e["error"]["try"].is_string(), "{e}");

    // No config anywhere: named, with what to try; exit 1; in JSON, code no_config.
    let empty = tempfile::tempdir()?;
    let out = run_keyctl(
        &["sign", "--in", s(&data)],
        &[("XDG_CONFIG_HOME", s(empty.path()))],
    )?;
    ensure!(out.status.code() == Some(1), "{}", out.status);
    let err = String::from_utf8(out.stderr)?;
    let expected = empty.path().join("keyctl/config.toml");
    ensure!(
        err.contains(&format!("no keyctl config at {}", expected.display()))
            && err.contains("try: pass --config DIR/keyctl.toml"),
        "{err}"
    );
    let out = run_keyctl(
        &["--output", "json", "sign", "--in", s(&data)],
        &[("HOME", s(empty.path()))],
    )?;
    let e = stderr_json(&out)?;
    ensure!(e["error"]["code"] == "no_config", "{e}");
    ensure!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(".config/keyctl/config.toml")),
        "{e}"
    );
    // A token file that is already there is refused before keyd is asked.
    let taken = dir.join("taken.token");
    std::fs::write(&taken, "keep")?;
    let out = run_keyctl(
        &[
            "node",
            "add",
            "db",
            "--config",
            &admin,
            "--token-out",
            s(&taken),
        ],
        &[],
    )?;
    ensure!(out.status.code() == Some(1));
    ensure!(std::fs::read_to_string(&taken)? == "keep");
    let list = keyctl(&["node", "list", "--config", &admin], &[])?;
    ensure!(
        !list.to_string().contains("\"db\""),
        "no node was added: {list}"
    );
    Ok(())
}

#[test]
fn keyd_answers_in_json_and_says_what_to_try() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let keyd =
        |args: &[&str]| -> Result<Output> { Ok(Command::new(&bins().keyd).args(args).output()?) };

    // A missing config: the cause once, and what to try.
    let missing = tmp.path().join("keyd.toml");
    let out = keyd(&["--config", s(&missing), "init"])?;
    ensure!(out.status.code() == Some(1));
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        err.matches("No such file or directory").count() == 1,
        "the cause once: {err}"
    );
    ensure!(
        err.contains("try: pass --config FILE, or copy keyd/keyd.example.toml"),
        "{err}"
    );
    let out = keyd(&["--config", s(&missing), "--output", "json", "init"])?;
    let e = stderr_json(&out)?;
    ensure!(
        e["error"]["code"] == "no_config" && e["error"]["try"].is_string(),
        "{e}"
    );

    // init in JSON: the install public key, for `keyctl ceremony issue --to`.
    let seal = crate::helpers::token("operator-seal")?;
    let config = tmp.path().join("seal.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nseal_hsm = \"{}\"\n",
            seal.uri()
        ),
    )?;
    let out = seal
        .command(&bins().keyd)
        .args(["--config", s(&config), "--output", "json", "init"])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        init["install_public_key"]
            .as_str()
            .is_some_and(|k| k.len() == 64 && hex::decode(k).is_ok()),
        "{init}"
    );
    // A second init finds the seal key there: refused, with what to try.
    std::fs::remove_dir_all(tmp.path().join("data"))?;
    let out = seal
        .command(&bins().keyd)
        .args(["--config", s(&config), "--output", "json", "init"])
        .output()?;
    ensure!(out.status.code() == Some(1));
    let e = stderr_json(&out)?;
    ensure!(e["error"]["code"] == "seal_key_exists", "{e}");
    ensure!(
        e["error"]["try"]
            .as_str()
            .is_some_and(|t| t.contains("object=")),
        "{e}"
    );
    // import names its refusals: no root named, and a root.json that is not one.
    let bogus = tmp.path().join("root.json");
    std::fs::write(&bogus, "{}")?;
    let out = keyd(&[
        "--config",
        s(&config),
        "--output",
        "json",
        "import",
        "x.bundle",
        "--expect-root",
        s(&bogus),
    ])?;
    let e = stderr_json(&out)?;
    ensure!(
        e["error"]["code"] == "bad_argument"
            && e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("is not a root.json with a fingerprint")),
        "{e}"
    );

    // serve on an address already taken: said before the token is touched, with the
    // key to change.
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let busy = tmp.path().join("busy.toml");
    std::fs::write(
        &busy,
        format!(
            "listen = \"{}\"\ndata_dir = \"nowhere\"\nseal_hsm = \"{}\"\n",
            taken.local_addr()?,
            seal.uri()
        ),
    )?;
    let out = keyd(&["--config", s(&busy), "serve"])?;
    ensure!(out.status.code() == Some(1));
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        err.contains("cannot listen on")
            && err.contains("try: another process listens there: change `listen`"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_node_whose_token_expired_is_reenrolled_with_its_keys() -> Result<()> {
    let c = Cluster::start_with("enroll_token_seconds = 1\n")?;
    let admin = c.admin_config()?;
    let dir = c.dir.path();
    let token = dir.join("late.token");
    let added = keyctl(
        &[
            "node",
            "add",
            "late",
            "--config",
            &admin,
            "--token-out",
            s(&token),
        ],
        &[],
    )?;
    ensure!(
        added.get("token").is_none() && added["token_file"] == s(&token),
        "{added}"
    );
    let before = keyctl(&["node", "show", "late", "--config", &admin], &[])?;
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let ca = c.data().join("ca.pem");
    let enroll = |token: &Path, out: &Path| {
        run_keyctl(
            &[
                "enroll",
                "--url",
                &c.addr,
                "--ca",
                s(&ca),
                "--token-file",
                s(token),
                "--out",
                s(out),
            ],
            &[],
        )
    };
    // The token expired unused: refused by keyd (exit 3), nothing written.
    let out = enroll(&token, &dir.join("late"))?;
    ensure!(out.status.code() == Some(3), "{}", out.status);
    ensure!(String::from_utf8(out.stderr)?.contains("bad_token"));
    ensure!(!dir.join("late").exists());
    // The admin gives it a new token; it enrolls; its keys are the ones certified before.
    let again = dir.join("late-again.token");
    keyctl(
        &[
            "node",
            "reenroll",
            "late",
            "--config",
            &admin,
            "--token-out",
            s(&again),
        ],
        &[],
    )?;
    let out = enroll(&again, &dir.join("late"))?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = keyctl(&["node", "show", "late", "--config", &admin], &[])?;
    ensure!(before == after, "keys unchanged:\n{before}\n{after}");
    Ok(())
}

#[test]
fn a_url_keyds_certificate_does_not_name_says_server_names() -> Result<()> {
    let c = Cluster::start_with("server_names = [\"keyd.example\"]\n")?;
    let admin = c.admin_config()?;
    let out = run_keyctl(&["node", "list", "--config", &admin], &[])?;
    ensure!(out.status.code() == Some(1), "{}", out.status);
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        err.contains("not valid for name")
            && err.contains("try: the host in url must be one of keyd's server_names"),
        "{err}"
    );
    Ok(())
}

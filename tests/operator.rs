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

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Runs keyctl with exactly `env` added and KEYCTL_CONFIG / XDG_CONFIG_HOME / HOME as
/// given (removed when not): its whole output.
fn run_keyctl(args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
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
fn completions_and_man_pages_for_every_binary() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    for (bin, sub) in [
        (&bins().keyctl, "verify"),
        (&bins().keyd, "import"),
        (&bins().hsm_sim, "uri"),
    ] {
        let name = bin.file_name().and_then(|n| n.to_str()).context("name")?;
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(bin).args(["completions", shell]).output()?;
            ensure!(out.status.success(), "{name} completions {shell}");
            let script = String::from_utf8(out.stdout)?;
            ensure!(script.contains(sub), "{name} {shell}: no {sub}");
            if shell == "bash" {
                let check = Command::new("bash").args(["-n", "-c", &script]).output()?;
                ensure!(
                    check.status.success(),
                    "{name}: bash -n: {}",
                    String::from_utf8_lossy(&check.stderr)
                );
            }
        }
        let dir = tmp.path().join(name);
        let out = Command::new(bin).args(["man", "--out", s(&dir)]).output()?;
        ensure!(
            out.status.success(),
            "{name} man: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let page = dir.join(format!("{name}-{sub}.1"));
        ensure!(page.exists(), "{} missing", page.display());
        // The page renders (groff from man-db, when installed).
        if Command::new("groff").arg("--version").output().is_ok() {
            let out = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", s(&page)])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success() && text.contains(&format!("{name}-{sub}(1)")),
                "{}: {}",
                page.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// `keyctl key export`, read back by the tools each format is for: openssl (PEM),
/// ssh-keygen (OpenSSH), and a JWS made with keyd's signature checked by openssl from
/// the JWK's `x` alone.
#[test]
fn key_export_in_the_formats_tools_read() -> Result<()> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let c = Cluster::start()?;
    let admin = c.admin_config()?;
    crate::enroll::add_and_enroll(&c, &admin, "web", false)?;
    let dir = c.dir.path();
    let chain = dir.join("web/chain.cbor");
    let verified = verify_file(&std::fs::read(&chain)?)?;
    let (epoch_path, _) = keyd::export::resolve(verified.state(), "web")?;
    let epoch = verified.state().key(epoch_path).context("epoch")?.clone();
    let export = |args: &[&str]| -> Result<Vec<u8>> {
        let mut all = vec!["key", "export"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--chain", s(&chain)]);
        let out = run_keyctl(&all, &[])?;
        ensure!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    };

    // PEM: openssl reads it as an ED25519 / X25519 public key with exactly these bytes.
    for (usage, algorithm, key) in [
        ("sig", "ED25519", epoch.keys.ed25519),
        ("enc", "X25519", epoch.keys.x25519),
    ] {
        let pem = dir.join(format!("web-{usage}.pem"));
        std::fs::write(&pem, export(&["web", "--use", usage])?)?;
        let out = Command::new("openssl")
            .args(["pkey", "-pubin", "-in", s(&pem), "-text", "-noout"])
            .output()?;
        let text = String::from_utf8(out.stdout)?;
        ensure!(out.status.success() && text.contains(algorithm), "{text}");
        let hex_in_text: String = text
            .lines()
            .filter(|l| l.starts_with("    "))
            .flat_map(|l| l.trim().split(':'))
            .collect();
        ensure!(hex_in_text == hex::encode(key), "{text}");
    }

    // OpenSSH: ssh-keygen reads it; its SHA256 fingerprint is that of the key's blob.
    let ssh = dir.join("web.pub");
    std::fs::write(&ssh, export(&["web", "--format", "openssh"])?)?;
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f", s(&ssh)])
        .output()?;
    let line = String::from_utf8(out.stdout)?;
    let mut blob = Vec::new();
    for field in [b"ssh-ed25519".as_slice(), epoch.keys.ed25519.as_slice()] {
        blob.extend_from_slice(&u32::try_from(field.len())?.to_be_bytes());
        blob.extend_from_slice(field);
    }
    let fingerprint = base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(&blob));
    ensure!(
        out.status.success()
            && line.contains(&format!("SHA256:{fingerprint}"))
            && line.contains("(ED25519)"),
        "{line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenSSH has no X25519 keys: refused, named.
    let out = run_keyctl(
        &[
            "key",
            "export",
            "web",
            "--format",
            "openssh",
            "--use",
            "enc",
            "--chain",
            s(&chain),
        ],
        &[],
    )?;
    ensure!(out.status.code() == Some(1));
    ensure!(String::from_utf8(out.stderr)?.contains("OpenSSH has no X25519 keys"));

    // JWK: a compact JWS (EdDSA) whose signature keyd made verifies with the key in it.
    let jwk: Value = serde_json::from_slice(&export(&["web", "--format", "jwk"])?)?;
    ensure!(
        jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519" && jwk["alg"] == "EdDSA",
        "{jwk}"
    );
    ensure!(jwk["kid"] == epoch.key_id.to_string(), "{jwk}");
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA","kid":{}}}"#, jwk["kid"]));
    let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"web"}"#);
    let signing_input = format!("{header}.{payload}");
    let input = dir.join("jws-input");
    std::fs::write(&input, &signing_input)?;
    let signed = keyctl(
        &[
            "sign",
            "--config",
            s(&dir.join("web/keyctl.toml")),
            "--in",
            s(&input),
        ],
        &[],
    )?;
    let signature = STANDARD.decode(signed["signature"].as_str().context("signature")?)?;
    let jws = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&signature));
    // A verifier with only the JWS and the JWK: x → SubjectPublicKeyInfo → openssl.
    let (input_part, sig_part) = jws.rsplit_once('.').context("jws")?;
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().context("x")?)?;
    let mut der = hex::decode("302a300506032b6570032100")?;
    der.extend_from_slice(&x);
    let (pub_der, sig_file, msg_file) =
        (dir.join("x.der"), dir.join("jws.sig"), dir.join("jws.msg"));
    std::fs::write(&pub_der, der)?;
    std::fs::write(&sig_file, URL_SAFE_NO_PAD.decode(sig_part)?)?;
    std::fs::write(&msg_file, input_part)?;
    let out = Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-keyform",
            "DER",
            "-inkey",
            s(&pub_der),
            "-rawin",
            "-in",
            s(&msg_file),
            "-sigfile",
            s(&sig_file),
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Raw: the 32 bytes. An unknown key is named.
    ensure!(export(&["web", "--format", "raw"])? == epoch.keys.ed25519);

    // keyd answers the same, to anyone (no client certificate), in the format Accept
    // names; and the cluster's JWKS holds web's JWK.
    let anyone = c.anonymous()?;
    for (accept, args) in [
        ("application/x-pem-file", vec!["web"]),
        ("application/x-pem-file", vec!["web", "--use", "enc"]),
        ("text/plain", vec!["web", "--format", "openssh"]),
        ("application/octet-stream", vec!["web", "--format", "raw"]),
    ] {
        let query = if args.contains(&"enc") {
            "?use=enc"
        } else {
            ""
        };
        let reply = anyone.get_accepting(&format!("/v1/keys/web{query}"), accept)?;
        ensure!(
            reply.status == 200 && reply.header("content-type") == accept,
            "{accept}"
        );
        ensure!(
            reply.body == export(&args)?,
            "{accept}: the same as keyctl key export"
        );
    }
    let reply = anyone.get_accepting("/v1/keys/web", "application/jwk+json")?;
    let served: Value = serde_json::from_slice(&reply.body)?;
    ensure!(served == jwk, "{served}");
    let (status, jwks) = anyone.get("/v1/jwks.json")?;
    let jwks: Value = serde_json::from_slice(&jwks)?;
    ensure!(
        status == 200 && jwks["keys"].as_array().is_some_and(|k| k.contains(&jwk)),
        "{jwks}"
    );
    let reply = anyone.get_accepting("/v1/keys/nobody", "application/jwk+json")?;
    ensure!(reply.status == 404, "{}", reply.status);
    // Revoked, web leaves the JWKS, and its key is no longer served.
    keyctl(
        &[
            "node", "revoke", "web", "--reason", "gone", "--config", &admin,
        ],
        &[],
    )?;
    let (_, jwks) = anyone.get("/v1/jwks.json")?;
    let jwks: Value = serde_json::from_slice(&jwks)?;
    ensure!(
        jwks["keys"].as_array().is_some_and(|k| !k.contains(&jwk)),
        "{jwks}"
    );
    let reply = anyone.get_accepting("/v1/keys/web", "application/jwk+json")?;
    ensure!(
        reply.status == 400 && String::from_utf8_lossy(&reply.body).contains("key_not_valid"),
        "{}",
        reply.status
    );
    let out = run_keyctl(&["key", "export", "nobody", "--chain", s(&chain)], &[])?;
    ensure!(out.status.code() == Some(1));
    ensure!(String::from_utf8(out.stderr)?.contains("no key \"nobody\" in the chain"));
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

/// The pixels of a QR code drawn with Unicode half blocks (two rows per line), dark
/// where `dark` says, each module 4 × 4 pixels.
fn qr_pixels(text: &str, dark_is_blank: bool) -> (usize, usize, Vec<bool>) {
    let lines: Vec<Vec<char>> = text
        .lines()
        .filter(|l| !l.trim().is_empty() || l.contains(' '))
        .map(|l| l.chars().collect())
        .collect();
    let width = lines.iter().map(Vec::len).max().unwrap_or(0);
    let rows = lines.len() * 2;
    let scale = 4;
    let mut pixels = vec![false; width * scale * rows * scale];
    for (y, line) in lines.iter().enumerate() {
        for x in 0..width {
            let c = line.get(x).copied().unwrap_or(' ');
            let (top, bottom) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            for (half, ink) in [(0, top), (1, bottom)] {
                let dark = ink != dark_is_blank;
                for dy in 0..scale {
                    for dx in 0..scale {
                        let py = (y * 2 + half) * scale + dy;
                        let px = x * scale + dx;
                        pixels[py * width * scale + px] = dark;
                    }
                }
            }
        }
    }
    (width * scale, rows * scale, pixels)
}

#[test]
fn node_add_draws_the_token_as_a_qr_code_that_scans() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin_config()?;
    let out = run_keyctl(&["node", "add", "kiosk", "--config", &admin, "--qr"], &[])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: Value = serde_json::from_slice(&out.stdout)?;
    let token = added["token"].as_str().context("token")?;
    let drawn = String::from_utf8(out.stderr)?;
    // Scan it: either polarity (the renderer draws light or dark modules as blocks).
    let mut scanned = None;
    for dark_is_blank in [false, true] {
        let (w, h, pixels) = qr_pixels(&drawn, dark_is_blank);
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            if pixels[y * w + x] { 0 } else { 255 }
        });
        if let Some(grid) = image.detect_grids().first()
            && let Ok((_, content)) = grid.decode()
        {
            scanned = Some(content);
            break;
        }
    }
    ensure!(
        scanned.as_deref() == Some(token),
        "scanned {scanned:?}, token {token}"
    );
    Ok(())
}

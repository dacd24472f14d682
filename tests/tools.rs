//! What other tools read: keys exported as PEM, JWK, OpenSSH and raw bytes (offline and
//! from keyd), enrollment tokens drawn as QR codes, shell completions and man pages.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use keyd::chain::verify_file;
use serde_json::Value;

use crate::cluster::{Cluster, keyctl};
use crate::helpers::bins;
use crate::operator::{run_keyctl, s};

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
            ensure!(
                !script.contains("__token-init"),
                "{name} {shell}: an internal command"
            );
            if shell == "bash" {
                // From a file: keyctl's script is larger than one argument may be.
                let file = tempfile::NamedTempFile::new()?;
                std::fs::write(file.path(), &script)?;
                let check = Command::new("bash").arg("-n").arg(file.path()).output()?;
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

/// Ceremony steps are drawn on a terminal (a pseudo-terminal from `script`), and not at
/// all when standard error is a pipe or a file.
#[test]
fn ceremony_steps_show_on_a_terminal_only() -> Result<()> {
    if Command::new("script").arg("--version").output().is_err() {
        return Ok(()); // util-linux's script is not installed: nothing to drive a pty with
    }
    let tmp = tempfile::tempdir()?;
    let mut recipients = Vec::new();
    for who in ["alice", "bob"] {
        let key = tmp.path().join(format!("{who}.key"));
        let out = run_keyctl(&["ceremony", "custodian-key", "--out", s(&key)], &[])?;
        ensure!(out.status.success());
        recipients.push(format!("{who}={}", String::from_utf8(out.stdout)?.trim()));
    }
    let init = |token: &hsm_sim::TestToken, out: &str| {
        format!(
            "{} ceremony init --hsm '{}' --custodian {} --custodian {} --threshold 2 --out {}",
            bins().keyctl.display(),
            token.uri(),
            recipients[0],
            recipients[1],
            out
        )
    };
    // On a terminal: each step, by name.
    let token = crate::helpers::token("steps-tty")?;
    let line = init(&token, s(&tmp.path().join("tty")));
    let out = token
        .command("script")
        .args(["-qec", &line, "/dev/null"])
        .output()?;
    let drawn = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{drawn}");
    for step in [
        "sealing share 1 to alice",
        "sealing share 2 to bob",
        "importing the root into the token",
        "[4/4] deriving the root identity through the token",
    ] {
        ensure!(drawn.contains(step), "{step:?} not drawn:\n{drawn}");
    }
    // Through pipes: not a trace of it.
    let token = crate::helpers::token("steps-pipe")?;
    let out = token
        .command("sh")
        .args(["-c", &init(&token, s(&tmp.path().join("pipe")))])
        .output()?;
    ensure!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(!all.contains("sealing share"), "{all}");
    Ok(())
}

//! Nodes joining keyd with keyctl: held and exported enrollment, certificate renewal,
//! the CA export, and the key operations keyctl drives; against a real keyd over TLS.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use keyd::bundle::{BranchBundle, BundleError, InstallKey};
use keyd::chain::verify_file;
use keyd::derive::KeyPath;
use keyd::envelope::Encrypted;
use serde_json::json;

use crate::cluster::{Cluster, keyctl, keyctl_fails};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn mode(p: &Path) -> Result<u32> {
    Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
}

/// `keyctl node add --mode`, then `keyctl enroll` into `dir`: the enroll report.
pub fn add_and_enroll(
    c: &Cluster,
    admin: &str,
    name: &str,
    exported: bool,
) -> Result<serde_json::Value> {
    let m = if exported { "exported" } else { "held" };
    let added = keyctl(&["node", "add", name, "--mode", m, "--config", admin], &[])?;
    ensure!(added["mode"] == m, "{added}");
    let token = c.dir.path().join(format!("{name}.token"));
    std::fs::write(&token, added["token"].as_str().context("token")?)?;
    let ca = c.data().join("ca.pem");
    let out = c.dir.path().join(name);
    keyctl(
        &[
            "enroll",
            "--url",
            &c.addr,
            "--ca",
            s(&ca),
            "--token-file",
            s(&token),
            "--out",
            s(&out),
        ],
        &[],
    )
}

#[test]
fn held_and_exported_enrollment_with_keyctl() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin_config()?;
    let dir = c.dir.path();

    // Held: a credential and a config, no secret.
    let held = add_and_enroll(&c, &admin, "web", false)?;
    ensure!(held["mode"] == "held" && held["bundle"].is_null(), "{held}");
    // The chain came with the certificate, verified by keyctl.
    let chain = verify_file(&std::fs::read(dir.join("web/chain.cbor"))?)?;
    ensure!(chain.state().find("web").is_some() && held["chain_entries"] == chain.len());
    ensure!(mode(&dir.join("web/node.key"))? == 0o600);
    ensure!(!dir.join("web/node.bundle").exists() && !dir.join("web/install.key").exists());
    let web = s(&dir.join("web/keyctl.toml")).to_owned();

    // Exported: the identity secret, sealed, beside the key that opens it.
    let exp = add_and_enroll(&c, &admin, "vault", true)?;
    ensure!(exp["mode"] == "exported", "{exp}");
    // The exported-mode token said so: one enroll request, none refused for its mode.
    let (_, metrics) = c.anonymous()?.get("/metrics")?;
    let metrics = String::from_utf8(metrics)?;
    ensure!(
        metrics.contains("keyd_requests_total{route=\"/v1/enroll\",status=\"200\"} 2")
            && !metrics.contains("keyd_requests_total{route=\"/v1/enroll\",status=\"400\"}"),
        "{metrics}"
    );
    for f in ["node.key", "install.key", "node.bundle"] {
        ensure!(mode(&dir.join("vault").join(f))? == 0o600, "{f}");
    }
    let vault_path: KeyPath = exp["path"].as_str().context("path")?.parse()?;

    // The node opens its bundle offline with the library and derives its epoch key.
    let install: [u8; 32] = std::fs::read(dir.join("vault/install.key"))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("install key length"))?;
    // The bundle carries no chain (the enrollment response's chain, kept in chain.cbor,
    // certifies the node), so its size does not grow with the branch.
    let bundle_bytes = std::fs::read(dir.join("vault/node.bundle"))?;
    let bundle = BranchBundle::from_cbor(&bundle_bytes)?;
    ensure!(
        bundle.chain.is_empty() && bundle_bytes.len() < 512,
        "{}",
        bundle_bytes.len()
    );
    let verified = verify_file(&std::fs::read(dir.join("vault/chain.cbor"))?)?;
    let secret = bundle.open_node(&InstallKey::from_secret(&install)?, &verified)?;
    ensure!(bundle.path == vault_path && verified.state().find("vault").is_some());
    // Opened against a chain that does not certify it (the root log alone), it is refused.
    let root_only = verify_file(&verified.file_of([&KeyPath::root()]))?;
    ensure!(matches!(
        bundle.open_node(&InstallKey::from_secret(&install)?, &root_only),
        Err(BundleError::NotCertified { .. })
    ));
    let epoch_path = vault_path.epoch_key(0).context("epoch path")?;
    let mut epoch = secret.clone();
    for i in epoch_path.indexes().skip(vault_path.depth()) {
        epoch = epoch.child(i);
    }
    let epoch = epoch.material();

    // web encrypts to vault through keyd (both suites); vault opens it outside keyd with
    // its own key, and checks web's signature against the chain it fetched.
    let plain = dir.join("plain.txt");
    std::fs::write(&plain, "for the vault only")?;
    let (_, chain) = c.anonymous()?.get("/v1/chain")?;
    let verified = verify_file(&chain)?;
    let state = verified.state();
    for suite in ["x-wing", "x25519"] {
        let env = dir.join(format!("to-vault.{suite}"));
        let sent = keyctl(
            &[
                "encrypt",
                "--config",
                &web,
                "--to",
                "vault",
                "--in",
                s(&plain),
                "--out",
                s(&env),
                "--suite",
                suite,
            ],
            &[],
        )?;
        ensure!(sent["recipient"] == epoch_path.to_string(), "{sent}");
        let e = Encrypted::from_cbor(&std::fs::read(&env)?)?;
        ensure!(e.open(&epoch)?.as_slice() == b"for the vault only");
        let sender = state.key(&e.sender).context("sender in chain")?;
        e.verify_sender(&ed25519_dalek::VerifyingKey::from_bytes(
            &sender.keys.ed25519,
        )?)?;
        // And nowhere else: not with the vault's identity key, not with web's keys.
        ensure!(e.open(&secret.material()).is_err());
        let err = keyctl_fails(
            &[
                "decrypt",
                "--config",
                &web,
                "--in",
                s(&env),
                "--out",
                s(&dir.join(format!("x.{suite}"))),
            ],
            &[],
        )?;
        ensure!(err.contains("forbidden"), "{err}");
    }
    // The exported node uses keyd too, with the credential keyctl wrote.
    let vault = s(&dir.join("vault/keyctl.toml")).to_owned();
    let signed = keyctl(&["sign", "--config", &vault, "--in", s(&plain)], &[])?;
    ensure!(signed["path"] == epoch_path.to_string(), "{signed}");
    Ok(())
}

#[test]
fn enrollment_mode_mismatch_and_bad_tokens_leave_the_token_usable() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin()?;
    let csr = keyd::tls_key::TlsKey::generate()?.csr_pem()?;
    let install = hex::encode(InstallKey::generate().public());
    let (_, held) = admin.post("/v1/nodes", &json!({"name": "h"}))?;
    let (_, exp) = admin.post("/v1/nodes", &json!({"name": "e", "mode": "exported"}))?;
    let anon = c.anonymous()?;
    for (token, body_extra, want) in [
        (
            &held["token"],
            json!({"install_key": install}),
            "wrong_mode",
        ),
        (&exp["token"], json!({}), "wrong_mode"),
        (&exp["token"], json!({"install_key": "abcd"}), "bad_request"),
        (&held["token"], json!({"csr": "not a csr"}), "bad_request"),
    ] {
        let mut body = json!({"token": token, "csr": csr});
        for (k, v) in body_extra.as_object().context("extra")? {
            body[k] = v.clone();
        }
        let (status, err) = anon.post("/v1/enroll", &body)?;
        ensure!(
            status == 400 && err["error"]["code"] == want,
            "{want}: {status} {err}"
        );
    }
    let (status, err) = admin.post("/v1/nodes", &json!({"name": "x", "mode": "lent"}))?;
    ensure!(status == 400 && err["error"]["code"] == "bad_json", "{err}");
    // The refused attempts spent nothing: both tokens still enroll, once.
    let (status, ok) = anon.post("/v1/enroll", &json!({"token": held["token"], "csr": csr}))?;
    ensure!(
        status == 200 && ok["mode"] == "held" && ok.get("bundle").is_none(),
        "{ok}"
    );
    let (status, ok) = anon.post(
        "/v1/enroll",
        &json!({"token": exp["token"], "csr": csr, "install_key": install}),
    )?;
    ensure!(
        status == 200 && ok["mode"] == "exported" && ok["bundle"].is_string(),
        "{ok}"
    );
    let (status, err) = anon.post(
        "/v1/enroll",
        &json!({"token": exp["token"], "csr": csr, "install_key": install}),
    )?;
    ensure!(
        status == 401 && err["error"]["code"] == "bad_token",
        "{err}"
    );
    // keyctl enroll without a token says where to put it.
    let err = keyctl_fails(
        &[
            "enroll",
            "--url",
            &c.addr,
            "--ca",
            s(&c.data().join("ca.pem")),
            "--out",
            s(&c.dir.path().join("n")),
        ],
        &[],
    )?;
    ensure!(err.contains("KEYD_ENROLL_TOKEN"), "{err}");
    Ok(())
}

#[test]
fn renewal_ca_export_and_keyctl_key_operations() -> Result<()> {
    let c = Cluster::start()?;
    let admin = c.admin_config()?;
    let dir = c.dir.path();
    add_and_enroll(&c, &admin, "app", false)?;
    let app = s(&dir.join("app/keyctl.toml")).to_owned();

    // Renewal: a new certificate for the same key, and it works.
    let before = std::fs::read(dir.join("app/node.pem"))?;
    let renewed = keyctl(&["renew", "--config", &app], &[])?;
    ensure!(renewed["certificate"].is_string(), "{renewed}");
    ensure!(std::fs::read(dir.join("app/node.pem"))? != before);
    let data = dir.join("data.bin");
    std::fs::write(&data, b"after renewal")?;
    keyctl(&["sign", "--config", &app, "--in", s(&data)], &[])?;
    keyctl(&["renew", "--config", &admin], &[])?;

    // CA export: the same PEM keyd serves and the admin config trusts.
    let ca = keyctl(&["ca", "export", "--config", &app], &[])?;
    ensure!(ca.as_str() == Some(std::fs::read_to_string(c.data().join("ca.pem"))?.as_str()));

    // seal / unseal / datakey / rekey / rewrap through keyctl.
    let sealed = dir.join("data.sealed");
    keyctl(
        &[
            "seal",
            "--config",
            &app,
            "--in",
            s(&data),
            "--out",
            s(&sealed),
        ],
        &[],
    )?;
    let opened = dir.join("data.opened");
    keyctl(
        &[
            "unseal",
            "--config",
            &app,
            "--in",
            s(&sealed),
            "--out",
            s(&opened),
        ],
        &[],
    )?;
    ensure!(std::fs::read(&opened)? == b"after renewal" && mode(&opened)? == 0o600);
    let (key, key_env) = (dir.join("dk"), dir.join("dk.sealed"));
    keyctl(
        &[
            "datakey",
            "--config",
            &app,
            "--out",
            s(&key),
            "--envelope",
            s(&key_env),
        ],
        &[],
    )?;
    ensure!(std::fs::read(&key)?.len() == 32 && mode(&key)? == 0o600);
    let rekeyed = keyctl(&["rekey", "--config", &app], &[])?;
    ensure!(
        rekeyed["key"]
            .as_str()
            .is_some_and(|k| k.ends_with("/0'/1'")),
        "{rekeyed}"
    );
    let shown = keyctl(&["node", "show", "app", "--config", &admin], &[])?;
    ensure!(
        shown["current_epoch"] == 1 && shown["name"] == "app",
        "{shown}"
    );
    let epochs = shown["epochs"].as_array().context("epochs")?;
    ensure!(
        epochs.len() == 2 && epochs[1]["path"] == rekeyed["key"],
        "{shown}"
    );
    ensure!(
        epochs[0]["status"]
            .as_str()
            .is_some_and(|s| s.contains("current epoch is 1")),
        "{shown}"
    );
    let branch = keyctl(&["node", "show", "dc1", "--config", &admin], &[])?;
    ensure!(
        branch["children"]
            .as_array()
            .is_some_and(|c| c.contains(&shown["path"])),
        "{branch}"
    );
    // --output everywhere: text renders the same answer as key: value lines.
    let text = keyctl(
        &[
            "node", "show", "app", "--config", &admin, "--output", "text",
        ],
        &[],
    )?;
    let text = text.as_str().context("text output")?;
    ensure!(
        text.contains("name: app\n") && text.contains("current_epoch: 1\n"),
        "{text}"
    );
    let err = keyctl_fails(&["node", "show", "nobody", "--config", &admin], &[])?;
    ensure!(err.contains("not_found"), "{err}");
    let err = keyctl_fails(&["node", "show", "app", "--config", &app], &[])?;
    ensure!(err.contains("forbidden"), "{err}");
    let rewrapped = dir.join("data.rewrapped");
    keyctl(
        &[
            "rewrap",
            "--config",
            &app,
            "--in",
            s(&sealed),
            "--out",
            s(&rewrapped),
        ],
        &[],
    )?;
    let again = dir.join("data.again");
    keyctl(
        &[
            "unseal",
            "--config",
            &app,
            "--in",
            s(&rewrapped),
            "--out",
            s(&again),
        ],
        &[],
    )?;
    ensure!(std::fs::read(&again)? == b"after renewal");
    ensure!(std::fs::read(&rewrapped)? != std::fs::read(&sealed)?);

    // A revoked node can renew no more (its certificate is refused at once).
    keyctl(
        &[
            "node", "revoke", "app", "--reason", "gone", "--config", &admin,
        ],
        &[],
    )?;
    let err = keyctl_fails(&["renew", "--config", &app], &[])?;
    ensure!(err.contains("key_not_valid"), "{err}");
    // Nobody renews without a certificate.
    let (status, err) = c.anonymous()?.post(
        "/v1/renew",
        &json!({"csr": keyd::tls_key::TlsKey::generate()?.csr_pem()?}),
    )?;
    ensure!(
        status == 401 && err["error"]["code"] == "unauthenticated",
        "{err}"
    );
    Ok(())
}

/// An expired client certificate gets `401 certificate_expired` (not a bare TLS alert),
/// authenticates nothing, and cannot renew itself.
#[test]
fn expired_certificates_are_refused_with_a_clear_code() -> Result<()> {
    let c = Cluster::start_with("client_cert_seconds = 8\n")?;
    let (node, enrolled) = c.enrolled_node("brief")?;
    let (status, _) = node.post("/v1/sign", &json!({"data": "aGk="}))?;
    ensure!(status == 200, "fresh certificate works");
    // Waiting for expiry: the certificate's lifetime is whole seconds by nature.
    std::thread::sleep(std::time::Duration::from_secs(9));
    for (path, body) in [
        ("/v1/sign", json!({"data": "aGk="})),
        (
            "/v1/renew",
            json!({"csr": keyd::tls_key::TlsKey::generate()?.csr_pem()?}),
        ),
    ] {
        let (status, err) = node.post(path, &body)?;
        ensure!(
            status == 401 && err["error"]["code"] == "certificate_expired",
            "{path}: {status} {err}"
        );
        ensure!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("renew"))
        );
    }
    // Public endpoints still answer on that connection.
    let (status, _) = node.get("/v1/ca")?;
    ensure!(status == 200);
    ensure!(enrolled["path"].is_string());
    Ok(())
}

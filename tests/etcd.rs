//! A local etcd cluster on loopback for the replica tests: real `etcd` processes
//! (Debian's etcd-server), each member with its own data directory, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A network namespace joined to this one by a veth pair: `root_ip` on this side,
/// `ns_ip` inside. For a member (and a keyd) that can be cut off from the others.
pub struct Netns {
    /// Its name (`ip netns exec NAME …`).
    pub name: String,
    /// This side's address.
    pub root_ip: String,
    /// The address inside.
    pub ns_ip: String,
    veth: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Netns {
    /// A new namespace with its veth pair up (needs root, iproute2).
    pub fn new() -> Result<Netns> {
        let id = std::process::id() % 100_000;
        let subnet = id % 200 + 20;
        let (name, veth, peer) = (format!("keydt{id}"), format!("kr{id}"), format!("kn{id}"));
        let (root_ip, ns_ip) = (format!("10.231.{subnet}.1"), format!("10.231.{subnet}.2"));
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &veth]);
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            name: name.clone(),
            root_ip: root_ip.clone(),
            ns_ip: ns_ip.clone(),
            veth: veth.clone(),
        };
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &name])?;
        ip(&["addr", "add", &format!("{root_ip}/24"), "dev", &veth])?;
        ip(&["link", "set", &veth, "up"])?;
        let (addr, net) = (format!("{ns_ip}/24"), name.as_str());
        for args in [
            ["addr", "add", addr.as_str(), "dev", peer.as_str()],
            ["link", "set", peer.as_str(), "up", ""],
            ["link", "set", "lo", "up", ""],
        ] {
            let mut full = vec!["netns", "exec", net, "ip"];
            full.extend(args.iter().copied().filter(|a| !a.is_empty()));
            ip(&full)?;
        }
        Ok(ns)
    }

    /// Cuts the namespace's etcd member (peer port `own`) off from the members on this
    /// side (peer ports `others`): their raft traffic is dropped both ways, on the
    /// connections either side opened, and nothing else.
    pub fn cut(&self, own: u16, others: &[u16]) -> Result<()> {
        let others = others
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let rules = format!(
            "table inet keydcut {{\n chain out {{ type filter hook output priority 0; tcp dport {{ {others} }} drop; tcp sport {own} drop; }}\n chain in {{ type filter hook input priority 0; tcp dport {own} drop; tcp sport {{ {others} }} drop; }}\n}}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .context("nft (Debian package nftables)")?;
        std::io::Write::write_all(child.stdin.as_mut().context("stdin")?, rules.as_bytes())?;
        drop(child.stdin.take());
        if !child.wait()?.success() {
            bail!("nft refused the rules");
        }
        Ok(())
    }

    /// Lets the traffic through again.
    pub fn heal(&self) -> Result<()> {
        ip(&[
            "netns", "exec", &self.name, "nft", "delete", "table", "inet", "keydcut",
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// One etcd member.
pub struct Member {
    /// Its client URL.
    pub client: String,
    /// Its peer port.
    pub peer_port: u16,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct Etcd {
    /// The members.
    pub members: Vec<Member>,
    /// With client TLS: the CA and a client certificate and key (PEM files).
    pub tls: Option<Tls>,
    _dir: tempfile::TempDir,
}

/// Client TLS of the members: their CA, and a client certificate it signed.
#[derive(Clone)]
pub struct Tls {
    /// The CA certificate.
    pub ca: PathBuf,
    /// A client certificate and its key.
    pub client: (PathBuf, PathBuf),
    server: (PathBuf, PathBuf),
}

impl Tls {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate (ECDSA
    /// P-256), written to `dir`.
    pub fn new(dir: &std::path::Path) -> Result<Tls> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca_key = KeyPair::generate_for(alg)?;
        let mut ca = CertificateParams::new(vec![])?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        let leaf = |name: &str, server: bool| -> Result<(PathBuf, PathBuf)> {
            let key = KeyPair::generate_for(alg)?;
            let mut params = CertificateParams::new(vec!["localhost".into()])?;
            if server {
                params
                    .subject_alt_names
                    .push(SanType::IpAddress("127.0.0.1".parse()?));
            }
            let cert = params.signed_by(&key, &issuer)?;
            Ok((
                write(&format!("{name}.pem"), &cert.pem())?,
                write(&format!("{name}.key"), &key.serialize_pem())?,
            ))
        };
        let server = leaf("etcd-server", true)?;
        let client = leaf("etcd-client", false)?;
        Ok(Tls {
            ca: write("etcd-ca.pem", &ca_cert.pem())?,
            client,
            server,
        })
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    /// Starts `n` members on 127.0.0.1 and waits until the cluster answers.
    pub fn start(n: usize) -> Result<Etcd> {
        Self::start_on(&vec![("127.0.0.1", None); n])
    }

    /// One member on 127.0.0.1 whose clients must speak TLS with a certificate of its CA.
    pub fn start_tls() -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let tls = Tls::new(dir.path())?;
        let mut etcd = Self::launch(&[("127.0.0.1", None)], Some(&tls))?;
        etcd.tls = Some(tls);
        etcd._dir = dir;
        etcd.wait_healthy(Duration::from_secs(30))?;
        Ok(etcd)
    }

    /// Starts one member per `(address, namespace)`: the member listens on that address,
    /// inside that network namespace when one is named.
    pub fn start_on(at: &[(&str, Option<&str>)]) -> Result<Etcd> {
        let etcd = Self::launch(at, None)?;
        etcd.wait_healthy(Duration::from_secs(30))?;
        Ok(etcd)
    }

    fn launch(at: &[(&str, Option<&str>)], tls: Option<&Tls>) -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        let mut ports = Vec::new();
        for (i, (addr, _)) in at.iter().enumerate() {
            let port = free_port()?;
            ports.push(port);
            peers.push((format!("e{i}"), format!("http://{addr}:{port}")));
            clients.push(format!("{scheme}://{addr}:{}", free_port()?));
        }
        let initial = peers
            .iter()
            .map(|(name, url)| format!("{name}={url}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (name, peer)) in peers.iter().enumerate() {
            let data: PathBuf = dir.path().join(name);
            let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
            let mut command = match at[i].1 {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns, "etcd"]);
                    c
                }
                None => Command::new("etcd"),
            };
            let child = command
                .args(["--name", name])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &clients[i]])
                .args(["--advertise-client-urls", &clients[i]])
                .args(["--listen-peer-urls", peer])
                .args(["--initial-advertise-peer-urls", peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "keyd-test"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args([
                    "--auto-compaction-mode",
                    "periodic",
                    "--auto-compaction-retention",
                    "1h",
                ])
                .args(tls.map_or_else(Vec::new, |t| {
                    vec![
                        "--cert-file".into(),
                        t.server.0.clone().into_os_string(),
                        "--key-file".into(),
                        t.server.1.clone().into_os_string(),
                        "--trusted-ca-file".into(),
                        t.ca.clone().into_os_string(),
                        "--client-cert-auth".into(),
                    ]
                }))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("cannot start etcd (Debian package etcd-server)")?;
            members.push(Member {
                client: clients[i].clone(),
                peer_port: ports[i],
                child: Some(child),
            });
        }
        Ok(Etcd {
            members,
            tls: None,
            _dir: dir,
        })
    }

    /// Every member's client URL, as keyd.toml lists them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("\"{}\"", m.client))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// keyd.toml lines for replica `name` of a group under `prefix`.
    pub fn keyd_config(&self, replica: &str, prefix: &str) -> String {
        self.keyd_config_of(replica, prefix, &self.endpoints())
    }

    /// [`Etcd::keyd_config`] naming only the members `which`.
    pub fn keyd_config_at(&self, replica: &str, prefix: &str, which: &[usize]) -> String {
        let endpoints = which
            .iter()
            .map(|i| format!("\"{}\"", self.members[*i].client))
            .collect::<Vec<_>>()
            .join(", ");
        self.keyd_config_of(replica, prefix, &endpoints)
    }

    fn keyd_config_of(&self, replica: &str, prefix: &str, endpoints: &str) -> String {
        let tls = self.tls.as_ref().map_or_else(String::new, |t| {
            format!(
                "ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                t.ca.display(),
                t.client.0.display(),
                t.client.1.display()
            )
        });
        format!(
            "store = \"etcd\"\n[etcd]\nendpoints = [{endpoints}]\nreplica = \"{replica}\"\nprefix = \"{prefix}\"\ntimeout_seconds = 2\ngrace_seconds = 30\n{tls}"
        )
    }

    fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let endpoints = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client.clone())
            .collect::<Vec<_>>()
            .join(",");
        let mut command = Command::new("etcdctl");
        if let Some(t) = &self.tls {
            command
                .arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client.0)
                .arg("--key")
                .arg(&t.client.1);
        }
        let out = command
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoints)
            .args(["--command-timeout", "2s"])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Waits until a quorum answers a linearizable read.
    pub fn wait_healthy(&self, within: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.etcdctl(&["get", "--prefix", "/health-check"]) {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > within => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The index of the current leader.
    pub fn leader(&self) -> Result<usize> {
        let status = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&status)?;
        let leader = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|s| s["Status"]["leader"].as_u64())
            .context("no leader in etcdctl endpoint status")?;
        for item in v.as_array().into_iter().flatten() {
            if item["Status"]["header"]["member_id"].as_u64() == Some(leader) {
                let ep = item["Endpoint"].as_str().unwrap_or_default();
                if let Some(i) = self.members.iter().position(|m| m.client == ep) {
                    return Ok(i);
                }
            }
        }
        bail!("the leader {leader} is not a member this test started")
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) member `i`: cut off without losing it.
    pub fn signal(&self, i: usize, signal: &str) -> Result<()> {
        let pid = self.members[i]
            .child
            .as_ref()
            .context("member not running")?
            .id();
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {signal} {pid} failed");
        }
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

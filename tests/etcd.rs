//! A local etcd cluster on loopback for the replica tests: real `etcd` processes
//! (Debian's etcd-server), each member with its own data directory, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// One etcd member.
pub struct Member {
    /// Its client URL.
    pub client: String,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct Etcd {
    /// The members.
    pub members: Vec<Member>,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        for i in 0..n {
            peers.push((
                format!("e{i}"),
                format!("http://127.0.0.1:{}", free_port()?),
            ));
            clients.push(format!("http://127.0.0.1:{}", free_port()?));
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
            let child = Command::new("etcd")
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
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("cannot start etcd (Debian package etcd-server)")?;
            members.push(Member {
                client: clients[i].clone(),
                child: Some(child),
            });
        }
        let etcd = Etcd { members, _dir: dir };
        etcd.wait_healthy(Duration::from_secs(30))?;
        Ok(etcd)
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
        format!(
            "store = \"etcd\"\n[etcd]\nendpoints = [{}]\nreplica = \"{replica}\"\nprefix = \"{prefix}\"\ntimeout_seconds = 2\ngrace_seconds = 30\n",
            self.endpoints()
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
        let out = Command::new("etcdctl")
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

//! `keyd-load`: drives a running keyd over HTTPS with a client certificate, one thread
//! and one keep-alive connection per `--connections`, for `--seconds`, and prints
//! throughput and latency percentiles. See bench/README.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Parser, ValueEnum};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

#[derive(Clone, Copy, ValueEnum)]
enum Op {
    /// POST /v1/sign with `--size` bytes.
    Sign,
    /// POST /v1/encrypt of `--size` bytes to `--to`.
    Encrypt,
    /// POST /v1/seal of `--size` bytes.
    Seal,
}

/// Load generator for keyd.
#[derive(Parser)]
struct Args {
    /// keyd base URL (https://127.0.0.1:PORT).
    #[arg(long)]
    url: String,
    /// CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Client key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Operation.
    #[arg(long, value_enum)]
    op: Op,
    /// Recipient for encrypt.
    #[arg(long, default_value = "")]
    to: String,
    /// HPKE suite for encrypt: x-wing (keyd's default) or x25519.
    #[arg(long, default_value = "x-wing")]
    suite: String,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Seconds of load after a one-second warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// keyd's process id: also report the CPU time keyd spent during the measured
    /// seconds (all its threads, from /proc/PID/stat) and requests per server CPU-second.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
}

/// CPU seconds (user + system, all threads) a process has used.
fn cpu_seconds(pid: u32, clk_tck: u64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').context("/proc stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .context("/proc stat fields")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    Ok(ticks as f64 / clk_tck as f64)
}

fn agent(args: &Args) -> Result<ureq::Agent> {
    let ca = Certificate::from_pem(&std::fs::read(&args.ca)?)?;
    let cert = Certificate::from_pem(&std::fs::read(&args.cert)?)?;
    let key = PrivateKey::from_pem(&std::fs::read(&args.key)?)?;
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&[ca]))
        .client_cert(Some(ClientCert::new_with_certs(&[cert], key)))
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .build()
        .into())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![0x5a; args.size]);
    let (path, body) = match args.op {
        Op::Sign => ("/v1/sign", serde_json::json!({"data": payload})),
        Op::Encrypt => (
            "/v1/encrypt",
            serde_json::json!({"to": args.to, "plaintext": payload, "suite": args.suite}),
        ),
        Op::Seal => ("/v1/seal", serde_json::json!({"plaintext": payload})),
    };
    let url = format!("{}{path}", args.url);
    let body = serde_json::to_vec(&body)?;
    let warmup = Duration::from_secs(1);
    let run = Duration::from_secs(args.seconds);
    let start = Instant::now();
    let (results, server_cpu): (Vec<Result<Vec<Duration>>>, Option<Result<f64>>) =
        std::thread::scope(|s| {
            let server = args.server_pid.map(|pid| {
                let clk = args.clk_tck;
                s.spawn(move || -> Result<f64> {
                    std::thread::sleep(warmup.saturating_sub(start.elapsed()));
                    let before = cpu_seconds(pid, clk)?;
                    std::thread::sleep((warmup + run).saturating_sub(start.elapsed()));
                    Ok(cpu_seconds(pid, clk)? - before)
                })
            });
            let handles: Vec<_> = (0..args.connections)
                .map(|_| {
                    let (url, body) = (&url, &body);
                    let agent = agent(&args);
                    s.spawn(move || -> Result<Vec<Duration>> {
                        let agent = agent?;
                        let mut lat = Vec::new();
                        while start.elapsed() < warmup + run {
                            let t = Instant::now();
                            let mut resp = agent
                                .post(url.as_str())
                                .header("content-type", "application/json")
                                .send(&body[..])?;
                            let _ = resp.body_mut().read_to_vec()?;
                            if resp.status() != 200 {
                                bail!("status {}", resp.status());
                            }
                            if start.elapsed() > warmup {
                                lat.push(t.elapsed());
                            }
                        }
                        Ok(lat)
                    })
                })
                .collect();
            let results = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))
                })
                .collect();
            let cpu = server.map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))
            });
            (results, cpu)
        });
    let mut all = Vec::new();
    for r in results {
        all.extend(r.context("a connection failed")?);
    }
    if all.is_empty() {
        bail!("no request completed in the measured seconds");
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
    let server = match server_cpu {
        Some(cpu) => {
            let cpu = cpu.context("reading keyd's CPU time")?;
            format!(
                "  keyd {cpu:.2} CPU-s: {:>6.0} req per server CPU-second",
                all.len() as f64 / cpu.max(1e-9)
            )
        }
        None => String::new(),
    };
    println!(
        "{:>14} {:>5} B {:>4} conns: {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} requests){server}",
        match args.op {
            Op::Sign => "sign",
            Op::Encrypt if args.suite == "x25519" => "encrypt/x25519",
            Op::Encrypt => "encrypt/x-wing",
            Op::Seal => "seal",
        },
        args.size,
        args.connections,
        all.len() as f64 / run.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        all.len()
    );
    Ok(())
}

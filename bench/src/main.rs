//! `keyd-load`: drives a running keyd over HTTPS with a client certificate (or OpenBao's
//! transit engine with a token, `--target openbao`, for the side-by-side comparison), one
//! thread and one keep-alive connection per `--connections`, for `--seconds`, and prints
//! throughput, latency percentiles and, with `--server-pid`, requests per server
//! CPU-second. See bench/README.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Parser, ValueEnum};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

#[derive(Clone, Copy, ValueEnum)]
enum Op {
    /// keyd: POST /v1/sign with `--size` bytes. OpenBao: transit sign with an ed25519
    /// key.
    Sign,
    /// keyd: POST /v1/encrypt of `--size` bytes to `--to` (no OpenBao counterpart).
    Encrypt,
    /// keyd: POST /v1/seal of `--size` bytes. OpenBao: transit encrypt with an
    /// aes256-gcm96 key.
    Seal,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// keyd, with a client certificate.
    Keyd,
    /// OpenBao's transit engine, with a token.
    Openbao,
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
    /// Client certificate (PEM), for keyd.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Client key (PEM), for keyd.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The server: keyd (default) or openbao.
    #[arg(long, value_enum, default_value_t = Target::Keyd)]
    target: Target,
    /// File holding the OpenBao token (never on the command line).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Transit key for OpenBao sign (type ed25519).
    #[arg(long, default_value = "bench-ed25519")]
    sign_key: String,
    /// Transit key for OpenBao encrypt (type aes256-gcm96).
    #[arg(long, default_value = "bench-aes")]
    seal_key: String,
    /// Also print the result as one JSON line (for bench/results).
    #[arg(long)]
    json: bool,
    /// Sign this many items per request (keyd `/v1/batch/sign`, transit
    /// `batch_input`); rates are then given in items (signatures).
    #[arg(long, default_value_t = 1)]
    batch: usize,
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
    let client = match (args.target, &args.cert, &args.key) {
        (Target::Keyd, Some(cert), Some(key)) => {
            let cert = Certificate::from_pem(&std::fs::read(cert)?)?;
            let key = PrivateKey::from_pem(&std::fs::read(key)?)?;
            Some(ClientCert::new_with_certs(&[cert], key))
        }
        (Target::Keyd, _, _) => bail!("--target keyd needs --cert and --key"),
        (Target::Openbao, _, _) => None,
    };
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&[ca]))
        .client_cert(client)
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
    if args.batch == 0 || args.batch > 1000 {
        bail!("--batch: 1 to 1000");
    }
    if args.batch > 1 && !matches!(args.op, Op::Sign) {
        bail!("--batch is for sign");
    }
    let (path, body) = match (args.target, args.op) {
        (Target::Keyd, Op::Sign) if args.batch > 1 => (
            "/v1/batch/sign".to_owned(),
            serde_json::json!({"items": vec![serde_json::json!({"data": payload}); args.batch]}),
        ),
        (Target::Openbao, Op::Sign) if args.batch > 1 => (
            format!("/v1/transit/sign/{}", args.sign_key),
            serde_json::json!({"batch_input": vec![serde_json::json!({"input": payload}); args.batch]}),
        ),
        (Target::Keyd, Op::Sign) => ("/v1/sign".to_owned(), serde_json::json!({"data": payload})),
        (Target::Keyd, Op::Encrypt) => (
            "/v1/encrypt".to_owned(),
            serde_json::json!({"to": args.to, "plaintext": payload, "suite": args.suite}),
        ),
        (Target::Keyd, Op::Seal) => (
            "/v1/seal".to_owned(),
            serde_json::json!({"plaintext": payload}),
        ),
        (Target::Openbao, Op::Sign) => (
            format!("/v1/transit/sign/{}", args.sign_key),
            serde_json::json!({"input": payload}),
        ),
        (Target::Openbao, Op::Seal) => (
            format!("/v1/transit/encrypt/{}", args.seal_key),
            serde_json::json!({"plaintext": payload}),
        ),
        (Target::Openbao, Op::Encrypt) => {
            bail!("OpenBao's transit engine has no public-key encryption to a node")
        }
    };
    let token = match (args.target, &args.token_file) {
        (Target::Openbao, Some(file)) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .trim()
                .to_owned(),
        ),
        (Target::Openbao, None) => bail!("--target openbao needs --token-file"),
        (Target::Keyd, _) => None,
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
                    let (url, body, token, batch) = (&url, &body, &token, args.batch);
                    let agent = agent(&args);
                    s.spawn(move || -> Result<Vec<Duration>> {
                        let agent = agent?;
                        let mut lat = Vec::new();
                        while start.elapsed() < warmup + run {
                            let t = Instant::now();
                            let mut req = agent
                                .post(url.as_str())
                                .header("content-type", "application/json");
                            if let Some(token) = token {
                                req = req.header("x-vault-token", token.as_str());
                            }
                            let mut resp = req.send(&body[..])?;
                            let answer = resp.body_mut().read_to_vec()?;
                            if resp.status() != 200 {
                                bail!("status {}", resp.status());
                            }
                            // A batch answers 200 with per-item errors: none may fail.
                            if batch > 1 && answer.windows(8).any(|w| w == b"\"error\"") {
                                bail!("a batch item failed: {}", String::from_utf8_lossy(&answer));
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
    let server_name = match args.target {
        Target::Keyd => "keyd",
        Target::Openbao => "openbao",
    };
    let cpu = server_cpu
        .map(|c| c.context("reading the server's CPU time"))
        .transpose()?;
    let items = (all.len() * args.batch) as f64;
    let per_cpu = cpu.map(|c| items / c.max(1e-9));
    let server = match (cpu, per_cpu) {
        (Some(cpu), Some(rate)) => {
            format!(
                "  {server_name} {cpu:.2} CPU-s: {rate:>6.0} {} per server CPU-second",
                if args.batch > 1 { "signatures" } else { "req" }
            )
        }
        _ => String::new(),
    };
    let op = match (args.target, args.op) {
        (Target::Keyd, Op::Sign) if args.batch > 1 => "batch sign",
        (Target::Openbao, Op::Sign) if args.batch > 1 => "transit batch sign",
        (Target::Keyd, Op::Sign) => "sign",
        (Target::Keyd, Op::Encrypt) if args.suite == "x25519" => "encrypt/x25519",
        (Target::Keyd, Op::Encrypt) => "encrypt/x-wing",
        (Target::Keyd, Op::Seal) => "seal",
        (Target::Openbao, Op::Sign) => "transit sign",
        (Target::Openbao, _) => "transit encrypt",
    };
    let throughput = items / run.as_secs_f64();
    println!(
        "{op:>18} {:>5} B {:>4} conns {:>4}/req: {throughput:>8.0} items/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms  ({} requests){server}",
        args.size,
        args.connections,
        args.batch,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        all.len()
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "server": server_name, "op": op, "size": args.size,
                "connections": args.connections, "seconds": args.seconds, "batch": args.batch,
                "requests": all.len(), "per_second": throughput,
                "p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
                "max_ms": pct(1.0), "server_cpu_seconds": cpu,
                "per_server_cpu_second": per_cpu,
            })
        );
    }
    Ok(())
}

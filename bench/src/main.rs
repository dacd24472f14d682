//! `keyd-load`: drives a running keyd over HTTPS with a client certificate (or OpenBao's
//! transit engine with a token, `--target openbao`, or keyd-floor's empty answer,
//! `--target floor`), one thread and one keep-alive connection per `--connections`, for
//! `--seconds`, in a closed loop or at a fixed rate (`--rate`), and prints throughput,
//! latency percentiles from an HDR histogram and, with `--server-pid`, operations per
//! server CPU-second. See bench/README.md.

mod drive;
mod request;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use drive::{Load, Pace};
use request::{Op, Params, Target};

/// Load generator for keyd, OpenBao transit and keyd-floor.
#[derive(Parser)]
struct Args {
    /// Server base URL (https://127.0.0.1:PORT).
    #[arg(long)]
    url: String,
    /// CA certificate of the server (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate (PEM), for keyd and keyd-floor.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Client key (PEM), for keyd and keyd-floor.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The server.
    #[arg(long, value_enum, default_value_t = Target::Keyd)]
    target: Target,
    /// File holding the OpenBao token (never on the command line).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Transit key for OpenBao sign and verify (type ed25519).
    #[arg(long, default_value = "bench-ed25519")]
    sign_key: String,
    /// Transit key for OpenBao encrypt, decrypt and datakey (type aes256-gcm96).
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
    /// Recipient for encrypt and decrypt (decrypt: the caller itself).
    #[arg(long, default_value = "")]
    to: String,
    /// HPKE suite for encrypt and decrypt: x-wing (keyd's default) or x25519.
    #[arg(long, default_value = "x-wing")]
    suite: String,
    /// The caller's current epoch key (Ed25519, hex), for keyd verify.
    #[arg(long)]
    verify_key: Option<String>,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Open loop: requests due at this total rate per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load after a one-second warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Send this many requests in all, then stop, even before `--seconds` are up (to
    /// grow a tree to a size); every request is measured (no warm-up).
    #[arg(long)]
    requests: Option<u64>,
    /// The server's process id: also report the CPU time it spent during the measured
    /// seconds (all its threads, from /proc/PID/stat) and operations per server
    /// CPU-second.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
}

fn agent(args: &Args) -> Result<ureq::Agent> {
    let ca = Certificate::from_pem(&std::fs::read(&args.ca)?)?;
    let client = match (args.target, &args.cert, &args.key) {
        (Target::Openbao, _, _) => None,
        (_, Some(cert), Some(key)) => {
            let cert = Certificate::from_pem(&std::fs::read(cert)?)?;
            let key = PrivateKey::from_pem(&std::fs::read(key)?)?;
            Some(ClientCert::new_with_certs(&[cert], key))
        }
        (_, _, _) => bail!("--target {} needs --cert and --key", args.target.name()),
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

fn token(args: &Args) -> Result<Option<String>> {
    match (args.target, &args.token_file) {
        (Target::Openbao, Some(file)) => Ok(Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .trim()
                .to_owned(),
        )),
        (Target::Openbao, None) => bail!("--target openbao needs --token-file"),
        _ => Ok(None),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.connections == 0 {
        bail!("--connections: at least 1");
    }
    let pace = match args.rate {
        None => Pace::Closed,
        Some(r) if r.is_finite() && r > 0.0 => Pace::Open(r),
        Some(r) => bail!("--rate: a positive number of requests per second, not {r}"),
    };
    let token = token(&args)?;
    let setup = agent(&args)?;
    let post = |path: &str, body: &Value| -> Result<Value> {
        let mut req = setup
            .post(format!("{}{path}", args.url))
            .header("content-type", "application/json");
        if let Some(t) = &token {
            req = req.header("x-vault-token", t.as_str());
        }
        let mut resp = req.send_json(body)?;
        let answer = resp.body_mut().read_to_vec()?;
        if resp.status() != 200 {
            bail!(
                "{path}: status {}: {}",
                resp.status(),
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(serde_json::from_slice(&answer)?)
    };
    let params = Params {
        size: args.size,
        batch: args.batch,
        to: &args.to,
        suite: &args.suite,
        verify_key: args.verify_key.as_deref(),
        sign_key: &args.sign_key,
        seal_key: &args.seal_key,
    };
    let plan = request::plan(args.target, args.op, &params, &post)?;
    let url = format!("{}{}", args.url, plan.path);
    let agents = (0..args.connections)
        .map(|_| agent(&args))
        .collect::<Result<Vec<_>>>()?;
    let load = Load {
        url: &url,
        plan: &plan,
        token: token.as_deref(),
        // A counted run measures every request (it grows a tree rather than samples a
        // steady state).
        warmup: Duration::from_secs(u64::from(args.requests.is_none())),
        run: Duration::from_secs(args.seconds),
        pace,
        left: args.requests.map(std::sync::atomic::AtomicU64::new),
    };
    let measured = load.run(agents, args.server_pid.map(|p| (p, args.clk_tck)))?;
    let lat = &measured.latency;
    if lat.is_empty() {
        bail!("no request completed in the measured seconds");
    }
    let ms = |q: f64| lat.value_at_quantile(q) as f64 / 1e3;
    let max = lat.max() as f64 / 1e3;
    let requests = lat.len();
    let items = (requests as usize * plan.items) as f64;
    let throughput = items / measured.seconds.max(1e-9);
    let per_cpu = measured.server_cpu.map(|c| items / c.max(1e-9));
    let server = args.target.name();
    let server_text = match (measured.server_cpu, per_cpu) {
        (Some(cpu), Some(rate)) => format!(
            "  {server} {cpu:.2} CPU-s: {rate:>6.0} {} per server CPU-second",
            if plan.items > 1 { "signatures" } else { "ops" }
        ),
        _ => String::new(),
    };
    let mode = match pace {
        Pace::Closed => "closed".to_owned(),
        Pace::Open(r) => format!("open {r:.0}/s"),
    };
    println!(
        "{:>20} {:>5} B {:>3} conns {:>4}/req {mode:>12}: {throughput:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  max {:>7.2} ms  ({requests} requests){server_text}",
        plan.name,
        args.size,
        args.connections,
        plan.items,
        ms(0.50),
        ms(0.99),
        ms(0.999),
        max,
    );
    if args.json {
        println!(
            "{}",
            json!({
                "server": server, "op": plan.name, "size": args.size,
                "connections": args.connections, "seconds": measured.seconds, "batch": plan.items,
                "mode": if args.rate.is_some() { "open" } else { "closed" }, "rate": args.rate,
                "requests": requests, "per_second": throughput,
                "p50_ms": ms(0.50), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": max,
                "server_cpu_seconds": measured.server_cpu,
                "per_server_cpu_second": per_cpu,
            })
        );
    }
    Ok(())
}

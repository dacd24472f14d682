//! `keyd-floor`: the raw floor under keyd's operations, measured in the same run.
//!
//! - `keyd-floor serve`: an empty answer through the stack keyd serves on (actix-web on
//!   rustls with the ring provider, client certificates checked against keyd's CA), so
//!   keyd-load measures what a request costs before keyd does any work.
//! - `keyd-floor primitives`: the cryptography of each keyd operation on one core,
//!   called directly through the keyd library (the same functions keyd's handlers
//!   call), without HTTP, JSON or lookups.
//!
//! An operation's floor per server CPU-second is `1 / (empty request + primitive)`,
//! in CPU-seconds; bench/run-compare reports keyd against it.

mod primitives;
mod serve;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The raw floor under keyd's operations.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve empty answers over mTLS on 127.0.0.1 (port 0) until killed.
    Serve {
        /// CA that client certificates must chain to (keyd's `ca.pem`).
        #[arg(long)]
        client_ca: PathBuf,
        /// Where to write the CA certificate of this server's own certificate (PEM).
        #[arg(long)]
        write_ca: PathBuf,
    },
    /// Rate of each primitive on this thread, as JSON lines.
    Primitives {
        /// Payload size in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Seconds per primitive.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Serve {
            client_ca,
            write_ca,
        } => serve::run(&client_ca, &write_ca),
        Command::Primitives { size, seconds } => primitives::run(size, seconds),
    }
}

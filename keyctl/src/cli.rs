//! Command-line definitions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// keyctl: administer keyd and run the offline root ceremonies.
///
/// Token URIs follow RFC 7512, e.g.
/// pkcs11:token=keyd-root;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/user.pin
/// PINs come from pin-source (file:PATH or env:VARIABLE), never from the command line.
#[derive(Debug, Parser)]
#[command(name = "keyctl", version, about, long_about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the public keys of PATH under a software root given in hex.
    ///
    /// An interoperability tool for checking other implementations against keyd's
    /// derivation scheme (docs/test-vectors.json). Never give it a real root: real roots
    /// live in an HSM and never leave it.
    Vectors {
        /// The software root secret: 128 hex digits (64 bytes).
        #[arg(long)]
        root_hex: String,
        /// Key path, e.g. m/1'/1'/0'/0' (hardened components only).
        #[arg(long)]
        path: String,
    },
    /// Offline root ceremonies (touch the root HSM).
    #[command(subcommand)]
    Ceremony(Ceremony),
}

/// Ceremonies against the root token.
#[derive(Debug, Subcommand)]
pub enum Ceremony {
    /// Create the root: mix OS and HSM randomness into R, split it into N shares (M
    /// needed), import it non-extractable, and write the shares, root.json and a signed
    /// transcript to --out. Refuses a token that already holds a root.
    Init {
        /// RFC 7512 URI of the root token.
        #[arg(long)]
        hsm: String,
        /// Number of shares to make (N).
        #[arg(long, value_parser = clap::value_parser!(u8).range(2..=255))]
        shares: u8,
        /// Shares needed to rebuild the root (M, 2 <= M <= N).
        #[arg(long)]
        threshold: u8,
        /// New (or empty) directory for share-K.json, root.json and transcript.json.
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild the root from at least M shares into a fresh token, and prove it by
    /// re-deriving the root identity of root.json. Checks every share before touching
    /// the token.
    Recover {
        /// RFC 7512 URI of the fresh token.
        #[arg(long)]
        hsm: String,
        /// A share file (repeat for each share).
        #[arg(long = "share", required = true)]
        shares: Vec<PathBuf>,
        /// The root.json written by `ceremony init`.
        #[arg(long)]
        expect: PathBuf,
        /// Also write a signed transcript of the recovery to this new file.
        #[arg(long)]
        transcript: Option<PathBuf>,
    },
    /// Print the public keys of any path, derived through the token's root.
    Derive {
        /// RFC 7512 URI of the root token.
        #[arg(long)]
        hsm: String,
        /// Key path, e.g. m/1'/1'/0'/0'.
        #[arg(long)]
        path: String,
    },
}

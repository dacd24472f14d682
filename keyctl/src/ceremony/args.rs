//! The ceremonies' command line.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Where a new root's shares go (`init`, `root-rekey`).
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// A custodian and what their share is encrypted to (age): NAME=age1… (an X25519
    /// recipient, e.g. from `keyctl ceremony custodian-key`) or
    /// NAME=passphrase-file:PATH (scrypt; the passphrase is the file's first line).
    /// Repeat once per share.
    #[arg(
        long = "custodian",
        value_name = "NAME=RECIPIENT",
        conflicts_with = "plain_shares"
    )]
    pub custodians: Vec<String>,
    /// Write the shares in clear (share-K.json) instead of encrypting each to a
    /// custodian: only for a ceremony whose shares go straight to paper or a demo.
    #[arg(long, requires = "shares")]
    pub plain_shares: bool,
    /// Number of clear shares to make (N), with --plain-shares.
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=255), requires = "plain_shares")]
    pub shares: Option<u8>,
    /// Shares needed to rebuild the root (M, 2 <= M <= N).
    #[arg(long)]
    pub threshold: u8,
}

/// Ceremonies against the root token.
#[derive(Debug, Subcommand)]
pub enum Ceremony {
    /// Create the root: mix OS and HSM randomness into R, split it into N shares (M
    /// needed), import it non-extractable, and write the shares, root.json and a signed
    /// transcript to --out. Refuses a token that already holds a root.
    ///
    /// Each share is encrypted to its custodian (--custodian NAME=RECIPIENT, one per
    /// share, N = their number); clear shares only with --plain-shares --shares N.
    Init {
        /// RFC 7512 URI of the root token.
        #[arg(long)]
        hsm: String,
        /// Where the shares go, and how many rebuild the root.
        #[command(flatten)]
        shares: ShareArgs,
        /// Cluster name, recorded in the genesis statement.
        #[arg(long, default_value = "keyd")]
        cluster: String,
        /// New (or empty) directory for the shares (share-K-NAME.age, or share-K.json),
        /// root.json, chain.cbor and transcript.json.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make an age X25519 key for a share custodian: writes the identity to --out (0600)
    /// and prints the recipient (age1…) to give `ceremony init --custodian NAME=…`.
    CustodianKey {
        /// New file for the identity (AGE-SECRET-KEY-1…); the custodian keeps it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Certify level-1 branch m/INDEX' named NAME with the root, append it to the chain,
    /// and write a bundle with the branch secret sealed (HPKE) to a keyd instance's
    /// install key. The secret is never written in clear.
    Issue {
        /// RFC 7512 URI of the root token.
        #[arg(long)]
        hsm: String,
        /// The chain file from `ceremony init` (updated in place).
        #[arg(long)]
        chain: PathBuf,
        /// Branch name (e.g. the datacenter), unique among live keys.
        #[arg(long)]
        name: String,
        /// Branch index: the branch is m/INDEX'.
        #[arg(long)]
        index: u32,
        /// The keyd instance's install public key (64 hex digits, from `keyd init`).
        #[arg(long)]
        to: String,
        /// Validity of the branch certificate, in days.
        #[arg(long, default_value_t = 1825)]
        days: u64,
        /// Where to write the bundle (a new file, 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a key (by path or name) and its whole subtree with a root-signed statement
    /// appended to the chain (e.g. a keyd host is lost).
    Revoke {
        /// RFC 7512 URI of the root token.
        #[arg(long)]
        hsm: String,
        /// The chain file (updated in place).
        #[arg(long)]
        chain: PathBuf,
        /// The key to revoke: a path (m/1') or a name.
        #[arg(long)]
        path: String,
        /// Why (recorded in the chain).
        #[arg(long)]
        reason: String,
    },
    /// Rebuild the root from at least M shares into a fresh token, and prove it by
    /// re-deriving the root identity of root.json. Checks every share before touching
    /// the token.
    Recover {
        /// RFC 7512 URI of the fresh token.
        #[arg(long)]
        hsm: String,
        /// A share file (repeat for each share): share-K-NAME.age or share-K.json.
        #[arg(long = "share", required = true)]
        shares: Vec<PathBuf>,
        /// An age identity file of a custodian whose share is given (repeat).
        #[arg(long = "identity")]
        identities: Vec<PathBuf>,
        /// A file whose first line is the passphrase of a custodian whose share is
        /// given (repeat).
        #[arg(long = "passphrase-file")]
        passphrase_files: Vec<PathBuf>,
        /// The root.json written by `ceremony init`.
        #[arg(long)]
        expect: PathBuf,
        /// The signed transcript.json of `ceremony init`: every share is checked against
        /// its commitment there, so an altered share is named.
        #[arg(long)]
        init_transcript: PathBuf,
        /// Also write a signed transcript of the recovery to this new file.
        #[arg(long)]
        transcript: Option<PathBuf>,
    },
    /// Rebuild a lost keyd: seal branch m/INDEX' again from the root to a new keyd's
    /// install key, with the cluster chain holding that branch's log (as a peer keyd or
    /// a node fetched it), so that the new keyd continues the log: every node, epoch
    /// and revocation in it.
    Rebuild {
        /// RFC 7512 URI of the root token (for example recovered from shares).
        #[arg(long)]
        hsm: String,
        /// The cluster chain: root log and the branch's log (`keyctl chain fetch`).
        #[arg(long)]
        chain: PathBuf,
        /// The branch index I (m/I').
        #[arg(long)]
        index: u32,
        /// The new keyd's install public key (`keyd init` prints it).
        #[arg(long)]
        to: String,
        /// The bundle to write (new file).
        #[arg(long)]
        out: PathBuf,
    },
    /// Open envelopes of any node of the cluster as the root, offline: the key each names
    /// is derived through the token (an encrypted envelope's sender is checked with its
    /// key derived the same way), and the plaintext written to DIR/FILE-NAME.plain (0600).
    Decrypt {
        /// RFC 7512 URI of the root token.
        #[arg(long)]
        hsm: String,
        /// An envelope file (repeat for more).
        #[arg(long = "in", required = true)]
        input: Vec<PathBuf>,
        /// The context the envelopes were bound to, if any.
        #[arg(long)]
        context: Option<String>,
        /// New (or empty) directory for the plaintexts.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the root: make a new root on a fresh token (new shares, as `init`), sign a
    /// `succession` naming it with the old root (the old root log's last word), and
    /// re-issue every live level-1 branch under the new root, each sealed to its keyd's
    /// install key. Each keyd then moves its tree with `keyd root-rekey`. Writes to --out:
    /// new-root/ (shares, root.json, chain.cbor, transcript.json of the new root),
    /// succession.cbor (the old root log ending in the succession), branch-I.bundle per
    /// branch, and transcript.json signed by the old root.
    RootRekey {
        /// RFC 7512 URI of the old root's token.
        #[arg(long)]
        old_hsm: String,
        /// RFC 7512 URI of the fresh token for the new root.
        #[arg(long)]
        new_hsm: String,
        /// The cluster chain (at least the root log: the ceremony's chain file or
        /// `keyctl chain fetch`).
        #[arg(long)]
        chain: PathBuf,
        /// Where the new root's shares go, and how many rebuild it.
        #[command(flatten)]
        shares: ShareArgs,
        /// A live branch and its keyd's install public key (`keyd init` printed it):
        /// I=HEX for branch m/I'. Every live branch must be named.
        #[arg(long = "branch", value_name = "I=INSTALL_PUBLIC_KEY", required = true)]
        branches: Vec<String>,
        /// New (or empty) directory for everything the ceremony writes.
        #[arg(long)]
        out: PathBuf,
    },
    /// Trust another cluster cluster-wide: a root-signed trust statement appended to the
    /// chain (push it to each keyd with `keyctl chain push`). Where a keyd's own
    /// exchange also trusts that root, the root's grant wins.
    Trust {
        /// RFC 7512 URI of the root token.
        #[arg(long)]
        hsm: String,
        /// The chain file (updated in place).
        #[arg(long)]
        chain: PathBuf,
        /// The other cluster's name.
        #[arg(long)]
        cluster: String,
        /// The other cluster's root.json (its root identity key).
        #[arg(long)]
        root_json: PathBuf,
        /// The level granted.
        #[arg(long, value_enum, default_value = "limited")]
        level: crate::trust_cmd::Level,
        /// The permissions granted, comma-separated: verify, encrypt, decrypt.
        #[arg(long, value_delimiter = ',', default_value = "verify")]
        permissions: Vec<String>,
        /// How long the trust lasts (90d, 12h, …).
        #[arg(long, default_value = "365d")]
        expires: String,
    },
    /// End the root's cluster-wide trust in another cluster (a root-signed untrust).
    Untrust {
        /// RFC 7512 URI of the root token.
        #[arg(long)]
        hsm: String,
        /// The chain file (updated in place).
        #[arg(long)]
        chain: PathBuf,
        /// The other cluster's root.json.
        #[arg(long)]
        root_json: PathBuf,
        /// Why (recorded in the chain).
        #[arg(long)]
        reason: String,
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

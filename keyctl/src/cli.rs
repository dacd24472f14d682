//! Command-line definitions.

use std::path::PathBuf;

pub use crate::ceremony::args::Ceremony;
use clap::{Parser, Subcommand};

/// keyctl: administer keyd and run the offline root ceremonies.
///
/// Token URIs follow RFC 7512, e.g.
/// "pkcs11:token=keyd-root;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/user.pin"
/// (quote it: `;` and `&` would split the shell line). PINs come from pin-source
/// (file:PATH or env:VARIABLE), never from the command line.
///
/// Commands against keyd read a keyctl.toml (url, ca, cert, key; `keyctl enroll` writes
/// one): --config FILE, else $KEYCTL_CONFIG, else $XDG_CONFIG_HOME/keyctl/config.toml
/// (~/.config/keyctl/config.toml).
///
/// Exit status: 0 done; 1 error; 2 usage (a bad command line); 3 refused or not valid
/// (keyd refused the request, or `keyctl verify` found the signature not valid).
#[derive(Debug, Parser)]
#[command(name = "keyctl", version, about, long_about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Output format: json (one line, the default for commands against keyd) or text
    /// (the default for ceremonies and chain files).
    #[arg(long, global = true, value_enum)]
    pub output: Option<Output>,
}

/// The keyctl.toml used when neither --config nor KEYCTL_CONFIG names one:
/// `$XDG_CONFIG_HOME/keyctl/config.toml`, else `~/.config/keyctl/config.toml`, else
/// `keyctl.toml` in the current directory.
pub fn default_config() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    match base {
        Some(b) => b.join("keyctl").join("config.toml"),
        None => PathBuf::from("keyctl.toml"),
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print shell completions for keyctl: `source <(keyctl completions bash)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write keyctl's man pages (keyctl.1 and one per subcommand) to DIR.
    Man {
        /// Where to write them (created when missing).
        #[arg(long)]
        out: PathBuf,
    },
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
    /// Check and show chain files offline; fetch one from keyd.
    #[command(subcommand)]
    Chain(ChainCmd),
    /// Public keys from a chain file, offline, in the formats other tools read; a
    /// node's named keys on a running keyd (create, list, show, rotate).
    #[command(subcommand)]
    Key(KeyCmd),
    /// keyd's audit log: tail (and follow), export as JSON lines, verify.
    #[command(subcommand)]
    Audit(crate::audit_cmd::AuditCmd),
    /// The policy of a running keyd: show, apply (live), check a request (or a file,
    /// offline).
    #[command(subcommand)]
    Policy(crate::policy_cmd::PolicyCmd),
    /// Trust between clusters: invite, accept, consent, confirm the code, list, revoke
    /// (admin credential; list also with a node's).
    #[command(subcommand)]
    Trust(crate::trust_cmd::TrustCmd),
    /// Replicas of a keyd group on etcd: approve a new one (admin credential).
    #[command(subcommand)]
    Replica(crate::replica_cmd::ReplicaCmd),
    /// Administer nodes on a running keyd (admin credential).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Admin credentials on a running keyd: revoke, list the revoked (admin credential).
    /// New ones come from `keyd admin issue`.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Sign a file with the node's current epoch key (node credential).
    Sign {
        /// keyctl.toml: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The data to sign.
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// Verify a signature and the signing key's standing in the chain.
    Verify {
        /// keyctl.toml: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The signed data.
        #[arg(long = "in")]
        input: PathBuf,
        /// What `keyctl sign` printed (its JSON: signature and public key), saved to a
        /// file; instead of --signature and --public-key.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["signature", "public_key"])]
        signed: Option<PathBuf>,
        /// The signature, base64.
        #[arg(long, required_unless_present = "signed", requires = "public_key")]
        signature: Option<String>,
        /// The Ed25519 public key, hex.
        #[arg(long, required_unless_present = "signed", requires = "signature")]
        public_key: Option<String>,
    },
    /// Encrypt a file to a node (HPKE), signed by the caller (node credential).
    Encrypt {
        /// Config, plaintext and envelope files.
        #[command(flatten)]
        io: FileOp,
        /// The recipient node (name or path).
        #[arg(long)]
        to: String,
        /// HPKE suite: x-wing (default; ML-KEM-768 + X25519 hybrid) or x25519.
        #[arg(long)]
        suite: Option<String>,
    },
    /// Decrypt an envelope addressed to the caller (node credential).
    Decrypt(FileOp),
    /// Seal a file for the caller's own storage (node credential).
    Seal(FileOp),
    /// Open an envelope the caller sealed (node credential).
    Unseal(FileOp),
    /// Re-seal an envelope of an older epoch under the caller's current epoch.
    Rewrap(FileOp),
    /// A fresh 256-bit data key and its sealed form (node credential).
    Datakey {
        /// keyctl.toml: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Where to write the key (new file, 0600).
        #[arg(long)]
        out: PathBuf,
        /// Where to write its sealed form (new file).
        #[arg(long)]
        envelope: PathBuf,
        /// A context (UTF-8) the sealed key is bound to: give it again to unseal.
        #[arg(long)]
        context: Option<String>,
    },
    /// Move the caller to its next epoch (node credential).
    Rekey {
        /// keyctl.toml: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
    },
    /// Enroll a node with its one-time token: writes its TLS key, certificate, the CA
    /// and a keyctl.toml into DIR; in exported mode also its sealed identity secret.
    Enroll {
        /// keyd's URL, e.g. https://127.0.0.1:8443.
        #[arg(long)]
        url: String,
        /// keyd's CA certificate (from `keyctl ca export` by an admin).
        #[arg(long)]
        ca: PathBuf,
        /// File holding the enrollment token (or set KEYD_ENROLL_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// New directory for the node's credential.
        #[arg(long)]
        out: PathBuf,
    },
    /// Renew the client certificate named in a keyctl.toml before it expires (same key).
    Renew {
        /// keyctl.toml: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
    },
    /// keyd's CA certificate.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Run one operation on many items at once (1 to 1,000; node credential, or admin for
    /// verify): ITEMS is a JSON array of request bodies as the API takes them (base64
    /// byte fields); prints every item's result or its own error, in order.
    Batch {
        /// keyctl.toml: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The operation.
        #[arg(value_enum)]
        op: BatchOp,
        /// JSON file with the items, e.g. `[{"data": "aGk="}, ...]` for sign.
        #[arg(long)]
        items: PathBuf,
    },
}

/// The operations with a batch form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchOp {
    /// `{data}`.
    Sign,
    /// `{data, signature, public_key}`.
    Verify,
    /// `{to, plaintext, suite?}`.
    Encrypt,
    /// `{envelope}`.
    Decrypt,
    /// `{plaintext}`.
    Seal,
    /// `{envelope}`.
    Unseal,
    /// `{envelope}`.
    Rewrap,
    /// `{}`.
    Datakey,
}

impl BatchOp {
    /// The API's name.
    pub fn name(self) -> &'static str {
        match self {
            BatchOp::Sign => "sign",
            BatchOp::Verify => "verify",
            BatchOp::Encrypt => "encrypt",
            BatchOp::Decrypt => "decrypt",
            BatchOp::Seal => "seal",
            BatchOp::Unseal => "unseal",
            BatchOp::Rewrap => "rewrap",
            BatchOp::Datakey => "datakey",
        }
    }
}

/// A file in, a file out, through keyd.
#[derive(Debug, clap::Args)]
pub struct FileOp {
    /// keyctl.toml: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
    /// ~/.config/keyctl/config.toml.
    #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
    pub config: PathBuf,
    /// The input file.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Where to write the result (a new file; 0600).
    #[arg(long)]
    pub out: PathBuf,
    /// A context (associated data, UTF-8) the envelope is bound to: the same must be
    /// given to open it. Not stored in the envelope.
    #[arg(long)]
    pub context: Option<String>,
}

impl FileOp {
    /// The context's bytes (empty for none).
    pub fn context_bytes(&self) -> &[u8] {
        self.context.as_deref().unwrap_or_default().as_bytes()
    }
}

/// The CA certificate.
#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Print (or write) the CA certificate that curl and other clients trust.
    Export {
        /// keyctl.toml: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Write it here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Public keys, offline.
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Export a public key from a (verified) chain file: a node's current epoch key (by
    /// name or node path), or the key a path names exactly (an epoch, a branch, m).
    Export {
        /// Node name or key path.
        key: String,
        /// The chain file (verified first): the node's chain.cbor, or `keyctl chain
        /// fetch`'s.
        #[arg(long)]
        chain: PathBuf,
        /// pem (SubjectPublicKeyInfo, for openssl), jwk (RFC 8037), openssh (signing key
        /// only) or raw (the 32 bytes).
        #[arg(long, value_enum, default_value_t = KeyFormat::Pem)]
        format: KeyFormat,
        /// sig: the Ed25519 signing key; enc: the X25519 key envelopes are sealed to.
        #[arg(long = "use", value_enum, default_value_t = KeyUse::Sig)]
        key_use: KeyUse,
        /// Write it to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A node's named keys on a running keyd (create, list, show, rotate).
    #[command(flatten)]
    Named(crate::key_cmd::NamedKeyCmd),
}

/// `keyctl key export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyFormat {
    /// PEM SubjectPublicKeyInfo (RFC 8410).
    Pem,
    /// JSON Web Key (RFC 8037).
    Jwk,
    /// OpenSSH public key line (RFC 8709).
    Openssh,
    /// The 32 key bytes.
    Raw,
}

/// `keyctl key export --use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyUse {
    /// Ed25519: signatures.
    Sig,
    /// X25519: encryption.
    Enc,
}

/// Node administration against keyd.
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Certify a new node and print its one-time enrollment token (JSON).
    Add {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Node name.
        name: String,
        /// Parent node (name or path); default keyd's branch.
        #[arg(long)]
        parent: Option<String>,
        /// held (keyd keeps the node's keys) or exported (the node also receives its
        /// identity secret at enrollment).
        #[arg(long, value_enum, default_value_t = Mode::Held)]
        mode: Mode,
        /// How long the node is valid (seconds, or 90s, 5m, 2h, 30d); default and most
        /// 5 years.
        #[arg(long, value_name = "AGE")]
        valid_for: Option<String>,
        /// Write the one-time enrollment token to this new file (0600), for the node's
        /// `keyctl enroll --token-file`, instead of printing it.
        #[arg(long, value_name = "FILE")]
        token_out: Option<PathBuf>,
        /// Also draw the token as a QR code on the terminal (standard error), for a
        /// node to scan.
        #[arg(long)]
        qr: bool,
    },
    /// List nodes and their status (JSON).
    List {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
    },
    /// Show one node: its keys, epochs and children (JSON).
    Show {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Node name or path.
        name: String,
    },
    /// Revoke a node and its subtree.
    Revoke {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Node name or path.
        name: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Move a node to its next epoch now; with --order, order it to (a `rekey_order`
    /// in the chain, which a node that keeps its own keys acts on at its next
    /// `keyctl chain fetch --config`).
    Rekey {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Node name or path.
        name: String,
        /// Order the rekey instead of doing it.
        #[arg(long)]
        order: bool,
        /// Why (recorded in the chain), with --order.
        #[arg(long, default_value = "", requires = "order")]
        reason: String,
    },
    /// A node's credentials: end every certificate of the node at once.
    #[command(subcommand)]
    Credentials(CredentialsCmd),
    /// A new one-time enrollment token for an existing, valid node: enrolling with it
    /// starts a new credential generation (every earlier certificate of the node ends).
    Reenroll {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Node name or path.
        name: String,
        /// held (default) or exported.
        #[arg(long, value_enum, default_value_t = Mode::Held)]
        mode: Mode,
        /// Write the one-time enrollment token to this new file (0600) instead of
        /// printing it.
        #[arg(long, value_name = "FILE")]
        token_out: Option<PathBuf>,
        /// Also draw the token as a QR code on the terminal (standard error).
        #[arg(long)]
        qr: bool,
    },
    /// Renew node NAME's validity: its parent (held by keyd) certifies a later end.
    Extend {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Node name or path.
        name: String,
        /// Valid for this long from now: seconds, or with s, m, h, d (at most 5 years).
        #[arg(long)]
        valid_for: String,
    },
    /// Set node NAME's minimum decryption epoch: envelopes of older epochs no longer
    /// open (its keys are not revoked). The node may raise its own; only an admin lowers it.
    MinEpoch {
        /// keyctl.toml with an admin credential, or the node's own. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Node name or path.
        name: String,
        /// The oldest epoch whose envelopes still open (at most the current epoch).
        epoch: u32,
    },
    /// Set which envelope suites node NAME accepts: x-wing (keyd then refuses X25519
    /// envelopes to it, so no sender can downgrade it) or any (the default). An admin,
    /// or the node itself.
    Suite {
        /// keyctl.toml with an admin credential, or the node's own. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// Node name or path.
        name: String,
        /// x-wing or any.
        #[arg(value_parser = ["x-wing", "any"])]
        suite: String,
    },
}

/// Admin credentials against keyd.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Revoke every credential naming admin NAME, at once (not your own).
    Revoke {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The admin name.
        name: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List the revoked admin names.
    List {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
    },
    /// An admin's credentials: end every certificate of that admin at once (a new one
    /// comes from `keyd admin issue`).
    #[command(subcommand)]
    Credentials(CredentialsCmd),
}

/// Credentials of a node or an admin.
#[derive(Debug, Subcommand)]
pub enum CredentialsCmd {
    /// End every client certificate of NAME at once, without touching its keys; a copy
    /// of its certificate and key stops working from the very next request.
    Revoke {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The node (name or path) or admin name.
        name: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Where a node's keys live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// keyd holds the keys.
    Held,
    /// The node gets its identity secret too.
    Exported,
}

impl Mode {
    /// The API's mode.
    pub fn wire(self) -> keyd::wire::EnrollMode {
        match self {
            Mode::Held => keyd::wire::EnrollMode::Held,
            Mode::Exported => keyd::wire::EnrollMode::Exported,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// Chain commands: offline checks of cluster-chain files, fetching one from keyd, pushing
/// a ceremony's root log to keyd.
#[derive(Debug, Subcommand)]
pub enum ChainCmd {
    /// Verify every log of a cluster-chain file (the root log and the branch logs): every
    /// entry and each log's signed head; exit 0 with a summary, or name the log, the
    /// first bad entry and the rule it breaks.
    Verify {
        /// The chain file.
        file: PathBuf,
        /// Refuse a branch head older than this (seconds, or 90s, 5m, 2h, 1d): a keyd
        /// re-signs its head every head_seconds, so an older head means a withheld log.
        /// The root log's head carries its last ceremony's time and is not checked.
        #[arg(long, value_name = "AGE")]
        max_age: Option<String>,
    },
    /// Fetch every log keyd holds (the whole cluster chain), verify it, and write it to
    /// one file; a file already there is brought up to date. The chain is public: only
    /// keyd's URL and CA are needed (--url and --ca, or the url and ca of a keyctl.toml).
    Fetch {
        /// keyctl.toml whose url and ca are used (no client credential is needed).
        #[arg(long, conflicts_with_all = ["url", "ca"])]
        config: Option<PathBuf>,
        /// keyd's URL (https://host:port).
        #[arg(long, requires = "ca")]
        url: Option<String>,
        /// keyd's CA certificate (PEM).
        #[arg(long, requires = "url")]
        ca: Option<PathBuf>,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// Entries per request (1 to 10,000); keyctl pulls page after page, each verified.
        #[arg(long, default_value_t = 10_000)]
        page: usize,
        /// Refuse a branch head older than this (as for `chain verify`).
        #[arg(long, value_name = "AGE")]
        max_age: Option<String>,
    },
    /// Show the keys of a (verified) chain as a tree: names, paths, key ids, epochs,
    /// revocations, trusted clusters; and each log with its head.
    Show {
        /// The chain file.
        file: PathBuf,
    },
    /// Send a ceremony's root log (its chain file, e.g. after `ceremony revoke`) to keyd
    /// (admin credential). keyd verifies it against the root log it holds and stores what
    /// is new, or refuses it naming the entry; its peers take it from there.
    Push {
        /// keyctl.toml of an admin: url, ca, cert, key. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The ceremony's chain file (the root log).
        file: PathBuf,
    },
}

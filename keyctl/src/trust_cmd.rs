//! `keyctl trust`: trust between clusters through their keyds — an admin invites, the
//! other cluster's admin accepts and consents, both compare a 6-digit code out of band
//! and confirm it; then list and revoke (docs/trust-exchange.md).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Subcommand;
use keyd::chain::TrustLevel;
use keyd::client::Client;
use keyd::wire::{TrustConfirm, TrustConsent, TrustInvite, TrustSessionView};
use serde_json::{Value, json};

use crate::cli::default_config;
use crate::error::CtlError;

/// The level of a trust, on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Level {
    /// Everything a trust can allow.
    Full,
    /// Only the permissions listed.
    Limited,
    /// The permissions listed, until the end given (short-lived).
    Temporary,
}

impl From<Level> for TrustLevel {
    fn from(l: Level) -> TrustLevel {
        match l {
            Level::Full => TrustLevel::Full,
            Level::Limited => TrustLevel::Limited,
            Level::Temporary => TrustLevel::Temporary,
        }
    }
}

/// What one side grants the other.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// The level granted.
    #[arg(long, value_enum, default_value = "limited")]
    level: Level,
    /// The permissions granted, comma-separated: verify, encrypt, decrypt.
    #[arg(long, value_delimiter = ',', default_value = "verify")]
    permissions: Vec<String>,
    /// How long the trust lasts (30d, 12h, …).
    #[arg(long, default_value = "90d")]
    expires: String,
    /// The name the other admin sees for this cluster (default: the cluster name).
    #[arg(long)]
    persona: Option<String>,
    /// The URL the other cluster's keyd reaches this keyd at (default: the one in
    /// --config).
    #[arg(long)]
    url: Option<String>,
}

impl GrantArgs {
    fn expires_at(&self) -> Result<u64, CtlError> {
        let seconds =
            crate::chain_cmd::parse_age(&self.expires).map_err(|message| CtlError::Arg {
                flag: "--expires",
                message,
            })?;
        Ok(keyd::unix_now().saturating_add(seconds))
    }
}

/// Trust commands (admin credential).
#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Invite another cluster: keyd opens a session (ten minutes, one use) and prints
    /// its link (and a QR code on a terminal); give it to the other admin in person.
    Invite {
        /// keyctl.toml with an admin credential. Default: $KEYCTL_CONFIG, else
        /// ~/.config/keyctl/config.toml.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// What this cluster grants the other.
        #[command(flatten)]
        grant: GrantArgs,
        /// Draw the link as a QR code on standard error even when it is not a terminal.
        #[arg(long)]
        qr: bool,
    },
    /// Answer an invitation: this keyd joins the session at the inviter's keyd and shows
    /// the inviter's persona; with --yes it consents at once with the grant given.
    Accept {
        /// keyctl.toml with an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The invitation link (keyd-trust:…).
        token: String,
        /// What this cluster grants the other.
        #[command(flatten)]
        grant: GrantArgs,
        /// Consent now (else: keyctl trust consent SESSION … after reading the persona).
        #[arg(long)]
        yes: bool,
    },
    /// Consent to an accepted invitation: what this cluster grants the inviter. Prints
    /// the code to compare with the other admin.
    Consent {
        /// keyctl.toml with an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The session.
        session: String,
        /// What this cluster grants the other.
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Where a session stands: its state, the other side's persona, the code.
    Status {
        /// keyctl.toml with an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The session.
        session: String,
    },
    /// Confirm the code: the inviter types its last digit (--digit), the other admin
    /// says whether both see the same code (--matches yes|no). Exits 3 when the session
    /// ends refused.
    Confirm {
        /// keyctl.toml with an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The session.
        session: String,
        /// The inviter: the last digit of the code.
        #[arg(long, conflicts_with = "matches")]
        digit: Option<u32>,
        /// The responder: yes when both admins see the same code, else no (the inviter
        /// may say no too).
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        matches: Option<bool>,
    },
    /// The clusters this one trusts, with what each is granted.
    List {
        /// keyctl.toml (an admin's or a node's).
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
    },
    /// Run the exchange again with a trusted cluster (by its root fingerprint) over the
    /// keys already recorded, without a code — after a keyd moved or was rebuilt; each
    /// side keeps the level and permissions it granted.
    Reset {
        /// keyctl.toml with an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The other cluster's root fingerprint (keyctl trust list).
        root: String,
    },
    /// Ask a trusted cluster (VIA, its root fingerprint) to introduce this cluster to
    /// another cluster it trusts (--to ROOT): no code; the result is at most limited
    /// trust, and both sides record who introduced whom.
    Introduce {
        /// keyctl.toml with an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The introducer's root fingerprint.
        via: String,
        /// The root fingerprint of the cluster to be introduced to.
        #[arg(long)]
        to: String,
        /// The permissions granted it, comma-separated: verify, encrypt, decrypt.
        #[arg(long, value_delimiter = ',', default_value = "verify")]
        permissions: Vec<String>,
        /// How long the trust lasts (30d, 12h, …).
        #[arg(long, default_value = "30d")]
        expires: String,
    },
    /// One trusted cluster (by its root fingerprint): its persona, what it is granted,
    /// its chain held, who introduced it.
    Show {
        /// keyctl.toml (an admin's or a node's).
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The cluster's root fingerprint.
        root: String,
    },
    /// Pull every trusted cluster's chain now (as keyd does every trust_sync_seconds).
    Sync {
        /// keyctl.toml with an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
    },
    /// End the trust in a cluster (by its root fingerprint): untrust is recorded and its
    /// root blocklisted (a later exchange with it is refused).
    Revoke {
        /// keyctl.toml with an admin credential.
        #[arg(long, env = "KEYCTL_CONFIG", default_value_os_t = default_config(), hide_default_value = true)]
        config: PathBuf,
        /// The other cluster's root fingerprint (keyctl trust list).
        root: String,
        /// Why (recorded in the chain).
        #[arg(long)]
        reason: String,
    },
}

fn consent_of(client: &Client, grant: &GrantArgs) -> Result<TrustConsent, CtlError> {
    Ok(TrustConsent {
        persona: grant.persona.clone(),
        level: grant.level.into(),
        permissions: grant.permissions.clone(),
        expires_at: grant.expires_at()?,
        url: Some(grant.url.clone().unwrap_or_else(|| client.url().to_owned())),
    })
}

/// The session as JSON, with a line for the admin on standard error when there is a
/// code to compare.
fn shown(view: &TrustSessionView) -> Result<Value, CtlError> {
    if let (Some(code), Some(peer)) = (&view.code, &view.peer) {
        eprintln!(
            "code {code}: compare it with the admin of {} (root {}); {}",
            peer.cluster,
            peer.root,
            if view.role == "inviter" {
                "then type its last digit: keyctl trust confirm SESSION --digit D"
            } else {
                "then say whether it matches: keyctl trust confirm SESSION --matches yes|no"
            }
        );
    }
    Ok(serde_json::to_value(view)?)
}

/// Runs a trust command: its JSON answer, and whether the session ended refused.
pub fn run(cmd: TrustCmd) -> Result<(Value, bool), CtlError> {
    Ok(match cmd {
        TrustCmd::Invite { config, grant, qr } => {
            let client = Client::from_config(&config)?;
            let made = client.trust_invite(&TrustInvite {
                persona: grant.persona.clone(),
                level: grant.level.into(),
                permissions: grant.permissions.clone(),
                expires_at: grant.expires_at()?,
                url: Some(grant.url.clone().unwrap_or_else(|| client.url().to_owned())),
            })?;
            if qr || std::io::stderr().is_terminal() {
                eprintln!("{}", crate::remote::token_qr(&made.link)?);
            }
            (
                json!({"session": made.session, "link": made.link, "expires_at": made.expires_at}),
                false,
            )
        }
        TrustCmd::Accept {
            config,
            token,
            grant,
            yes,
        } => {
            let client = Client::from_config(&config)?;
            let view = client.trust_accept(&token)?;
            if let Some(peer) = &view.peer {
                eprintln!(
                    "{} invites: cluster {} (root {}), keyd {} at {}; it grants level {:?}, permissions [{}], until {}",
                    peer.persona,
                    peer.cluster,
                    peer.root,
                    peer.branch,
                    peer.url,
                    peer.level,
                    peer.permissions.join(", "),
                    keyd::rfc3339(peer.expires_at)
                );
            }
            if !yes {
                return Ok((serde_json::to_value(&view)?, false));
            }
            let view = client.trust_consent(&view.session, &consent_of(&client, &grant)?)?;
            (shown(&view)?, false)
        }
        TrustCmd::Consent {
            config,
            session,
            grant,
        } => {
            let client = Client::from_config(&config)?;
            let view = client.trust_consent(&session, &consent_of(&client, &grant)?)?;
            (shown(&view)?, false)
        }
        TrustCmd::Status { config, session } => {
            let view = Client::from_config(&config)?.trust_session(&session)?;
            let closed = view.state == "closed";
            (shown(&view)?, closed)
        }
        TrustCmd::Confirm {
            config,
            session,
            digit,
            matches,
        } => {
            if digit.is_none() && matches.is_none() {
                return Err(CtlError::Arg {
                    flag: "--digit",
                    message: "give --digit D (the inviter) or --matches yes|no (the other admin)"
                        .into(),
                });
            }
            let view = Client::from_config(&config)?
                .trust_confirm(&session, &TrustConfirm { digit, matches })?;
            (serde_json::to_value(&view)?, false)
        }
        TrustCmd::Reset { config, root } => {
            let view = Client::from_config(&config)?.trust_reset(&root)?;
            let closed = view.state == "closed";
            (serde_json::to_value(&view)?, closed)
        }
        TrustCmd::Introduce {
            config,
            via,
            to,
            permissions,
            expires,
        } => {
            let seconds =
                crate::chain_cmd::parse_age(&expires).map_err(|message| CtlError::Arg {
                    flag: "--expires",
                    message,
                })?;
            let view = Client::from_config(&config)?.trust_introduce(
                &via,
                &keyd::wire::TrustIntroduce {
                    to,
                    permissions,
                    expires_at: keyd::unix_now().saturating_add(seconds),
                },
            )?;
            let closed = view.state == "closed";
            (serde_json::to_value(&view)?, closed)
        }
        TrustCmd::Show { config, root } => {
            let all = Client::from_config(&config)?.trusted_clusters()?;
            let one = all
                .clusters
                .into_iter()
                .find(|c| c.persona.root == root)
                .ok_or_else(|| CtlError::Arg {
                    flag: "ROOT",
                    message: format!("{root} is not a cluster this one trusts (keyctl trust list)"),
                })?;
            (serde_json::to_value(one)?, false)
        }
        TrustCmd::Sync { config } => (
            serde_json::to_value(Client::from_config(&config)?.trust_sync()?)?,
            false,
        ),
        TrustCmd::List { config } => (
            serde_json::to_value(Client::from_config(&config)?.trusted_clusters()?)?,
            false,
        ),
        TrustCmd::Revoke {
            config,
            root,
            reason,
        } => (
            serde_json::to_value(Client::from_config(&config)?.trust_revoke(&root, &reason)?)?,
            false,
        ),
    })
}

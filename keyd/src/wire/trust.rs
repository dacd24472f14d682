//! Bodies of the trust exchange between clusters: the admins' calls to their own keyd,
//! and the rendezvous calls one keyd makes to the other (docs/trust-exchange.md).

use serde::{Deserialize, Serialize};

use super::Bytes;
use crate::chain::TrustLevel;

/// What one side grants the other: `POST /v1/trust/invite` (the inviter) and
/// `POST /v1/trust/sessions/{id}/consent` (the responder).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustGrant {
    /// The name shown to the other admin (default: the cluster name).
    #[serde(default)]
    pub persona: Option<String>,
    /// The level granted.
    pub level: TrustLevel,
    /// The permissions granted (`verify`, `encrypt`, `decrypt`; all with `full`).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The trust's end (Unix seconds).
    pub expires_at: u64,
    /// The URL the other keyd reaches this one at (default: the one this call used).
    #[serde(default)]
    pub url: Option<String>,
}

/// The inviter's grant.
pub type TrustInvite = TrustGrant;
/// The responder's grant.
pub type TrustConsent = TrustGrant;

/// An invitation made.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustInvited {
    /// The session (hex).
    pub session: String,
    /// The invitation link (`keyd-trust:…`): give it out of band, once.
    pub link: String,
    /// When the session ends if unused (Unix seconds).
    pub expires_at: u64,
}

/// `POST /v1/trust/accept`: the invitation link the other admin gave.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustAccept {
    /// The link.
    pub token: String,
}

/// `POST /v1/trust/sessions/{id}/confirm`: the inviter's admin types the code's last
/// digit; the responder's admin says whether the codes match.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustConfirm {
    /// The inviter: the last digit of the code.
    #[serde(default)]
    pub digit: Option<u32>,
    /// The responder: whether the code its admin sees is the other admin's.
    #[serde(default)]
    pub matches: Option<bool>,
}

/// Another cluster as its persona says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PersonaView {
    /// The name its admin chose.
    pub persona: String,
    /// Its cluster name.
    pub cluster: String,
    /// Its root fingerprint (SHA-256 of the root identity key, hex).
    pub root: String,
    /// Its keyd's branch.
    pub branch: String,
    /// Its keyd's URL.
    pub url: String,
    /// The level it grants (or asks).
    pub level: TrustLevel,
    /// The permissions it grants.
    pub permissions: Vec<String>,
    /// Until (Unix seconds).
    pub expires_at: u64,
}

/// A trust session as one side sees it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustSessionView {
    /// The session (hex).
    pub session: String,
    /// `inviter` or `responder`.
    pub role: String,
    /// `invited`, `joined`, `identified`, `consented`, `confirmed`, `trusted`,
    /// `closed`.
    pub state: String,
    /// The 6-digit code, once both identities are known (`123 456`).
    #[serde(default)]
    pub code: Option<String>,
    /// The other side, once known.
    #[serde(default)]
    pub peer: Option<PersonaView>,
    /// Why it closed, if it did.
    #[serde(default)]
    pub closed: Option<String>,
    /// When it ends (Unix seconds).
    pub expires_at: u64,
}

/// A cluster this keyd trusts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustedCluster {
    /// Its persona and the trust granted to it (level, permissions, end).
    #[serde(flatten)]
    pub persona: PersonaView,
    /// Entries of its chain held, verified.
    pub chain_entries: usize,
    /// When its chain was last pulled (Unix seconds; 0: never since the exchange).
    pub synced_at: u64,
    /// The log and seq of the `trust` statement.
    pub recorded: String,
    /// Whether the grant shown is the root's cluster-wide trust (a root-log `trust`,
    /// which wins over this keyd's own).
    #[serde(default)]
    pub cluster_wide: bool,
    /// The cluster that introduced it (root fingerprint), if it came from an
    /// introduction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced_by: Option<String>,
}

/// `GET /v1/trust/clusters`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustedClusters {
    /// Each trusted cluster.
    pub clusters: Vec<TrustedCluster>,
}

/// A rendezvous call from the responder's keyd: the session, the proof of the
/// invitation's secret, and a protocol message (CBOR).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Rendezvous {
    /// The session (hex).
    pub session: String,
    /// HMAC-SHA256 of the session under the invitation's secret (hex).
    pub proof: String,
    /// The step: `offer`, `join`, `finish`, `identity`, `confirm`, `status`.
    pub step: String,
    /// The protocol message of the step, if it has one.
    #[serde(default)]
    pub message: Option<Bytes>,
}

/// The inviter keyd's answer.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct RendezvousReply {
    /// Where the inviter's side stands.
    pub state: String,
    /// The protocol message of the answer, if any.
    #[serde(default)]
    pub message: Option<Bytes>,
}

/// `POST /v1/trust/reset`: a trusted cluster's keyd asks this one to run the exchange
/// again over the keys already recorded (no code: each side's identity is checked
/// against the root it already trusts).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustReset {
    /// The invitation link of the session the asking keyd opened.
    pub link: String,
    /// The asking cluster's root fingerprint.
    pub root: String,
    /// After a root rekey of the asking cluster: its previous root's fingerprint (the
    /// root the other side trusts, which named `root` its successor).
    #[serde(default)]
    pub previous: Option<String>,
    /// With `previous`: the previous root's chain, ending in the succession.
    #[serde(default)]
    pub succession: Option<Bytes>,
    /// With `previous`: the asking keyd's chain under its new root (the root log and its
    /// branch log), whose branch key signed this request.
    #[serde(default)]
    pub chain: Option<Bytes>,
    /// Ed25519 signature by the asking keyd's branch key over
    /// `"keyd/v1/trust/reset\0" ‖ link` (hex).
    pub signature: String,
}

/// `POST /v1/trust/clusters/{root}/introduce`: ask the trusted cluster `{root}` to
/// introduce this cluster to another cluster it trusts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustIntroduce {
    /// The other cluster's root fingerprint.
    pub to: String,
    /// The permissions granted it (at most `limited` trust).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The trust's end (Unix seconds).
    pub expires_at: u64,
}

/// A keyd's signed request, keyd to keyd: an introduction asked of the introducer
/// (`POST /v1/trust/introduce`) or relayed by it (`POST /v1/trust/introduced`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustRelay {
    /// The invitation link of the asking cluster's session.
    pub link: String,
    /// The asking (introduced) cluster's root fingerprint.
    pub from: String,
    /// The cluster it is introduced to (root fingerprint).
    pub to: String,
    /// The introducer's root fingerprint (in a relayed introduction).
    #[serde(default)]
    pub by: Option<String>,
    /// Ed25519 signature (hex) by the sending keyd's branch key over
    /// `"keyd/v1/trust/introduce\0" ‖ link ‖ from ‖ to`.
    pub signature: String,
}

/// `POST /v1/trust/sync`: how many trusted clusters' keyds answered.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TrustSynced {
    /// Trusted clusters whose chain was pulled (the others keep the chain held).
    pub answered: usize,
}

//! Enrollment, renewal, the cluster's nodes, admins and credentials, and the chain.

use serde::{Deserialize, Serialize};

use super::Bytes;

/// Where a node's keys live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EnrollMode {
    /// keyd holds the node's keys and serves its operations (the default).
    #[default]
    Held,
    /// The node also receives its identity secret at enrollment and keeps its own keys
    /// (keyd, an ancestor, can still derive them to rekey, revoke and recover).
    Exported,
}

impl EnrollMode {
    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            EnrollMode::Held => "held",
            EnrollMode::Exported => "exported",
        }
    }
}

/// Which envelope suites a node accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SuitePolicy {
    /// X-Wing and X25519 (the default).
    #[default]
    Any,
    /// X-Wing only: X25519 envelopes to this node are refused.
    XWing,
}

impl SuitePolicy {
    /// The stored and API name.
    pub fn name(self) -> &'static str {
        match self {
            SuitePolicy::Any => "any",
            SuitePolicy::XWing => "x-wing",
        }
    }

    /// The policy a stored or API name names.
    pub fn parse(text: &[u8]) -> Option<SuitePolicy> {
        match text {
            b"any" => Some(SuitePolicy::Any),
            b"x-wing" => Some(SuitePolicy::XWing),
            _ => None,
        }
    }
}

/// A one-time token and a certificate signing request.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token from `POST /v1/nodes`.
    pub token: String,
    /// PEM PKCS#10 request for the node's TLS key.
    pub csr: String,
    /// Exported mode only: the X25519 public key (64 hex digits) the node's identity
    /// secret is sealed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_key: Option<String>,
}

/// A client certificate, the CA, the node's path and the chain.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    /// PEM client certificate naming the node.
    pub certificate: String,
    /// PEM CA certificate.
    pub ca: String,
    /// The node's path.
    pub path: String,
    /// `held` or `exported`.
    pub mode: EnrollMode,
    /// The cluster chain (a chain file, CBOR) certifying the node: verify it with
    /// `keyd::chain::verify_file`, then keep it current with `GET /v1/chain?since=`.
    pub chain: Bytes,
    /// Exported mode: the node's identity secret sealed (HPKE) to `install_key` (a CBOR
    /// bundle; open it with `keyd::bundle::BranchBundle::open_node` and the chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<Bytes>,
}

/// A certificate signing request for a new client certificate.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// PEM PKCS#10 request (a new TLS key, or the same).
    pub csr: String,
}

/// A renewed client certificate.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct RenewResponse {
    /// PEM client certificate naming the same principal.
    pub certificate: String,
}

/// A node to create.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    /// Its name, unique in the cluster.
    pub name: String,
    /// Its parent: a name or path (default: this keyd's branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// `held` (default: keyd keeps its keys) or `exported` (the node also gets its
    /// identity secret at enrollment).
    #[serde(default)]
    pub mode: EnrollMode,
    /// How long the node is valid, in seconds (default and most: 5 years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_seconds: Option<u64>,
}

/// The node created and its enrollment token.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NodeAdded {
    /// Its name.
    pub name: String,
    /// Its path.
    pub path: String,
    /// The one-time enrollment token.
    pub token: String,
    /// When the token expires (Unix seconds).
    pub expires_at: u64,
    /// Its enrollment mode.
    pub mode: EnrollMode,
}

/// A node and its status.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Its path.
    pub path: String,
    /// `valid`, or why it is not.
    pub status: String,
}

/// The nodes of this keyd's branch.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NodeList {
    /// Sorted by path.
    pub nodes: Vec<NodeInfo>,
}

/// One epoch key of a node.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct EpochInfo {
    /// The epoch.
    pub epoch: u32,
    /// Its key path.
    pub path: String,
    /// Its key id.
    pub key_id: String,
    /// Ed25519 public key, hex.
    pub ed25519: String,
    /// X25519 public key, hex.
    pub x25519: String,
    /// `valid`, or why not (superseded epochs still decrypt until revoked).
    pub status: String,
}

/// A node as the chain has it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NodeDetail {
    /// Its name.
    pub name: String,
    /// Its path.
    pub path: String,
    /// Its role.
    pub role: String,
    /// `valid`, or why not.
    pub status: String,
    /// Certified from (Unix seconds).
    pub not_before: u64,
    /// Certified until (Unix seconds).
    pub not_after: u64,
    /// The identity key's id.
    pub key_id: String,
    /// The identity key (certifies epochs and children), Ed25519 hex.
    pub ed25519: String,
    /// The current epoch, if one is valid.
    pub current_epoch: Option<u32>,
    /// Envelopes of epochs below this no longer open (0: all open).
    #[serde(default)]
    pub min_decrypt_epoch: u32,
    /// A rekey order that stands (given by an ancestor, no epoch since): who, where, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey_order: Option<String>,
    /// Every epoch key.
    pub epochs: Vec<EpochInfo>,
    /// Child nodes: paths.
    pub children: Vec<String>,
}

/// Why a node, an admin or a credential is revoked.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Recorded in the chain (nodes) or the store (admins, credentials).
    pub reason: String,
}

/// What a revocation cut.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Revoked {
    /// The node and every descendant, now refused.
    pub revoked: Vec<String>,
}

/// A new epoch key.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Rekeyed {
    /// Its path.
    pub key: String,
}

/// A revoked admin name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdminRevocation {
    /// The admin name (every credential naming it is refused).
    pub name: String,
    /// The admin who revoked it.
    pub by: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Why.
    pub reason: String,
}

/// Revoked admin names.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AdminList {
    /// Sorted by name.
    pub revoked: Vec<AdminRevocation>,
}

/// A principal's credential generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Generation {
    /// The generation number (0 for the first enrollment).
    pub generation: u32,
    /// When it started (Unix seconds): renewal stops `credential_max` later.
    pub started_at: u64,
    /// When its credentials were revoked, if they were.
    pub revoked: Option<CredentialRevocation>,
}

/// The end of a credential generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CredentialRevocation {
    /// The admin who revoked it.
    pub by: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Why.
    pub reason: String,
}

/// A principal's credentials, ended.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CredentialsRevoked {
    /// The principal (`keyd:node:PATH` or `keyd:admin:NAME`).
    pub principal: String,
    /// Its credential generation, now revoked.
    pub credentials: Generation,
}

/// How a node re-enrolls.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReenrollRequest {
    /// `held` (default) or `exported`.
    #[serde(default)]
    pub mode: EnrollMode,
}

/// A re-enrollment token.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Reenrollment {
    /// The node's path.
    pub path: String,
    /// The one-time enrollment token.
    pub token: String,
    /// When the token expires (Unix seconds).
    pub expires_at: u64,
    /// The enrollment mode.
    pub mode: EnrollMode,
}

/// A node's suite policy.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SuiteRequest {
    /// `x-wing` (only X-Wing envelopes to the node) or `any` (the default).
    pub suite: SuitePolicy,
}

/// The node and its suite policy now.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SuiteSet {
    /// The node's path.
    pub path: String,
    /// Its suite policy.
    pub suite: SuitePolicy,
}

/// A node's new minimum decryption epoch.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MinEpochRequest {
    /// Envelopes of older epochs of the node no longer open (at most its current epoch).
    pub epoch: u32,
}

/// A node's minimum decryption epoch, set.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct MinEpochSet {
    /// The node's path.
    pub path: String,
    /// Its minimum decryption epoch now.
    pub min_decrypt_epoch: u32,
    /// Before.
    pub previous: u32,
}

/// A node's validity to renew.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// The node is valid for this long from now (later than its current end; at most
    /// 5 years).
    pub valid_seconds: u64,
}

/// A node's validity, renewed.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Extended {
    /// The node's path.
    pub path: String,
    /// Its new end of validity (Unix seconds).
    pub not_after: u64,
}

/// What a push of root-log records did.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Pushed {
    /// Root-log entries that were new.
    pub new_entries: usize,
    /// The root log's length after the push.
    pub root_length: u64,
    /// Whether this keyd's own branch is now revoked (it stops serving key operations).
    pub branch_revoked: bool,
}

/// Peers asked to pull.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PullRequested {
    /// The peers configured (each is pulled from now).
    pub peers: usize,
}

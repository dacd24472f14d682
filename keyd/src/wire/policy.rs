//! The policy in force, applying a new one, asking how it decides; the audit log.

use serde::{Deserialize, Serialize};

/// The policy in force.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PolicyShown {
    /// Its version: 0 for the built-in default, then 1, 2, … as applied.
    pub version: u64,
    /// SHA-256 of its text, hex.
    pub sha256: String,
    /// Who applied it (`keyd:admin:NAME`; `keyd` for the built-in default).
    pub applied_by: String,
    /// When (Unix seconds; 0 for the built-in default).
    pub applied_at: u64,
    /// Its number of rules.
    pub rules: usize,
    /// Its text (TOML), as applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A policy to apply.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyApply {
    /// The policy file (TOML): checked first; nothing changes when it is not valid.
    pub text: String,
}

/// A request to decide, as `keyctl policy check` asks it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyCheck {
    /// `node:NAME_OR_PATH` or `admin:NAME`.
    pub principal: String,
    /// The operation (`sign`, `node.add`, …).
    pub op: String,
    /// A node name or path, `admin:NAME`, or empty for none.
    #[serde(default)]
    pub target: String,
}

/// How the policy decides.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PolicyDecision {
    /// Allowed or not.
    pub allowed: bool,
    /// The rule that decided: a rule's id, `default-deny`, or `scope`.
    pub rule: String,
    /// Why, when refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The policy version that decided.
    pub version: u64,
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// Records after `since`, in order.
    pub records: Vec<crate::audit::Record>,
    /// The signed heads among them.
    pub heads: Vec<crate::audit::Head>,
    /// The last record keyd has written (more pages follow while it is beyond these).
    pub last: u64,
}

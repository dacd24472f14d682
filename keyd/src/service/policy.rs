//! The policy in force: loaded from the store (the built-in default until one is
//! applied), consulted on every request, replaced live by `policy.apply`.

use std::cell::Cell;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Service, ServiceError, unix_now};
use crate::chain::{self, cbor_bytes};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::{Decision, Op, Policy, Request, Subject, Target};
use crate::store::{Checked, Store, StoreError};

/// A policy version as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRecord {
    version: u64,
    text: String,
    applied_by: String,
    applied_at: u64,
}

/// The policy in force and where it came from.
#[derive(Debug)]
pub struct PolicyInForce {
    /// The checked policy.
    pub policy: Policy,
    /// Its version: 0 for the built-in default, then 1, 2, … as applied.
    pub version: u64,
    /// Its text.
    pub text: String,
    /// SHA-256 of the text, hex.
    pub sha256: String,
    /// Who applied it (`keyd` for the built-in default).
    pub applied_by: String,
    /// When (Unix seconds; 0 for the built-in default).
    pub applied_at: u64,
}

impl PolicyInForce {
    fn new(policy: Policy, record: PolicyRecord) -> PolicyInForce {
        PolicyInForce {
            policy,
            sha256: hex::encode(Sha256::digest(record.text.as_bytes())),
            version: record.version,
            text: record.text,
            applied_by: record.applied_by,
            applied_at: record.applied_at,
        }
    }

    fn built_in() -> Result<PolicyInForce, ServiceError> {
        let policy = Policy::parse(crate::policy::DEFAULT)
            .map_err(|e| ServiceError::BadRequest(format!("the built-in policy: {e}")))?;
        Ok(PolicyInForce::new(
            policy,
            PolicyRecord {
                version: 0,
                text: crate::policy::DEFAULT.to_owned(),
                applied_by: "keyd".into(),
                applied_at: 0,
            },
        ))
    }
}

/// The latest stored policy, or the built-in default when none was applied. A latest
/// version that fails its integrity tag or no longer parses stops keyd: it is neither
/// obeyed nor silently replaced by an older one.
pub(super) fn load(store: &Store) -> Result<PolicyInForce, ServiceError> {
    let Some((version, row)) = store.policies()?.pop() else {
        return PolicyInForce::built_in();
    };
    let corrupt = |detail: String| -> ServiceError {
        StoreError::Corrupt {
            path: store.path().to_owned(),
            what: format!("policy version {version}"),
            detail,
        }
        .into()
    };
    let bytes = match row {
        Checked::Valid(bytes) => bytes,
        Checked::Tampered => {
            return Err(corrupt(
                "it fails its integrity tag (edited outside keyd); restore the store from a backup"
                    .into(),
            ));
        }
    };
    let record: PolicyRecord =
        chain::decode_exact(&bytes, 4 << 20).map_err(|e| corrupt(e.to_string()))?;
    let policy = Policy::parse(&record.text).map_err(|e| corrupt(e.to_string()))?;
    Ok(PolicyInForce::new(policy, record))
}

thread_local! {
    /// The size of the batch the current request belongs to (1 outside batches).
    static BATCH: Cell<u32> = const { Cell::new(1) };
}

/// Runs `f` as the items of a batch of `size`: each decision inside sees the size (for
/// `max_batch`) and counts one against a rate.
pub fn in_batch<T>(size: usize, f: impl FnOnce() -> T) -> T {
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    let before = BATCH.with(|b| b.replace(size));
    let out = f();
    BATCH.with(|b| b.set(before));
    out
}

/// What a request acts on, for the policy.
#[derive(Clone, Copy, Debug)]
pub enum Named<'a> {
    /// Nothing in particular.
    Nothing,
    /// A node (for a key, its node).
    Node(&'a KeyPath),
    /// An admin name.
    Admin(&'a str),
    /// A node of a cluster trusted at this level.
    Trusted(crate::chain::TrustLevel),
}

impl Service {
    /// The policy in force.
    pub fn policy(&self) -> Arc<PolicyInForce> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A node's name, when the policy names nodes by name.
    fn name_for(&self, policy: &Policy, path: &KeyPath) -> Option<String> {
        if !policy.uses_names() {
            return None;
        }
        self.read_chain().state().name_of(path).map(str::to_owned)
    }

    /// Decides `op` on `target` by `principal` against the policy in force, counting it
    /// against the rate of the rule that allows it; a refusal names the rule.
    pub(super) fn authorize(
        &self,
        principal: &Principal,
        op: Op,
        target: Named<'_>,
    ) -> Result<(), ServiceError> {
        let d = self.decide(principal, op, target, true);
        if d.allowed {
            Ok(())
        } else {
            self.audit_denied(principal, op, target, &d.rule);
            Err(ServiceError::Denied {
                op: op.name(),
                rule: d.rule.to_string(),
                reason: d.reason,
            })
        }
    }

    /// The node (or key) a name or path names, preferring this keyd's branch.
    pub(super) fn resolve(&self, name_or_path: &str) -> Result<KeyPath, ServiceError> {
        self.read_chain()
            .state()
            .find_in(name_or_path, &self.branch_path)
            .map(|(p, _)| p.clone())
            .ok_or_else(|| ServiceError::NotFound(format!("no node {name_or_path:?}")))
    }

    /// A target that is a node.
    pub(super) fn authorize_on(
        &self,
        principal: &Principal,
        op: Op,
        node: &KeyPath,
    ) -> Result<(), ServiceError> {
        self.authorize(principal, op, Named::Node(node))
    }

    /// How the policy in force decides (counting against rates when `count`).
    pub fn decide(
        &self,
        principal: &Principal,
        op: Op,
        target: Named<'_>,
        count: bool,
    ) -> Decision {
        let in_force = self.policy();
        let policy = &in_force.policy;
        let subject_name = match principal {
            Principal::Node(p) => self.name_for(policy, p),
            Principal::Admin(_) => None,
        };
        let subject = match principal {
            Principal::Node(path) => Subject::Node {
                path,
                name: subject_name.as_deref(),
            },
            Principal::Admin(name) => Subject::Admin(name),
        };
        let target_name = match target {
            Named::Node(p) => self.name_for(policy, p),
            _ => None,
        };
        let target = match target {
            Named::Nothing => Target::None,
            Named::Node(path) => Target::Node {
                path,
                name: target_name.as_deref(),
            },
            Named::Admin(name) => Target::Admin(name),
            Named::Trusted(level) => Target::Trusted(level),
        };
        let request = Request {
            subject,
            op,
            target,
            batch: BATCH.with(Cell::get),
            branch: &self.branch_path,
        };
        if count {
            policy.decide(&request, unix_now())
        } else {
            policy.explain(&request, unix_now())
        }
    }
}

impl Service {
    /// Replaces the policy (admin, `policy.apply`): checked first (a bad file changes
    /// nothing and says where it is wrong), stored as the next version, in force for
    /// the next request.
    pub fn apply_policy(
        &self,
        principal: &Principal,
        text: &str,
    ) -> Result<Arc<PolicyInForce>, ServiceError> {
        Self::require_admin(principal)?;
        self.authorize(principal, Op::PolicyApply, Named::Nothing)?;
        let policy = Policy::parse(text)
            .map_err(|e| ServiceError::BadRequest(format!("the policy is not valid: {e}")))?;
        // One applier at a time: the version is read and written under the lock.
        let mut in_force = self.policy.write().unwrap_or_else(|e| e.into_inner());
        let record = PolicyRecord {
            version: in_force.version + 1,
            text: text.to_owned(),
            applied_by: principal.uri(),
            applied_at: unix_now(),
        };
        if !self
            .store
            .put_policy(record.version, &cbor_bytes(&record))?
        {
            return Err(ServiceError::BadRequest(format!(
                "policy version {} exists already; show the policy and apply again",
                record.version
            )));
        }
        let applied = Arc::new(PolicyInForce::new(policy, record));
        *in_force = applied.clone();
        drop(in_force);
        self.audit_event(
            &applied.applied_by,
            Op::PolicyApply.name(),
            None,
            Some(format!(
                "version {} sha256 {}",
                applied.version, applied.sha256
            )),
        );
        tracing::info!(
            version = applied.version,
            sha256 = %applied.sha256,
            by = %applied.applied_by,
            rules = applied.policy.len(),
            "policy applied"
        );
        Ok(applied)
    }

    /// The policy in force (`policy.show`).
    pub fn show_policy(&self, principal: &Principal) -> Result<Arc<PolicyInForce>, ServiceError> {
        self.authorize(principal, Op::PolicyShow, Named::Nothing)?;
        Ok(self.policy())
    }

    /// How the policy in force decides a request (`policy.check`), without counting it
    /// against any rate. `subject` is `node:PATH_OR_NAME` or `admin:NAME`; `target` a
    /// node name or path, `admin:NAME`, or empty.
    pub fn check_policy(
        &self,
        principal: &Principal,
        subject: &str,
        op: &str,
        target: &str,
    ) -> Result<Decision, ServiceError> {
        self.authorize(principal, Op::PolicyCheck, Named::Nothing)?;
        let op = Op::parse(op)
            .ok_or_else(|| ServiceError::BadRequest(format!("op: {op:?} is not an operation")))?;
        // A path need not be certified yet (a node about to be added).
        let node = |text: &str| -> Result<KeyPath, ServiceError> {
            self.resolve(text).or_else(|e| text.parse().map_err(|_| e))
        };
        let subject = match subject.split_once(':') {
            Some(("admin", name)) => Principal::Admin(name.to_owned()),
            Some(("node", n)) => Principal::Node(node(n)?),
            _ => {
                return Err(ServiceError::BadRequest(format!(
                    "principal: {subject:?}: give node:NAME_OR_PATH or admin:NAME"
                )));
            }
        };
        let target_node;
        let target = match target.split_once(':') {
            _ if target.is_empty() => Named::Nothing,
            Some(("admin", name)) => Named::Admin(name),
            _ => {
                target_node = node(target.strip_prefix("node:").unwrap_or(target))?;
                Named::Node(&target_node)
            }
        };
        Ok(self.decide(&subject, op, target, false))
    }
}

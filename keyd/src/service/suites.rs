//! Suite policy per node: a node (the recipient) may require X-Wing, so that no sender
//! can downgrade what it receives to classical X25519. keyd refuses to encrypt with
//! X25519 to such a node of its branch and, what holds against any sender, refuses to
//! decrypt an X25519 envelope for it. The default accepts both suites.
//!
//! Policies are rows of the store's `suites` table, tagged like the other rows that
//! grant or limit access: a row that fails its tag counts as `x-wing` (the strictest).

use std::collections::HashMap;

use super::{Service, ServiceError, SuitePolicy};
use crate::derive::KeyPath;
use crate::envelope::Suite;
use crate::identity::Principal;
use crate::policy::Op;
use crate::store::{Checked, Store};

/// The suite policies in `store`, by node.
pub(super) fn load(store: &Store) -> Result<HashMap<KeyPath, SuitePolicy>, ServiceError> {
    let mut out = HashMap::new();
    for (node, row) in store.suites()? {
        let Ok(path) = node.parse::<KeyPath>() else {
            tracing::error!(row = %node, "a suite policy row names no key path; ignored");
            continue;
        };
        let policy = match row {
            Checked::Valid(bytes) => SuitePolicy::parse(&bytes).unwrap_or(SuitePolicy::XWing),
            Checked::Tampered => SuitePolicy::XWing,
        };
        out.insert(path, policy);
    }
    Ok(out)
}

impl Service {
    /// Sets the suite policy of node `name` (a name or path below this keyd's branch):
    /// by an admin, or by the node itself.
    pub fn set_suite_policy(
        &self,
        principal: &Principal,
        name: &str,
        policy: SuitePolicy,
    ) -> Result<KeyPath, ServiceError> {
        let Principal::Node(node) = self.node_principal(name)? else {
            return Err(ServiceError::NotFound(format!("no node {name:?}")));
        };
        self.authorize_on(principal, Op::NodeSuite, &node)?;
        match principal {
            Principal::Admin(_) => {}
            Principal::Node(caller) if *caller == node => {}
            Principal::Node(_) => {
                return Err(ServiceError::Forbidden(
                    "a node sets only its own suite policy".into(),
                ));
            }
        }
        self.store
            .put_suite(&node.to_string(), policy.name().as_bytes())?;
        self.suites
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.clone(), policy);
        self.audit_event(
            &principal.uri(),
            Op::NodeSuite.name(),
            Some(node.to_string()),
            Some(format!("suite {}", policy.name())),
        );
        Ok(node)
    }

    /// The suite policy of `node` (the default for a node without one).
    pub fn suite_policy(&self, node: &KeyPath) -> SuitePolicy {
        self.suites
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .copied()
            .unwrap_or_default()
    }

    /// Refuses `suite` for an envelope to `node` when the node requires X-Wing.
    pub(super) fn check_suite(&self, node: &KeyPath, suite: Suite) -> Result<(), ServiceError> {
        if suite == Suite::X25519 && self.suite_policy(node) == SuitePolicy::XWing {
            return Err(ServiceError::SuiteNotAllowed(format!(
                "{node} requires x-wing (its suite policy); an x25519 envelope to it is refused, so no sender can downgrade it"
            )));
        }
        Ok(())
    }
}

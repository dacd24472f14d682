//! What the chain says about nodes, for admins: the list, and one node in detail.

use super::policy::Named;
use super::{EpochInfo, NodeDetail, Service, ServiceError, describe, unix_now};
use crate::chain::{KeyKind, KeySet, KeyStatus};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::Op;

fn status_text(status: &KeyStatus) -> String {
    if status.is_valid() {
        "valid".to_owned()
    } else {
        describe(status)
    }
}

impl Service {
    /// Node names and paths with their status, sorted by path.
    pub fn list_nodes(
        &self,
        principal: &Principal,
    ) -> Result<Vec<(String, String, String)>, ServiceError> {
        Self::require_admin(principal)?;
        self.authorize(principal, Op::NodeList, Named::Nothing)?;
        // A scoped admin sees the nodes it manages.
        let scope = match principal {
            Principal::Admin(name) => self.policy().policy.scope_of(name).cloned(),
            Principal::Node(_) => None,
        };
        let chain = self.read_chain();
        let now = unix_now();
        let mut out: Vec<_> = chain
            .state()
            .keys()
            .filter(|(p, _)| p.is_node())
            .filter(|(p, _)| scope.as_ref().is_none_or(|s| s.is_prefix_of(p) && s != *p))
            .filter_map(|(p, r)| match &r.kind {
                KeyKind::Node { name, .. } => Some((p.clone(), name.clone())),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out
            .into_iter()
            .map(|(p, name)| {
                let status = status_text(&chain.state().status_at(&p, now));
                (name, p.to_string(), status)
            })
            .collect())
    }

    /// One node (name or path) in detail (admin).
    pub fn show_node(
        &self,
        principal: &Principal,
        target: &str,
    ) -> Result<NodeDetail, ServiceError> {
        Self::require_admin(principal)?;
        self.authorize_on(principal, Op::NodeShow, &self.resolve(target)?)?;
        let chain = self.read_chain();
        let state = chain.state();
        let now = unix_now();
        let not_found = || ServiceError::NotFound(format!("no node {target:?}"));
        let (path, record) = state
            .find_in(target, &self.branch_path)
            .ok_or_else(not_found)?;
        let KeyKind::Node {
            name,
            role,
            not_before,
            not_after,
            epochs,
        } = &record.kind
        else {
            return Err(not_found());
        };
        let hex_keys = |k: &KeySet| (hex::encode(k.ed25519), hex::encode(k.x25519));
        let epochs: Vec<EpochInfo> = epochs
            .iter()
            .filter_map(|&epoch| {
                let p = path.epoch_key(epoch)?;
                let r = state.key(&p)?;
                let (ed25519, x25519) = hex_keys(&r.keys);
                Some(EpochInfo {
                    epoch,
                    path: p.to_string(),
                    key_id: r.key_id.to_string(),
                    ed25519,
                    x25519,
                    status: status_text(&state.status_at(&p, now)),
                })
            })
            .collect();
        let current_epoch = epochs
            .iter()
            .rev()
            .find(|e| e.status == "valid")
            .map(|e| e.epoch);
        let mut children: Vec<KeyPath> = state
            .keys()
            .filter(|(p, r)| {
                matches!(r.kind, KeyKind::Node { .. })
                    && p.is_node()
                    && p.depth() == path.depth() + 2
                    && path.is_prefix_of(p)
            })
            .map(|(p, _)| p.clone())
            .collect();
        children.sort();
        Ok(NodeDetail {
            name: name.clone(),
            path: path.to_string(),
            role: role.clone(),
            status: status_text(&state.status_at(path, now)),
            not_before: *not_before,
            not_after: *not_after,
            key_id: record.key_id.to_string(),
            ed25519: hex_keys(&record.keys).0,
            current_epoch,
            min_decrypt_epoch: self.min_epoch(path),
            rekey_order: state.rekey_order(path).map(|o| {
                format!(
                    "ordered by {} in log {} at seq {}: {:?}",
                    o.by, o.log, o.seq, o.reason
                )
            }),
            epochs,
            children: children.iter().map(ToString::to_string).collect(),
        })
    }
}

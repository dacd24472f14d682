//! Keys over time: rekeying (by the node, an admin, or keyd on the policy's schedule),
//! and the minimum epoch a node's envelopes still open at.

use std::collections::HashMap;

use super::commit::Built;
use super::{Service, ServiceError, unix_now};
use crate::chain::{Body, Epoch, Extend, KeyKind, RekeyOrder, Statement};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::{MAX_NODE_SECONDS, Op};
use crate::store::{Checked, Store};

impl Service {
    /// Moves `target` (the caller itself for a node; any node under the branch for an
    /// admin) to its next epoch: returns the new epoch key path.
    pub fn rekey(
        &self,
        principal: &Principal,
        target: Option<&str>,
    ) -> Result<KeyPath, ServiceError> {
        let node = match (principal, target) {
            (Principal::Node(p), None) => p.clone(),
            (Principal::Node(_), Some(_)) => {
                return Err(ServiceError::Forbidden("a node rekeys only itself".into()));
            }
            (Principal::Admin(_), Some(t)) => self
                .read_chain()
                .state()
                .find_in(t, &self.branch_path)
                .map(|(p, _)| p.clone())
                .ok_or_else(|| ServiceError::NotFound(format!("no node {t:?}")))?,
            (Principal::Admin(_), None) => {
                return Err(ServiceError::BadRequest("name the node to rekey".into()));
            }
        };
        let op = if target.is_some() {
            Op::NodeRekey
        } else {
            Op::Rekey
        };
        self.authorize_on(principal, op, &node)?;
        let audited = (principal.uri(), node.to_string());
        // A named key rotates through its owner (transit's rotate), not as a node.
        if !self.branch_path.is_prefix_of(&node) || node == self.branch_path || !node.is_node() {
            return Err(ServiceError::Forbidden(format!(
                "{node} is not a node below this keyd's branch"
            )));
        }
        self.next_epoch(node, None).inspect(|path| {
            let detail = Some(format!("new epoch key {path}"));
            self.audit_event(&audited.0, op.name(), Some(audited.1), detail);
        })
    }

    /// Certifies `node`'s next epoch (the branch log's change): its epoch key path.
    /// Moves `node` to its next epoch; with `due` (rotate every, now), only if its
    /// current epoch is still due against the chain as it stands when the change is
    /// built (another replica may have rotated it first): `NotDue` otherwise.
    pub(super) fn next_epoch(
        &self,
        node: KeyPath,
        due: Option<(u64, u64)>,
    ) -> Result<KeyPath, ServiceError> {
        self.append(move |svc, w| {
            if let Some((every, now)) = due
                && w.state()
                    .current_epoch(&node)
                    .is_some_and(|(_, e)| e.published_at.saturating_add(every) > now)
            {
                return Err(ServiceError::NotFound(format!("{node} is not due")));
            }
            let next = match w.state().key(&node).map(|r| &r.kind) {
                Some(KeyKind::Node { epochs, .. }) => epochs.last().map_or(0, |e| e + 1),
                _ => return Err(ServiceError::NotFound(format!("{node} is not a node"))),
            };
            let path = node
                .epoch_key(next)
                .ok_or_else(|| ServiceError::BadRequest("epoch out of range".into()))?;
            let epoch_key = svc.derived(&path)?;
            let node_key = svc.derived(&node)?;
            let st = Statement::sign(
                Body::Epoch(Epoch {
                    node: node.clone(),
                    epoch: next,
                    keys: (&epoch_key.public_keys()).into(),
                }),
                node.clone(),
                unix_now(),
                node_key.signing_key(),
            );
            Ok(Built {
                statements: vec![st],
                token: None,
                value: path,
            })
        })
    }
}

/// The limits on a node's or named key's epochs, as the `min_epochs` row holds them:
/// `D` for a node (its minimum decryption epoch), `D E X` for a named key (minimum
/// decryption epoch, minimum encryption epoch, deletion allowed 0/1: transit's key
/// configuration, its versions being epochs + 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// The oldest epoch whose envelopes still open.
    pub min_decrypt: u32,
    /// The oldest epoch that may still encrypt or sign when asked by version.
    pub min_encrypt: u32,
    /// Whether the key may be deleted (named keys).
    pub deletion_allowed: bool,
}

impl KeyLimits {
    /// Fail closed: nothing below the highest epoch, no deletion.
    const CLOSED: KeyLimits = KeyLimits {
        min_decrypt: u32::MAX,
        min_encrypt: u32::MAX,
        deletion_allowed: false,
    };

    fn parse(text: &str) -> Option<KeyLimits> {
        let mut words = text.split(' ');
        let min_decrypt = words.next()?.parse().ok()?;
        let (min_encrypt, deletion_allowed) = match (words.next(), words.next()) {
            (None, None) => (0, false),
            (Some(e), Some(x)) => (e.parse().ok()?, x == "1"),
            _ => return None,
        };
        words.next().is_none().then_some(KeyLimits {
            min_decrypt,
            min_encrypt,
            deletion_allowed,
        })
    }

    /// The row text.
    pub(super) fn text(&self, named: bool) -> String {
        match named {
            false => self.min_decrypt.to_string(),
            true => format!(
                "{} {} {}",
                self.min_decrypt,
                self.min_encrypt,
                u8::from(self.deletion_allowed)
            ),
        }
    }
}

/// The epoch limits in `store`, by node or named key. A row that fails its integrity
/// tag or does not parse holds its key at the highest epoch (fail closed: nothing older
/// opens) until it is set again.
pub(super) fn load(store: &Store) -> Result<HashMap<KeyPath, KeyLimits>, ServiceError> {
    let mut out = HashMap::new();
    for (node, row) in store.min_epochs()? {
        let Ok(path) = node.parse::<KeyPath>() else {
            tracing::error!(row = %node, "a minimum-epoch row names no key path; ignored");
            continue;
        };
        let limits = match row {
            Checked::Valid(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(KeyLimits::parse)
                .unwrap_or(KeyLimits::CLOSED),
            Checked::Tampered => KeyLimits::CLOSED,
        };
        out.insert(path, limits);
    }
    Ok(out)
}

impl Service {
    /// The minimum decryption epoch of `node` (0 when none was set).
    pub(super) fn min_epoch(&self, node: &KeyPath) -> u32 {
        self.key_limits(node).min_decrypt
    }

    /// The epoch limits of a node or named key (none set: all zero).
    pub(super) fn key_limits(&self, key: &KeyPath) -> KeyLimits {
        self.min_epochs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Stores and applies the limits of `key` (a named key when `named`).
    pub(super) fn put_key_limits(
        &self,
        key: &KeyPath,
        limits: KeyLimits,
        named: bool,
    ) -> Result<(), ServiceError> {
        let mut all = self.min_epochs.write().unwrap_or_else(|e| e.into_inner());
        self.store
            .put_min_epoch(&key.to_string(), &limits.text(named))?;
        all.insert(key.clone(), limits);
        Ok(())
    }

    /// Sets the minimum decryption epoch of node `name`: envelopes to or sealed by its
    /// older epochs no longer open, without revoking those keys. The node itself may
    /// raise it; lowering it again is an admin's decision. At most the node's current
    /// epoch. Returns the node, the previous minimum and the new one.
    pub fn set_min_epoch(
        &self,
        principal: &Principal,
        name: &str,
        epoch: u32,
    ) -> Result<(KeyPath, u32, u32), ServiceError> {
        let node = self.resolve(name)?;
        self.authorize_on(principal, Op::NodeMinEpoch, &node)?;
        let current = {
            let chain = self.read_chain();
            match chain.state().key(&node).map(|r| &r.kind) {
                // A named key's minimum versions are its transit configuration.
                Some(KeyKind::Node { .. })
                    if self.branch_path.is_prefix_of(&node) && node.is_node() => {}
                _ => {
                    return Err(ServiceError::Forbidden(format!(
                        "{node} is not a node of this keyd's branch {}",
                        self.branch_path
                    )));
                }
            }
            chain.state().current_epoch(&node).map(|(e, _)| e)
        };
        let Some(current) = current else {
            return Err(ServiceError::PartyNotValid(format!(
                "{node} has no valid epoch"
            )));
        };
        if epoch > current {
            return Err(ServiceError::BadRequest(format!(
                "epoch: {epoch} is above {node}'s current epoch {current}"
            )));
        }
        let previous = self.min_epoch(&node);
        match principal {
            Principal::Node(caller) if *caller != node => {
                return Err(ServiceError::Forbidden(
                    "a node sets only its own minimum epoch".into(),
                ));
            }
            Principal::Node(_) if epoch < previous => {
                return Err(ServiceError::Forbidden(format!(
                    "the minimum epoch of {node} is {previous}; only an admin lowers it"
                )));
            }
            _ => {}
        }
        let limits = KeyLimits {
            min_decrypt: epoch,
            ..KeyLimits::default()
        };
        self.put_key_limits(&node, limits, false)?;
        tracing::info!(node = %node, previous, epoch, "minimum decryption epoch set");
        self.audit_event(
            &principal.uri(),
            Op::NodeMinEpoch.name(),
            Some(node.to_string()),
            Some(format!("minimum decryption epoch {previous} -> {epoch}")),
        );
        Ok((node, previous, epoch))
    }

    /// Moves every node of the branch whose current epoch is older than the policy's
    /// `rotate_every` for it to its next epoch (as keyd): the new epoch keys.
    pub fn rotate_due(&self) -> Result<Vec<KeyPath>, ServiceError> {
        let in_force = self.policy();
        let policy = &in_force.policy;
        if !policy.rotates() || self.branch_revoked().is_some() {
            return Ok(Vec::new());
        }
        let now = unix_now();
        let due: Vec<(KeyPath, u64)> = {
            let chain = self.read_chain();
            let state = chain.state();
            state
                .keys()
                .filter_map(|(path, record)| match &record.kind {
                    // Named keys rotate when their owner asks (transit's rotate).
                    KeyKind::Node { name, .. }
                        if self.branch_path.is_prefix_of(path)
                            && *path != self.branch_path
                            && path.is_node() =>
                    {
                        let every = policy.lifecycle(path, Some(name)).rotate_every?;
                        let (_, epoch) = state.current_epoch(path)?;
                        (epoch.published_at.saturating_add(every) <= now)
                            .then(|| (path.clone(), every))
                    }
                    _ => None,
                })
                .collect()
        };
        let mut rotated = Vec::with_capacity(due.len());
        for (node, every) in due {
            let target = node.to_string();
            match self.next_epoch(node, Some((every, now))) {
                Ok(key) => {
                    self.audit_event(
                        "keyd",
                        "rekey.scheduled",
                        Some(target),
                        Some(format!("rotate_every {every} s; new epoch key {key}")),
                    );
                    rotated.push(key);
                }
                // Rotated meanwhile (another replica): nothing to do.
                Err(ServiceError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(node = %target, error = %e, "scheduled rotation failed");
                }
            }
        }
        Ok(rotated)
    }
}

impl Service {
    /// Renews node `name`'s validity (admin, `node.extend`): its parent, whose key keyd
    /// holds, signs an `extend` moving its end to `valid_seconds` from now (later than
    /// its current end; 5 years at most). Returns the node and its new end.
    pub fn extend_node(
        &self,
        principal: &Principal,
        name: &str,
        valid_seconds: u64,
    ) -> Result<(KeyPath, u64), ServiceError> {
        Self::require_admin(principal)?;
        let node = self.resolve(name)?;
        self.authorize_on(principal, Op::NodeExtend, &node)?;
        if !(1..=MAX_NODE_SECONDS).contains(&valid_seconds) {
            return Err(ServiceError::BadRequest(format!(
                "valid_seconds: {valid_seconds}; 1 to {MAX_NODE_SECONDS} (5 years)"
            )));
        }
        let parent = node
            .parent_node()
            .filter(|p| self.branch_path.is_prefix_of(p) && node != self.branch_path)
            .ok_or_else(|| {
                ServiceError::Forbidden(format!(
                    "{node} is not a node below this keyd's branch {}; its parent extends it",
                    self.branch_path
                ))
            })?;
        let not_after = unix_now().saturating_add(valid_seconds);
        let current = match self.read_chain().state().key(&node).map(|r| &r.kind) {
            Some(KeyKind::Node { not_after, .. }) => *not_after,
            _ => return Err(ServiceError::NotFound(format!("{node} is not a node"))),
        };
        if not_after <= current {
            return Err(ServiceError::BadRequest(format!(
                "valid_seconds: {node} is valid until {} already; an extension must end later",
                crate::rfc3339(current)
            )));
        }
        let target = node.clone();
        self.append(move |svc, _| {
            let key = svc.material(&parent)?;
            let st = Statement::sign(
                Body::Extend(Extend {
                    node: target,
                    not_after,
                }),
                parent,
                unix_now(),
                key.signing_key(),
            );
            Ok(Built {
                statements: vec![st],
                token: None,
                value: (),
            })
        })?;
        self.audit_event(
            &principal.uri(),
            Op::NodeExtend.name(),
            Some(node.to_string()),
            Some(format!(
                "valid until {} (was {})",
                crate::rfc3339(not_after),
                crate::rfc3339(current)
            )),
        );
        Ok((node, not_after))
    }
}

impl Service {
    /// Orders node `name` to move to a new epoch (admin): a `rekey_order` signed by the
    /// branch key, its ancestor, in the branch log. A node whose keys it holds keyd can
    /// rekey at once (`node.rekey`); a node that keeps its own keys sees the order in
    /// the chain and acts on it (`keyctl chain fetch` rekeys it). Returns the node.
    pub fn order_rekey(
        &self,
        principal: &Principal,
        name: &str,
        reason: &str,
    ) -> Result<KeyPath, ServiceError> {
        Self::require_admin(principal)?;
        let node = self.resolve(name)?;
        self.authorize_on(principal, Op::NodeRekey, &node)?;
        crate::chain::check_text("reason", reason, crate::chain::MAX_REASON, true)
            .map_err(ServiceError::BadRequest)?;
        if !self.branch_path.is_prefix_of(&node) || node == self.branch_path || !node.is_node() {
            return Err(ServiceError::Forbidden(format!(
                "{node} is not a node below this keyd's branch {}",
                self.branch_path
            )));
        }
        let (target, why) = (node.clone(), reason.to_owned());
        self.append(move |svc, _| {
            let st = svc.branch_statement(Body::RekeyOrder(RekeyOrder {
                node: target,
                reason: why,
            }))?;
            Ok(Built {
                statements: vec![st],
                token: None,
                value: (),
            })
        })?;
        self.audit_event(
            &principal.uri(),
            "node.rekey_order",
            Some(node.to_string()),
            Some(format!("reason: {reason}")),
        );
        Ok(node)
    }
}

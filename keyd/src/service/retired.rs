//! The tree of the previous root, kept after a root rekey until an operator retires it:
//! decrypt-only. An envelope whose key id names a key of the old tree (its path is the
//! same in both trees, its key is not) is opened with the old branch secret; nothing is
//! signed, sealed or encrypted with it, and its keys no longer verify. Until retirement
//! the TLS identities (keyd's CA, the client certificates issued under it) stay those of
//! the old tree, so that nodes and admins keep working while they move their data.

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use super::{Service, ServiceError, describe, unix_now};
use crate::chain::{Chain, KeyStatus};
use crate::derive::{KeyMaterial, KeyPath, NodeSecret};
use crate::identity::Ca;

/// The old tree: its branch secret and its chain (ending in the succession).
pub struct Retired {
    /// The old branch secret.
    pub branch: NodeSecret,
    /// The old chain.
    pub chain: Chain,
}

impl std::fmt::Debug for Retired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retired")
            .field("entries", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Keeps the old tree (after a root rekey): its keys open envelopes, and its CA
    /// stays keyd's TLS identity until the old root is retired.
    pub fn keep_retired(mut self, retired: Retired) -> Result<Service, ServiceError> {
        self.ca = Arc::new(Ca::from_branch(
            &retired.branch.material(),
            &self.branch_name,
            &self.branch_path,
        )?);
        self.retired = Some(retired);
        Ok(self)
    }

    /// Whether `kid` names a key of the old tree at `path` rather than the current one.
    fn in_retired(&self, path: &KeyPath, kid: Option<&[u8; 16]>) -> Option<&Retired> {
        let (retired, kid) = (self.retired.as_ref()?, kid?);
        let current = self.read_chain().state().key(path).map(|r| r.key_id);
        if current.is_some_and(|k| k.0 == *kid) {
            return None;
        }
        let old = retired.chain.state().key(path)?;
        (old.key_id.0 == *kid).then_some(retired)
    }

    /// The old tree's key at `path` named by an envelope's `kid`, when it is one: its
    /// material, if that key was valid (or superseded) when the root was replaced.
    pub(super) fn retired_key(
        &self,
        path: &KeyPath,
        kid: Option<&[u8; 16]>,
    ) -> Result<Option<KeyMaterial>, ServiceError> {
        let Some(retired) = self.in_retired(path, kid) else {
            return Ok(None);
        };
        match retired.chain.state().status_at(path, unix_now()) {
            KeyStatus::Succeeded { .. }
            | KeyStatus::Valid { .. }
            | KeyStatus::Superseded { .. } => {}
            other => {
                return Err(ServiceError::Revoked(format!(
                    "under the previous root: {}",
                    describe(&other)
                )));
            }
        }
        Ok(self.retired_derived(path, kid))
    }

    /// The old tree's key at `path` named by `kid`, whatever its status (for ancestor
    /// decryption).
    pub(super) fn retired_derived(
        &self,
        path: &KeyPath,
        kid: Option<&[u8; 16]>,
    ) -> Option<KeyMaterial> {
        let retired = self.in_retired(path, kid)?;
        let node = path
            .indexes()
            .skip(self.branch_path.depth())
            .fold(retired.branch.clone(), |n, i| n.child(i));
        Some(node.material())
    }

    /// The old tree's public key at `path` named by `kid`, whatever its status.
    pub(super) fn retired_public(
        &self,
        path: &KeyPath,
        kid: Option<&[u8; 16]>,
    ) -> Option<VerifyingKey> {
        let retired = self.in_retired(path, kid)?;
        retired
            .chain
            .state()
            .key(path)
            .and_then(|r| r.keys.verifying_key())
    }

    /// The old tree's verifying key of an envelope's sender at `path`, when `kid` names
    /// one: valid when the root was replaced, or refused.
    pub(super) fn retired_sender(
        &self,
        path: &KeyPath,
        kid: Option<&[u8; 16]>,
    ) -> Result<Option<VerifyingKey>, ServiceError> {
        let Some(retired) = self.in_retired(path, kid) else {
            return Ok(None);
        };
        let state = retired.chain.state();
        match state.status_at(path, unix_now()) {
            KeyStatus::Succeeded { .. }
            | KeyStatus::Valid { .. }
            | KeyStatus::Superseded { .. } => {}
            other => {
                return Err(ServiceError::PartyNotValid(format!(
                    "sender, under the previous root: {}",
                    describe(&other)
                )));
            }
        }
        Ok(self.retired_public(path, kid))
    }

    /// The old chain (ending in the succession to the current root), as a file, while
    /// the old tree is kept: how a holder of the old chain follows the succession.
    pub fn retired_chain(&self) -> Option<Vec<u8>> {
        let r = self.retired.as_ref()?;
        Some(r.chain.file_of([&KeyPath::root(), &self.branch_path]))
    }
}

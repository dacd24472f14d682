//! Ancestor decryption: an admin opens any envelope of a node below this keyd's branch
//! — held or exported, revoked or retired — with the key keyd derives for it, as the
//! node's ancestor. Always recorded in the audit log.

use super::policy::Named;
use super::{Service, ServiceError};
use crate::derive::{KeyPath, PathRole};
use crate::envelope::{Encrypted, RecoverError, Recovered, Sealed, open_as_ancestor};
use crate::identity::Principal;
use crate::policy::Op;

impl Service {
    /// Opens `envelope` (with `context`, empty for none) as the ancestor of its key
    /// (admin, `admin.recover`).
    pub fn recover(
        &self,
        principal: &Principal,
        envelope: &[u8],
        context: &[u8],
    ) -> Result<Recovered, ServiceError> {
        Self::require_admin(principal)?;
        // The key the envelope names decides the target, before anything is derived.
        let (key, kid, sender_kid) = Sealed::from_cbor(envelope)
            .map(|s| (s.key, s.kid, None))
            .or_else(|_| {
                Encrypted::from_cbor(envelope).map(|e| (e.recipient, e.recipient_kid, e.sender_kid))
            })
            .map_err(ServiceError::Envelope)?;
        let node = match key.role() {
            PathRole::Epoch { node, .. } => node,
            _ => key.clone(),
        };
        if node.depth() > 0 {
            self.authorize_on(principal, Op::AdminRecover, &node)?;
        } else {
            self.authorize(principal, Op::AdminRecover, Named::Nothing)?;
        }
        let below = |path: &KeyPath| -> Result<(), String> {
            if self.branch_path.is_prefix_of(path) && *path != self.branch_path {
                Ok(())
            } else {
                Err(format!(
                    "{path} is not below this keyd's branch {}: open it with an ancestor of it (keyctl ceremony decrypt, with the root)",
                    self.branch_path
                ))
            }
        };
        let opened = open_as_ancestor(
            envelope,
            context,
            |path| {
                below(path)?;
                // After a root rekey, a key of the previous root's tree while kept.
                match self.retired_derived(path, kid.as_ref()) {
                    Some(old) => Ok(old),
                    None => self.derived(path).map_err(|e| e.to_string()),
                }
            },
            |sender| {
                if let Some(old) = self.retired_public(sender, sender_kid.as_ref()) {
                    return Ok(old);
                }
                self.read_chain()
                    .state()
                    .key(sender)
                    .and_then(|r| r.keys.verifying_key())
                    .ok_or_else(|| format!("the sender {sender} is not in the chain"))
            },
        )
        .map_err(|e| match e {
            RecoverError::Envelope(e) => ServiceError::Envelope(e),
            RecoverError::Key(m) => ServiceError::Forbidden(m),
        })?;
        self.audit_event(
            &principal.uri(),
            Op::AdminRecover.name(),
            Some(opened.key.to_string()),
            Some(format!(
                "{} envelope of {} bytes{}",
                opened.kind,
                opened.plaintext.len(),
                opened
                    .sender
                    .as_ref()
                    .map(|s| format!(" from {s}"))
                    .unwrap_or_default()
            )),
        );
        Ok(opened)
    }
}

impl Service {
    /// Writes a consistent copy of the store to `to` (a new file, 0600) while serving:
    /// how many rows. Recorded in the audit log (as keyd's own act).
    pub fn backup(&self, to: &std::path::Path) -> Result<u64, ServiceError> {
        // The audit counts of the seconds so far go in too.
        self.flush_audit(true)?;
        let rows = self.store.backup(to)?;
        tracing::info!(file = %to.display(), rows, "backup written");
        self.audit_event(
            "keyd",
            "backup",
            None,
            Some(format!("{rows} rows to {}", to.display())),
        );
        Ok(rows)
    }
}

//! A trusted cluster whose root was replaced (`keyctl ceremony root-rekey`): its keyd
//! asks for a reset naming the new root and the previous one, carrying the previous
//! root's chain (ending in the succession) and its chain under the new root. This keyd,
//! which trusts the previous root, checks them before it reaches out anywhere: the
//! previous chain must extend the one recorded here and name exactly the new root, and
//! the new chain gives the key that signed the request. The trust then moves to the new
//! root with the grant recorded (never raised), and the previous root is untrusted and
//! blocklisted: it signs nothing more, and it may be what was lost.

use super::{Service, ServiceError};
use crate::chain::{self, Body, Chain, Untrust};
use crate::trust::Persona;
use crate::wire::TrustReset;

/// The new chain of the trusted cluster `old` after its root named `ask.root` its
/// successor, from the chains the request carries (nothing is fetched before they are
/// checked): the previous chain must extend the one recorded here and name exactly that
/// root; the new chain must be of it. Verified, it is returned.
pub(super) fn follow_succession(old: &Persona, ask: &TrustReset) -> Result<Chain, String> {
    let (Some(previous), Some(current)) = (&ask.succession, &ask.chain) else {
        return Err("a reset after a root rekey carries the previous and the new chain".into());
    };
    let mut held = chain::verify_file(&old.chain).map_err(|e| e.to_string())?;
    held.update(previous.as_slice())
        .map_err(|e| format!("its previous chain does not extend the one held here: {e}"))?;
    let named = held
        .state()
        .successor()
        .map(|k| chain::fingerprint(&k.ed25519))
        .ok_or("its previous root named no successor")?;
    if named != ask.root {
        return Err(format!(
            "its previous root named {named} its successor, not {}",
            ask.root
        ));
    }
    let new = chain::verify_file(current.as_slice()).map_err(|e| format!("its chain: {e}"))?;
    if new
        .state()
        .root_keys()
        .map(|k| chain::fingerprint(&k.ed25519))
        != Some(named)
    {
        return Err("its chain is of another root than its successor".into());
    }
    Ok(new)
}

impl Service {
    /// The trust in the cluster of `old` moves to its successor `persona`: a `trust` of
    /// the new root with the grant recorded, and the old root untrusted and blocklisted.
    pub(super) fn succeed_trust(
        &self,
        persona: &Persona,
        old: &[u8; 32],
    ) -> Result<(), ServiceError> {
        let (grant, introduced_by, mut old_record) = {
            let clusters = self.trust_clusters();
            let t = clusters
                .get(old)
                .filter(|t| !t.record.blocked)
                .ok_or_else(|| ServiceError::TrustRefused("no trust to move".into()))?;
            (
                t.record.grant.clone(),
                t.record.introduced_by,
                t.record.clone(),
            )
        };
        self.record_trust(persona, &grant, introduced_by)?;
        let trusted_here = self
            .read_chain()
            .state()
            .trusted()
            .any(|(r, t)| r == old && t.log == self.branch_path);
        if trusted_here {
            let body = Body::Untrust(Untrust {
                root: *old,
                reason: format!("succeeded by root {}", persona.fingerprint()),
            });
            self.append(move |svc, _| {
                Ok(super::super::commit::Built {
                    statements: vec![svc.branch_statement(body)?],
                    token: None,
                    value: (),
                })
            })?;
        }
        old_record.blocked = true;
        self.store
            .put_trusted(&chain::fingerprint(old), &chain::cbor_bytes(&old_record))?;
        if let Some(t) = self
            .trust
            .clusters
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(old)
        {
            t.record.blocked = true;
        }
        self.audit_event(
            "keyd",
            "trust.succession",
            Some(persona.fingerprint()),
            Some(format!("succeeds root {}", chain::fingerprint(old))),
        );
        Ok(())
    }
}

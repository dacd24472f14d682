//! Keys of trusted clusters in node operations: a node encrypts to a node of a trusted
//! cluster (`to: "CLUSTER:NODE"`, suite X25519: a chain publishes no X-Wing key), and
//! opens an envelope a node of a trusted cluster sent. Each needs the trust this
//! cluster gives the other to allow it (`encrypt`, `decrypt`) and, for encryption, the
//! policy (`trusted:<level>` targets).

use ed25519_dalek::VerifyingKey;

use super::{Service, ServiceError, Trusted, unix_now};
use crate::chain::KeyStatus;
use crate::derive::{KeyId, KeyPath};
use crate::envelope::{Encrypted, Suite};
use crate::identity::Principal;
use crate::policy::Op;

impl Service {
    /// Encrypts to node `to` (name or path) of the trusted cluster `cluster` (its name,
    /// or its root fingerprint), signed by the sender node: the envelope and the
    /// recipient's epoch key path.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::service) fn encrypt_foreign(
        &self,
        principal: &Principal,
        sender: &KeyPath,
        (cluster, to): (&str, &str),
        suite: Suite,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<(Vec<u8>, KeyPath), ServiceError> {
        let now = unix_now();
        let (level, recipient, keys) = {
            let clusters = self.trust_clusters();
            let t: &Trusted = clusters
                .values()
                .find(|t| {
                    !t.record.blocked
                        && (t.record.persona.cluster == cluster
                            || t.record.persona.fingerprint() == cluster)
                })
                .ok_or_else(|| ServiceError::NotFound(format!("no trusted cluster {cluster:?}")))?;
            let (grant, _) = self.grant_of(t);
            if !grant.allows("encrypt", now) {
                return Err(ServiceError::Forbidden(format!(
                    "the trust this cluster gives cluster {cluster} does not allow encrypt (or has ended)"
                )));
            }
            let state = t.chain.state();
            let node = state
                .find(to)
                .map(|(p, _)| p.clone())
                .filter(KeyPath::is_node)
                .ok_or_else(|| {
                    ServiceError::NotFound(format!("no node {to:?} in cluster {cluster}"))
                })?;
            let standing = state.status_at(&node, now);
            if !standing.is_valid() {
                return Err(ServiceError::PartyNotValid(format!(
                    "recipient in cluster {cluster}: {standing}"
                )));
            }
            let (epoch, record) = state.current_epoch(&node).ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "{node} of cluster {cluster} has no valid epoch key"
                ))
            })?;
            let path = node
                .epoch_key(epoch)
                .ok_or_else(|| ServiceError::NotFound("epoch".into()))?;
            (grant.level, path, record.keys)
        };
        self.authorize(
            principal,
            Op::Encrypt,
            super::super::policy::Named::Trusted(level),
        )?;
        if suite != Suite::X25519 {
            return Err(ServiceError::BadRequest(format!(
                "suite {}: a node of another cluster is reached with suite x25519 (its chain publishes no X-Wing key)",
                suite.name()
            )));
        }
        super::super::keys::check_context(context)?;
        let (from, key) = self.current_key(sender)?;
        let e = Encrypted::encrypt_to_public(
            (&recipient, &keys.ed25519, &keys.x25519),
            (&from, key.signing_key()),
            plaintext,
            context,
            &mut rand_core::UnwrapErr(getrandom::SysRng),
        )
        .map_err(ServiceError::Envelope)?;
        self.audit_use(principal, Op::Encrypt, None);
        Ok((e.to_cbor(), recipient))
    }

    /// The sender of an envelope, when its key id names a key of a trusted cluster at
    /// `path` (not this cluster's key there): its verifying key, if that key is valid
    /// there and the trust allows `decrypt`.
    pub(in crate::service) fn foreign_sender(
        &self,
        path: &KeyPath,
        kid: Option<&[u8; 16]>,
    ) -> Result<Option<VerifyingKey>, ServiceError> {
        let Some(kid) = kid else {
            return Ok(None);
        };
        let own = self.read_chain().state().key(path).map(|r| r.key_id.0);
        if own == Some(*kid) {
            return Ok(None);
        }
        let now = unix_now();
        let clusters = self.trust_clusters();
        let Some(t) = clusters
            .values()
            .find(|t| !t.record.blocked && t.chain.state().path_of(&KeyId(*kid)) == Some(path))
        else {
            return Ok(None);
        };
        let cluster = &t.record.persona.cluster;
        if !self.grant_of(t).0.allows("decrypt", now) {
            return Err(ServiceError::PartyNotValid(format!(
                "sender: the trust this cluster gives cluster {cluster} does not allow decrypt (or has ended)"
            )));
        }
        let state = t.chain.state();
        match state.status_at(path, now) {
            KeyStatus::Valid { .. } | KeyStatus::Superseded { .. } => {}
            other => {
                return Err(ServiceError::PartyNotValid(format!(
                    "sender in cluster {cluster}: {other}"
                )));
            }
        }
        Ok(state.key(path).and_then(|r| r.keys.verifying_key()))
    }
}

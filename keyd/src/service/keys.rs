//! Key operations for nodes: seal/unseal, encrypt/decrypt, rewrap,
//! datakey, rekey.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{Service, ServiceError, describe, unix_now};
use crate::chain::{KeyKind, KeyStatus};
use crate::derive::{KeyMaterial, KeyPath};
use crate::envelope::{Encrypted, Sealed, Suite};
use crate::identity::Principal;
use crate::policy::Op;

/// The largest context (associated data) of an envelope.
pub const MAX_CONTEXT: usize = 4096;

pub(super) fn check_context(context: &[u8]) -> Result<(), ServiceError> {
    if context.len() > MAX_CONTEXT {
        return Err(ServiceError::BadRequest(format!(
            "context: {} bytes; at most {MAX_CONTEXT}",
            context.len()
        )));
    }
    Ok(())
}

/// Most decoded public keys kept for verify requests (emptied when full: callers
/// choosing keys cannot grow it).
const VERIFYING_KEYS: usize = 4096;

impl Service {
    /// The decoded Ed25519 key of `public` (`None`: not a valid point), from the cache of
    /// the keys verify requests named.
    pub(super) fn verifying_key(&self, public: &[u8; 32]) -> Option<ed25519_dalek::VerifyingKey> {
        if let Some(k) = self
            .verifying
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(public)
        {
            return Some(*k);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(public).ok()?;
        let mut cache = self.verifying.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFYING_KEYS {
            cache.clear();
        }
        cache.insert(*public, key);
        Some(key)
    }

    /// The node a principal is, for key operations.
    fn node_of(principal: &Principal) -> Result<&KeyPath, ServiceError> {
        match principal {
            Principal::Node(p) => Ok(p),
            Principal::Admin(_) => Err(ServiceError::Forbidden(
                "only nodes use keys; admins have none".into(),
            )),
        }
    }

    /// The node's current epoch key path and its material.
    pub(super) fn current_key(
        &self,
        node: &KeyPath,
    ) -> Result<(KeyPath, Arc<KeyMaterial>), ServiceError> {
        let epoch = self
            .read_chain()
            .state()
            .current_epoch(node)
            .map(|(e, _)| e)
            .ok_or_else(|| ServiceError::Revoked(format!("{node} has no valid epoch key")))?;
        let path = node
            .epoch_key(epoch)
            .ok_or_else(|| ServiceError::NotFound("epoch".into()))?;
        let m = self.material(&path)?;
        Ok((path, m))
    }

    /// An epoch key of `node` named by an envelope (its path and key id): it must belong
    /// to the node and not be revoked (older epochs still open, and after a root rekey
    /// keys of the previous root's tree until it is retired).
    fn opening_key(
        &self,
        node: &KeyPath,
        key: &KeyPath,
        kid: Option<&[u8; 16]>,
    ) -> Result<Arc<KeyMaterial>, ServiceError> {
        let epoch = match key.role() {
            crate::derive::PathRole::Epoch { node: owner, epoch } if &owner == node => epoch,
            _ => {
                return Err(ServiceError::Forbidden(format!(
                    "the envelope is for {key}, not for {node}"
                )));
            }
        };
        let min = self.min_epoch(node);
        if epoch < min {
            return Err(ServiceError::EpochRetired(format!(
                "the envelope is of epoch {epoch} of {node}, below its minimum decryption epoch {min}; rewrap envelopes before raising it, or ask an admin to lower it"
            )));
        }
        if let Some(old) = self.retired_key(key, kid)? {
            return Ok(Arc::new(old));
        }
        let status = self.read_chain().state().status_at(key, unix_now());
        match status {
            KeyStatus::Valid { .. } | KeyStatus::Superseded { .. } => self.material(key),
            other => Err(ServiceError::Revoked(describe(&other))),
        }
    }

    /// Seals `plaintext` for the node's own storage, bound to `context` (associated
    /// data the opener gives again; empty for none).
    pub fn seal(
        &self,
        principal: &Principal,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let node = Self::node_of(principal)?;
        self.authorize_on(principal, Op::Seal, node)?;
        self.seal_as(principal, node, Op::Seal, plaintext, context)
    }

    /// Seals `plaintext` under `node`'s current epoch (authorized by the caller), counted
    /// in the audit log as `op`.
    fn seal_as(
        &self,
        principal: &Principal,
        node: &KeyPath,
        op: Op,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        check_context(context)?;
        let (path, key) = self.current_key(node)?;
        let sealed = Self::seal_with(&path, &key, plaintext, context)?;
        self.audit_use(principal, op, Some(&path));
        Ok(sealed)
    }

    /// keyd's sealed envelope of `plaintext` under the key at `path`, bound to `context`.
    pub(super) fn seal_with(
        path: &KeyPath,
        key: &KeyMaterial,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        // Salt and nonce from one read of the system's CSPRNG.
        let mut random = [0u8; 44];
        getrandom::fill(&mut random)
            .map_err(|e| ServiceError::BadRequest(format!("randomness: {e}")))?;
        let (salt, nonce) = random.split_at(32);
        let salt: [u8; 32] = salt.try_into().unwrap_or_else(|_| unreachable!("32 bytes"));
        let nonce: [u8; 12] = nonce
            .try_into()
            .unwrap_or_else(|_| unreachable!("12 bytes"));
        Ok(Sealed::seal_in(path, key, plaintext, context, salt, nonce)
            .map_err(ServiceError::Envelope)?
            .to_cbor())
    }

    /// Opens an envelope from [`Service::seal`] of this node, with its context.
    pub fn unseal(
        &self,
        principal: &Principal,
        envelope: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
        let node = Self::node_of(principal)?;
        self.authorize_on(principal, Op::Unseal, node)?;
        let (plaintext, key) = self.unseal_as(node, envelope, context)?;
        self.audit_use(principal, Op::Unseal, Some(&key));
        Ok(plaintext)
    }

    /// Opens `node`'s sealed envelope (authorized by the caller): the plaintext and the
    /// key that sealed it.
    fn unseal_as(
        &self,
        node: &KeyPath,
        envelope: &[u8],
        context: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, KeyPath), ServiceError> {
        let sealed = Sealed::from_cbor(envelope).map_err(ServiceError::Envelope)?;
        let key = self.opening_key(node, &sealed.key, sealed.kid.as_ref())?;
        let plaintext = sealed
            .open_in(&key, context)
            .map_err(ServiceError::Envelope)?;
        Ok((plaintext, sealed.key))
    }

    /// Encrypts to node `to` (name or path) with `suite`, signed by the caller: the
    /// envelope and the recipient key path.
    pub fn encrypt(
        &self,
        principal: &Principal,
        to: &str,
        suite: Suite,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<(Vec<u8>, KeyPath), ServiceError> {
        let node = Self::node_of(principal)?;
        check_context(context)?;
        // CLUSTER:NODE: a node of a trusted cluster (names and paths hold no colon).
        if let Some((cluster, to)) = to.split_once(':') {
            return self.encrypt_foreign(principal, node, (cluster, to), suite, plaintext, context);
        }
        let recipient = {
            let chain = self.read_chain();
            let state = chain.state();
            // Envelopes go to nodes, never to a named key (only its owner uses it).
            let target = state
                .find_in(to, &self.branch_path)
                .map(|(p, _)| p.clone())
                .filter(KeyPath::is_node)
                .ok_or_else(|| ServiceError::NotFound(format!("no node {to:?}")))?;
            drop(chain);
            self.authorize_on(principal, Op::Encrypt, &target)?;
            let chain = self.read_chain();
            let state = chain.state();
            let standing = state.status_at(&target, unix_now());
            if !standing.is_valid() {
                return Err(ServiceError::PartyNotValid(format!(
                    "recipient: {}",
                    describe(&standing)
                )));
            }
            let (_, record) = state.current_epoch(&target).ok_or_else(|| {
                ServiceError::NotFound(format!("{target} has no valid epoch key to encrypt to"))
            })?;
            let epoch = match record.kind {
                KeyKind::Epoch { epoch } => epoch,
                _ => 0,
            };
            self.check_suite(&target, suite)?;
            target
                .epoch_key(epoch)
                .ok_or_else(|| ServiceError::NotFound("epoch".into()))?
        };
        let keys = self.material(&recipient)?;
        let (sender, key) = self.current_key(node)?;
        let e = Encrypted::encrypt_in(
            suite,
            (&recipient, &keys, &sender, key.signing_key()),
            plaintext,
            context,
            &mut rand_core::UnwrapErr(getrandom::SysRng),
        )
        .map_err(ServiceError::Envelope)?;
        self.audit_use(principal, Op::Encrypt, Some(&recipient));
        Ok((e.to_cbor(), recipient))
    }

    /// Decrypts an envelope addressed to the caller after checking its sender's
    /// signature against the chain: the plaintext and the sender's key path.
    pub fn decrypt(
        &self,
        principal: &Principal,
        envelope: &[u8],
        context: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, KeyPath), ServiceError> {
        let node = Self::node_of(principal)?;
        self.authorize_on(principal, Op::Decrypt, node)?;
        let e = Encrypted::from_cbor(envelope).map_err(ServiceError::Envelope)?;
        self.check_suite(node, e.suite().map_err(ServiceError::Envelope)?)?;
        let retired_sender = self.retired_sender(&e.sender, e.sender_kid.as_ref())?;
        let foreign_sender = match retired_sender {
            Some(_) => None,
            None => self.foreign_sender(&e.sender, e.sender_kid.as_ref())?,
        };
        let sender_key = if let Some(key) = retired_sender.or(foreign_sender) {
            key
        } else {
            let chain = self.read_chain();
            let state = chain.state();
            let now = unix_now();
            if !matches!(
                state.key(&e.sender).map(|r| &r.kind),
                Some(KeyKind::Epoch { .. })
            ) {
                return Err(ServiceError::PartyNotValid(format!(
                    "sender: {} is not an epoch key of the cluster; identity, branch and root keys never send",
                    e.sender
                )));
            }
            match state.status_at(&e.sender, now) {
                KeyStatus::Valid { .. } => {}
                KeyStatus::Superseded { .. } => {
                    let grace = self.config.sender_grace.as_secs();
                    let since = state.superseded_at(&e.sender).unwrap_or(0);
                    if now.saturating_sub(since) >= grace {
                        return Err(ServiceError::PartyNotValid(format!(
                            "sender: {} was superseded at {since}, more than sender_grace ({grace} s) ago",
                            e.sender
                        )));
                    }
                }
                other => {
                    return Err(ServiceError::PartyNotValid(format!(
                        "sender: {}",
                        describe(&other)
                    )));
                }
            }
            state
                .key(&e.sender)
                .and_then(|r| r.keys.verifying_key())
                .ok_or_else(|| {
                    ServiceError::NotFound(format!("sender {} is not in the chain", e.sender))
                })?
        };
        e.verify_sender(&sender_key)
            .map_err(ServiceError::Envelope)?;
        let key = self.opening_key(node, &e.recipient, e.recipient_kid.as_ref())?;
        let plaintext = e.open_in(&key, context).map_err(ServiceError::Envelope)?;
        self.audit_use(principal, Op::Decrypt, Some(&e.recipient));
        Ok((plaintext, e.sender))
    }

    /// Re-seals an envelope of an older epoch under the node's current epoch, in the
    /// same context.
    pub fn rewrap(
        &self,
        principal: &Principal,
        envelope: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let node = Self::node_of(principal)?;
        self.authorize_on(principal, Op::Rewrap, node)?;
        let (plaintext, _) = self.unseal_as(node, envelope, context)?;
        self.seal_as(principal, node, Op::Rewrap, &plaintext, context)
    }

    /// A fresh 256-bit data key and its sealed form (for envelope encryption by the
    /// node itself).
    pub fn datakey(
        &self,
        principal: &Principal,
        context: &[u8],
    ) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>), ServiceError> {
        let node = Self::node_of(principal)?;
        self.authorize_on(principal, Op::Datakey, node)?;
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut())
            .map_err(|e| ServiceError::BadRequest(format!("randomness: {e}")))?;
        let sealed = self.seal_as(principal, node, Op::Datakey, key.as_ref(), context)?;
        Ok((key, sealed))
    }
}

impl Service {
    /// A public key of the cluster in `format` (see [`crate::export`]): a node's current
    /// epoch key by name or node path, or the key a path names exactly.
    pub fn export_key(
        &self,
        name_or_path: &str,
        usage: crate::export::Use,
        format: crate::export::Format,
    ) -> Result<Vec<u8>, ServiceError> {
        use crate::export::{self, ExportError};
        let chain = self.read_chain();
        let (path, record) = export::resolve(chain.state(), name_or_path).map_err(|e| match e {
            ExportError::NotFound(_) => ServiceError::NotFound(e.to_string()),
            _ => ServiceError::PartyNotValid(e.to_string()),
        })?;
        export::encode(path, record, usage, format)
            .map_err(|e| ServiceError::BadRequest(e.to_string()))
    }

    /// The JWKS of every valid node's current signing key ([`crate::export::jwks`]).
    pub fn jwks(&self) -> serde_json::Value {
        crate::export::jwks(self.read_chain().state(), unix_now())
    }
}

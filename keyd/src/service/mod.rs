//! The running service: auth checks, chain updates, key use. Handlers call only this.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use thiserror::Error;

use crate::chain::{Body, Chain, ChainError, KeyKind, KeyStatus, Page, Revoke, Rule};
use crate::config::Config;
use crate::derive::{KeyMaterial, KeyPath, NodeSecret};
use crate::identity::{Ca, IdentityError, Principal};
use crate::policy::Op;
use crate::store::{Store, StoreError};
use commit::Built;

mod admins;
mod audit;
mod commit;
pub mod credentials;
mod enroll;
mod keys;
mod lifecycle;
mod logs;
pub mod named;
mod nodes;
mod pages;
pub mod policy;
mod recover;
mod replica;
mod restore;
mod retired;
pub mod suites;
pub mod tokens;
pub mod trust;

pub use crate::wire::{
    AdminRevocation, CredentialRevocation, EnrollMode, EpochInfo, Generation, NodeDetail, Pushed,
    SuitePolicy, Verification,
};
pub use enroll::Enrolled;
pub use logs::Mirrored;
pub use replica::StoreHealth;
pub use retired::Retired;

/// Service-level failures; the API maps each to a status and a stable code.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The caller presented no client certificate, or one naming no principal.
    #[error("a client certificate issued by this keyd is required")]
    Unauthenticated,
    /// The caller's key is no longer valid in the chain.
    #[error("the client's key is not valid: {0}")]
    Revoked(String),
    /// The other party of an operation (an envelope's sender, a recipient) has no valid
    /// key: revoked, expired, superseded too long ago, or not a key that may take part.
    #[error("{0}")]
    PartyNotValid(String),
    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// This keyd's store is behind its own branch log as a peer holds it.
    #[error("{0}")]
    BranchBehind(String),
    /// An envelope of an epoch below its node's minimum decryption epoch.
    #[error("{0}")]
    EpochRetired(String),
    /// The policy in force refuses the request.
    #[error("{op} denied by policy rule {rule}: {reason}")]
    Denied {
        /// The operation.
        op: &'static str,
        /// The rule that decided.
        rule: String,
        /// Why.
        reason: String,
    },
    /// The envelope suite is not one the recipient accepts (its suite policy).
    #[error("{0}")]
    SuiteNotAllowed(String),
    /// Bad input.
    #[error("{0}")]
    BadRequest(String),
    /// Data to sign that begins with keyd's reserved domain prefix.
    #[error(
        "data to sign must not begin with {:?}: keyd signs its own statements, heads and envelopes under that prefix",
        String::from_utf8_lossy(crate::RESERVED_SIGNING_PREFIX)
    )]
    ReservedPrefix,
    /// An unknown node or key.
    #[error("{0}")]
    NotFound(String),
    /// The chain refuses the change.
    #[error("the chain refuses this change: {0}")]
    Chain(#[from] Rule),
    /// Records that do not verify (a push or a stored log), naming the log and entry.
    #[error("the chain does not verify: {0}")]
    ChainRecords(Box<ChainError>),
    /// This keyd's own branch is revoked in the root log: it serves no key operation.
    #[error("this keyd's branch {branch} is revoked ({why}); it serves no key operations")]
    BranchRevoked {
        /// The branch.
        branch: KeyPath,
        /// The revocation.
        why: String,
    },
    /// An enrollment token that is unknown, used or expired.
    #[error("the enrollment token is unknown, already used or expired")]
    BadToken,
    /// An enrollment that does not match the node's mode (an install key for a held
    /// node, or none for an exported one).
    #[error("{0}")]
    WrongMode(String),
    /// A trust exchange step refused (the session is closed, nothing recorded).
    #[error("trust exchange refused: {0}")]
    TrustRefused(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An envelope that is malformed, tampered or not for this key.
    #[error(transparent)]
    Envelope(crate::envelope::EnvelopeError),
    /// Certificate issuance failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A change to the branch log was not committed (its group failed); nothing of it
    /// was stored.
    #[error("{0}")]
    Uncommitted(String),
}

impl From<ChainError> for ServiceError {
    fn from(e: ChainError) -> Self {
        ServiceError::ChainRecords(Box::new(e))
    }
}

pub use crate::unix_now;
pub use restore::{chain_of, restore_chain, restore_serving};

/// A replica is ready while etcd answered a quorum read this recently.
pub(crate) const READY_CONTACT: std::time::Duration = std::time::Duration::from_secs(3);

/// A signature made by `sign`, with the key that made it.
#[derive(Debug)]
pub struct Signed {
    /// The Ed25519 signature.
    pub signature: Signature,
    /// The epoch key's id.
    pub key_id: String,
    /// Its epoch.
    pub epoch: u32,
    /// Its path.
    pub path: KeyPath,
    /// Its Ed25519 public key, as the chain certifies it.
    pub public_key: [u8; 32],
}

/// keyd at run time.
pub struct Service {
    store: Store,
    config: Config,
    branch_path: KeyPath,
    branch_name: String,
    branch: NodeSecret,
    ca: Arc<Ca>,
    chain: RwLock<Chain>,
    keys: Mutex<HashMap<KeyPath, Arc<KeyMaterial>>>,
    /// Ed25519 public keys verify requests named, decoded (a point decompression, a
    /// fifth of a verification, saved each time the same key comes back).
    verifying: RwLock<HashMap<[u8; 32], VerifyingKey>>,
    revoked_admins: RwLock<HashMap<String, AdminRevocation>>,
    /// Each principal's credential generation.
    generations: RwLock<HashMap<Principal, Generation>>,
    /// Pull requests for the peer threads: a counter bumped on demand.
    pull_now: (Mutex<u64>, Condvar),
    /// Encoded `GET /v1/chain` pages, until the chain changes.
    pages: pages::PageCache,
    /// Each node's suite policy (absent: any).
    suites: RwLock<HashMap<KeyPath, SuitePolicy>>,
    /// Changes to the branch log waiting for their group commit.
    commits: commit::Commits,
    /// The policy in force.
    policy: RwLock<Arc<policy::PolicyInForce>>,
    /// The audit log's writer.
    audit: audit::Auditor,
    /// Each node's minimum decryption epoch (absent: 0).
    min_epochs: RwLock<HashMap<KeyPath, lifecycle::KeyLimits>>,
    /// Why this keyd's store is behind its own branch log as a peer holds it, once seen.
    behind: RwLock<Option<String>>,
    /// The previous root's tree, after a root rekey until it is retired.
    retired: Option<Retired>,
    /// Other clusters: exchange sessions and the clusters trusted.
    trust: trust::TrustState,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("branch", &self.branch_path)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Assembles the service from an unsealed branch and the stored chain.
    pub fn new(
        store: Store,
        config: Config,
        branch_name: String,
        branch_path: KeyPath,
        branch: NodeSecret,
        chain: Chain,
    ) -> Result<Service, ServiceError> {
        let ca = Arc::new(Ca::from_branch(
            &branch.material(),
            &branch_name,
            &branch_path,
        )?);
        let revoked_admins = RwLock::new(admins::load(&store)?);
        let generations = RwLock::new(credentials::load(&store)?);
        let suites = RwLock::new(suites::load(&store)?);
        let policy = RwLock::new(Arc::new(policy::load(&store)?));
        let audit = audit::Auditor::load(&store)?;
        let min_epochs = RwLock::new(lifecycle::load(&store)?);
        let trust = trust::TrustState::load(&store)?;
        if chain.head(&branch_path).is_none() {
            return Err(ServiceError::NotFound(format!(
                "the store holds no log of this keyd's branch {branch_path}"
            )));
        }
        Ok(Service {
            store,
            config,
            branch_path,
            branch_name,
            branch,
            ca,
            chain: RwLock::new(chain),
            keys: Mutex::new(HashMap::new()),
            verifying: RwLock::new(HashMap::new()),
            revoked_admins,
            generations,
            pull_now: (Mutex::new(0), Condvar::new()),
            pages: pages::PageCache::default(),
            suites,
            commits: commit::Commits::default(),
            policy,
            audit,
            min_epochs,
            behind: RwLock::new(None),
            retired: None,
            trust,
        })
    }

    /// The CA.
    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The branch path.
    pub fn branch_path(&self) -> &KeyPath {
        &self.branch_path
    }

    fn read_chain(&self) -> std::sync::RwLockReadGuard<'_, Chain> {
        self.chain.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The key material at `path` (under the branch), cached.
    fn material(&self, path: &KeyPath) -> Result<Arc<KeyMaterial>, ServiceError> {
        let mut cache = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(path) {
            return Ok(m.clone());
        }
        let m = Arc::new(self.secret_at(path)?.material());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(path.clone(), m.clone());
        Ok(m)
    }

    /// The key material at `path` (under the branch), derived and not cached: for keys
    /// an admin change uses once (a new node's, a new epoch's), so that growing the tree
    /// does not grow the cache of keys in use.
    fn derived(&self, path: &KeyPath) -> Result<KeyMaterial, ServiceError> {
        Ok(self.secret_at(path)?.material())
    }

    /// The secret of the node at `path`, under the branch.
    fn secret_at(&self, path: &KeyPath) -> Result<NodeSecret, ServiceError> {
        if !self.branch_path.is_prefix_of(path) {
            return Err(ServiceError::Forbidden(format!(
                "{path} is not under this keyd's branch {}",
                self.branch_path
            )));
        }
        let mut node = self.branch.clone();
        for index in path.indexes().skip(self.branch_path.depth()) {
            node = node.child(index);
        }
        Ok(node)
    }

    /// The revocation of this keyd's own branch, if the chain holds one (pushed in the
    /// root log, or the branch revoking itself).
    pub fn branch_revoked(&self) -> Option<ServiceError> {
        let chain = self.read_chain();
        let (revoked, r) = chain.state().revocation(&self.branch_path)?;
        Some(ServiceError::BranchRevoked {
            branch: self.branch_path.clone(),
            why: format!(
                "{revoked} revoked by {} in log {} entry {}: {:?}",
                r.by, r.log, r.seq, r.reason
            ),
        })
    }

    /// Refuses when a peer showed this store behind its own branch log.
    fn require_current(&self) -> Result<(), ServiceError> {
        match &*self.behind.read().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(ServiceError::BranchBehind(why.clone())),
            None => Ok(()),
        }
    }

    /// Refuses when the branch is revoked (key operations, enrollment and changes), or
    /// when this replica was removed from its group.
    fn require_serving(&self) -> Result<(), ServiceError> {
        self.branch_revoked().map_or(Ok(()), Err)?;
        self.require_member()
    }

    /// Checks that a client certificate's principal is still valid now (and, for a node,
    /// that this keyd still serves).
    pub fn authenticate(&self, principal: Option<Principal>) -> Result<Principal, ServiceError> {
        let principal = principal.ok_or(ServiceError::Unauthenticated)?;
        self.require_fresh()?;
        self.require_member()?;
        match &principal {
            Principal::Node(path) => {
                // A valid node implies a branch that is not revoked (the branch is its
                // ancestor): the branch is looked at only when the node is not valid.
                let status = self.read_chain().state().status_at(path, unix_now());
                if !status.is_valid() {
                    self.require_serving()?;
                    return Err(ServiceError::Revoked(describe(&status)));
                }
            }
            Principal::Admin(name) => {
                if let Some(why) = self.admin_revoked(name) {
                    return Err(ServiceError::Revoked(why));
                }
            }
        }
        Ok(principal)
    }

    fn require_admin(principal: &Principal) -> Result<(), ServiceError> {
        match principal {
            Principal::Admin(_) => Ok(()),
            Principal::Node(p) => Err(ServiceError::Forbidden(format!(
                "{p} is a node; this needs an admin credential"
            ))),
        }
    }

    fn reload_chain(&self) -> Result<Chain, ServiceError> {
        restore_serving(&self.store)
    }

    /// The latest head of this keyd's own branch log (what the seal token's mark holds).
    pub fn own_head(&self) -> Option<crate::chain::Head> {
        self.read_chain().head(&self.branch_path).cloned()
    }

    /// Entries held per log (`m`, `m/1'`, …), for the metrics.
    pub fn log_lengths(&self) -> Vec<(String, usize)> {
        self.read_chain()
            .logs()
            .map(|(log, held)| (log.to_string(), held.len() as usize))
            .collect()
    }

    /// Re-signs this keyd's branch head at the current time and stores it, so that
    /// verifiers demanding a fresh head accept it (DESIGN.md section 4: heads with time).
    pub fn refresh_head(&self) -> Result<(), ServiceError> {
        self.require_reachable()?;
        let log = &self.branch_path;
        let key = self.material(log)?;
        let mut chain = self.chain.write().unwrap_or_else(|e| e.into_inner());
        let head = chain.sign_head(log, key.signing_key(), unix_now())?.clone();
        self.store.append_logs(&[], &[&head], &[])?;
        Ok(())
    }

    /// Signs `data` with the node's current epoch key.
    pub fn sign(&self, principal: &Principal, data: &[u8]) -> Result<Signed, ServiceError> {
        let Principal::Node(node) = principal else {
            return Err(ServiceError::Forbidden(
                "only nodes sign; admins have no signing key".into(),
            ));
        };
        self.authorize_on(principal, Op::Sign, node)?;
        if data.starts_with(crate::RESERVED_SIGNING_PREFIX) {
            return Err(ServiceError::ReservedPrefix);
        }
        let (epoch, key_id, public_key) = {
            let chain = self.read_chain();
            let (epoch, record) = chain
                .state()
                .current_epoch(node)
                .ok_or_else(|| ServiceError::Revoked(format!("{node} has no valid epoch key")))?;
            (epoch, record.key_id.to_string(), record.keys.ed25519)
        };
        let path = node
            .epoch_key(epoch)
            .ok_or_else(|| ServiceError::NotFound("epoch".into()))?;
        let key = self.material(&path)?;
        self.audit_use(principal, Op::Sign, Some(&path));
        Ok(Signed {
            signature: key.signing_key().sign(data),
            key_id,
            epoch,
            path,
            public_key,
        })
    }

    /// Verifies `signature` over `data` by the Ed25519 key `public`, and says whether
    /// that key is a valid key of this cluster.
    pub fn verify(
        &self,
        principal: &Principal,
        data: &[u8],
        signature: &[u8; 64],
        public: &[u8; 32],
    ) -> Result<Verification, ServiceError> {
        // The target is the node whose key it is, when the chain knows it.
        let key_id = crate::derive::KeyId::of_bytes(public);
        let key_path = self.read_chain().state().path_of(&key_id).cloned();
        let node = key_path.as_ref().map(|p| match p.role() {
            crate::derive::PathRole::Epoch { node, .. } => node,
            _ => p.clone(),
        });
        match &node {
            Some(node) => self.authorize_on(principal, Op::Verify, node)?,
            None => self.authorize(principal, Op::Verify, policy::Named::Nothing)?,
        }
        let signature_ok = self.verifying_key(public).is_some_and(|k| {
            k.verify_strict(data, &Signature::from_bytes(signature))
                .is_ok()
        });
        let chain = self.read_chain();
        let status = chain.state().status_of_key(public, unix_now());
        let epoch = key_path
            .as_ref()
            .and_then(|p| match chain.state().key(p).map(|r| &r.kind) {
                Some(KeyKind::Epoch { epoch }) => Some(*epoch),
                _ => None,
            });
        drop(chain);
        // Not a key of this cluster: perhaps of a cluster it trusts, as far as that
        // trust allows verifying.
        let foreign = matches!(status, KeyStatus::Unknown)
            .then(|| self.trusted_key(public, "verify"))
            .flatten();
        let (status, path, cluster, allowed) = match foreign {
            Some(f) => (f.status, Some(f.path), Some(f.cluster), f.allowed),
            None => (status, key_path, None, true),
        };
        let name = status.name();
        let reason = if !status.is_valid() {
            Some(status.to_string())
        } else if !allowed {
            Some(format!(
                "the trust this cluster gives cluster {} does not allow verify (or has ended)",
                cluster.as_deref().unwrap_or("?")
            ))
        } else {
            None
        };
        self.audit_use(principal, Op::Verify, path.as_ref());
        Ok(Verification {
            valid: signature_ok && status.is_valid() && allowed,
            signature_ok,
            key_id: key_id.to_string(),
            path: path.as_ref().map(KeyPath::to_string),
            epoch,
            status: name.to_owned(),
            reason,
            cluster,
        })
    }

    /// Revokes a node (name or path) under this branch, signed by the branch key:
    /// returns the keys cut off.
    pub fn revoke(
        &self,
        principal: &Principal,
        target: &str,
        reason: &str,
    ) -> Result<Vec<KeyPath>, ServiceError> {
        Self::require_admin(principal)?;
        self.authorize_on(principal, Op::NodeRevoke, &self.resolve(target)?)?;
        let detail = Some(format!("reason: {reason}"));
        let (target, reason) = (target.to_owned(), reason.to_owned());
        self.append(move |svc, w| {
            let target = w
                .state()
                .find_in(&target, &svc.branch_path)
                .map(|(p, _)| p.clone())
                .ok_or_else(|| ServiceError::NotFound(format!("no node or key {target:?}")))?;
            if !svc.branch_path.is_prefix_of(&target) || target == svc.branch_path {
                return Err(ServiceError::Forbidden(format!(
                    "{target} is not below this keyd's branch {}",
                    svc.branch_path
                )));
            }
            let st = svc.branch_statement(Body::Revoke(Revoke {
                target: target.clone(),
                reason: reason.to_owned(),
            }))?;
            Ok(Built {
                statements: vec![st],
                token: None,
                value: target,
            })
        })
        .map(|target| {
            let cut = self.read_chain().state().cut_off_by(&target);
            let op = Op::NodeRevoke.name();
            self.audit_event(&principal.uri(), op, Some(target.to_string()), detail);
            cut
        })
    }

    /// The logs a new node of this branch needs: the root log and this branch's log.
    pub fn own_logs(&self) -> Result<Vec<u8>, ServiceError> {
        let chain = self.read_chain();
        Ok(chain.file_of_with(
            [&KeyPath::root(), &self.branch_path],
            self.stored_records(&chain),
        )?)
    }

    /// Reads offloaded entries of `chain` back from the store, each checked against
    /// the hash the chain holds (for [`Chain::since_with`] and [`Chain::file_of_with`]).
    fn stored_records<'a>(
        &'a self,
        chain: &'a Chain,
    ) -> impl FnMut(
        &KeyPath,
        std::ops::Range<u64>,
        &mut Vec<u8>,
    ) -> Result<(), crate::store::StoreError>
    + 'a {
        move |log, seqs, out| {
            self.store
                .log_records(log, seqs, |seq| chain.entry_hash(log, seq), out)
        }
    }

    /// The chain page from `positions` (at most `limit` entries), the chain's length, and
    /// whether the page came from the cache of encoded pages.
    pub fn chain_page(
        &self,
        positions: &BTreeMap<KeyPath, u64>,
        limit: usize,
    ) -> Result<(Arc<Page>, u64, bool), ServiceError> {
        let chain = self.read_chain();
        let (page, cached) =
            self.pages
                .page(&chain, positions, limit, self.stored_records(&chain))?;
        Ok((page, chain.len() as u64, cached))
    }

    /// Whether keyd can serve: its store answers a read and its branch is not revoked;
    /// the number of chain entries.
    pub fn ready(&self) -> Result<usize, ServiceError> {
        self.store.meta(crate::store::key::BRANCH_PATH)?;
        if let Some(etcd) = self.store.shared()
            && etcd
                .last_contact()
                .is_none_or(|t| t.elapsed() > READY_CONTACT)
        {
            return Err(StoreError::Unavailable {
                what: etcd.describe(),
                detail: format!(
                    "no quorum read answered in the last {} s: state changes are refused; key operations go on for the grace",
                    READY_CONTACT.as_secs()
                ),
            }
            .into());
        }
        self.require_serving()?;
        self.require_current()?;
        Ok(self.read_chain().len())
    }

    /// The branch name.
    pub fn branch_name(&self) -> &str {
        &self.branch_name
    }
}

fn describe(status: &KeyStatus) -> String {
    status.to_string()
}

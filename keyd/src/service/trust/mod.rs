//! Trust between clusters at run time: the exchange sessions (`session`, `responder`), the
//! clusters this keyd trusts — each with the persona and chain the exchange gave, kept
//! in sync ([`sync`]) — and what nodes may do with their keys.
//!
//! A trust is recorded as a `trust` statement in this keyd's branch log (the level,
//! permissions and end this side grants) and a record in the store (the other side's
//! persona and chain). `revoke` records `untrust` and keeps the record as blocklisted:
//! a blocklisted root is refused by any later exchange. Cluster-wide trust signed by
//! the root in a ceremony (a root-log `trust`) also counts; where both exist, the
//! root's word wins (docs/trust-exchange.md).

mod introduce;
mod keys;
mod reset;
mod responder;
mod session;
mod succession;
pub mod sync;

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::{Service, ServiceError, unix_now};
use crate::chain::{self, Body, Chain, KeyStatus, TrustLevel, Untrust};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::Op;
use crate::store::StoreError;
use crate::trust::Persona;
use crate::wire::{PersonaView, TrustedCluster};

pub use session::Sessions;

/// The permissions a trust may grant.
pub const PERMISSIONS: [&str; 3] = ["verify", "encrypt", "decrypt"];

/// What one side grants the other.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    /// The level.
    pub level: TrustLevel,
    /// The permissions (all of them with `full`).
    pub permissions: Vec<String>,
    /// The end (Unix seconds).
    pub expires_at: u64,
}

impl From<&crate::wire::TrustGrant> for Grant {
    fn from(g: &crate::wire::TrustGrant) -> Grant {
        Grant {
            level: g.level,
            permissions: g.permissions.clone(),
            expires_at: g.expires_at,
        }
    }
}

impl Grant {
    /// Checks a grant asked for at `now`, naming what is wrong.
    pub fn check(&self, now: u64) -> Result<(), ServiceError> {
        let bad = |m: String| Err(ServiceError::BadRequest(m));
        if self.expires_at <= now {
            return bad(format!(
                "expires_at {} is not in the future",
                self.expires_at
            ));
        }
        if let Some(p) = self
            .permissions
            .iter()
            .find(|p| !PERMISSIONS.contains(&p.as_str()))
        {
            return bad(format!(
                "permission {p:?} is not one of {}",
                PERMISSIONS.join(", ")
            ));
        }
        if self.level != TrustLevel::Full && self.permissions.is_empty() {
            return bad("a limited or temporary trust names its permissions".into());
        }
        Ok(())
    }

    /// Whether it allows `permission` at `now`.
    pub fn allows(&self, permission: &str, now: u64) -> bool {
        now < self.expires_at
            && (self.level == TrustLevel::Full || self.permissions.iter().any(|p| p == permission))
    }
}

/// A trusted (or blocklisted) cluster, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Record {
    /// Its persona from the exchange (with the chain it gave then).
    persona: Persona,
    /// What this side granted it.
    grant: Grant,
    /// The log and seq of the `trust` statement.
    recorded: (KeyPath, u64),
    /// When its chain was last pulled.
    synced_at: u64,
    /// Revoked: refused by any later exchange.
    blocked: bool,
    /// The root of the cluster that introduced it, when it came from an introduction.
    #[serde(default)]
    introduced_by: Option<[u8; 32]>,
}

/// A trusted cluster in memory: its record and its verified chain.
pub(super) struct Trusted {
    record: Record,
    chain: Chain,
}

/// Everything about other clusters: the open sessions and the trusted clusters, by
/// root key.
#[derive(Default)]
pub struct TrustState {
    sessions: Mutex<Sessions>,
    clusters: RwLock<HashMap<[u8; 32], Trusted>>,
}

impl std::fmt::Debug for TrustState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustState").finish_non_exhaustive()
    }
}

impl TrustState {
    /// Replaces the clusters with the stored records (another replica changed them).
    pub fn reload(&self, store: &crate::store::Store) -> Result<(), ServiceError> {
        let fresh = TrustState::load(store)?;
        let clusters = fresh
            .clusters
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        *self.clusters.write().unwrap_or_else(|e| e.into_inner()) = clusters;
        Ok(())
    }

    /// The stored records, with their chains verified again.
    pub fn load(store: &crate::store::Store) -> Result<TrustState, ServiceError> {
        let mut clusters = HashMap::new();
        for (root, checked) in store.trusted_clusters()? {
            let corrupt = |detail: String| StoreError::Corrupt {
                path: store.path().to_owned(),
                what: format!("trusted cluster {root}"),
                detail,
            };
            let crate::store::Checked::Valid(bytes) = checked else {
                return Err(corrupt("its integrity tag does not match".into()).into());
            };
            let record: Record = chain::decode_exact(&bytes, crate::trust::protocol::MAX_MESSAGE)
                .map_err(|e| corrupt(e.to_string()))?;
            let chain = chain::verify_file(&record.persona.chain)
                .map_err(|e| corrupt(format!("its chain: {e}")))?;
            clusters.insert(record.persona.root, Trusted { record, chain });
        }
        Ok(TrustState {
            sessions: Mutex::default(),
            clusters: RwLock::new(clusters),
        })
    }
}

fn view(p: &Persona, grant: &Grant) -> PersonaView {
    PersonaView {
        persona: p.persona.clone(),
        cluster: p.cluster.clone(),
        root: p.fingerprint(),
        branch: p.branch.to_string(),
        url: p.url.clone(),
        level: grant.level,
        permissions: grant.permissions.clone(),
        expires_at: grant.expires_at,
    }
}

/// A trusted cluster's key, found by [`Service::trusted_key`].
#[derive(Debug)]
pub struct ForeignKey {
    /// The cluster's name.
    pub cluster: String,
    /// The key's path in that cluster.
    pub path: KeyPath,
    /// Its status there.
    pub status: KeyStatus,
    /// Whether the trust allows the permission asked.
    pub allowed: bool,
}

impl Service {
    /// An admin allowed `op` by the policy.
    fn trust_admin(&self, principal: &Principal, op: Op) -> Result<(), ServiceError> {
        Self::require_admin(principal)?;
        self.authorize(principal, op, super::policy::Named::Nothing)
    }

    /// The grant in force for a trusted cluster, and whether it is the root's: a
    /// root-log `trust` of that root (cluster-wide, signed in a ceremony) wins over this
    /// keyd's own grant.
    fn grant_of(&self, t: &Trusted) -> (Grant, bool) {
        let chain = self.read_chain();
        let cluster_wide = chain
            .state()
            .trusted()
            .find(|(root, r)| **root == t.record.persona.root && r.log.depth() == 0)
            .map(|(_, r)| Grant {
                level: r.level,
                permissions: r.permissions.clone(),
                expires_at: r.expires_at,
            });
        match cluster_wide {
            Some(g) => (g, true),
            None => (t.record.grant.clone(), false),
        }
    }

    fn trust_clusters(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 32], Trusted>> {
        self.trust
            .clusters
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The clusters this keyd trusts now (`GET /v1/trust/clusters`): any authenticated
    /// principal (nodes use them to verify and encrypt).
    pub fn trusted_clusters(
        &self,
        principal: &Principal,
    ) -> Result<Vec<TrustedCluster>, ServiceError> {
        self.authorize(principal, Op::TrustList, super::policy::Named::Nothing)?;
        let now = unix_now();
        let mut out: Vec<TrustedCluster> = self
            .trust_clusters()
            .values()
            .filter_map(|t| {
                let (grant, cluster_wide) = self.grant_of(t);
                (!t.record.blocked && now < grant.expires_at).then_some((t, grant, cluster_wide))
            })
            .map(|(t, grant, cluster_wide)| TrustedCluster {
                persona: view(&t.record.persona, &grant),
                cluster_wide,
                chain_entries: t.chain.len(),
                synced_at: t.record.synced_at,
                recorded: format!("{} entry {}", t.record.recorded.0, t.record.recorded.1),
                introduced_by: t.record.introduced_by.map(|r| chain::fingerprint(&r)),
            })
            .collect();
        out.sort_by(|a, b| a.persona.cluster.cmp(&b.persona.cluster));
        Ok(out)
    }

    /// A trusted cluster's chain, as held (verified).
    pub fn trusted_chain(
        &self,
        principal: &Principal,
        root: &str,
    ) -> Result<Vec<u8>, ServiceError> {
        self.authorize(principal, Op::TrustList, super::policy::Named::Nothing)?;
        self.trust_clusters()
            .values()
            .find(|t| !t.record.blocked && t.record.persona.fingerprint() == root)
            .map(|t| t.chain.to_file())
            .ok_or_else(|| ServiceError::NotFound(format!("no trusted cluster of root {root}")))
    }

    /// Whether the cluster of `root` is blocklisted here.
    fn is_blocked(&self, root: &[u8; 32]) -> bool {
        self.trust_clusters()
            .get(root)
            .is_some_and(|t| t.record.blocked)
    }

    /// The key `ed25519` in a trusted cluster's chain, and whether the trust granted to
    /// that cluster allows `permission` now.
    pub fn trusted_key(&self, ed25519: &[u8; 32], permission: &str) -> Option<ForeignKey> {
        let now = unix_now();
        self.trust_clusters().values().find_map(|t| {
            let status = t.chain.state().status_of_key(ed25519, now);
            if matches!(status, KeyStatus::Unknown) || t.record.blocked {
                return None;
            }
            let path = t
                .chain
                .state()
                .path_of(&crate::derive::KeyId::of_bytes(ed25519))?
                .clone();
            Some(ForeignKey {
                cluster: t.record.persona.cluster.clone(),
                path,
                status,
                allowed: self.grant_of(t).0.allows(permission, now),
            })
        })
    }

    /// Records a trust the exchange concluded: the `trust` statement in the branch
    /// log, then the record (the other side's persona and chain).
    fn record_trust(
        &self,
        persona: &Persona,
        grant: &Grant,
        introduced_by: Option<[u8; 32]>,
    ) -> Result<(), ServiceError> {
        let recorded = self.append_trust(persona, grant, introduced_by)?;
        let chain = chain::verify_file(&persona.chain)?;
        let record = Record {
            persona: persona.clone(),
            grant: grant.clone(),
            recorded,
            synced_at: 0,
            blocked: false,
            introduced_by,
        };
        self.store
            .put_trusted(&persona.fingerprint(), &chain::cbor_bytes(&record))?;
        self.audit_event(
            "keyd",
            "trust.record",
            Some(persona.fingerprint()),
            Some(format!(
                "{} ({}) trusted at level {:?}",
                persona.cluster, persona.persona, grant.level
            )),
        );
        self.trust
            .clusters
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(persona.root, Trusted { record, chain });
        Ok(())
    }

    /// Appends the `trust` statement of `grant` to `persona`'s root in the branch log:
    /// where it is.
    fn append_trust(
        &self,
        persona: &Persona,
        grant: &Grant,
        introduced_by: Option<[u8; 32]>,
    ) -> Result<(KeyPath, u64), ServiceError> {
        let body = Body::Trust(chain::Trust {
            cluster: persona.cluster.clone(),
            root: persona.root,
            level: grant.level,
            permissions: grant.permissions.clone(),
            expires_at: grant.expires_at,
            introduced_by: introduced_by.map(|r| chain::fingerprint(&r)),
        });
        self.append(move |svc, w| {
            let st = svc.branch_statement(body)?;
            let seq = w.state().link(&svc.branch_path).next_seq;
            Ok(super::commit::Built {
                statements: vec![st],
                token: None,
                value: (svc.branch_path.clone(), seq),
            })
        })
    }

    /// Ends the trust in the cluster of root `root` (fingerprint): `untrust` in the
    /// branch log, and the root blocklisted (admin, `trust.revoke`).
    pub fn revoke_trust(
        &self,
        principal: &Principal,
        root: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        self.trust_admin(principal, Op::TrustRevoke)?;
        chain::check_text("reason", reason, chain::MAX_REASON, true)
            .map_err(ServiceError::BadRequest)?;
        let mut record = self
            .trust_clusters()
            .values()
            .find(|t| t.record.persona.fingerprint() == root && !t.record.blocked)
            .map(|t| t.record.clone())
            .ok_or_else(|| ServiceError::NotFound(format!("no trusted cluster of root {root}")))?;
        let key = record.persona.root;
        let body = Body::Untrust(Untrust {
            root: key,
            reason: reason.to_owned(),
        });
        self.append(move |svc, _| {
            Ok(super::commit::Built {
                statements: vec![svc.branch_statement(body)?],
                token: None,
                value: (),
            })
        })?;
        record.blocked = true;
        self.store.put_trusted(root, &chain::cbor_bytes(&record))?;
        if let Some(t) = self
            .trust
            .clusters
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key)
        {
            t.record.blocked = true;
        }
        self.audit_event(
            &principal.uri(),
            Op::TrustRevoke.name(),
            Some(root.to_owned()),
            Some(format!("reason: {reason}")),
        );
        Ok(())
    }
}

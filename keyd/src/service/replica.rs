//! One replica of a group (`store = "etcd"`): every replica serves everything from its
//! own unsealed branch and its own copy of the verified state, and follows what the
//! others commit through etcd's watch — a revocation, a rekey or an admin change made
//! at one replica is in force at the others within one watch round-trip.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use super::commit::Built;
use super::policy::Named;
use super::{Service, ServiceError, admins, credentials, lifecycle, policy, suites};
use crate::bundle::{BranchBundle, parse_install_public};
use crate::chain::{Body, Replica, encode_log};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::Op;
use crate::store::StoreError;

/// A replica's view of etcd.
#[derive(Debug, Clone, Copy)]
pub struct StoreHealth {
    /// Calls answered.
    pub calls: u64,
    /// Their total time, seconds.
    pub seconds: f64,
    /// The slowest since last read, seconds.
    pub slowest: f64,
    /// Seconds since etcd last answered.
    pub contact_age: f64,
    /// The watch lag last measured (another replica's heartbeat), seconds.
    pub lag: Option<f64>,
}

impl Service {
    /// Whether this keyd is a replica of a group sharing its state in etcd.
    pub fn replicated(&self) -> bool {
        self.store.shared().is_some()
    }

    /// Starts watching the group's state: the names of the tables that changed, an
    /// empty list for "look at everything" (at the start and after the watch restarts).
    pub fn watch(&self) -> Option<Receiver<Vec<String>>> {
        let etcd = self.store.shared()?;
        let (tx, rx) = channel();
        etcd.watch(0, tx);
        Some(rx)
    }

    /// Applies what another replica changed (`tables`: as [`Service::watch`] gives).
    pub fn follow(&self, tables: &[String]) -> Result<(), ServiceError> {
        let has = |t: &str| tables.is_empty() || tables.iter().any(|x| x == t);
        if has("size") || has("heads") {
            self.follow_logs()?;
        }
        if has("revoked_admins") {
            *self
                .revoked_admins
                .write()
                .unwrap_or_else(|e| e.into_inner()) = admins::load(&self.store)?;
        }
        if has("generations") {
            *self.generations.write().unwrap_or_else(|e| e.into_inner()) =
                credentials::load(&self.store)?;
        }
        if has("suites") {
            *self.suites.write().unwrap_or_else(|e| e.into_inner()) = suites::load(&self.store)?;
        }
        if has("policies") {
            *self.policy.write().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(policy::load(&self.store)?);
        }
        if has("min_epochs") {
            *self.min_epochs.write().unwrap_or_else(|e| e.into_inner()) =
                lifecycle::load(&self.store)?;
        }
        if has("trusted") {
            self.trust.reload(&self.store)?;
        }
        Ok(())
    }

    /// Brings the chain in memory up to what etcd holds: the entries other replicas
    /// appended (and mirrored), verified as any pulled log is; how many were new. etcd
    /// is read without holding the chain's lock (key operations never wait for it); on
    /// a refusal the chain is restored from the store.
    pub fn follow_logs(&self) -> Result<usize, ServiceError> {
        if !self.replicated() {
            return Ok(0);
        }
        for _ in 0..3 {
            let sizes = self.store.shared_sizes()?;
            let held: Vec<(KeyPath, u64, u64)> = {
                let chain = self.read_chain();
                sizes
                    .iter()
                    .filter_map(|(log, size)| {
                        let path = log.parse::<KeyPath>().ok()?;
                        let n = chain.log_len(&path);
                        (*size > n).then_some((path, n, *size))
                    })
                    .collect()
            };
            if held.is_empty() {
                return Ok(0);
            }
            let mut bytes = Vec::new();
            for (path, from, _) in &held {
                let (entries, head) = self.store.log_tail(&path.to_string(), *from)?;
                encode_log(&mut bytes, &entries, head.as_ref());
            }
            let mut chain = self.chain.write().unwrap_or_else(|e| e.into_inner());
            if held
                .iter()
                .any(|(path, from, _)| chain.log_len(path) != *from)
            {
                continue; // moved meanwhile (a commit, another follow): read again
            }
            let result = chain.update(&bytes).and_then(|n| {
                chain.check_complete()?;
                Ok(n)
            });
            return match result {
                Ok(n) => Ok(n),
                Err(e) => {
                    tracing::error!(error = %e, "replica: what etcd holds does not verify; reloading");
                    *chain = self.reload_chain()?;
                    Err(e.into())
                }
            };
        }
        Ok(0)
    }

    /// Refuses a change at once when etcd has not answered lately, rather than hold the
    /// chain's lock (and every key operation behind it) for an etcd timeout.
    pub(super) fn require_reachable(&self) -> Result<(), ServiceError> {
        let Some(etcd) = self.store.shared() else {
            return Ok(());
        };
        if etcd
            .last_contact()
            .is_none_or(|t| t.elapsed() > super::READY_CONTACT)
        {
            return Err(StoreError::Unavailable {
                what: etcd.describe(),
                detail: format!(
                    "no answer in the last {} s: state changes are refused until a quorum answers",
                    super::READY_CONTACT.as_secs()
                ),
            }
            .into());
        }
        Ok(())
    }

    /// Refuses key operations once etcd has not answered for longer than the grace:
    /// until then they go on from the last verified state (a revocation made at
    /// another replica could otherwise be missed for ever).
    pub(super) fn require_fresh(&self) -> Result<(), ServiceError> {
        let (Some(etcd), Some(settings)) = (self.store.shared(), &self.config.etcd) else {
            return Ok(());
        };
        let since = etcd.last_contact().map(|t| t.elapsed());
        if since.is_none_or(|s| s > settings.grace) {
            return Err(StoreError::Unavailable {
                what: etcd.describe(),
                detail: format!(
                    "not reached for longer than the grace ({} s): key operations stop until it answers",
                    settings.grace.as_secs()
                ),
            }
            .into());
        }
        Ok(())
    }

    /// Asks etcd for a quorum read and writes this replica's heartbeat (the health
    /// thread, every second).
    pub fn ping_store(&self) -> Result<(), ServiceError> {
        match self.store.shared() {
            Some(etcd) => {
                etcd.ping()?;
                Ok(etcd.beat()?)
            }
            None => Ok(()),
        }
    }

    /// A replica's view of etcd, for `/metrics`.
    pub fn store_health(&self) -> Option<StoreHealth> {
        let etcd = self.store.shared()?;
        let (calls, seconds, slowest) = etcd.latency().read();
        Some(StoreHealth {
            calls,
            seconds,
            slowest,
            contact_age: etcd
                .last_contact()
                .map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64()),
            lag: etcd.watch_lag().map(|d| d.as_secs_f64()),
        })
    }
}

/// `chain` without the entries of `log` from `first` on, and with its head as it was
/// (`head`): a group that etcd did not take, undone in memory alone (etcd may be out of
/// reach, so it cannot be read back).
pub(super) fn rolled_back(
    chain: &crate::chain::Chain,
    log: &KeyPath,
    first: usize,
    head: Option<crate::chain::Head>,
) -> Result<crate::chain::Chain, ServiceError> {
    let mut logs = crate::store::StoredLogs::new();
    for (path, held) in chain.logs() {
        let (entries, head) = if path == log {
            (
                held.entries[..first.min(held.entries.len())].to_vec(),
                head.clone(),
            )
        } else {
            (held.entries.clone(), held.head.clone())
        };
        logs.insert(path.clone(), crate::store::StoredLog::of(entries, head));
    }
    super::chain_of(logs)
}

impl Service {
    /// Approves a new replica (admin, `admin.replica`): records `replica add` (its name
    /// and install key) in the branch log, then seals the branch to that install key
    /// with the root log and the branch log, as a ceremony's bundle is — no root
    /// needed. The new replica `keyd import`s it and joins the group. Audited.
    pub fn add_replica(
        &self,
        principal: &Principal,
        name: &str,
        install_key: &str,
    ) -> Result<Vec<u8>, ServiceError> {
        let key = self.check_replica_request(principal, install_key)?;
        self.record_replica(name, key, "add")?;
        let chain = self.own_logs()?;
        let bundle = BranchBundle::seal(
            &self.branch_name,
            &self.branch_path,
            &self.branch,
            &key,
            chain,
        )
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        self.audit_event(
            &principal.uri(),
            Op::AdminReplica.name(),
            Some(name.to_owned()),
            Some(format!(
                "added; branch sealed to install key {}",
                hex::encode(key)
            )),
        );
        Ok(bundle.to_cbor())
    }

    /// Removes a replica (admin, `admin.replica`): records `replica remove` with its
    /// install key in the branch log. The removed replica stops serving as soon as it
    /// sees the entry (it still holds the branch secret under its seal token: destroy
    /// the token, or rekey the branch from the root, when the host is not trusted).
    pub fn remove_replica(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<crate::wire::ReplicaInfo, ServiceError> {
        self.authorize(principal, Op::AdminReplica, Named::Nothing)?;
        let key = self
            .read_chain()
            .state()
            .replicas(&self.branch_path)
            .find(|(n, r)| *n == name && r.removed.is_none())
            .map(|(_, r)| r.install_key)
            .ok_or_else(|| {
                ServiceError::NotFound(format!("no replica {name:?} in the branch log"))
            })?;
        self.record_replica(name, key, "remove")?;
        self.audit_event(
            &principal.uri(),
            Op::AdminReplica.name(),
            Some(name.to_owned()),
            Some(format!("removed; install key {} revoked", hex::encode(key))),
        );
        self.list_replicas(principal)?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| ServiceError::NotFound(format!("no replica {name:?}")))
    }

    fn check_replica_request(
        &self,
        principal: &Principal,
        install_key: &str,
    ) -> Result<[u8; 32], ServiceError> {
        self.authorize(principal, Op::AdminReplica, Named::Nothing)?;
        if !self.replicated() {
            return Err(ServiceError::BadRequest(
                "this keyd keeps its state in its own redb file; replicas share theirs in etcd (store = \"etcd\")".into(),
            ));
        }
        parse_install_public(install_key)
            .map_err(|e| ServiceError::BadRequest(format!("install_key: {e}")))
    }

    fn record_replica(
        &self,
        name: &str,
        install_key: [u8; 32],
        action: &str,
    ) -> Result<(), ServiceError> {
        let body = Body::Replica(Replica {
            name: name.to_owned(),
            install_key,
            action: action.to_owned(),
        });
        body.check_bounds().map_err(ServiceError::BadRequest)?;
        self.append(move |svc, _| {
            Ok(Built {
                statements: vec![svc.branch_statement(body)?],
                token: None,
                value: (),
            })
        })
    }

    /// The replicas the branch log records (admin, `admin.replica`).
    pub fn list_replicas(
        &self,
        principal: &Principal,
    ) -> Result<Vec<crate::wire::ReplicaInfo>, ServiceError> {
        self.authorize(principal, Op::AdminReplica, Named::Nothing)?;
        Ok(self
            .read_chain()
            .state()
            .replicas(&self.branch_path)
            .map(|(name, r)| crate::wire::ReplicaInfo {
                name: name.to_owned(),
                install_key: hex::encode(r.install_key),
                added_seq: r.added,
                removed_seq: r.removed,
            })
            .collect())
    }

    /// Refuses everything once the branch log records this replica as removed.
    pub(super) fn require_member(&self) -> Result<(), ServiceError> {
        let Some(settings) = &self.config.etcd else {
            return Ok(());
        };
        let me = settings.store.replica.as_str();
        let chain = self.read_chain();
        match chain
            .state()
            .replicas(&self.branch_path)
            .find(|(n, _)| *n == me)
        {
            Some((_, r)) if r.removed.is_some() => Err(ServiceError::Forbidden(format!(
                "replica {me} was removed from its group (branch log {} entry {}): it serves nothing",
                self.branch_path,
                r.removed.unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }
}

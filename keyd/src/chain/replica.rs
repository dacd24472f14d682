//! The rules of `replica`: a branch records the replicas of its keyd group (etcd) in
//! its own log — each added once under a name with its install key, removed at most
//! once, a removed name never added again.

use super::error::Rule;
use super::state::{ChainState, ReplicaRecord};
use super::statement::{Replica, Statement};
use crate::derive::KeyPath;

impl ChainState {
    /// Only the branch signs its replicas, in its own log; an added name is not added
    /// again, only an added one is removed, and only once.
    pub(super) fn check_replica(
        &self,
        log: &KeyPath,
        st: &Statement,
        r: &Replica,
    ) -> Result<Option<ed25519_dalek::VerifyingKey>, Rule> {
        if log.depth() != 1 || st.signer != *log {
            return Err(Self::no_authority(
                st,
                "a branch records its replicas in its own log, signed by the branch key".into(),
            ));
        }
        match (
            r.action.as_str(),
            self.replicas.get(&(log.clone(), r.name.clone())),
        ) {
            ("add", None) => Ok(None),
            ("add", Some(_)) => Err(Rule::NameTaken {
                name: r.name.clone(),
                path: log.clone(),
            }),
            ("remove", Some(rec)) if rec.removed.is_none() && rec.install_key == r.install_key => {
                Ok(None)
            }
            (
                "remove",
                Some(ReplicaRecord {
                    removed: Some(seq), ..
                }),
            ) => Err(Rule::AlreadyRevoked {
                target: log.clone(),
                seq: *seq,
            }),
            _ => Err(Rule::UnknownTarget {
                target: log.clone(),
            }),
        }
    }

    pub(super) fn apply_replica(&mut self, log: &KeyPath, r: &Replica, seq: u64) {
        let key = (log.clone(), r.name.clone());
        if r.action == "add" {
            self.replicas.insert(
                key,
                ReplicaRecord {
                    install_key: r.install_key,
                    added: seq,
                    removed: None,
                },
            );
        } else if let Some(rec) = self.replicas.get_mut(&key) {
            rec.removed = Some(seq);
        }
    }

    /// The replicas branch `branch`'s log records, by name.
    pub fn replicas(&self, branch: &KeyPath) -> impl Iterator<Item = (&str, &ReplicaRecord)> {
        self.replicas
            .iter()
            .filter(move |((b, _), _)| b == branch)
            .map(|((_, name), rec)| (name.as_str(), rec))
    }
}

//! Client credentials: every certificate keyd issues is recorded (serial, principal,
//! generation, expiry), and each principal has a credential generation. Enrollment
//! starts a new generation; renewal keeps it, for at most `credential_max` after it
//! started; revoking a principal's credentials ends its generation at once, so a copied
//! certificate and key (or one renewed from a copy) are refused from the next request,
//! across restarts, without touching the principal's keys. Only an admin's re-enrollment
//! starts a new generation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{CredentialRevocation, Generation, Service, ServiceError, unix_now};
use crate::chain::{self, cbor_bytes};
use crate::identity::{Ca, Issued, Principal};
use crate::policy::Op;
use crate::store::{Checked, Store, StoreError};

/// The stored record of an issued certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuedRecord {
    principal: String,
    generation: u32,
    issued_at: u64,
    not_after: u64,
}

/// The generation a principal whose record was tampered with is held at (revoked):
/// above any generation keyd issued, so re-enrollment starts a fresh one.
const TAMPERED_GENERATION: u32 = 1 << 30;

/// The generation records in `store`, by principal.
pub(super) fn load(store: &Store) -> Result<HashMap<Principal, Generation>, ServiceError> {
    let mut out = HashMap::new();
    for (key, bytes) in store.generations()? {
        let corrupt = |detail: String| StoreError::Corrupt {
            path: store.path().to_owned(),
            what: format!("credential generation of {key:?}"),
            detail,
        };
        let principal =
            Principal::from_uri(&key).ok_or_else(|| corrupt("not a principal".into()))?;
        let record: Generation = match bytes {
            Checked::Valid(bytes) => {
                chain::decode_exact(&bytes, 4096).map_err(|e| corrupt(e.to_string()))?
            }
            // Fail closed: no certificate of this principal counts until an admin
            // re-enrolls it, which starts a generation above any issued before.
            Checked::Tampered => Generation {
                generation: TAMPERED_GENERATION,
                started_at: 0,
                revoked: Some(CredentialRevocation {
                    by: "keyd".into(),
                    at: 0,
                    reason: super::admins::TAMPERED.into(),
                }),
            },
        };
        out.insert(normal(&principal), record);
    }
    Ok(out)
}

/// A principal as credentials are keyed: admin names in lowercase.
fn normal(p: &Principal) -> Principal {
    match p {
        Principal::Admin(n) => Principal::Admin(n.to_lowercase()),
        Principal::Node(_) => p.clone(),
    }
}

/// The next generation of a principal whose current one is `current`.
fn next(current: Option<&Generation>) -> Generation {
    Generation {
        generation: current.map_or(0, |g| g.generation.saturating_add(1)),
        started_at: unix_now(),
        revoked: None,
    }
}

fn issued_row(principal: &Principal, generation: u32, issued: &Issued) -> Vec<u8> {
    cbor_bytes(&IssuedRecord {
        principal: principal.uri(),
        generation,
        issued_at: unix_now(),
        not_after: issued.not_after,
    })
}

/// Issues a new admin credential (at `keyd import` and `keyd admin issue`, keyd
/// stopped): a new generation for the name, so that every earlier credential of that
/// name ends; recorded in `store`.
pub fn issue_admin(
    store: &Store,
    ca: &Ca,
    name: &str,
    seconds: u64,
) -> Result<(Issued, Zeroizing<String>), ServiceError> {
    let principal = Principal::Admin(name.to_owned());
    let current = load(store)?.remove(&normal(&principal));
    let generation = next(current.as_ref());
    let (issued, key) = ca.client_credential(&principal, generation.generation, name, seconds)?;
    let key_text = principal.credential_key();
    store.put_credentials(
        None,
        &[(&key_text, &cbor_bytes(&generation))],
        &[(
            &issued.serial,
            &issued_row(&principal, generation.generation, &issued),
        )],
    )?;
    Ok((issued, key))
}

impl Service {
    /// Checks that a certificate of credential `generation` still counts for
    /// `principal`: it is the principal's current generation, not revoked.
    pub fn check_credential(
        &self,
        principal: &Principal,
        generation: u32,
    ) -> Result<(), ServiceError> {
        let generations = self.generations.read().unwrap_or_else(|e| e.into_inner());
        let found = match principal {
            Principal::Node(_) => generations.get(principal),
            Principal::Admin(_) => generations.get(&normal(principal)),
        };
        match found {
            // Every certificate keyd issues is recorded with its generation: a principal
            // without a record holds none that counts (its record was removed?).
            None => Err(ServiceError::Revoked(format!(
                "{} has no credential record in this keyd (generation {generation}); an admin re-enrolls it",
                principal.uri()
            ))),
            Some(Generation {
                revoked: Some(r), ..
            }) => Err(ServiceError::Revoked(format!(
                "the credentials of {} were revoked by {} at {} ({}); an admin re-enrolls it",
                principal.uri(),
                r.by,
                r.at,
                r.reason
            ))),
            Some(g) if g.generation != generation => Err(ServiceError::Revoked(format!(
                "this certificate of {} belongs to credential generation {generation}, which ended (the current one is {}); it was copied, or the principal re-enrolled",
                principal.uri(),
                g.generation
            ))),
            Some(_) => Ok(()),
        }
    }

    /// A new client certificate of `principal` for the key in `csr_pem`, in credential
    /// `generation`; with `token`, the enrollment token is spent in the same
    /// transaction that records the certificate (and, for a new generation, the
    /// generation). `BadToken` when the token was spent meanwhile.
    pub(super) fn issue_client_cert(
        &self,
        principal: &Principal,
        generation: &Generation,
        new_generation: bool,
        csr_pem: &str,
        token: Option<&[u8]>,
    ) -> Result<String, ServiceError> {
        let issued = self.ca.client_cert_from_csr(
            csr_pem,
            principal,
            generation.generation,
            &self.name_of(principal),
            self.config.client_cert_seconds,
        )?;
        let key = principal.credential_key();
        let generation_row = cbor_bytes(generation);
        let generations: &[(&str, &[u8])] = if new_generation {
            &[(&key, &generation_row)]
        } else {
            &[]
        };
        let row = issued_row(principal, generation.generation, &issued);
        if !self
            .store
            .put_credentials(token, generations, &[(&issued.serial, &row)])?
        {
            return Err(ServiceError::BadToken);
        }
        if new_generation {
            self.generations
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(normal(principal), generation.clone());
        }
        tracing::info!(principal = %principal.uri(), generation = generation.generation,
            serial = %issued.serial, "client certificate issued");
        self.audit_event(
            &principal.uri(),
            "certificate.issue",
            None,
            Some(format!(
                "serial {}, generation {}",
                issued.serial, generation.generation
            )),
        );
        Ok(issued.pem)
    }

    /// The next credential generation of `principal` (enrollment).
    pub(super) fn next_generation(&self, principal: &Principal) -> Generation {
        let generations = self.generations.read().unwrap_or_else(|e| e.into_inner());
        next(generations.get(&normal(principal)))
    }

    /// The current generation of `principal`, for a renewal of a certificate of
    /// `generation`: refused once the generation is older than `credential_max`.
    pub(super) fn renewable_generation(
        &self,
        principal: &Principal,
        generation: u32,
    ) -> Result<Generation, ServiceError> {
        let current = self
            .generations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&normal(principal))
            .cloned()
            .unwrap_or(Generation {
                generation,
                started_at: 0,
                revoked: None,
            });
        let max = self.config.credential_max.as_secs();
        let age = unix_now().saturating_sub(current.started_at);
        if current.started_at == 0 || age > max {
            return Err(ServiceError::Revoked(format!(
                "the credential of {} (generation {}) is {age} s old, more than credential_max ({max} s): renewal is refused; an admin re-enrolls it (keyctl node reenroll NAME, or keyd admin issue for an admin)",
                principal.uri(),
                current.generation
            )));
        }
        Ok(current)
    }

    /// The principal of node `name` (a name or path below this keyd's branch).
    pub fn node_principal(&self, name: &str) -> Result<Principal, ServiceError> {
        let chain = self.read_chain();
        let (path, _) = chain
            .state()
            .find_in(name, &self.branch_path)
            .ok_or_else(|| ServiceError::NotFound(format!("no node {name:?}")))?;
        // A named key is no principal: it holds no credential.
        if !self.branch_path.is_prefix_of(path) || *path == self.branch_path || !path.is_node() {
            return Err(ServiceError::Forbidden(format!(
                "{path} is not a node below this keyd's branch {}",
                self.branch_path
            )));
        }
        Ok(Principal::Node(path.clone()))
    }

    /// The principal of admin `name`.
    pub fn admin_principal(&self, name: &str) -> Result<Principal, ServiceError> {
        chain::check_name(name).map_err(ServiceError::BadRequest)?;
        Ok(Principal::Admin(name.to_owned()))
    }

    /// Ends every credential of node `target` (a name or path below this keyd's branch)
    /// or of admin `target`, at once, without touching any key (admin). The principal
    /// needs an admin's re-enrollment to get a credential again.
    pub fn revoke_credentials(
        &self,
        principal: &Principal,
        target: &Principal,
        reason: &str,
    ) -> Result<Generation, ServiceError> {
        let Principal::Admin(by) = principal else {
            return Err(ServiceError::Forbidden(
                "a node cannot revoke credentials".into(),
            ));
        };
        match target {
            Principal::Node(p) => self.authorize_on(principal, Op::NodeCredentialsRevoke, p)?,
            Principal::Admin(name) => self.authorize(
                principal,
                Op::AdminCredentialsRevoke,
                super::policy::Named::Admin(name),
            )?,
        }
        chain::check_text("reason", reason, chain::MAX_REASON, true)
            .map_err(ServiceError::BadRequest)?;
        if normal(target) == normal(principal) {
            return Err(ServiceError::Forbidden(
                "an admin cannot revoke its own credentials; ask another admin".into(),
            ));
        }
        let mut generations = self.generations.write().unwrap_or_else(|e| e.into_inner());
        let mut record = generations
            .get(&normal(target))
            .cloned()
            .unwrap_or_else(|| next(None));
        if record.revoked.is_none() {
            record.revoked = Some(CredentialRevocation {
                by: by.clone(),
                at: unix_now(),
                reason: reason.to_owned(),
            });
            let key = target.credential_key();
            self.store
                .put_credentials(None, &[(&key, &cbor_bytes(&record))], &[])?;
            generations.insert(normal(target), record.clone());
            tracing::info!(principal = %target.uri(), by = %by, "credentials revoked");
            let op = match target {
                Principal::Node(_) => Op::NodeCredentialsRevoke,
                Principal::Admin(_) => Op::AdminCredentialsRevoke,
            };
            self.audit_event(
                &principal.uri(),
                op.name(),
                Some(target.uri()),
                Some(format!("reason: {reason}")),
            );
        }
        Ok(record)
    }
}

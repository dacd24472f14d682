//! Admin credentials: revocation by name. Admin certificates are not in the chain; keyd
//! keeps the revoked names in its store and refuses them on their very next request.
//! Names compare without regard to case (`Ops` is `ops`).

use std::collections::HashMap;

use super::policy::Named;
use super::{AdminRevocation, Service, ServiceError, unix_now};
use crate::chain::{self, cbor_bytes};
use crate::identity::Principal;
use crate::policy::Op;
use crate::store::{Checked, Store, StoreError};

/// The revoked admin names in `store`. A row that fails its integrity tag counts as a
/// revocation (fail closed): an edited revocation never re-opens an admin.
pub(super) fn load(store: &Store) -> Result<HashMap<String, AdminRevocation>, ServiceError> {
    store
        .revoked_admins()?
        .into_iter()
        .map(|(name, row)| {
            let record = match row {
                Checked::Valid(bytes) => {
                    chain::decode_exact(&bytes, 64 * 1024).map_err(|e| StoreError::Corrupt {
                        path: store.path().to_owned(),
                        what: format!("revoked admin {name:?}"),
                        detail: e.to_string(),
                    })?
                }
                Checked::Tampered => AdminRevocation {
                    name: name.clone(),
                    by: "keyd".into(),
                    at: 0,
                    reason: TAMPERED.into(),
                },
            };
            Ok((name.to_lowercase(), record))
        })
        .collect()
}

/// The reason keyd gives for a principal whose stored record failed its integrity tag.
pub(super) const TAMPERED: &str = "its stored record failed the integrity check (added or edited outside keyd); refused until an admin acts";

impl Service {
    /// Why an admin name may no longer authenticate, if it was revoked.
    pub(super) fn admin_revoked(&self, name: &str) -> Option<String> {
        let revoked = self
            .revoked_admins
            .read()
            .unwrap_or_else(|e| e.into_inner());
        revoked.get(&name.to_lowercase()).map(|r| {
            format!(
                "admin credential {name} was revoked by {} at {} ({})",
                r.by, r.at, r.reason
            )
        })
    }

    /// Revokes every credential naming admin `name` (admin; not one's own).
    pub fn revoke_admin(
        &self,
        principal: &Principal,
        name: &str,
        reason: &str,
    ) -> Result<AdminRevocation, ServiceError> {
        let Principal::Admin(by) = principal else {
            return Err(ServiceError::Forbidden(
                "a node cannot revoke admin credentials".into(),
            ));
        };
        chain::check_name(name).map_err(ServiceError::BadRequest)?;
        self.authorize(principal, Op::AdminRevoke, Named::Admin(name))?;
        chain::check_text("reason", reason, chain::MAX_REASON, true)
            .map_err(ServiceError::BadRequest)?;
        let key = name.to_lowercase();
        if by.to_lowercase() == key {
            return Err(ServiceError::Forbidden(
                "an admin cannot revoke its own credential; ask another admin".into(),
            ));
        }
        let record = AdminRevocation {
            name: name.to_owned(),
            by: by.clone(),
            at: unix_now(),
            reason: reason.to_owned(),
        };
        let mut revoked = self
            .revoked_admins
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // The revoker may itself have been revoked since it authenticated.
        if revoked.contains_key(&by.to_lowercase()) {
            return Err(ServiceError::Revoked(format!(
                "admin credential {by} was revoked"
            )));
        }
        if let Some(earlier) = revoked.get(&key) {
            return Ok(earlier.clone());
        }
        self.store.revoke_admin(&key, &cbor_bytes(&record))?;
        revoked.insert(key, record.clone());
        tracing::info!(admin = %name, by = %by, "admin credential revoked");
        self.audit_event(
            &principal.uri(),
            Op::AdminRevoke.name(),
            Some(format!("admin:{name}")),
            Some(format!("reason: {reason}")),
        );
        Ok(record)
    }

    /// The revoked admin names, sorted (admin).
    pub fn revoked_admins(
        &self,
        principal: &Principal,
    ) -> Result<Vec<AdminRevocation>, ServiceError> {
        Self::require_admin(principal)?;
        self.authorize(principal, Op::AdminList, Named::Nothing)?;
        let revoked = self
            .revoked_admins
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<AdminRevocation> = revoked.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

//! Nodes joining: node creation with a one-time token, enrollment (a client certificate,
//! and in exported mode the node's sealed identity secret), certificate renewal.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::commit::Built;
use super::policy::Named;
use super::{EnrollMode, Service, ServiceError, unix_now};
use crate::bundle::{self, BranchBundle};
use crate::chain::{self, Body, Certify, Epoch, KeyKind, Statement};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::Op;

/// An enrollment token's stored record.
#[derive(Serialize, Deserialize)]
struct TokenRecord {
    path: KeyPath,
    expires_at: u64,
    #[serde(default)]
    mode: EnrollMode,
}

/// What enrollment gives a node.
#[derive(Debug)]
pub struct Enrolled {
    /// Its client certificate (PEM).
    pub certificate: String,
    /// Its path.
    pub path: KeyPath,
    /// Its mode.
    pub mode: EnrollMode,
    /// In exported mode: a [`BranchBundle`] (CBOR) holding the node's identity secret,
    /// sealed to the install key the node sent, with the chain that certifies it.
    pub bundle: Option<Vec<u8>>,
}

use crate::policy::MAX_NODE_SECONDS;

impl Service {
    /// Removes the enrollment tokens that expired unused (soon after start, then daily):
    /// how many. A record that does not decode is kept (and refused if ever presented).
    pub fn purge_expired_tokens(&self) -> Result<usize, ServiceError> {
        let now = unix_now();
        Ok(self.store.purge_tokens(|record| {
            chain::decode_exact::<TokenRecord>(record, 4096).is_ok_and(|r| r.expires_at < now)
        })?)
    }

    /// Creates a node under `parent` (a name or path; default the branch), certified by
    /// the parent with epoch 0, and a one-time enrollment token for it:
    /// `(path, token, expires_at)`. In `mode` exported, enrollment also hands the node
    /// its identity secret, sealed to a key the node generates.
    pub fn add_node(
        &self,
        principal: &Principal,
        name: &str,
        parent: Option<&str>,
        mode: EnrollMode,
        valid_seconds: Option<u64>,
    ) -> Result<(KeyPath, Zeroizing<String>, u64), ServiceError> {
        Self::require_admin(principal)?;
        let parent_path = match parent {
            None => self.branch_path.clone(),
            Some(p) => self.resolve(p)?,
        };
        self.authorize_on(principal, Op::NodeAdd, &parent_path)?;
        chain::check_name(name).map_err(ServiceError::BadRequest)?;
        let valid_seconds = match valid_seconds {
            None => None,
            Some(s) if (1..=MAX_NODE_SECONDS).contains(&s) => Some(s),
            Some(s) => {
                return Err(ServiceError::BadRequest(format!(
                    "valid_seconds: {s}; 1 to {MAX_NODE_SECONDS} (5 years)"
                )));
            }
        };
        let (token, hash, expires_at) = self.new_token(mode)?;
        let (name, parent) = (name.to_owned(), parent.map(str::to_owned));
        let path = self.append(move |svc, w| {
            let state = w.state();
            let parent_path = match parent {
                None => svc.branch_path.clone(),
                Some(p) => state
                    .find_in(&p, &svc.branch_path)
                    .map(|(p, _)| p.clone())
                    .ok_or_else(|| ServiceError::NotFound(format!("no node {p:?}")))?,
            };
            if !svc.branch_path.is_prefix_of(&parent_path) {
                return Err(ServiceError::Forbidden(format!(
                    "{parent_path} is not in this keyd's branch {}: a keyd adds nodes only below its own branch",
                    svc.branch_path
                )));
            }
            if !parent_path.is_node()
                || !matches!(
                    state.key(&parent_path).map(|r| &r.kind),
                    Some(KeyKind::Node { .. })
                )
            {
                return Err(ServiceError::BadRequest(format!(
                    "{parent_path} is not a node"
                )));
            }
            // Children are numbered in order; an index is never given twice, even after
            // its node is revoked.
            let path = Some(state.next_child_index(&parent_path))
                .filter(|n| *n < 1 << 31)
                .and_then(|n| parent_path.child_node(n))
                .filter(|c| state.key(c).is_none())
                .ok_or_else(|| ServiceError::BadRequest("no free child index".into()))?;
            // Unless the request says, the policy's node_validity for the new node, or
            // the longest.
            let valid_seconds = valid_seconds
                .or_else(|| svc.policy().policy.lifecycle(&path, Some(&name)).node_validity)
                .unwrap_or(MAX_NODE_SECONDS);
            let epoch_path = path
                .epoch_key(0)
                .ok_or_else(|| ServiceError::BadRequest("path too deep".into()))?;
            let now = unix_now();
            let node = svc.derived(&path)?;
            let parent_key = svc.material(&parent_path)?;
            let epoch_key = svc.derived(&epoch_path)?;
            let certify = Statement::sign(
                Body::Certify(Certify {
                    path: path.clone(),
                    name: name.to_owned(),
                    role: "node".to_owned(),
                    keys: (&node.public_keys()).into(),
                    not_before: now.saturating_sub(300),
                    not_after: now + valid_seconds,
                }),
                parent_path,
                now,
                parent_key.signing_key(),
            );
            let epoch = Statement::sign(
                Body::Epoch(Epoch {
                    node: path.clone(),
                    epoch: 0,
                    keys: (&epoch_key.public_keys()).into(),
                }),
                path.clone(),
                now,
                node.signing_key(),
            );
            let record = chain::cbor_bytes(&TokenRecord {
                path: path.clone(),
                expires_at,
                mode,
            });
            Ok(Built {
                statements: vec![certify, epoch],
                token: Some((hash, record)),
                value: path,
            })
        })?;
        self.audit_event(
            &principal.uri(),
            Op::NodeAdd.name(),
            Some(path.to_string()),
            Some(format!("mode {}", mode.name())),
        );
        Ok((path, token, expires_at))
    }

    /// A fresh one-time token: the token, its SHA-256 (what the store keys it by) and
    /// its expiry. An exported-mode token begins with [`crate::EXPORTED_TOKEN_PREFIX`], so that
    /// the node sends its install key with its first request.
    fn new_token(
        &self,
        mode: EnrollMode,
    ) -> Result<(Zeroizing<String>, Vec<u8>, u64), ServiceError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        getrandom::fill(raw.as_mut())
            .map_err(|e| ServiceError::BadRequest(format!("randomness: {e}")))?;
        let prefix = match mode {
            EnrollMode::Held => "",
            EnrollMode::Exported => crate::EXPORTED_TOKEN_PREFIX,
        };
        let token = Zeroizing::new(format!("{prefix}{}", hex::encode(raw.as_ref())));
        let hash = Sha256::digest(token.as_bytes()).to_vec();
        Ok((token, hash, unix_now() + self.config.enroll_token_seconds))
    }

    /// A new one-time enrollment token for an existing, valid node below this keyd's
    /// branch (admin): its enrollment starts a new credential generation, ending every
    /// earlier certificate of the node. `(path, token, expires_at)`.
    pub fn reenroll(
        &self,
        principal: &Principal,
        target: &str,
        mode: EnrollMode,
    ) -> Result<(KeyPath, Zeroizing<String>, u64), ServiceError> {
        Self::require_admin(principal)?;
        self.authorize_on(principal, Op::NodeReenroll, &self.resolve(target)?)?;
        self.require_serving()?;
        let path = {
            let chain = self.read_chain();
            let state = chain.state();
            let (path, record) = state
                .find_in(target, &self.branch_path)
                .ok_or_else(|| ServiceError::NotFound(format!("no node {target:?}")))?;
            // A named key never holds a TLS identity.
            if !matches!(record.kind, KeyKind::Node { .. })
                || !path.is_node()
                || !self.branch_path.is_prefix_of(path)
                || *path == self.branch_path
            {
                return Err(ServiceError::Forbidden(format!(
                    "{path} is not a node below this keyd's branch {}",
                    self.branch_path
                )));
            }
            let status = state.status_at(path, unix_now());
            if !status.is_valid() {
                return Err(ServiceError::PartyNotValid(format!(
                    "{path} cannot re-enroll: {status}"
                )));
            }
            path.clone()
        };
        let (token, hash, expires_at) = self.new_token(mode)?;
        let record = chain::cbor_bytes(&TokenRecord {
            path: path.clone(),
            expires_at,
            mode,
        });
        self.store.put_token(&hash, &record)?;
        tracing::info!(node = %path, "re-enrollment token issued");
        self.audit_event(
            &principal.uri(),
            Op::NodeReenroll.name(),
            Some(path.to_string()),
            Some(format!("mode {}", mode.name())),
        );
        Ok((path, token, expires_at))
    }

    /// Redeems an enrollment token (once) for a client certificate for the key in
    /// `csr_pem`; in exported mode `install_key` (64 hex digits, X25519) is required and
    /// the node's identity secret comes back sealed to it. The token is spent only when
    /// everything else succeeded, and only once even under concurrent redemptions.
    pub fn enroll(
        &self,
        token: &str,
        csr_pem: &str,
        install_key: Option<&str>,
    ) -> Result<Enrolled, ServiceError> {
        let install_key = install_key
            .map(bundle::parse_install_public)
            .transpose()
            .map_err(|e| ServiceError::BadRequest(format!("install_key: {e}")))?;
        let hash = Sha256::digest(token.trim().as_bytes());
        let record = self.store.token(&hash)?.ok_or(ServiceError::BadToken)?;
        let record: TokenRecord =
            chain::decode_exact(&record, 4096).map_err(|_| ServiceError::BadToken)?;
        if record.expires_at < unix_now() {
            return Err(ServiceError::BadToken);
        }
        let path = record.path;
        // A token names a node strictly below the branch; anything else was not written
        // by this keyd.
        if !self.branch_path.is_prefix_of(&path) || path == self.branch_path {
            tracing::error!(node = %path, "an enrollment token names a node outside the branch; refused");
            return Err(ServiceError::BadToken);
        }
        match (record.mode, install_key) {
            (EnrollMode::Held, Some(_)) => {
                return Err(ServiceError::WrongMode(format!(
                    "install_key: {path} enrolls in held mode: its keys stay in keyd"
                )));
            }
            (EnrollMode::Exported, None) => {
                return Err(ServiceError::WrongMode(format!(
                    "install_key: required: {path} enrolls in exported mode"
                )));
            }
            _ => {}
        }
        let principal = self.authenticate(Some(Principal::Node(path.clone())))?;
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            ServiceError::BadRequest(format!("csr: not a PEM certificate signing request: {e}"))
        })?;
        let bundle = match install_key {
            None => None,
            Some(key) => {
                // No chain inside: the response's `chain` certifies the node, and a
                // second copy would only double a reply that grows with the branch.
                let secret = self.secret_at(&path)?;
                let sealed =
                    BranchBundle::seal(&self.name_of(&principal), &path, &secret, &key, Vec::new())
                        .map_err(|e| ServiceError::BadRequest(format!("install_key: {e}")))?;
                Some(sealed.to_cbor())
            }
        };
        // Enrollment starts a new credential generation: every earlier certificate of
        // the node ends. The token is spent in the same transaction that records the
        // certificate, last: a request refused above leaves it usable.
        let generation = self.next_generation(&principal);
        let certificate =
            self.issue_client_cert(&principal, &generation, true, csr_pem, Some(&hash))?;
        tracing::info!(node = %path, mode = ?record.mode, generation = generation.generation, "enrolled");
        self.audit_event(
            &principal.uri(),
            "enroll",
            Some(path.to_string()),
            Some(format!(
                "mode {}, credential generation {}",
                record.mode.name(),
                generation.generation
            )),
        );
        Ok(Enrolled {
            certificate,
            path,
            mode: record.mode,
            bundle,
        })
    }

    /// A fresh client certificate for the key in `csr_pem`, for a caller whose current
    /// certificate (of credential `generation`) is still valid and whose key the chain
    /// still holds valid: same generation, while it is younger than `credential_max`.
    pub fn renew(
        &self,
        principal: &Principal,
        generation: u32,
        csr_pem: &str,
    ) -> Result<String, ServiceError> {
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            ServiceError::BadRequest(format!("csr: not a PEM certificate signing request: {e}"))
        })?;
        match principal {
            Principal::Node(p) => self.authorize_on(principal, Op::Renew, p)?,
            Principal::Admin(name) => self.authorize(principal, Op::Renew, Named::Admin(name))?,
        }
        let current = self.renewable_generation(principal, generation)?;
        self.issue_client_cert(principal, &current, false, csr_pem, None)
    }

    /// The common name for a principal's certificate: a node's name in the chain, an
    /// admin's name.
    pub fn name_of(&self, principal: &Principal) -> String {
        match principal {
            Principal::Admin(name) => name.clone(),
            Principal::Node(path) => match self.read_chain().state().key(path).map(|r| &r.kind) {
                Some(KeyKind::Node { name, .. }) => name.clone(),
                _ => path.to_string(),
            },
        }
    }
}

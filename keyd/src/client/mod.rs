//! A typed client of keyd's REST API (feature `client`), for keyctl and for any Rust
//! node: the bodies are the [`crate::wire`] types keyd itself serves, so a change to
//! the API is a change to one definition.
//!
//! A node's credential lives in a keyctl config file, as `keyctl enroll` (or
//! [`enroll::enroll`]) writes it:
//!
//! ```toml
//! url = "https://127.0.0.1:8443"
//! ca = "ca.pem"          # keyd's CA certificate
//! cert = "node.pem"      # the client certificate (or an admin's)
//! key = "node.key"       # its key (0600)
//! chain = "chain.cbor"   # optional: the node refuses a keyd whose branch it
//!                        # sees revoked in this chain file
//! ```
//!
//! Paths in it are relative to the file's directory.

mod config;
pub mod enroll;
mod error;
mod transit;
mod trust;

use std::path::Path;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
use zeroize::Zeroizing;

use crate::chain::{self, Chain};

use crate::wire::{
    AddNode, AdminList, AdminRevocation, AuditPage, Batch, BatchResults, Blob, CredentialsRevoked,
    DatakeyRequest, DatakeyResponse, DecryptResponse, Empty, EncryptRequest, EncryptResponse,
    EnrollMode, EnrollRequest, EnrollResponse, EnvelopeRequest, EnvelopeResponse, ErrorBody,
    ExtendRequest, Extended, MinEpochRequest, MinEpochSet, NodeAdded, NodeDetail, NodeList,
    PlaintextResponse, PolicyApply, PolicyCheck, PolicyDecision, PolicyShown, PullRequested,
    Pushed, RecoverRequest, RecoverResponse, ReenrollRequest, Reenrollment, Rekeyed, RenewRequest,
    RenewResponse, ReplicaInfo, ReplicaRequest, ReplicaResponse, RevokeRequest, Revoked,
    SealRequest, SignRequest, SignResponse, SuitePolicy, SuiteRequest, SuiteSet, Verification,
    VerifyRequest,
};
pub use config::{ClientConfig, load_chain};
use config::{read, refuse_revoked_keyd};
pub use error::{ChainFetchError, ClientError};

/// Characters escaped in a path segment (a node name, or a path such as `m/1'/2'`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'\'');

/// `name` as one path segment.
fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// A context to send: none when empty.
fn context_of(context: &[u8]) -> Option<Blob> {
    (!context.is_empty()).then(|| Blob::new(context))
}

fn envelope_request(envelope: &[u8], context: &[u8]) -> EnvelopeRequest {
    EnvelopeRequest {
        envelope: Blob::new(envelope),
        context: context_of(context),
    }
}

/// A page of the cluster chain.
#[derive(Debug)]
pub struct ChainPage {
    /// Chain records (CBOR), to apply with [`Chain::update`].
    pub bytes: Vec<u8>,
    /// Whether every log reached its head.
    pub complete: bool,
    /// The number of entries keyd holds over all logs, when it says.
    pub total: Option<u64>,
}

/// A client of one keyd, as one principal (or none: enrollment and the public chain).
pub struct Client {
    agent: ureq::Agent,
    url: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).finish()
    }
}

impl Client {
    /// A client with the credential of a config file. With a `chain` in it, a keyd
    /// whose branch that chain shows revoked is refused before anything is sent.
    pub fn from_config(file: &Path) -> Result<Client, ClientError> {
        let cfg = ClientConfig::read(file)?;
        if let Some(chain) = &cfg.chain {
            refuse_revoked_keyd(chain, &cfg.ca)?;
        }
        let bad = |what: &str, e: ureq::Error| ClientError::Config {
            file: file.to_owned(),
            message: format!("{what}: {e}"),
        };
        let cert = Certificate::from_pem(&read(&cfg.cert)?).map_err(|e| bad("cert", e))?;
        let key = Zeroizing::new(read(&cfg.key)?);
        let key = PrivateKey::from_pem(&key).map_err(|e| bad("key", e))?;
        Client::build(
            &cfg.url,
            &cfg.ca,
            Some(ClientCert::new_with_certs(&[cert], key)),
        )
    }

    /// A client without a credential, of keyd at `url` whose CA certificate is in `ca`:
    /// for enrollment and the public chain.
    pub fn anonymous(url: &str, ca: &Path) -> Result<Client, ClientError> {
        Client::build(url, ca, None)
    }

    fn build(url: &str, ca: &Path, identity: Option<ClientCert>) -> Result<Client, ClientError> {
        let ca_cert = Certificate::from_pem(&read(ca)?).map_err(|e| ClientError::Ca {
            file: ca.to_owned(),
            message: e.to_string(),
        })?;
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[ca_cert]))
            .client_cert(identity)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Client {
            agent,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    /// keyd's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, path: &str) -> impl FnOnce(ureq::Error) -> ClientError + use<> {
        let at = format!("{}{path}", self.url);
        move |e| ClientError::Http(format!("{at}: {e}"))
    }

    /// keyd's error for an answer that is not 200.
    fn refused(&self, path: &str, resp: ureq::http::Response<ureq::Body>) -> ClientError {
        let status = resp.status();
        match self.decode::<serde::de::IgnoredAny>(path, resp) {
            Err(e) => e,
            Ok(_) => ClientError::Http(format!("{path}: unexpected status {status}")),
        }
    }

    /// An answer's body as `T`, or keyd's error.
    fn decode<T: DeserializeOwned>(
        &self,
        path: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<T, ClientError> {
        let status = resp.status().as_u16();
        // Answers carry plaintexts and data keys: the text is zeroized when dropped.
        let text = Zeroizing::new(
            resp.body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .map_err(|e| ClientError::Http(format!("{path}: {e}")))?,
        );
        if !(200..300).contains(&status) {
            let error: ErrorBody = serde_json::from_str(&text).map_err(|_| {
                ClientError::Http(format!("{path}: {status} with a body that is not keyd's"))
            })?;
            return Err(ClientError::Api {
                status,
                code: error.error.code.into_owned(),
                message: error.error.message,
            });
        }
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Http(format!("{path}: {status} with an unexpected body: {e}"))
        })
    }

    /// POSTs `body` as JSON to `path` (`/v1/...`) and reads the answer as `T`.
    pub fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(body).map_err(|e| ClientError::Http(format!("{path}: {e}")))?,
        );
        let resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .send(&bytes[..])
            .map_err(self.unreachable(path))?;
        self.decode(path, resp)
    }

    /// GETs `path` and reads the answer as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(self.unreachable(path))?;
        self.decode(path, resp)
    }

    /// Signs `data` with the caller's current epoch key.
    pub fn sign(&self, data: &[u8]) -> Result<SignResponse, ClientError> {
        self.post(
            "/v1/sign",
            &SignRequest {
                data: Blob::new(data),
            },
        )
    }

    /// Checks a signature, and whether its key is a valid key of the cluster.
    pub fn verify(
        &self,
        data: &[u8],
        signature: &[u8],
        public_key_hex: &str,
    ) -> Result<Verification, ClientError> {
        let body = VerifyRequest {
            data: Blob::new(data),
            signature: Blob::new(signature),
            public_key: public_key_hex.to_owned(),
        };
        self.post("/v1/verify", &body)
    }

    /// Encrypts `plaintext` to node `to` (a name or path); `suite` is `x-wing` (the
    /// default) or `x25519`; `context` (empty for none) must be given again to decrypt.
    pub fn encrypt(
        &self,
        to: &str,
        plaintext: &[u8],
        suite: Option<&str>,
        context: &[u8],
    ) -> Result<EncryptResponse, ClientError> {
        let body = EncryptRequest {
            to: to.to_owned(),
            plaintext: Blob::new(plaintext),
            suite: suite.map(str::to_owned),
            context: context_of(context),
        };
        self.post("/v1/encrypt", &body)
    }

    /// Opens an envelope addressed to the caller, with its context (empty for none).
    pub fn decrypt(&self, envelope: &[u8], context: &[u8]) -> Result<DecryptResponse, ClientError> {
        self.post("/v1/decrypt", &envelope_request(envelope, context))
    }

    /// Seals `plaintext` for the caller's own storage, bound to `context` (empty for
    /// none).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<EnvelopeResponse, ClientError> {
        let body = SealRequest {
            plaintext: Blob::new(plaintext),
            context: context_of(context),
        };
        self.post("/v1/seal", &body)
    }

    /// Opens an envelope the caller sealed, with its context (empty for none).
    pub fn unseal(
        &self,
        envelope: &[u8],
        context: &[u8],
    ) -> Result<PlaintextResponse, ClientError> {
        self.post("/v1/unseal", &envelope_request(envelope, context))
    }

    /// Re-seals an envelope under the caller's current epoch, in the same context.
    pub fn rewrap(&self, envelope: &[u8], context: &[u8]) -> Result<EnvelopeResponse, ClientError> {
        self.post("/v1/rewrap", &envelope_request(envelope, context))
    }

    /// A fresh data key and its sealed form (bound to `context`; empty for none).
    pub fn datakey(&self, context: &[u8]) -> Result<DatakeyResponse, ClientError> {
        let body = DatakeyRequest {
            context: context_of(context),
        };
        self.post("/v1/datakey", &body)
    }

    /// The batch form of operation `op` (`sign`, `verify`, ...): one result per item.
    pub fn batch<R: Serialize, T: DeserializeOwned>(
        &self,
        op: &str,
        items: Vec<R>,
    ) -> Result<BatchResults<T>, ClientError> {
        self.post(&format!("/v1/batch/{}", segment(op)), &Batch { items })
    }

    /// Moves the caller (a node) to its next epoch.
    pub fn rekey(&self) -> Result<Rekeyed, ClientError> {
        self.post("/v1/rekey", &Empty {})
    }

    /// Redeems an enrollment token (see [`enroll::enroll`], which does the rest).
    pub fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.post("/v1/enroll", request)
    }

    /// A new certificate for the caller, for the key of `csr_pem`.
    pub fn renew(&self, csr_pem: &str) -> Result<RenewResponse, ClientError> {
        self.post(
            "/v1/renew",
            &RenewRequest {
                csr: csr_pem.to_owned(),
            },
        )
    }

    /// Creates a node and its enrollment token (admin).
    pub fn add_node(&self, node: &AddNode) -> Result<NodeAdded, ClientError> {
        self.post("/v1/nodes", node)
    }

    /// The nodes of keyd's branch (admin).
    pub fn nodes(&self) -> Result<NodeList, ClientError> {
        self.get("/v1/nodes")
    }

    /// One node in detail (admin).
    pub fn node(&self, name: &str) -> Result<NodeDetail, ClientError> {
        self.get(&format!("/v1/nodes/{}", segment(name)))
    }

    /// Revokes a node and its descendants (admin).
    pub fn revoke_node(&self, name: &str, reason: &str) -> Result<Revoked, ClientError> {
        self.revoke(&format!("/v1/nodes/{}/revoke", segment(name)), reason)
    }

    /// Moves a node to its next epoch (admin).
    pub fn rekey_node(&self, name: &str) -> Result<Rekeyed, ClientError> {
        self.post(&format!("/v1/nodes/{}/rekey", segment(name)), &Empty {})
    }

    /// A new one-time enrollment token for an existing node (admin).
    pub fn reenroll(&self, name: &str, mode: EnrollMode) -> Result<Reenrollment, ClientError> {
        self.post(
            &format!("/v1/nodes/{}/reenroll", segment(name)),
            &ReenrollRequest { mode },
        )
    }

    /// Sets which envelope suites a node accepts (an admin, or the node itself).
    pub fn set_suite(&self, name: &str, suite: SuitePolicy) -> Result<SuiteSet, ClientError> {
        self.post(
            &format!("/v1/nodes/{}/suite", segment(name)),
            &SuiteRequest { suite },
        )
    }

    /// Sets a node's minimum decryption epoch (an admin; or the node raising its own).
    pub fn set_min_epoch(&self, name: &str, epoch: u32) -> Result<MinEpochSet, ClientError> {
        self.post(
            &format!("/v1/nodes/{}/min-epoch", segment(name)),
            &MinEpochRequest { epoch },
        )
    }

    /// Orders a node to rekey: a `rekey_order` in the branch log (admin).
    pub fn order_rekey(&self, name: &str, reason: &str) -> Result<Rekeyed, ClientError> {
        self.revoke(&format!("/v1/nodes/{}/rekey-order", segment(name)), reason)
    }

    /// Renews a node's validity: valid for `valid_seconds` from now (admin).
    pub fn extend_node(&self, name: &str, valid_seconds: u64) -> Result<Extended, ClientError> {
        self.post(
            &format!("/v1/nodes/{}/extend", segment(name)),
            &ExtendRequest { valid_seconds },
        )
    }

    /// Opens an envelope of a node below keyd's branch as its ancestor (admin).
    pub fn recover(&self, envelope: &[u8], context: &[u8]) -> Result<RecoverResponse, ClientError> {
        let body = RecoverRequest {
            envelope: Blob::new(envelope),
            context: context_of(context),
        };
        self.post("/v1/admin/recover", &body)
    }

    /// Seals the branch to a new replica's install key (admin).
    pub fn add_replica(
        &self,
        name: &str,
        install_key: &str,
    ) -> Result<ReplicaResponse, ClientError> {
        let body = ReplicaRequest {
            name: name.to_owned(),
            install_key: install_key.to_owned(),
        };
        self.post("/v1/admin/replicas", &body)
    }

    /// Removes a replica of the group (admin).
    pub fn remove_replica(&self, name: &str) -> Result<ReplicaInfo, ClientError> {
        let path = format!("/v1/admin/replicas/{}/remove", segment(name));
        self.post(&path, &serde_json::json!({}))
    }

    /// The replicas the branch log records (admin).
    pub fn replicas(&self) -> Result<Vec<ReplicaInfo>, ClientError> {
        self.get("/v1/admin/replicas")
    }

    /// Ends every certificate of a node at once (admin).
    pub fn revoke_node_credentials(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<CredentialsRevoked, ClientError> {
        self.revoke(
            &format!("/v1/nodes/{}/credentials/revoke", segment(name)),
            reason,
        )
    }

    /// Ends every certificate of an admin at once (admin).
    pub fn revoke_admin_credentials(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<CredentialsRevoked, ClientError> {
        self.revoke(
            &format!("/v1/admins/{}/credentials/revoke", segment(name)),
            reason,
        )
    }

    /// The revoked admin names (admin).
    pub fn admins(&self) -> Result<AdminList, ClientError> {
        self.get("/v1/admins")
    }

    /// Revokes every credential naming an admin (admin).
    pub fn revoke_admin(&self, name: &str, reason: &str) -> Result<AdminRevocation, ClientError> {
        self.revoke(&format!("/v1/admins/{}/revoke", segment(name)), reason)
    }

    fn revoke<T: DeserializeOwned>(&self, path: &str, reason: &str) -> Result<T, ClientError> {
        self.post(
            path,
            &RevokeRequest {
                reason: reason.to_owned(),
            },
        )
    }

    /// The policy in force, with its text.
    pub fn policy(&self) -> Result<PolicyShown, ClientError> {
        self.get("/v1/policy")
    }

    /// Replaces the policy (checked by keyd first; nothing changes when it is bad).
    pub fn apply_policy(&self, text: &str) -> Result<PolicyShown, ClientError> {
        self.post(
            "/v1/policy",
            &PolicyApply {
                text: text.to_owned(),
            },
        )
    }

    /// How the policy in force decides a request.
    pub fn check_policy(&self, request: &PolicyCheck) -> Result<PolicyDecision, ClientError> {
        self.post("/v1/policy/check", request)
    }

    /// A page of the audit log: records after `since`, at most `limit`.
    pub fn audit_page(&self, since: u64, limit: usize) -> Result<AuditPage, ClientError> {
        self.get(&format!("/v1/audit?since={since}&limit={limit}"))
    }

    /// Pushes root-log records (a ceremony's chain file) to keyd (admin).
    pub fn push_root(&self, records: Vec<u8>) -> Result<Pushed, ClientError> {
        let path = "/v1/chain/root";
        let resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/cbor")
            .send(&records[..])
            .map_err(self.unreachable(path))?;
        self.decode(path, resp)
    }

    /// Asks keyd to pull its peers' logs now (admin).
    pub fn pull_peers(&self) -> Result<PullRequested, ClientError> {
        self.post("/v1/chain/pull", &Empty {})
    }

    /// keyd's CA certificate (PEM).
    pub fn ca(&self) -> Result<String, ClientError> {
        let path = "/v1/ca";
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(self.unreachable(path))?;
        if resp.status() != 200 {
            return Err(self.refused(path, resp));
        }
        resp.body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Http(format!("{path}: {e}")))
    }

    /// The previous root's chain keyd keeps after a root rekey (`GET
    /// /v1/chain/succession`), or none (404).
    pub fn succession(&self) -> Result<Option<Vec<u8>>, ClientError> {
        let path = "/v1/chain/succession";
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(self.unreachable(path))?;
        match resp.status().as_u16() {
            200 => resp
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .map(Some)
                .map_err(|e| ClientError::Http(format!("{path}: {e}"))),
            404 => Ok(None),
            _ => Err(self.refused(path, resp)),
        }
    }

    /// A page of the cluster chain after `positions` (what the caller holds, as
    /// [`chain::format_positions`] writes it), at most `limit` entries.
    pub fn chain_page(&self, positions: &str, limit: usize) -> Result<ChainPage, ClientError> {
        let path = format!("/v1/chain?since={positions}&limit={limit}");
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(self.unreachable(&path))?;
        if resp.status() != 200 {
            return Err(self.refused(&path, resp));
        }
        let complete = resp
            .headers()
            .get(chain::COMPLETE_HEADER)
            .is_some_and(|v| v.as_bytes() == b"true");
        let total = resp
            .headers()
            .get(chain::LENGTH_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| ClientError::Http(format!("{path}: {e}")))?;
        Ok(ChainPage {
            bytes,
            complete,
            total,
        })
    }

    /// Brings `chain` up to date with keyd, page after page, each verified and applied,
    /// until keyd says every log reached its head; `progress` is told each page's new
    /// entries and keyd's total. Returns the number of new entries.
    pub fn fetch_chain(
        &self,
        chain: &mut Chain,
        page: usize,
        mut progress: impl FnMut(usize, Option<u64>),
    ) -> Result<usize, ChainFetchError> {
        let mut new = 0;
        loop {
            let since = chain::format_positions(&chain.positions());
            let got = self.chain_page(&since, page)?;
            let added = chain.update(&got.bytes).map_err(Box::new)?;
            new += added;
            progress(added, got.total);
            if got.complete {
                return Ok(new);
            }
            if added == 0 {
                return Err(ClientError::Http(
                    "keyd answered an incomplete page with nothing new".into(),
                )
                .into());
            }
        }
    }
}

//! Pulling the logs of peer keyds (DESIGN.md section 4, "Moving logs around"): each peer
//! named in the configuration is asked for what this keyd lacks of every log, from the
//! positions it holds; what comes back is verified by the one engine and stored
//! ([`Service::take_from_peer`]).
//!
//! A peer is authenticated by its branch key, not by a CA file: its CA certificate
//! (served at `/v1/ca`, the branch identity key self-signed) is fetched once, its key
//! must be a level-1 branch key the root log certifies, and only then is the TLS
//! connection to the peer pinned to that certificate. Anyone can serve a certificate
//! carrying a public branch key; only the branch's keyd can sign the server certificate
//! it chains to.

use std::time::Duration;

use thiserror::Error;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::derive::{KeyId, KeyPath};
use crate::service::{Mirrored, Service, ServiceError};

/// Largest answer read from a peer (a full page of maximal entries).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;
/// Time allowed for one request to a peer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a pull from a peer failed.
#[derive(Debug, Error)]
pub enum PeerError {
    /// The peer did not answer as HTTP over TLS should.
    #[error("peer {peer}: {message}")]
    Unreachable {
        /// The peer.
        peer: String,
        /// What failed.
        message: String,
    },
    /// The peer's certificate is not one of a branch of this cluster.
    #[error("peer {peer}: its CA certificate {why}")]
    NotOfCluster {
        /// The peer.
        peer: String,
        /// Why.
        why: String,
    },
    /// What the peer served does not verify against the logs held.
    #[error("peer {peer} ({branch}): {source}")]
    Refused {
        /// The peer.
        peer: String,
        /// Its branch.
        branch: KeyPath,
        /// The refusal.
        #[source]
        source: Box<ServiceError>,
    },
}

/// One peer keyd: its URL and, once its CA certificate checked out, its branch and a
/// TLS client pinned to that certificate.
pub struct Peer {
    url: String,
    pinned: Option<(KeyPath, ureq::Agent)>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("url", &self.url)
            .field("branch", &self.pinned.as_ref().map(|(b, _)| b))
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer at `url` (`https://host:port`).
    pub fn new(url: &str) -> Peer {
        Peer {
            url: url.trim_end_matches('/').to_owned(),
            pinned: None,
        }
    }

    /// The peer's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Pulls until every log the peer holds is complete (one request per page), and
    /// takes it in.
    pub fn pull(&mut self, svc: &Service) -> Result<Mirrored, PeerError> {
        let (branch, agent) = self.pinned(svc)?;
        let mut total = Mirrored::default();
        loop {
            let since = crate::chain::format_positions(&svc.positions());
            let url = format!("{}/v1/chain?since={since}", self.url);
            let (bytes, complete) = get(&agent, &url).map_err(|message| {
                // Checked again at the next pull: the peer may have moved to another
                // CA (a root rekey retired its old tree).
                self.pinned = None;
                PeerError::Unreachable {
                    peer: self.url.clone(),
                    message,
                }
            })?;
            let got = svc
                .take_from_peer(&bytes, &branch)
                .map_err(|source| PeerError::Refused {
                    peer: self.url.clone(),
                    branch: branch.clone(),
                    source: Box::new(source),
                })?;
            total.new_entries += got.new_entries;
            if complete || got.new_entries == 0 {
                return Ok(total);
            }
        }
    }

    /// The peer's branch and the client pinned to its CA certificate, checked against
    /// the root log on first use.
    fn pinned(&mut self, svc: &Service) -> Result<(KeyPath, ureq::Agent), PeerError> {
        if let Some((b, a)) = &self.pinned {
            return Ok((b.clone(), a.clone()));
        }
        let unreachable = |message: String| PeerError::Unreachable {
            peer: self.url.clone(),
            message,
        };
        // The certificate is public and checked by its content below.
        let fetch = agent(TlsConfig::builder().disable_verification(true).build());
        let (pem_bytes, _) = get(&fetch, &format!("{}/v1/ca", self.url)).map_err(unreachable)?;
        let not_ours = |why: String| PeerError::NotOfCluster {
            peer: self.url.clone(),
            why,
        };
        let der = pem::parse(&pem_bytes)
            .map_err(|e| not_ours(format!("is not PEM: {e}")))?
            .into_contents();
        let key = crate::tls_key::certificate_ed25519_key(&der)
            .ok_or_else(|| not_ours("is not a certificate with an Ed25519 key".into()))?;
        if svc.branch_of_key(&KeyId::of_bytes(&key), &key).is_none() {
            // A branch certified after this keyd's bundle: first the root log, which
            // verifies by its signatures alone, then the key is checked again.
            let since = crate::chain::format_positions(&svc.positions());
            let (bytes, _) = get(&fetch, &format!("{}/v1/chain?since={since}", self.url))
                .map_err(unreachable)?;
            svc.take_root_from_peer(&bytes)
                .map_err(|source| PeerError::Refused {
                    peer: self.url.clone(),
                    branch: KeyPath::root(),
                    source: Box::new(source),
                })?;
        }
        let branch = svc
            .branch_of_key(&KeyId::of_bytes(&key), &key)
            .ok_or_else(|| {
                not_ours(format!(
                    "carries key {}, which the root log held does not certify as a branch",
                    KeyId::of_bytes(&key)
                ))
            })?;
        if &branch == svc.branch_path() {
            return Err(not_ours(format!(
                "is this keyd's own branch {branch}: a keyd is not its own peer"
            )));
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[
                Certificate::from_der(&der).to_owned()
            ]))
            .build();
        let pinned = agent(tls);
        self.pinned = Some((branch.clone(), pinned.clone()));
        tracing::info!(peer = %self.url, %branch, "peer: certificate checked against the root log");
        Ok((branch, pinned))
    }
}

/// An agent with `tls`, keyd's timeout for calls to another keyd, and statuses as
/// answers (not errors).
pub(crate) fn agent(tls: TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// GETs `url`: the body and whether `x-keyd-chain-complete` says `true`.
fn get(agent: &ureq::Agent, url: &str) -> Result<(Vec<u8>, bool), String> {
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = resp.status();
    let complete = resp
        .headers()
        .get(crate::chain::COMPLETE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"true");
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    Ok((body, complete))
}

//! Talking to another cluster's keyd: the rendezvous calls of an exchange, and pulling
//! a trusted cluster's chain. The other keyd is reached at the URL it gave, over TLS
//! pinned to the CA it gave (the invitation carries the CA's fingerprint; a trusted
//! cluster's persona carries the certificate).

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::{Service, unix_now};
use crate::chain;
use crate::peers::agent;
use crate::trust::Invitation;
use crate::wire::{Bytes, ErrorBody, Rendezvous, RendezvousReply};

/// Largest answer read.
const MAX_ANSWER: u64 = 64 << 20;

/// An agent pinned to `der`, the other keyd's CA certificate.
pub(super) fn pinned(der: &[u8]) -> ureq::Agent {
    agent(
        TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[
                Certificate::from_der(der).to_owned()
            ]))
            .build(),
    )
}

fn read(mut resp: ureq::http::Response<ureq::Body>) -> Result<(u16, Vec<u8>), String> {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// An agent for the keyd at `url` whose CA certificate has SHA-256 `ca` (fetched once
/// without verification, then checked by its fingerprint).
pub fn pinned_agent(url: &str, ca: &[u8; 32]) -> Result<ureq::Agent, String> {
    let fetch = agent(TlsConfig::builder().disable_verification(true).build());
    let resp = fetch
        .get(format!("{url}/v1/ca"))
        .call()
        .map_err(|e| format!("the inviter's keyd at {url}: {e}"))?;
    let (status, pem_bytes) = read(resp)?;
    if status != 200 {
        return Err(format!(
            "the inviter's keyd at {url} answered {status} for its CA"
        ));
    }
    let der = pem::parse(&pem_bytes)
        .map_err(|e| format!("the CA at {url} is not PEM: {e}"))?
        .into_contents();
    if Invitation::ca_fingerprint(&der) != *ca {
        return Err(format!(
            "the keyd at {url} is not the one that made the invitation (its CA is another)"
        ));
    }
    Ok(pinned(&der))
}

/// POSTs `body` (JSON) to `url`: the answer's body, or the other keyd's refusal
/// (its error message) prefixed with `what`.
pub(super) fn post_json(
    agent: &ureq::Agent,
    url: &str,
    body: &[u8],
    what: &str,
) -> Result<Vec<u8>, String> {
    let resp = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| format!("{what}: {e}"))?;
    let (status, bytes) = read(resp)?;
    if status != 200 {
        let why = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| format!("status {status}"));
        return Err(format!("{what} refused: {why}"));
    }
    Ok(bytes)
}

/// One rendezvous call to the inviter's keyd.
pub fn rendezvous(
    agent: &ureq::Agent,
    invitation: &Invitation,
    step: &str,
    message: Option<Bytes>,
) -> Result<RendezvousReply, String> {
    let body = serde_json::to_vec(&Rendezvous {
        session: invitation.session_id(),
        proof: hex::encode(invitation.proof()),
        step: step.to_owned(),
        message,
    })
    .map_err(|e| e.to_string())?;
    let url = format!("{}/v1/trust/rendezvous", invitation.url);
    let bytes = post_json(
        agent,
        &url,
        &body,
        &format!("the inviter's keyd, step {step},"),
    )?;
    let reply: RendezvousReply = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the inviter's keyd answered {step}: {e}"))?;
    match reply.state.strip_prefix("closed: ") {
        Some(why) => Err(format!("the inviter's keyd closed the session ({why})")),
        None => Ok(reply),
    }
}

/// Asks the trusted cluster's keyd at `url` (its CA `ca_pem`, as recorded) to run a
/// reset: it answers once its side is done.
pub fn ask_reset(url: &str, ca_pem: &str, ask: &crate::wire::TrustReset) -> Result<(), String> {
    let der = pem::parse(ca_pem.as_bytes())
        .map_err(|e| format!("its recorded CA: {e}"))?
        .into_contents();
    let body = serde_json::to_vec(ask).map_err(|e| e.to_string())?;
    post_json(
        &pinned(&der),
        &format!("{url}/v1/trust/reset"),
        &body,
        &format!("the other keyd at {url}"),
    )?;
    Ok(())
}

impl Service {
    /// `POST /v1/trust/sync` (admin, `chain.pull`): pulls every trusted cluster's chain
    /// now: how many clusters answered.
    pub fn sync_trusted_now(
        &self,
        principal: &crate::identity::Principal,
    ) -> Result<usize, super::ServiceError> {
        self.trust_admin(principal, crate::policy::Op::ChainPull)?;
        Ok(self.sync_trusted())
    }

    /// Pulls every trusted cluster's chain from its keyd, verifies what is new against
    /// what is held and keeps it: how many clusters answered.
    pub fn sync_trusted(&self) -> usize {
        let targets: Vec<([u8; 32], String, String, std::collections::BTreeMap<_, _>)> = self
            .trust_clusters()
            .iter()
            .filter(|(_, t)| !t.record.blocked)
            .map(|(root, t)| {
                (
                    *root,
                    t.record.persona.url.clone(),
                    t.record.persona.ca_pem.clone(),
                    t.chain.positions(),
                )
            })
            .collect();
        let mut answered = 0;
        for (root, url, ca_pem, positions) in targets {
            match self.pull_trusted(&root, &url, &ca_pem, &positions) {
                Ok(n) => {
                    answered += 1;
                    if n > 0 {
                        tracing::info!(cluster = %chain::fingerprint(&root), new_entries = n, "trust: chain pulled");
                    }
                }
                Err(e) => {
                    tracing::warn!(cluster = %chain::fingerprint(&root), error = %e, "trust: pull failed; the chain held stays");
                }
            }
        }
        answered
    }

    fn pull_trusted(
        &self,
        root: &[u8; 32],
        url: &str,
        ca_pem: &str,
        positions: &std::collections::BTreeMap<crate::derive::KeyPath, u64>,
    ) -> Result<usize, String> {
        let der = pem::parse(ca_pem.as_bytes())
            .map_err(|e| format!("its CA: {e}"))?
            .into_contents();
        let since = chain::format_positions(positions);
        let resp = pinned(&der)
            .get(format!("{url}/v1/chain?since={since}"))
            .call()
            .map_err(|e| e.to_string())?;
        let (status, bytes) = read(resp)?;
        if status != 200 {
            return Err(format!("answered {status}"));
        }
        let mut clusters = self
            .trust
            .clusters
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let t = clusters.get_mut(root).ok_or("no longer trusted")?;
        let mut next = t.chain.clone();
        let n = next.update(&bytes).map_err(|e| e.to_string())?;
        if next.state().root_keys().map(|k| k.ed25519) != Some(*root) {
            return Err("it served the chain of another root".into());
        }
        // The head-age rule (as for peers): its keyd's own branch head must be fresh, or
        // it may be withholding a revocation; the chain held stays.
        let max_age = self.config().peer_max_age.as_secs();
        let branch = &t.record.persona.branch;
        if let Some(head) = next.head(branch) {
            let age = unix_now().saturating_sub(head.signed_at);
            if age > max_age {
                return Err(format!(
                    "its branch {branch} head is {age} s old, more than peer_max_age ({max_age} s): it may be withholding a revocation"
                ));
            }
        }
        t.chain = next;
        t.record.synced_at = unix_now();
        t.record.persona.chain = t.chain.to_file();
        let record = chain::cbor_bytes(&t.record);
        drop(clusters);
        self.store
            .put_trusted(&chain::fingerprint(root), &record)
            .map_err(|e| e.to_string())?;
        Ok(n)
    }
}

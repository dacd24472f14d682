//! Reset: two clusters that trust each other lose sync (a keyd moved or was rebuilt:
//! another URL, another CA, a newer chain). Either side runs the exchange again over
//! the keys already recorded, without a code: the asking keyd signs the invitation with
//! its branch key and sends it straight to the other keyd (at the URL and CA recorded);
//! the other checks that signature against the chain it holds, joins, and consents
//! with the grant it already recorded. Each side's identity must be of the root it
//! already trusts (the signatures over the transcript prove it), so no code is needed,
//! and each keeps the grant it recorded: a reset never raises a level.

use ed25519_dalek::{Signature, Signer};

use super::session::{Kind, fingerprint_of};
use super::succession::follow_succession;
use super::{Grant, Service, ServiceError, Trusted, unix_now};
use crate::chain;
use crate::identity::Principal;
use crate::policy::Op;
use crate::trust::{Invitation, Persona};
use crate::wire::{TrustReset, TrustSessionView};

const RESET_DOMAIN: &[u8] = b"keyd/v1/trust/reset\0";

fn signed(link: &str) -> Vec<u8> {
    let mut out = RESET_DOMAIN.to_vec();
    out.extend_from_slice(link.as_bytes());
    out
}

impl Service {
    /// The record of a trusted (not blocklisted) cluster, by root fingerprint.
    pub(super) fn trusted_by_fingerprint(
        &self,
        root: &str,
    ) -> Result<(Persona, Grant), ServiceError> {
        self.trust_clusters()
            .values()
            .find(|t: &&Trusted| !t.record.blocked && t.record.persona.fingerprint() == root)
            .map(|t| (t.record.persona.clone(), t.record.grant.clone()))
            .ok_or_else(|| ServiceError::NotFound(format!("no trusted cluster of root {root}")))
    }

    /// `POST /v1/trust/clusters/{root}/reset` (admin, `trust.invite`): runs the exchange
    /// again with the cluster of `root`, over the keys recorded; the session as it ends.
    pub fn trust_reset(
        &self,
        principal: &Principal,
        root: &str,
        own_url: String,
    ) -> Result<TrustSessionView, ServiceError> {
        self.trust_admin(principal, Op::TrustInvite)?;
        let (peer, grant) = self.trusted_by_fingerprint(root)?;
        let (id, invitation) = self.open_session(
            None,
            grant,
            own_url,
            Kind::Reset(fingerprint_of(&peer.root)),
        )?;
        let link = invitation.to_link();
        let key = self.material(&self.branch_path)?;
        // After a root rekey, the other side trusts the previous root, which named this
        // one its successor: the request carries both chains, so that it is checked
        // before the other side reaches out anywhere.
        let previous = self.retired.as_ref().and_then(|r| {
            r.chain
                .state()
                .root_keys()
                .map(|k| chain::fingerprint(&k.ed25519))
        });
        let (succession, current) = match previous {
            Some(_) => (
                self.retired_chain().map(crate::wire::Bytes::new),
                Some(crate::wire::Bytes::new(self.own_logs()?)),
            ),
            None => (None, None),
        };
        let ask = TrustReset {
            link: link.clone(),
            root: self.own_fingerprint()?,
            previous,
            succession,
            chain: current,
            signature: hex::encode(key.signing_key().sign(&signed(&link)).to_bytes()),
        };
        let done = super::sync::ask_reset(&peer.url, &peer.ca_pem, &ask);
        if let Err(why) = &done
            && let Some(s) = self.sessions().0.get_mut(&id)
        {
            s.closed = Some(why.clone());
        }
        done.map_err(ServiceError::TrustRefused)?;
        self.audit_event(&principal.uri(), "trust.reset", Some(root.to_owned()), None);
        self.trust_session(principal, &hex::encode(id))
    }

    /// `POST /v1/trust/reset` (public; the signature by a trusted cluster's branch key
    /// admits it): joins the asking keyd's session and completes it with the grant
    /// recorded for that cluster.
    pub fn reset_request(
        &self,
        ask: TrustReset,
        own_url: String,
    ) -> Result<TrustSessionView, ServiceError> {
        let refused = |m: &str| ServiceError::TrustRefused(format!("reset refused: {m}"));
        let invitation =
            Invitation::parse(&ask.link).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let (grant, kind, key) = match self.trusted_by_fingerprint(&ask.root) {
            Ok((peer, grant)) => {
                let key = chain::verify_file(&peer.chain)
                    .ok()
                    .and_then(|c| {
                        c.state()
                            .key(&peer.branch)
                            .and_then(|r| r.keys.verifying_key())
                    })
                    .ok_or_else(|| refused("the recorded chain holds no branch key"))?;
                let kind = Kind::Reset(fingerprint_of(&peer.root));
                (grant, kind, key)
            }
            Err(_) => {
                // A root rekey on the other side: the root trusted here must have named
                // the asking root its successor.
                let previous = ask
                    .previous
                    .as_deref()
                    .ok_or_else(|| refused("not a cluster this one trusts"))?;
                let (old, grant) = self
                    .trusted_by_fingerprint(previous)
                    .map_err(|_| refused("not a cluster this one trusts"))?;
                let new_chain = follow_succession(&old, &ask).map_err(|m| refused(&m))?;
                let key = new_chain
                    .state()
                    .key(&old.branch)
                    .and_then(|r| r.keys.verifying_key())
                    .ok_or_else(|| refused("the new chain does not hold the same branch"))?;
                let mut peer_fp = [0u8; 32];
                hex::decode_to_slice(&ask.root, &mut peer_fp)
                    .map_err(|_| refused("a bad root fingerprint"))?;
                let kind = Kind::Succeeded {
                    peer: peer_fp,
                    old: old.root,
                };
                (grant, kind, key)
            }
        };
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&ask.signature, &mut sig).map_err(|_| refused("a bad signature"))?;
        key.verify_strict(&signed(&ask.link), &Signature::from_bytes(&sig))
            .map_err(|_| refused("the signature is not by the trusted cluster's keyd"))?;
        let id = invitation.session;
        self.join_invitation(invitation, kind)?;
        self.consent_as(&id, &grant, None, own_url)?;
        self.responder_confirm(&id, true)?;
        let view = self.sessions().0.get(&id).map(|s| s.view(&id));
        view.ok_or_else(|| ServiceError::NotFound("the session ended".into()))
    }

    /// A reset concluded: the other side's new persona and chain replace the recorded
    /// ones; the grant recorded stays.
    pub(super) fn refresh_trust(&self, persona: &Persona) -> Result<(), ServiceError> {
        let chain = chain::verify_file(&persona.chain)?;
        // After this keyd's own root rekey its new branch log holds no trust yet: the
        // reset records it again, with the grant recorded.
        let stated = self
            .read_chain()
            .state()
            .trusted()
            .any(|(r, t)| *r == persona.root && t.log == self.branch_path);
        let restated = if stated {
            None
        } else {
            let (grant, by) = self
                .trust_clusters()
                .get(&persona.root)
                .map(|t| (t.record.grant.clone(), t.record.introduced_by))
                .ok_or_else(|| ServiceError::TrustRefused("no trust to reset".into()))?;
            Some(self.append_trust(persona, &grant, by)?)
        };
        let record = {
            let mut clusters = self
                .trust
                .clusters
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let t = clusters
                .get_mut(&persona.root)
                .filter(|t| !t.record.blocked)
                .ok_or_else(|| ServiceError::TrustRefused("no trust to reset".into()))?;
            t.record.persona = persona.clone();
            t.record.synced_at = unix_now();
            if let Some(at) = restated {
                t.record.recorded = at;
            }
            t.chain = chain;
            chain::cbor_bytes(&t.record)
        };
        self.store.put_trusted(&persona.fingerprint(), &record)?;
        self.audit_event(
            "keyd",
            "trust.reset",
            Some(persona.fingerprint()),
            Some(format!("{} at {}", persona.cluster, persona.url)),
        );
        Ok(())
    }

    /// This cluster's root fingerprint.
    pub(super) fn own_fingerprint(&self) -> Result<String, ServiceError> {
        self.read_chain()
            .state()
            .root_keys()
            .map(|k| chain::fingerprint(&k.ed25519))
            .ok_or_else(|| ServiceError::NotFound("the chain has no root".into()))
    }
}

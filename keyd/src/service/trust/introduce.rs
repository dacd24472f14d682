//! Introductions (sources of trust, DESIGN.md section 8): a cluster B that both A and C
//! trust introduces them. A opens a session and asks B, signed by A's branch key, at the
//! URL and CA A recorded for B; B checks that signature against the chain it recorded
//! for A, checks that it trusts C, signs the request itself and relays it to C; C checks
//! B's signature against the chain it recorded for B, joins A's session and consents.
//! No code is compared: each side must be of the root the introducer named, and the
//! signatures over the transcript prove it. The result is at most `limited` trust, and
//! each side's `trust` statement names the introducer (`introduced_by`). A full trust
//! needs the admins' own exchange, with its code, after the introduced trust is revoked.

use ed25519_dalek::{Signature, Signer, VerifyingKey};

use super::session::{Kind, fingerprint_of};
use super::{Grant, Service, ServiceError, unix_now};
use crate::chain::{self, TrustLevel};
use crate::identity::Principal;
use crate::policy::Op;
use crate::trust::{Invitation, Persona};
use crate::wire::{TrustIntroduce, TrustRelay, TrustSessionView};

const DOMAIN: &[u8] = b"keyd/v1/trust/introduce\0";

fn signed(r: &TrustRelay) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    for part in [&r.link, &r.from, &r.to] {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    out
}

fn refused(m: &str) -> ServiceError {
    ServiceError::TrustRefused(format!("introduction refused: {m}"))
}

/// The branch key of a recorded persona, from its recorded chain.
fn branch_key(p: &Persona) -> Result<VerifyingKey, ServiceError> {
    chain::verify_file(&p.chain)
        .ok()
        .and_then(|c| {
            c.state()
                .key(&p.branch)
                .and_then(|r| r.keys.verifying_key())
        })
        .ok_or_else(|| refused("the recorded chain holds no branch key"))
}

fn check_signature(key: &VerifyingKey, r: &TrustRelay) -> Result<(), ServiceError> {
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&r.signature, &mut sig).map_err(|_| refused("a bad signature"))?;
    key.verify_strict(&signed(r), &Signature::from_bytes(&sig))
        .map_err(|_| refused("the signature is not by the trusted cluster's keyd"))
}

fn fingerprint_arg(text: &str) -> Result<[u8; 32], ServiceError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| {
        ServiceError::BadRequest(format!(
            "{text:?} is not a root fingerprint (64 hex digits)"
        ))
    })?;
    Ok(out)
}

impl Service {
    /// Signs a relay as this keyd.
    fn sign_relay(&self, r: &mut TrustRelay) -> Result<(), ServiceError> {
        let key = self.material(&self.branch_path)?;
        r.signature = hex::encode(key.signing_key().sign(&signed(r)).to_bytes());
        Ok(())
    }

    /// `POST /v1/trust/clusters/{via}/introduce` (admin, `trust.invite`): asks the
    /// trusted cluster `via` to introduce this cluster to the cluster `ask.to` it trusts.
    pub fn trust_introduce(
        &self,
        principal: &Principal,
        via: &str,
        ask: TrustIntroduce,
        own_url: String,
    ) -> Result<TrustSessionView, ServiceError> {
        self.trust_admin(principal, Op::TrustInvite)?;
        let (introducer, _) = self.trusted_by_fingerprint(via)?;
        let peer = fingerprint_arg(&ask.to)?;
        let grant = Grant {
            level: TrustLevel::Limited,
            permissions: ask.permissions,
            expires_at: ask.expires_at,
        };
        let kind = Kind::Introduced {
            peer,
            by: introducer.root,
        };
        let (id, invitation) = self.open_session(None, grant, own_url, kind)?;
        let mut relay = TrustRelay {
            link: invitation.to_link(),
            from: self.own_fingerprint()?,
            to: ask.to,
            by: None,
            signature: String::new(),
        };
        self.sign_relay(&mut relay)?;
        let done = self.relay(&introducer, "introduce", &relay);
        if let Err(e) = &done
            && let Some(s) = self.sessions().0.get_mut(&id)
        {
            s.closed = Some(e.to_string());
        }
        done?;
        self.audit_event(
            &principal.uri(),
            "trust.introduce",
            Some(relay.to),
            Some(format!("via {via}")),
        );
        self.trust_session(principal, &hex::encode(id))
    }

    /// Sends `relay` to a trusted cluster's keyd (`POST /v1/trust/{step}`).
    fn relay(&self, to: &Persona, step: &str, relay: &TrustRelay) -> Result<Vec<u8>, ServiceError> {
        let der = pem::parse(to.ca_pem.as_bytes())
            .map_err(|e| refused(&format!("the recorded CA of {}: {e}", to.cluster)))?
            .into_contents();
        let body =
            serde_json::to_vec(relay).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        super::sync::post_json(
            &super::sync::pinned(&der),
            &format!("{}/v1/trust/{step}", to.url),
            &body,
            &format!("the keyd of cluster {} at {}", to.cluster, to.url),
        )
        .map_err(ServiceError::TrustRefused)
    }

    /// `POST /v1/trust/introduce` (public; the asking cluster's signature admits it):
    /// this keyd, the introducer, relays the request to the cluster named, signed.
    pub fn introduce_request(&self, mut ask: TrustRelay) -> Result<TrustSessionView, ServiceError> {
        let (from, _) = self
            .trusted_by_fingerprint(&ask.from)
            .map_err(|_| refused("the asking cluster is not one this one trusts"))?;
        check_signature(&branch_key(&from)?, &ask)?;
        let (to, _) = self
            .trusted_by_fingerprint(&ask.to)
            .map_err(|_| refused("this cluster does not trust the cluster named"))?;
        ask.by = Some(self.own_fingerprint()?);
        self.sign_relay(&mut ask)?;
        let answer = self.relay(&to, "introduced", &ask)?;
        self.audit_event(
            "keyd",
            "trust.introduce",
            Some(ask.to.clone()),
            Some(format!("{} introduced to {}", ask.from, ask.to)),
        );
        serde_json::from_slice(&answer).map_err(|e| {
            ServiceError::TrustRefused(format!("the introduced cluster answered: {e}"))
        })
    }

    /// `POST /v1/trust/introduced` (public; the introducer's signature admits it): this
    /// keyd joins the introduced cluster's session and consents, at most `limited`.
    pub fn introduced_request(
        &self,
        ask: TrustRelay,
        own_url: String,
    ) -> Result<TrustSessionView, ServiceError> {
        let by = ask
            .by
            .clone()
            .ok_or_else(|| refused("no introducer named"))?;
        let (introducer, _) = self
            .trusted_by_fingerprint(&by)
            .map_err(|_| refused("the introducer is not a cluster this one trusts"))?;
        check_signature(&branch_key(&introducer)?, &ask)?;
        if ask.to != self.own_fingerprint()? {
            return Err(refused("it names another cluster than this one"));
        }
        let peer = fingerprint_arg(&ask.from)?;
        if self
            .trust_clusters()
            .values()
            .any(|t| fingerprint_of(&t.record.persona.root) == peer)
        {
            return Err(refused(
                "this cluster already has a record of the introduced cluster (trusted or revoked)",
            ));
        }
        let invitation =
            Invitation::parse(&ask.link).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let id = invitation.session;
        let kind = Kind::Introduced {
            peer,
            by: introducer.root,
        };
        let view = self.join_invitation(invitation, kind)?;
        // What the introduced cluster grants, mirrored, at most limited.
        let asked = view
            .peer
            .as_ref()
            .ok_or_else(|| refused("the introduced cluster showed no persona"))?;
        let grant = Grant {
            level: TrustLevel::Limited,
            permissions: asked.permissions.clone(),
            expires_at: asked.expires_at.min(unix_now() + 90 * 86_400),
        };
        self.consent_as(&id, &grant, None, own_url)?;
        self.responder_confirm(&id, true)?;
        let view = self.sessions().0.get(&id).map(|s| s.view(&id));
        view.ok_or_else(|| ServiceError::NotFound("the session ended".into()))
    }
}

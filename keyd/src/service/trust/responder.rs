//! The responder's side of an exchange: this keyd joins the session at the inviter's
//! keyd (over TLS pinned by the invitation), shows its admin the inviter's persona,
//! sends its own once the admin consents, and records the trust once both admins
//! confirmed. No lock is held over the network: a session is taken out of the map for
//! a remote step and put back after.

use super::session::{Kind, ResponderSide, Session, Side, cbor, message, parse_id, protocol};
use super::{Grant, Service, ServiceError, unix_now};
use crate::identity::Principal;
use crate::policy::Op;
use crate::trust::{Invitation, Offer, Responder, Reveal, Sealed};
use crate::wire::{Bytes, TrustAccept, TrustGrant, TrustSessionView};

impl Service {
    /// `POST /v1/trust/accept` (admin, `trust.accept`): joins the session of an
    /// invitation at the inviter's keyd, up to the inviter's identity.
    pub fn trust_accept(
        &self,
        principal: &Principal,
        ask: TrustAccept,
    ) -> Result<TrustSessionView, ServiceError> {
        self.trust_admin(principal, Op::TrustAccept)?;
        let invitation =
            Invitation::parse(&ask.token).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let id = invitation.session;
        let view = self.join_invitation(invitation, Kind::Invited)?;
        self.audit_event(
            &principal.uri(),
            Op::TrustAccept.name(),
            Some(hex::encode(id)),
            None,
        );
        Ok(view)
    }

    /// Joins `invitation`'s session up to the inviter's verified identity (with
    /// a reset or an introduction, it must be of the root `kind` names).
    pub(super) fn join_invitation(
        &self,
        invitation: Invitation,
        kind: Kind,
    ) -> Result<TrustSessionView, ServiceError> {
        if self.sessions().0.contains_key(&invitation.session) {
            return Err(ServiceError::TrustRefused(
                "this invitation is being used already".into(),
            ));
        }
        let agent = super::sync::pinned_agent(&invitation.url, &invitation.ca)
            .map_err(ServiceError::TrustRefused)?;
        let call = |step: &str, m: Option<Bytes>| {
            super::sync::rendezvous(&agent, &invitation, step, m)
                .map_err(ServiceError::TrustRefused)
        };
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let offer: Offer = message(&call("offer", None)?.message)?;
        let (mut responder, join) = Responder::new(&offer, &mut rng);
        let reveal: Reveal = message(&call("join", cbor(&join))?.message)?;
        let finish = responder.on_reveal(&reveal, &mut rng).map_err(protocol)?;
        let identity: Sealed = message(&call("finish", cbor(&finish))?.message)?;
        let peer = responder
            .on_identity(&identity, unix_now())
            .map_err(protocol)?;
        self.check_peer(&peer.persona, kind)
            .map_err(ServiceError::TrustRefused)?;
        let id = invitation.session;
        let session = Session {
            side: Side::Responder(Box::new(ResponderSide {
                responder,
                invitation,
                agent,
                peer,
                grant: None,
                confirmed: false,
                kind,
            })),
            expires_at: unix_now() + self.config().trust_session,
            closed: None,
            trusted: false,
        };
        let view = session.view(&id);
        self.sessions().0.insert(id, session);
        Ok(view)
    }

    /// Takes a responder session out of the map for a remote step (no lock is held
    /// over the network), and puts it back after.
    pub(super) fn with_responder<T>(
        &self,
        id: &[u8; 16],
        step: impl FnOnce(&Service, &mut ResponderSide) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let mut session = self.sessions().0.remove(id).ok_or_else(|| {
            ServiceError::NotFound("no such trust session (unknown or expired)".into())
        })?;
        let result = match (&mut session.side, &session.closed) {
            (_, Some(why)) => Err(ServiceError::TrustRefused(why.clone())),
            (_, None) if session.expires_at <= unix_now() => {
                Err(ServiceError::TrustRefused("the session expired".into()))
            }
            (Side::Responder(side), None) => step(self, side),
            (Side::Inviter(_), None) => Err(ServiceError::BadRequest(
                "this keyd invited in this session: the other side consents".into(),
            )),
        };
        if let Err(e) = &result {
            session.closed = Some(e.to_string());
        }
        self.sessions().0.insert(*id, session);
        result
    }

    /// `POST /v1/trust/sessions/{id}/consent` (admin, responder): what this side grants,
    /// and its identity sent.
    pub fn trust_consent(
        &self,
        principal: &Principal,
        id: &str,
        ask: TrustGrant,
        default_url: String,
    ) -> Result<TrustSessionView, ServiceError> {
        self.trust_admin(principal, Op::TrustAccept)?;
        let raw = parse_id(id)?;
        let url = ask.url.clone().unwrap_or(default_url);
        self.consent_as(&raw, &Grant::from(&ask), ask.persona.clone(), url)?;
        self.trust_session(principal, id)
    }

    /// Sends this side's identity granting `grant` in session `id`.
    pub(super) fn consent_as(
        &self,
        id: &[u8; 16],
        grant: &Grant,
        persona: Option<String>,
        url: String,
    ) -> Result<(), ServiceError> {
        grant.check(unix_now())?;
        let mine = self.my_persona(persona, grant, url)?;
        let key = self.material(&self.branch_path)?;
        self.with_responder(id, |_, side| {
            let sealed = side
                .responder
                .consent(&mine, key.signing_key())
                .map_err(protocol)?;
            super::sync::rendezvous(&side.agent, &side.invitation, "identity", cbor(&sealed))
                .map_err(ServiceError::TrustRefused)?;
            side.grant = Some(grant.clone());
            Ok(())
        })
    }

    pub(super) fn responder_confirm(
        &self,
        id: &[u8; 16],
        matches: bool,
    ) -> Result<(), ServiceError> {
        self.with_responder(id, |_, side| {
            if side.grant.is_none() {
                return Err(ServiceError::BadRequest(
                    "consent first: the code is shown after".into(),
                ));
            }
            let sealed = side.responder.confirm(matches).map_err(protocol)?;
            super::sync::rendezvous(&side.agent, &side.invitation, "confirm", cbor(&sealed))
                .map_err(ServiceError::TrustRefused)?;
            if !matches {
                return Err(ServiceError::TrustRefused(
                    "this admin said the codes do not match".into(),
                ));
            }
            side.confirmed = true;
            Ok(())
        })?;
        self.responder_poll(id)
    }

    /// Asks the inviter whether its admin confirmed too; records the trust when it did.
    pub(super) fn responder_poll(&self, id: &[u8; 16]) -> Result<(), ServiceError> {
        let concluded = self.with_responder(id, |_, side| {
            let reply = super::sync::rendezvous(&side.agent, &side.invitation, "status", None)
                .map_err(ServiceError::TrustRefused)?;
            if reply.state != "trusted" {
                return Ok(None);
            }
            let sealed: Sealed = message(&reply.message)?;
            if !side.responder.on_confirmation(&sealed).map_err(protocol)? {
                return Err(ServiceError::TrustRefused(
                    "the inviter did not confirm".into(),
                ));
            }
            let grant = side.grant.clone().ok_or_else(|| {
                ServiceError::BadRequest("consent first: the code is shown after".into())
            })?;
            Ok(Some((side.peer.persona.clone(), grant, side.kind)))
        })?;
        if let Some((persona, grant, kind)) = concluded {
            self.conclude(&persona, &grant, kind)?;
            if let Some(s) = self.sessions().0.get_mut(id) {
                s.trusted = true;
            }
        }
        Ok(())
    }
}

//! Trust exchange sessions: the inviter's side answers the responder keyd's rendezvous
//! calls; the responder's side makes them. Sessions are short-lived
//! (`trust_session_seconds`, ten minutes by default), single use (the first proof of the
//! invitation's secret claims it), kept in memory only — secrets zeroized, nothing
//! written until both admins confirmed — so a keyd restart ends every open session with
//! nothing recorded.

use std::collections::HashMap;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Grant, Service, ServiceError, unix_now, view};
use crate::chain::{self, KeyKind};
use crate::derive::KeyPath;
use crate::identity::Principal;
use crate::policy::Op;
use crate::trust::{
    Finish, Invitation, Inviter, Join, Peer, Persona, ProtocolError, Responder, Sealed,
};
use crate::wire::{
    Bytes, Rendezvous, RendezvousReply, TrustConfirm, TrustGrant, TrustInvited, TrustSessionView,
};

/// Open sessions at most (each holds an X-Wing key pair and a little state).
const MAX_SESSIONS: usize = 1024;

pub(super) struct InviterSide {
    inviter: Inviter,
    secret: Zeroizing<[u8; 32]>,
    grant: Grant,
    persona: Option<String>,
    url: String,
    claimed: bool,
    peer: Option<Peer>,
    peer_confirmed: bool,
    confirmation: Option<Sealed>,
    /// What exchange this is.
    pub(super) kind: Kind,
}

/// What kind of exchange a session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// From an invitation: the admins compare a code.
    Invited,
    /// A reset with the cluster of this root fingerprint, trusted already: no code.
    Reset([u8; 32]),
    /// A reset with a trusted cluster whose root was replaced: the other side must be of
    /// the successor (fingerprint `peer`) the trusted root `old` (key) named.
    Succeeded {
        /// The successor's root fingerprint.
        peer: [u8; 32],
        /// The root key trusted until now.
        old: [u8; 32],
    },
    /// An introduction to the cluster of root fingerprint `peer` by the cluster of
    /// root key `by`, which both sides trust: no code, and at most limited trust.
    Introduced {
        /// The root fingerprint the other side must be of.
        peer: [u8; 32],
        /// The introducer's root key.
        by: [u8; 32],
    },
}

/// A root key's fingerprint, as bytes.
pub(super) fn fingerprint_of(root: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(root).into()
}

impl Kind {
    /// The root fingerprint the other side must be of, when it is known in advance.
    pub(super) fn expected(self) -> Option<[u8; 32]> {
        match self {
            Kind::Invited => None,
            Kind::Reset(root)
            | Kind::Succeeded { peer: root, .. }
            | Kind::Introduced { peer: root, .. } => Some(root),
        }
    }
}

pub(super) struct ResponderSide {
    pub(super) responder: Responder,
    pub(super) invitation: Invitation,
    pub(super) agent: ureq::Agent,
    pub(super) peer: Peer,
    /// What this side granted, once its admin consented.
    pub(super) grant: Option<Grant>,
    pub(super) confirmed: bool,
    /// What exchange this is.
    pub(super) kind: Kind,
}

pub(super) enum Side {
    Inviter(Box<InviterSide>),
    Responder(Box<ResponderSide>),
}

pub(super) struct Session {
    pub(super) side: Side,
    pub(super) expires_at: u64,
    pub(super) closed: Option<String>,
    pub(super) trusted: bool,
}

/// The open sessions, by id.
#[derive(Default)]
pub struct Sessions(pub(super) HashMap<[u8; 16], Session>);

pub(super) fn parse_id(text: &str) -> Result<[u8; 16], ServiceError> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(text, &mut id)
        .map_err(|_| ServiceError::BadRequest(format!("session {text:?}: not 32 hex digits")))?;
    Ok(id)
}

pub(super) fn cbor<T: serde::Serialize>(v: &T) -> Option<Bytes> {
    Some(Bytes::new(chain::cbor_bytes(v)))
}

pub(super) fn message<T: serde::Serialize + serde::de::DeserializeOwned>(
    m: &Option<Bytes>,
) -> Result<T, ServiceError> {
    let bytes = m
        .as_ref()
        .ok_or_else(|| ServiceError::BadRequest("message: missing".into()))?;
    chain::decode_exact(bytes.as_slice(), crate::trust::protocol::MAX_MESSAGE)
        .map_err(|e| ServiceError::BadRequest(format!("message: {e}")))
}

pub(super) fn protocol(e: ProtocolError) -> ServiceError {
    ServiceError::TrustRefused(e.to_string())
}

impl Session {
    pub(super) fn view(&self, id: &[u8; 16]) -> TrustSessionView {
        let (role, state, peer, code) = match &self.side {
            Side::Inviter(i) => (
                "inviter",
                if self.trusted {
                    "trusted"
                } else if i.peer.is_some() {
                    "identified"
                } else if i.claimed {
                    "joined"
                } else {
                    "invited"
                },
                i.peer.as_ref(),
                i.inviter.code(),
            ),
            Side::Responder(r) => (
                "responder",
                if self.trusted {
                    "trusted"
                } else if r.confirmed {
                    "confirmed"
                } else if r.grant.is_some() {
                    "consented"
                } else {
                    "identified"
                },
                Some(&r.peer),
                r.grant.as_ref().map(|_| r.peer.code),
            ),
        };
        TrustSessionView {
            session: hex::encode(id),
            role: role.into(),
            state: if self.closed.is_some() {
                "closed"
            } else {
                state
            }
            .into(),
            code: peer.and(code).map(|c| c.to_string()),
            peer: peer.map(|p| {
                let grant = Grant {
                    level: p.persona.level,
                    permissions: p.persona.permissions.clone(),
                    expires_at: p.persona.expires_at,
                };
                view(&p.persona, &grant)
            }),
            closed: self.closed.clone(),
            expires_at: self.expires_at,
        }
    }
}

impl Service {
    pub(super) fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.trust
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// This keyd's persona: its cluster, root, branch, CA and chain, with `grant`.
    pub(super) fn my_persona(
        &self,
        name: Option<String>,
        grant: &Grant,
        url: String,
    ) -> Result<Persona, ServiceError> {
        let chain = self.read_chain();
        let state = chain.state();
        let root = state
            .root_keys()
            .map(|k| k.ed25519)
            .ok_or_else(|| ServiceError::NotFound("the chain has no root".into()))?;
        let cluster = match state.key(&KeyPath::root()).map(|r| &r.kind) {
            Some(KeyKind::Root { cluster }) => cluster.clone(),
            _ => return Err(ServiceError::NotFound("the chain has no genesis".into())),
        };
        drop(chain);
        let persona = Persona {
            persona: name.unwrap_or_else(|| cluster.clone()),
            cluster,
            root,
            branch: self.branch_path.clone(),
            url,
            ca_pem: self.ca.cert_pem().to_owned(),
            level: grant.level,
            permissions: grant.permissions.clone(),
            expires_at: grant.expires_at,
            chain: self.own_logs()?,
        };
        chain::check_text("persona", &persona.persona, chain::MAX_NAME, true)
            .map_err(ServiceError::BadRequest)?;
        Ok(persona)
    }

    /// The peer is acceptable: not this cluster, not blocklisted.
    pub(super) fn check_peer(&self, peer: &Persona, kind: Kind) -> Result<(), String> {
        if let Some(expected) = kind.expected()
            && fingerprint_of(&peer.root) != expected
        {
            return Err(format!(
                "this exchange is with the cluster of root {}, and the other side is of root {}",
                hex::encode(expected),
                peer.fingerprint()
            ));
        }
        let own = self.read_chain().state().root_keys().map(|k| k.ed25519);
        if own == Some(peer.root) {
            return Err("the other side is this very cluster".into());
        }
        if self.is_blocked(&peer.root) {
            return Err(format!(
                "the other side's root {} was revoked here (blocklisted)",
                peer.fingerprint()
            ));
        }
        Ok(())
    }

    /// `POST /v1/trust/invite` (admin, `trust.invite`): a new session and its link.
    pub fn trust_invite(
        &self,
        principal: &Principal,
        ask: TrustGrant,
        default_url: String,
    ) -> Result<TrustInvited, ServiceError> {
        self.trust_admin(principal, Op::TrustInvite)?;
        let url = ask.url.clone().unwrap_or(default_url);
        let (session, invitation) =
            self.open_session(ask.persona.clone(), Grant::from(&ask), url, Kind::Invited)?;
        self.audit_event(
            &principal.uri(),
            Op::TrustInvite.name(),
            Some(hex::encode(session)),
            None,
        );
        Ok(TrustInvited {
            session: hex::encode(session),
            link: invitation.to_link(),
            expires_at: unix_now() + self.config().trust_session,
        })
    }

    /// A new inviter session granting `grant`, reached at `url`: its id and invitation.
    /// A reset or an introduction (`kind`) names the root the responder must be of, and
    /// no code is compared.
    pub(super) fn open_session(
        &self,
        persona: Option<String>,
        grant: Grant,
        url: String,
        kind: Kind,
    ) -> Result<([u8; 16], Invitation), ServiceError> {
        let now = unix_now();
        grant.check(now)?;
        // The persona is checked now (a bad name is said at once).
        self.my_persona(persona.clone(), &grant, url.clone())?;
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let (inviter, _) = Inviter::new(&mut rng);
        let mut session = [0u8; 16];
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut session).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        getrandom::fill(secret.as_mut()).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let invitation = Invitation {
            v: 1,
            url: url.clone(),
            session,
            secret: *secret,
            ca: Invitation::ca_fingerprint(self.ca.cert_der()),
        };
        let mut sessions = self.sessions();
        sessions.0.retain(|_, s| s.expires_at > now);
        if sessions.0.values().filter(|s| s.closed.is_none()).count() >= MAX_SESSIONS {
            return Err(ServiceError::BadRequest(format!(
                "{MAX_SESSIONS} trust sessions are open already; let some end"
            )));
        }
        sessions.0.insert(
            session,
            Session {
                side: Side::Inviter(Box::new(InviterSide {
                    inviter,
                    secret,
                    grant,
                    persona,
                    url,
                    claimed: false,
                    peer: None,
                    peer_confirmed: false,
                    confirmation: None,
                    kind,
                })),
                expires_at: now + self.config().trust_session,
                closed: None,
                trusted: false,
            },
        );
        Ok((session, invitation))
    }

    /// A rendezvous call from the responder's keyd (public: the invitation's secret,
    /// proved, is the credential).
    pub fn rendezvous(&self, call: Rendezvous) -> Result<RendezvousReply, ServiceError> {
        let id = parse_id(&call.session)?;
        let now = unix_now();
        let unknown = || {
            ServiceError::TrustRefused("no such trust session (unknown, used or expired)".into())
        };
        let mut sessions = self.sessions();
        let session = sessions.0.get_mut(&id).ok_or_else(unknown)?;
        let Side::Inviter(side) = &mut session.side else {
            return Err(unknown());
        };
        let proof_ok = {
            let inv = Invitation {
                v: 1,
                url: String::new(),
                session: id,
                secret: *side.secret,
                ca: [0; 32],
            };
            let mut given = [0u8; 32];
            hex::decode_to_slice(&call.proof, &mut given).is_ok()
                && bool::from(inv.proof().ct_eq(&given))
        };
        if !proof_ok || session.expires_at <= now {
            return Err(unknown());
        }
        if let Some(why) = &session.closed {
            return Ok(RendezvousReply {
                state: format!("closed: {why}"),
                message: None,
            });
        }
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let reply = |state: &str, message: Option<Bytes>| RendezvousReply {
            state: state.into(),
            message,
        };
        let result = match call.step.as_str() {
            "offer" if side.claimed => Err(ServiceError::TrustRefused(
                "this invitation was used already: an invitation admits one responder, once".into(),
            )),
            "offer" => {
                side.claimed = true;
                Ok(reply("invited", cbor(&side.inviter.offer())))
            }
            "join" => {
                let join: Join = message(&call.message)?;
                side.inviter
                    .on_join(&join, &mut rng)
                    .map(|r| reply("joined", cbor(&r)))
                    .map_err(protocol)
            }
            "finish" => {
                let finish: Finish = message(&call.message)?;
                let grant = side.grant.clone();
                let (name, url) = (side.persona.clone(), side.url.clone());
                let key = self.material(&self.branch_path)?;
                let mine = self.my_persona(name, &grant, url)?;
                side.inviter
                    .on_finish(&finish, mine, key.signing_key())
                    .map(|s| reply("open", cbor(&s)))
                    .map_err(protocol)
            }
            "identity" => {
                let sealed: Sealed = message(&call.message)?;
                match side.inviter.on_identity(&sealed, now) {
                    Ok(peer) => match self.check_peer(&peer.persona, side.kind) {
                        Ok(()) => {
                            // A reset or an introduction needs no code: the identity
                            // is of the root expected, proved by its signature.
                            if side.kind != Kind::Invited {
                                side.inviter
                                    .confirm_digit(peer.code.last_digit())
                                    .map_err(protocol)?;
                            }
                            side.peer = Some(peer);
                            Ok(reply("identified", None))
                        }
                        Err(why) => Err(ServiceError::TrustRefused(why)),
                    },
                    Err(e) => Err(protocol(e)),
                }
            }
            "confirm" => {
                let sealed: Sealed = message(&call.message)?;
                match side.inviter.on_confirm(&sealed) {
                    Ok(true) => {
                        side.peer_confirmed = true;
                        Ok(reply("confirmed", None))
                    }
                    Ok(false) => Err(ServiceError::TrustRefused(
                        "the other admin said the codes do not match".into(),
                    )),
                    Err(e) => Err(protocol(e)),
                }
            }
            "status" => Ok(match (&side.confirmation, session.trusted) {
                (Some(c), true) => reply("trusted", cbor(c)),
                _ => reply("pending", None),
            }),
            other => Err(ServiceError::BadRequest(format!(
                "step {other:?}: one of offer, join, finish, identity, confirm, status"
            ))),
        };
        // Any refusal ends the session: nothing is recorded.
        if let Err(e) = &result {
            session.closed = Some(e.to_string());
        }
        let ready = result.is_ok()
            && !session.trusted
            && matches!(&session.side, Side::Inviter(i) if i.peer_confirmed && i.inviter.done());
        drop(sessions);
        let mut r = result?;
        if ready {
            self.conclude_inviter(&id)?;
            if self.sessions().0.get(&id).is_some_and(|s| s.trusted) {
                r.state = "trusted".into();
            }
        }
        Ok(r)
    }

    /// Both sides confirmed: the trust recorded (an invitation, an introduction) or the
    /// record refreshed (a reset).
    pub(super) fn conclude(
        &self,
        persona: &Persona,
        grant: &Grant,
        kind: Kind,
    ) -> Result<(), ServiceError> {
        match kind {
            Kind::Invited => self.record_trust(persona, grant, None),
            Kind::Reset(_) => self.refresh_trust(persona),
            Kind::Succeeded { old, .. } => self.succeed_trust(persona, &old),
            Kind::Introduced { by, .. } => self.record_trust(persona, grant, Some(by)),
        }
    }

    /// Both admins confirmed on the inviter's side: the trust recorded, the
    /// confirmation sealed for the responder.
    pub(super) fn conclude_inviter(&self, id: &[u8; 16]) -> Result<(), ServiceError> {
        let (persona, grant, kind) = {
            let mut sessions = self.sessions();
            let Some(Session {
                side: Side::Inviter(side),
                ..
            }) = sessions.0.get_mut(id)
            else {
                return Ok(());
            };
            let Some(peer) = &side.peer else {
                return Ok(());
            };
            (peer.persona.clone(), side.grant.clone(), side.kind)
        };
        self.conclude(&persona, &grant, kind)?;
        let mut sessions = self.sessions();
        if let Some(s) = sessions.0.get_mut(id) {
            if let Side::Inviter(side) = &mut s.side {
                side.confirmation = side.inviter.confirmation().ok();
            }
            s.trusted = true;
        }
        Ok(())
    }

    /// `GET /v1/trust/sessions/{id}` (admin): where a session stands. A responder whose
    /// admin confirmed asks the inviter's keyd again.
    pub fn trust_session(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<TrustSessionView, ServiceError> {
        self.trust_admin(principal, Op::TrustAccept)
            .or_else(|_| self.trust_admin(principal, Op::TrustInvite))?;
        let id = parse_id(id)?;
        let waiting = matches!(
            self.sessions().0.get(&id),
            Some(Session { side: Side::Responder(r), trusted: false, closed: None, .. }) if r.confirmed
        );
        if waiting {
            self.responder_poll(&id)?;
        }
        self.sessions()
            .0
            .get(&id)
            .map(|s| s.view(&id))
            .ok_or_else(|| {
                ServiceError::NotFound("no such trust session (unknown or expired)".into())
            })
    }

    /// `POST /v1/trust/sessions/{id}/confirm` (admin): the inviter's last digit, or the
    /// responder's yes or no.
    pub fn trust_confirm(
        &self,
        principal: &Principal,
        id: &str,
        ask: TrustConfirm,
    ) -> Result<TrustSessionView, ServiceError> {
        Self::require_admin(principal)?;
        let raw = parse_id(id)?;
        let role_inviter = match self.sessions().0.get(&raw) {
            Some(Session {
                side: Side::Inviter(_),
                ..
            }) => true,
            Some(_) => false,
            None => {
                return Err(ServiceError::NotFound(
                    "no such trust session (unknown or expired)".into(),
                ));
            }
        };
        if role_inviter {
            self.trust_admin(principal, Op::TrustInvite)?;
            if ask.matches == Some(false) {
                // The inviter's admin saw another code: the session ends.
                let why = "the inviter's admin said the codes do not match".to_owned();
                if let Some(s) = self.sessions().0.get_mut(&raw) {
                    s.closed = Some(why.clone());
                }
                return Err(ServiceError::TrustRefused(why));
            }
            let digit = ask.digit.filter(|d| *d < 10).ok_or_else(|| {
                ServiceError::BadRequest(
                    "digit: the last digit of the code (0-9) is required (or matches: false)"
                        .into(),
                )
            })?;
            let ready = {
                let mut sessions = self.sessions();
                let s = sessions
                    .0
                    .get_mut(&raw)
                    .ok_or_else(|| ServiceError::NotFound("no such trust session".into()))?;
                if let Some(why) = &s.closed {
                    return Err(ServiceError::TrustRefused(why.clone()));
                }
                let Side::Inviter(side) = &mut s.side else {
                    return Err(ServiceError::NotFound("no such trust session".into()));
                };
                if let Err(e) = side.inviter.confirm_digit(digit) {
                    s.closed = Some(e.to_string());
                    return Err(protocol(e));
                }
                side.peer_confirmed
            };
            if ready {
                self.conclude_inviter(&raw)?;
            }
        } else {
            self.trust_admin(principal, Op::TrustAccept)?;
            let matches = ask.matches.ok_or_else(|| {
                ServiceError::BadRequest(
                    "matches: true when both admins see the same code, else false".into(),
                )
            })?;
            self.responder_confirm(&raw, matches)?;
        }
        self.trust_session(principal, id)
    }
}

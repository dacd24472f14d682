//! Trust between clusters (DESIGN.md section 8): the exchange protocol as a pure state
//! machine ([`protocol`]), and the invitation token that starts it ([`token`]).
//! keyd's sessions and the recorded trust live in the service; the protocol and its
//! security argument are in docs/trust-exchange.md.

pub mod protocol;
pub mod token;

pub use protocol::{
    Code, Finish, Inviter, Join, Offer, Peer, Persona, ProtocolError, Responder, Reveal, Sealed,
};
pub use token::{Invitation, TokenError};

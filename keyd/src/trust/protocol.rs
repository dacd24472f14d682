//! The trust exchange as a pure state machine (docs/trust-exchange.md): no I/O, no
//! clock; keyd's sessions drive it over HTTPS, tests drive it directly (a man in the
//! middle included).
//!
//! 1. The inviter draws an ephemeral X-Wing key pair and a nonce and publishes only a
//!    commitment `C = SHA-256(tag ‖ epk_I ‖ n_I)` ([`Offer`]).
//! 2. The responder, having the commitment, sends its ephemeral X-Wing public key
//!    ([`Join`]).
//! 3. The inviter reveals `epk_I` and `n_I`, and a random secret `s_I` sealed (HPKE,
//!    X-Wing, HKDF-SHA256, ChaCha20-Poly1305) to `epk_R` ([`Reveal`]); the responder
//!    checks the commitment.
//! 4. The responder seals its secret `s_R` to `epk_I` ([`Finish`]). Both derive the
//!    session keys with HKDF-SHA256 from `s_I ‖ s_R`, salted with the transcript hash.
//! 5. Identities only inside the channel: each side sends its [`Persona`] (cluster,
//!    root, the chain that certifies its keyd's branch key, what it asks or grants) and
//!    a signature by that branch key over the transcript hash and both personas.
//! 6. The 6-digit code is computed from the public values the commitment fixes —
//!    `C`, `epk_R`, `epk_I`, `n_I` — so a man in the middle, who must fix his keys
//!    before he sees the honest side's, matches the two codes with probability 10⁻⁶.
//!    The admins compare it; the inviter types its last digit, the responder confirms;
//!    each side's confirmation travels sealed to the other.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hpke::aead::ChaCha20Poly1305 as HpkeChaCha;
use hpke::kdf::HkdfSha256;
use hpke::kem::XWing;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::chain::{self, KeyKind, TrustLevel};
use crate::derive::KeyPath;

/// Largest sealed message (a persona carries a chain).
pub const MAX_MESSAGE: usize = 64 << 20;
const COMMIT_TAG: &[u8] = b"keyd/v1/trust/commit\0";
const CODE_TAG: &[u8] = b"keyd/v1/trust/code\0";
const TRANSCRIPT_TAG: &[u8] = b"keyd/v1/trust/transcript\0";
const SESSION_INFO: &[u8] = b"keyd/v1/trust/session";
const HPKE_INFO: &[u8] = b"keyd/v1/trust/secret";
const INVITER_SIG: &[u8] = b"keyd/v1/trust/inviter\0";
const RESPONDER_SIG: &[u8] = b"keyd/v1/trust/responder\0";

/// Why a step of the exchange fails. Any failure ends the session.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A message out of order.
    #[error("message out of order: {0}")]
    Order(&'static str),
    /// A message that does not decode or open.
    #[error("{0}")]
    Malformed(String),
    /// The inviter's revealed key is not the one it committed to.
    #[error("the inviter's key does not match its commitment")]
    Commitment,
    /// The other side's persona does not hold together.
    #[error("the other side's persona is not valid: {0}")]
    Persona(String),
    /// The other side's signature over the transcript does not verify.
    #[error("the other side's signature over the exchange does not verify")]
    Signature,
    /// The inviter typed another last digit than the code's.
    #[error("the digit typed is not the code's last digit: the codes differ or were misread")]
    WrongDigit,
}

/// Step 1, inviter to responder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Offer {
    /// The commitment to the inviter's ephemeral key and nonce.
    #[serde(with = "serde_bytes")]
    pub commit: [u8; 32],
}

/// Step 2, responder to inviter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Join {
    /// The responder's ephemeral X-Wing public key.
    #[serde(with = "serde_bytes")]
    pub epk: Vec<u8>,
}

/// Step 3, inviter to responder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reveal {
    /// The inviter's ephemeral X-Wing public key.
    #[serde(with = "serde_bytes")]
    pub epk: Vec<u8>,
    /// The committed nonce.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 32],
    /// HPKE encapsulated key of the inviter's secret.
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// The inviter's secret, sealed to the responder's ephemeral key.
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

/// Step 4, responder to inviter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Finish {
    /// HPKE encapsulated key of the responder's secret.
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// The responder's secret, sealed to the inviter's ephemeral key.
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

/// A message under the session key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sealed {
    /// ChaCha20-Poly1305 ciphertext.
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

/// What one side tells the other about itself, inside the channel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    /// The name the admin shows (free text, at most 64 bytes).
    pub persona: String,
    /// The cluster name of its genesis.
    pub cluster: String,
    /// Its root identity Ed25519 key.
    #[serde(with = "serde_bytes")]
    pub root: [u8; 32],
    /// The keyd branch whose key signs for it.
    pub branch: KeyPath,
    /// Where its keyd serves the chain (`https://host:port`).
    pub url: String,
    /// Its keyd's CA certificate (PEM), to reach it.
    pub ca_pem: String,
    /// The level asked for (inviter) or granted (responder).
    pub level: TrustLevel,
    /// The permissions asked for or granted.
    pub permissions: Vec<String>,
    /// The end asked for or granted (Unix seconds).
    pub expires_at: u64,
    /// Its cluster chain: the root log and the branch's log.
    #[serde(with = "serde_bytes")]
    pub chain: Vec<u8>,
}

impl Persona {
    /// The persona's fields checked: its chain verifies, is of `root`, names `cluster`,
    /// and certifies `branch` as a live level-1 branch: the branch's verifying key.
    pub fn check(&self, now: u64) -> Result<VerifyingKey, ProtocolError> {
        let bad = |m: String| ProtocolError::Persona(m);
        chain::check_text("persona", &self.persona, chain::MAX_NAME, true).map_err(bad)?;
        if self.permissions.len() > 32 {
            return Err(bad("more than 32 permissions".into()));
        }
        let verified =
            chain::verify_file(&self.chain).map_err(|e| bad(format!("its chain: {e}")))?;
        let state = verified.state();
        if state.root_keys().map(|k| k.ed25519) != Some(self.root) {
            return Err(bad("its chain is of another root".into()));
        }
        match state.key(&KeyPath::root()).map(|r| &r.kind) {
            Some(KeyKind::Root { cluster }) if *cluster == self.cluster => {}
            _ => return Err(bad("its chain names another cluster".into())),
        }
        if self.branch.depth() != 1 || !state.status_at(&self.branch, now).is_valid() {
            return Err(bad(format!(
                "its chain does not hold branch {} as valid",
                self.branch
            )));
        }
        state
            .key(&self.branch)
            .and_then(|r| r.keys.verifying_key())
            .ok_or_else(|| bad("no branch key".into()))
    }

    /// The root's fingerprint.
    pub fn fingerprint(&self) -> String {
        chain::fingerprint(&self.root)
    }
}

/// A persona and the signature of its branch key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    persona: Persona,
    #[serde(with = "serde_bytes")]
    signature: [u8; 64],
}

/// A confirmation: the sender's admin confirmed the code.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirm {
    confirmed: bool,
}

/// The 6-digit code of an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code(pub u32);

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl Code {
    /// Its last digit.
    pub fn last_digit(&self) -> u32 {
        self.0 % 10
    }
}

fn commitment(epk: &[u8], nonce: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(COMMIT_TAG)
        .chain_update(epk)
        .chain_update(nonce)
        .finalize()
        .into()
}

fn code_of(commit: &[u8; 32], epk_r: &[u8], epk_i: &[u8], nonce: &[u8; 32]) -> Code {
    let h = Sha256::new()
        .chain_update(CODE_TAG)
        .chain_update(commit)
        .chain_update((epk_r.len() as u32).to_be_bytes())
        .chain_update(epk_r)
        .chain_update(epk_i)
        .chain_update(nonce)
        .finalize();
    let n = u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]));
    Code((n % 1_000_000) as u32)
}

fn transcript(commit: &[u8; 32], join: &Join, reveal: &Reveal, finish: &Finish) -> [u8; 32] {
    let body = chain::cbor_bytes(&(commit, join, reveal, finish));
    Sha256::new()
        .chain_update(TRANSCRIPT_TAG)
        .chain_update(body)
        .finalize()
        .into()
}

fn random<const N: usize>(rng: &mut impl CryptoRng) -> Zeroizing<[u8; N]> {
    let mut b = Zeroizing::new([0u8; N]);
    rng.fill_bytes(b.as_mut());
    b
}

fn keypair(rng: &mut impl CryptoRng) -> (<XWing as Kem>::PrivateKey, Vec<u8>) {
    let seed = random::<32>(rng);
    let (sk, pk) = XWing::derive_keypair(seed.as_ref());
    (sk, pk.to_bytes().to_vec())
}

fn seal_secret(
    to: &[u8],
    secret: &[u8; 32],
    aad: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<(Vec<u8>, Vec<u8>), ProtocolError> {
    let pk = <XWing as Kem>::PublicKey::from_bytes(to)
        .map_err(|_| ProtocolError::Malformed("not an X-Wing public key".into()))?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<HpkeChaCha, HkdfSha256, XWing>(
        &OpModeS::Base,
        &pk,
        HPKE_INFO,
        secret,
        aad,
        rng,
    )
    .map_err(|_| ProtocolError::Malformed("cannot seal the secret".into()))?;
    Ok((enc.to_bytes().to_vec(), ct))
}

fn open_secret(
    sk: &<XWing as Kem>::PrivateKey,
    enc: &[u8],
    ct: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<[u8; 32]>, ProtocolError> {
    let bad = || ProtocolError::Malformed("the sealed secret does not open".into());
    let enc = <XWing as Kem>::EncappedKey::from_bytes(enc).map_err(|_| bad())?;
    let clear = Zeroizing::new(
        hpke::single_shot_open::<HpkeChaCha, HkdfSha256, XWing>(
            &OpModeR::Base,
            sk,
            &enc,
            HPKE_INFO,
            ct,
            aad,
        )
        .map_err(|_| bad())?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if clear.len() != 32 {
        return Err(bad());
    }
    out.copy_from_slice(&clear);
    Ok(out)
}

/// The session keys and counters of one side.
struct Channel {
    send: Zeroizing<[u8; 32]>,
    recv: Zeroizing<[u8; 32]>,
    sent: u64,
    received: u64,
    transcript: [u8; 32],
}

impl Channel {
    fn new(s_i: &[u8; 32], s_r: &[u8; 32], transcript: [u8; 32], inviter: bool) -> Channel {
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(s_i);
        ikm[32..].copy_from_slice(s_r);
        let hk = Hkdf::<Sha256>::new(Some(&transcript), ikm.as_ref());
        let mut okm = Zeroizing::new([0u8; 64]);
        hk.expand(SESSION_INFO, okm.as_mut())
            .unwrap_or_else(|_| unreachable!("64 bytes is a valid HKDF-SHA256 length"));
        let (mut i_to_r, mut r_to_i) = (Zeroizing::new([0u8; 32]), Zeroizing::new([0u8; 32]));
        i_to_r.copy_from_slice(&okm[..32]);
        r_to_i.copy_from_slice(&okm[32..]);
        let (send, recv) = if inviter {
            (i_to_r, r_to_i)
        } else {
            (r_to_i, i_to_r)
        };
        Channel {
            send,
            recv,
            sent: 0,
            received: 0,
            transcript,
        }
    }

    fn nonce(n: u64) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[4..].copy_from_slice(&n.to_be_bytes());
        out
    }

    fn cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&(*key).into())
    }

    fn seal<T: Serialize>(&mut self, value: &T) -> Sealed {
        let clear = Zeroizing::new(chain::cbor_bytes(value));
        // Encryption under a valid key and nonce does not fail.
        let ct = Self::cipher(&self.send)
            .encrypt(
                &Nonce::from(Self::nonce(self.sent)),
                Payload {
                    msg: &clear,
                    aad: &self.transcript,
                },
            )
            .unwrap_or_default();
        self.sent += 1;
        Sealed { ct }
    }

    fn open<T: Serialize + serde::de::DeserializeOwned>(
        &mut self,
        sealed: &Sealed,
    ) -> Result<T, ProtocolError> {
        let clear = Zeroizing::new(
            Self::cipher(&self.recv)
                .decrypt(
                    &Nonce::from(Self::nonce(self.received)),
                    Payload {
                        msg: &sealed.ct,
                        aad: &self.transcript,
                    },
                )
                .map_err(|_| {
                    ProtocolError::Malformed(
                        "a sealed message does not open under the session key".into(),
                    )
                })?,
        );
        self.received += 1;
        chain::decode_exact(&clear, MAX_MESSAGE)
            .map_err(|e| ProtocolError::Malformed(format!("a sealed message: {e}")))
    }
}

fn signed_bytes(tag: &[u8], transcript: &[u8; 32], personas: &[&Persona]) -> Vec<u8> {
    let mut out = tag.to_vec();
    out.extend_from_slice(transcript);
    for p in personas {
        out.extend_from_slice(&Sha256::digest(chain::cbor_bytes(p)));
    }
    out
}

/// What the other side said, once it is verified: its persona and the code.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its persona (checked).
    pub persona: Persona,
    /// The code both sides must show.
    pub code: Code,
}

enum InviterState {
    Offered {
        sk: Box<<XWing as Kem>::PrivateKey>,
        epk: Vec<u8>,
        nonce: [u8; 32],
    },
    Revealed {
        sk: Box<<XWing as Kem>::PrivateKey>,
        s_i: Zeroizing<[u8; 32]>,
        join: Join,
        reveal: Reveal,
    },
    Open {
        channel: Box<Channel>,
        code: Code,
        mine: Box<Persona>,
    },
    Identified {
        channel: Box<Channel>,
        peer: Box<Peer>,
        digit_ok: bool,
        peer_confirmed: bool,
    },
    Closed,
}

/// The inviter's side.
pub struct Inviter {
    commit: [u8; 32],
    state: InviterState,
}

impl std::fmt::Debug for Inviter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inviter").finish_non_exhaustive()
    }
}

impl Inviter {
    /// Step 1: a fresh ephemeral key, committed to.
    pub fn new(rng: &mut impl CryptoRng) -> (Inviter, Offer) {
        let (sk, epk) = keypair(rng);
        let nonce = *random::<32>(rng);
        let commit = commitment(&epk, &nonce);
        (
            Inviter {
                commit,
                state: InviterState::Offered {
                    sk: Box::new(sk),
                    epk,
                    nonce,
                },
            },
            Offer { commit },
        )
    }

    /// The commitment (what a responder is sent first).
    pub fn offer(&self) -> Offer {
        Offer {
            commit: self.commit,
        }
    }

    /// Step 3: the responder's key taken, the inviter's revealed with its secret.
    pub fn on_join(
        &mut self,
        join: &Join,
        rng: &mut impl CryptoRng,
    ) -> Result<Reveal, ProtocolError> {
        let InviterState::Offered { sk, epk, nonce } =
            std::mem::replace(&mut self.state, InviterState::Closed)
        else {
            return Err(ProtocolError::Order("join"));
        };
        let s_i = random::<32>(rng);
        let (enc, ct) = seal_secret(&join.epk, &s_i, &self.commit, rng)?;
        let reveal = Reveal {
            epk,
            nonce,
            enc,
            ct,
        };
        self.state = InviterState::Revealed {
            sk,
            s_i,
            join: join.clone(),
            reveal: reveal.clone(),
        };
        Ok(reveal)
    }

    /// Step 5: the responder's secret taken; the channel opens and the inviter's
    /// identity (`mine`, signed by `key`, its branch key) goes through it.
    pub fn on_finish(
        &mut self,
        finish: &Finish,
        mine: Persona,
        key: &SigningKey,
    ) -> Result<Sealed, ProtocolError> {
        let InviterState::Revealed {
            sk,
            s_i,
            join,
            reveal,
        } = std::mem::replace(&mut self.state, InviterState::Closed)
        else {
            return Err(ProtocolError::Order("finish"));
        };
        let th = transcript(&self.commit, &join, &reveal, finish);
        let s_r = open_secret(&sk, &finish.enc, &finish.ct, &th_aad(&self.commit, &reveal))?;
        let mut channel = Box::new(Channel::new(&s_i, &s_r, th, true));
        let signature = key
            .sign(&signed_bytes(INVITER_SIG, &th, &[&mine]))
            .to_bytes();
        let sealed = channel.seal(&Identity {
            persona: mine.clone(),
            signature,
        });
        let code = code_of(&self.commit, &join.epk, &reveal.epk, &reveal.nonce);
        self.state = InviterState::Open {
            channel,
            code,
            mine: Box::new(mine),
        };
        Ok(sealed)
    }

    /// Step 6: the responder's identity, checked at `now`: who it is, and the code.
    pub fn on_identity(&mut self, sealed: &Sealed, now: u64) -> Result<Peer, ProtocolError> {
        let InviterState::Open {
            mut channel,
            code,
            mine,
        } = std::mem::replace(&mut self.state, InviterState::Closed)
        else {
            return Err(ProtocolError::Order("identity"));
        };
        let theirs: Identity = channel.open(sealed)?;
        let key = theirs.persona.check(now)?;
        let msg = signed_bytes(
            RESPONDER_SIG,
            &channel.transcript,
            &[&theirs.persona, &mine],
        );
        key.verify_strict(&msg, &Signature::from_bytes(&theirs.signature))
            .map_err(|_| ProtocolError::Signature)?;
        let peer = Peer {
            persona: theirs.persona,
            code,
        };
        self.state = InviterState::Identified {
            channel,
            peer: Box::new(peer.clone()),
            digit_ok: false,
            peer_confirmed: false,
        };
        Ok(peer)
    }

    /// The inviter's admin typed `digit`: right, or the session ends.
    pub fn confirm_digit(&mut self, digit: u32) -> Result<(), ProtocolError> {
        match &mut self.state {
            InviterState::Identified { peer, digit_ok, .. } => {
                if peer.code.last_digit() != digit {
                    self.state = InviterState::Closed;
                    return Err(ProtocolError::WrongDigit);
                }
                *digit_ok = true;
                Ok(())
            }
            _ => Err(ProtocolError::Order("digit")),
        }
    }

    /// The responder's confirmation (or refusal), sealed.
    pub fn on_confirm(&mut self, sealed: &Sealed) -> Result<bool, ProtocolError> {
        let InviterState::Identified {
            channel,
            peer_confirmed,
            ..
        } = &mut self.state
        else {
            return Err(ProtocolError::Order("confirm"));
        };
        let c: Confirm = channel.open(sealed)?;
        if !c.confirmed {
            self.state = InviterState::Closed;
            return Ok(false);
        }
        *peer_confirmed = true;
        Ok(true)
    }

    /// The inviter's confirmation for the responder, once its admin typed the digit.
    pub fn confirmation(&mut self) -> Result<Sealed, ProtocolError> {
        match &mut self.state {
            InviterState::Identified {
                channel,
                digit_ok: true,
                ..
            } => Ok(channel.seal(&Confirm { confirmed: true })),
            _ => Err(ProtocolError::Order("confirmation")),
        }
    }

    /// Whether both sides confirmed: the trust may be recorded.
    pub fn done(&self) -> bool {
        matches!(
            self.state,
            InviterState::Identified {
                digit_ok: true,
                peer_confirmed: true,
                ..
            }
        )
    }

    /// The code, once the channel is open.
    pub fn code(&self) -> Option<Code> {
        match &self.state {
            InviterState::Open { code, .. } => Some(*code),
            InviterState::Identified { peer, .. } => Some(peer.code),
            _ => None,
        }
    }
}

/// The additional data the secrets are sealed under: the commitment and the reveal's
/// public part.
fn th_aad(commit: &[u8; 32], reveal: &Reveal) -> Vec<u8> {
    let mut out = commit.to_vec();
    out.extend_from_slice(&reveal.epk);
    out.extend_from_slice(&reveal.nonce);
    out
}

enum ResponderState {
    Joined {
        sk: Box<<XWing as Kem>::PrivateKey>,
        join: Join,
    },
    Finished {
        channel: Box<Channel>,
        code: Code,
    },
    Identified {
        channel: Box<Channel>,
        peer: Box<Peer>,
    },
    Consented {
        channel: Box<Channel>,
        peer: Box<Peer>,
    },
    Closed,
}

/// The responder's side.
pub struct Responder {
    commit: [u8; 32],
    state: ResponderState,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    /// Step 2: the inviter's commitment taken, a fresh ephemeral key sent.
    pub fn new(offer: &Offer, rng: &mut impl CryptoRng) -> (Responder, Join) {
        let (sk, epk) = keypair(rng);
        let join = Join { epk };
        (
            Responder {
                commit: offer.commit,
                state: ResponderState::Joined {
                    sk: Box::new(sk),
                    join: join.clone(),
                },
            },
            join,
        )
    }

    /// Step 4: the inviter's reveal checked against its commitment; the responder's
    /// secret sealed to it.
    pub fn on_reveal(
        &mut self,
        reveal: &Reveal,
        rng: &mut impl CryptoRng,
    ) -> Result<Finish, ProtocolError> {
        let ResponderState::Joined { sk, join } =
            std::mem::replace(&mut self.state, ResponderState::Closed)
        else {
            return Err(ProtocolError::Order("reveal"));
        };
        if commitment(&reveal.epk, &reveal.nonce) != self.commit {
            return Err(ProtocolError::Commitment);
        }
        let s_i = open_secret(&sk, &reveal.enc, &reveal.ct, &self.commit)?;
        let s_r = random::<32>(rng);
        let (enc, ct) = seal_secret(&reveal.epk, &s_r, &th_aad(&self.commit, reveal), rng)?;
        let finish = Finish { enc, ct };
        let th = transcript(&self.commit, &join, reveal, &finish);
        let channel = Box::new(Channel::new(&s_i, &s_r, th, false));
        let code = code_of(&self.commit, &join.epk, &reveal.epk, &reveal.nonce);
        self.state = ResponderState::Finished { channel, code };
        Ok(finish)
    }

    /// Step 5: the inviter's identity, checked at `now`: who invites, and the code.
    pub fn on_identity(&mut self, sealed: &Sealed, now: u64) -> Result<Peer, ProtocolError> {
        let ResponderState::Finished { mut channel, code } =
            std::mem::replace(&mut self.state, ResponderState::Closed)
        else {
            return Err(ProtocolError::Order("identity"));
        };
        let theirs: Identity = channel.open(sealed)?;
        let key = theirs.persona.check(now)?;
        let msg = signed_bytes(INVITER_SIG, &channel.transcript, &[&theirs.persona]);
        key.verify_strict(&msg, &Signature::from_bytes(&theirs.signature))
            .map_err(|_| ProtocolError::Signature)?;
        let peer = Peer {
            persona: theirs.persona,
            code,
        };
        self.state = ResponderState::Identified {
            channel,
            peer: Box::new(peer.clone()),
        };
        Ok(peer)
    }

    /// Step 6: the responder's admin consented; its identity (`mine`, signed by `key`)
    /// goes to the inviter.
    pub fn consent(&mut self, mine: &Persona, key: &SigningKey) -> Result<Sealed, ProtocolError> {
        let ResponderState::Identified { mut channel, peer } =
            std::mem::replace(&mut self.state, ResponderState::Closed)
        else {
            return Err(ProtocolError::Order("consent"));
        };
        let msg = signed_bytes(RESPONDER_SIG, &channel.transcript, &[mine, &peer.persona]);
        let sealed = channel.seal(&Identity {
            persona: mine.clone(),
            signature: key.sign(&msg).to_bytes(),
        });
        self.state = ResponderState::Consented { channel, peer };
        Ok(sealed)
    }

    /// The responder's admin says whether the codes match: the sealed answer for the
    /// inviter (a refusal ends the session).
    pub fn confirm(&mut self, matches: bool) -> Result<Sealed, ProtocolError> {
        let ResponderState::Consented { channel, .. } = &mut self.state else {
            return Err(ProtocolError::Order("confirm"));
        };
        let sealed = channel.seal(&Confirm { confirmed: matches });
        if !matches {
            self.state = ResponderState::Closed;
        }
        Ok(sealed)
    }

    /// The inviter's confirmation: true once it is verified.
    pub fn on_confirmation(&mut self, sealed: &Sealed) -> Result<bool, ProtocolError> {
        let ResponderState::Consented { channel, .. } = &mut self.state else {
            return Err(ProtocolError::Order("confirmation"));
        };
        let c: Confirm = channel.open(sealed)?;
        Ok(c.confirmed)
    }

    /// The code, once the secrets are exchanged.
    pub fn code(&self) -> Option<Code> {
        match &self.state {
            ResponderState::Finished { code, .. } => Some(*code),
            ResponderState::Identified { peer, .. } | ResponderState::Consented { peer, .. } => {
                Some(peer.code)
            }
            _ => None,
        }
    }
}

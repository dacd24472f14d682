//! Versioned CBOR envelopes. Both carry the path (hence the epoch) and the key id of the
//! key that opens them, so older epochs still decrypt until revoked, and a holder can tell
//! which key an envelope needs without asking keyd.
//!
//! - [`Sealed`]: symmetric, for a node's own storage: ChaCha20-Poly1305 under a
//!   per-envelope key drawn by HKDF-SHA256 from the epoch key's storage key and a random
//!   salt.
//! - [`Encrypted`]: public-key, to a recipient node's epoch key with HPKE (RFC 9180;
//!   KEM X-Wing — ML-KEM-768 + X25519 — by default, DHKEM(X25519, HKDF-SHA256) on request;
//!   HKDF-SHA256; ChaCha20-Poly1305), signed by the sender's epoch key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use getrandom::SysRng;
use hkdf::Hkdf;
use hpke::aead::ChaCha20Poly1305 as HpkeChaCha;
use hpke::kdf::HkdfSha256;
use hpke::kem::{X25519HkdfSha256, XWing};
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, UnwrapErr};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::chain::{self, cbor_bytes};
use crate::derive::{KeyId, KeyMaterial, KeyPath};

/// Envelope format version: 2 names key ids.
pub const ENVELOPE_VERSION: u8 = 2;
/// Envelopes made before key ids (no `kid` fields): still opened, never made; `rewrap`
/// moves one to the current version.
pub const LEGACY_VERSION: u8 = 1;
/// The classical public-key suite, for compatibility.
pub const SUITE_X25519: &str = "x25519-hkdf-sha256-chacha20poly1305";
/// The hybrid post-quantum public-key suite, the default.
pub const SUITE_X_WING: &str = "xwing-hkdf-sha256-chacha20poly1305";
/// Largest plaintext sealed or encrypted: every envelope made from one stays under
/// [`MAX_ENVELOPE`], so whatever keyd seals it can also open.
pub const MAX_PLAINTEXT: usize = 1024 * 1024;
/// Largest envelope accepted: [`MAX_PLAINTEXT`] plus room for the header, the HPKE
/// encapsulated key (1,120 bytes for X-Wing), the tag and the signature.
pub const MAX_ENVELOPE: usize = MAX_PLAINTEXT + 16 * 1024;
const SEAL_INFO: &[u8] = b"keyd/v1/seal-envelope";
/// HPKE `info` of public-key envelopes.
pub const HPKE_INFO: &[u8] = b"keyd/v1/encrypt";
/// Domain separation for the sender's signature over an envelope.
pub const SIGN_DOMAIN: &[u8] = b"keyd/v1/encrypted\0";

/// Envelopes that do not open.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not an envelope of this version.
    #[error("not a keyd envelope: {0}")]
    Malformed(String),
    /// Authentication failed: tampered, or not for this key.
    #[error(
        "the envelope does not open: tampered, not sealed to this key, or sealed with another context"
    )]
    Open,
    /// The sender's signature does not verify.
    #[error("the sender's signature does not verify")]
    Signature,
    /// A suite keyd does not know.
    #[error("unknown suite {0:?}")]
    Suite(String),
    /// The plaintext is over [`MAX_PLAINTEXT`].
    #[error("the plaintext is {0} bytes; at most {MAX_PLAINTEXT} are sealed or encrypted at once")]
    TooLarge(usize),
    /// The envelope was sealed with a context (associated data) and none was given.
    #[error("the envelope was sealed with a context: give the same context to open it")]
    ContextRequired,
    /// A context was given for an envelope sealed without one.
    #[error("the envelope was sealed without a context: open it without one")]
    ContextUnexpected,
    /// The key id the envelope names is not the key id of the key at its path.
    #[error("the envelope names key id {named} for {path}, whose key id is {actual}")]
    KeyId {
        /// The key path the envelope names.
        path: KeyPath,
        /// The key id it names.
        named: KeyId,
        /// The key id of the key at that path.
        actual: KeyId,
    },
}

/// Whether a context goes with an envelope that says `flag`.
fn check_context(flag: bool, context: &[u8]) -> Result<(), EnvelopeError> {
    match (flag, context.is_empty()) {
        (true, true) => Err(EnvelopeError::ContextRequired),
        (false, false) => Err(EnvelopeError::ContextUnexpected),
        _ => Ok(()),
    }
}

/// The associated data: the header's canonical CBOR, then the context (the header is
/// one self-delimiting CBOR item, so the two never run together).
fn with_context(mut header: Vec<u8>, context: &[u8]) -> Vec<u8> {
    header.extend_from_slice(context);
    header
}

fn check_size(plaintext: &[u8]) -> Result<(), EnvelopeError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EnvelopeError::TooLarge(plaintext.len()));
    }
    Ok(())
}

/// The key id of a key's material (its Ed25519 public key is cached: no curve operation).
fn key_id(material: &KeyMaterial) -> KeyId {
    KeyId::of(&material.signing_key().verifying_key())
}

/// An envelope of this version names key ids; a legacy one names none.
fn check_version(v: u8, has_key_ids: bool) -> Result<(), EnvelopeError> {
    match (v, has_key_ids) {
        (ENVELOPE_VERSION, true) | (LEGACY_VERSION, false) => Ok(()),
        (ENVELOPE_VERSION, false) => {
            Err(EnvelopeError::Malformed("version 2 without key ids".into()))
        }
        (LEGACY_VERSION, true) => Err(EnvelopeError::Malformed("version 1 with key ids".into())),
        (v, _) => Err(EnvelopeError::Malformed(format!("version {v}"))),
    }
}

/// Checks the key id an envelope names (none in a legacy envelope).
fn check_key_id(
    path: &KeyPath,
    named: Option<&[u8; 16]>,
    actual: KeyId,
) -> Result<(), EnvelopeError> {
    let Some(named) = named else {
        return Ok(());
    };
    if named != &actual.0 {
        return Err(EnvelopeError::KeyId {
            path: path.clone(),
            named: KeyId(*named),
            actual,
        });
    }
    Ok(())
}

/// The HPKE suite of an [`Encrypted`] envelope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Suite {
    /// X-Wing (ML-KEM-768 + X25519), HKDF-SHA256, ChaCha20-Poly1305: [`SUITE_X_WING`].
    #[default]
    XWing,
    /// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305: [`SUITE_X25519`].
    X25519,
}

impl Suite {
    /// The name carried in envelopes.
    pub fn name(self) -> &'static str {
        match self {
            Suite::XWing => SUITE_X_WING,
            Suite::X25519 => SUITE_X25519,
        }
    }

    /// The suite of an envelope or request: its full name, or `x-wing` / `x25519`.
    pub fn parse(name: &str) -> Result<Suite, EnvelopeError> {
        match name {
            SUITE_X_WING | "x-wing" | "xwing" => Ok(Suite::XWing),
            SUITE_X25519 | "x25519" => Ok(Suite::X25519),
            other => Err(EnvelopeError::Suite(other.to_owned())),
        }
    }
}

fn hpke_seal<K: Kem>(
    pk: &K::PublicKey,
    plaintext: &[u8],
    aad: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<(Vec<u8>, Vec<u8>), EnvelopeError> {
    let (enc, ct) = hpke::single_shot_seal_with_rng::<HpkeChaCha, HkdfSha256, K>(
        &OpModeS::Base,
        pk,
        HPKE_INFO,
        plaintext,
        aad,
        rng,
    )
    .map_err(|_| EnvelopeError::Open)?;
    Ok((enc.to_bytes().to_vec(), ct))
}

fn hpke_open<K: Kem>(
    sk: &K::PrivateKey,
    enc: &[u8],
    ct: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let enc = K::EncappedKey::from_bytes(enc).map_err(|_| EnvelopeError::Open)?;
    hpke::single_shot_open::<HpkeChaCha, HkdfSha256, K>(
        &OpModeR::Base,
        sk,
        &enc,
        HPKE_INFO,
        ct,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| EnvelopeError::Open)
}

/// A symmetric envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// [`ENVELOPE_VERSION`].
    pub v: u8,
    /// The epoch key whose storage key seals it.
    pub key: KeyPath,
    /// The key id of `key` (of its Ed25519 public key); absent in legacy envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub kid: Option<[u8; 16]>,
    /// Whether it was sealed with a context (associated data the opener must give
    /// again); absent when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ctx: bool,
    /// HKDF salt.
    #[serde(with = "serde_bytes")]
    pub salt: [u8; 32],
    /// AEAD nonce.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 12],
    /// Ciphertext and tag.
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

#[derive(Serialize)]
struct SealedHeader<'a> {
    v: u8,
    key: &'a KeyPath,
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    kid: Option<&'a [u8; 16]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ctx: bool,
    #[serde(with = "serde_bytes")]
    salt: &'a [u8; 32],
    #[serde(with = "serde_bytes")]
    nonce: &'a [u8; 12],
}

fn seal_key(material: &KeyMaterial, salt: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    if Hkdf::<Sha256>::new(Some(salt), material.storage_key())
        .expand(SEAL_INFO, key.as_mut())
        .is_err()
    {
        unreachable!("HKDF-SHA256 expands 32 bytes");
    }
    key
}

impl Sealed {
    fn aad(&self, context: &[u8]) -> Vec<u8> {
        let header = cbor_bytes(&SealedHeader {
            v: self.v,
            key: &self.key,
            kid: self.kid.as_ref(),
            ctx: self.ctx,
            salt: &self.salt,
            nonce: &self.nonce,
        });
        with_context(header, context)
    }

    /// Seals `plaintext` (at most [`MAX_PLAINTEXT`] bytes) with the storage key of the
    /// epoch key at `key`; `salt` and `nonce` must come from a CSPRNG.
    pub fn seal(
        key: &KeyPath,
        material: &KeyMaterial,
        plaintext: &[u8],
        salt: [u8; 32],
        nonce: [u8; 12],
    ) -> Result<Sealed, EnvelopeError> {
        Self::seal_in(key, material, plaintext, &[], salt, nonce)
    }

    /// [`Sealed::seal`] bound to `context` (associated data, not stored: opening needs
    /// it again; empty for none).
    pub fn seal_in(
        key: &KeyPath,
        material: &KeyMaterial,
        plaintext: &[u8],
        context: &[u8],
        salt: [u8; 32],
        nonce: [u8; 12],
    ) -> Result<Sealed, EnvelopeError> {
        check_size(plaintext)?;
        let mut s = Sealed {
            v: ENVELOPE_VERSION,
            key: key.clone(),
            kid: Some(key_id(material).0),
            ctx: !context.is_empty(),
            salt,
            nonce,
            ct: Vec::new(),
        };
        let k = seal_key(material, &s.salt);
        let cipher = ChaCha20Poly1305::new_from_slice(k.as_ref())
            .unwrap_or_else(|_| unreachable!("32-byte key"));
        let aad = s.aad(context);
        s.ct = cipher
            .encrypt(
                &Nonce::from(s.nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("encryption of a bounded message cannot fail"));
        Ok(s)
    }

    /// Opens with the storage key of the epoch key the envelope names (its key id must
    /// match).
    pub fn open(&self, material: &KeyMaterial) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        self.open_in(material, &[])
    }

    /// [`Sealed::open`] with the context it was sealed with (empty for none).
    pub fn open_in(
        &self,
        material: &KeyMaterial,
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        check_context(self.ctx, context)?;
        check_key_id(&self.key, self.kid.as_ref(), key_id(material))?;
        let k = seal_key(material, &self.salt);
        let cipher =
            ChaCha20Poly1305::new_from_slice(k.as_ref()).map_err(|_| EnvelopeError::Open)?;
        cipher
            .decrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: &self.ct,
                    aad: &self.aad(context),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| EnvelopeError::Open)
    }

    /// Canonical CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor_bytes(self)
    }

    /// Decodes canonical CBOR.
    pub fn from_cbor(bytes: &[u8]) -> Result<Sealed, EnvelopeError> {
        let s: Sealed = chain::decode_exact(bytes, MAX_ENVELOPE)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        check_version(s.v, s.kid.is_some())?;
        Ok(s)
    }
}

/// A public-key envelope, signed by its sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encrypted {
    /// [`ENVELOPE_VERSION`].
    pub v: u8,
    /// [`SUITE_X_WING`] or [`SUITE_X25519`].
    pub suite: String,
    /// The recipient's epoch key.
    pub recipient: KeyPath,
    /// The key id of the recipient's epoch key; absent in legacy envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub recipient_kid: Option<[u8; 16]>,
    /// The sender's epoch key.
    pub sender: KeyPath,
    /// The key id of the sender's epoch key; absent in legacy envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub sender_kid: Option<[u8; 16]>,
    /// Whether it was sealed with a context (associated data the recipient must give
    /// again); absent when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ctx: bool,
    /// HPKE encapsulated key.
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// HPKE ciphertext.
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
    /// Ed25519 signature by the sender over everything above.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

#[derive(Serialize)]
struct EncryptedHeader<'a> {
    v: u8,
    suite: &'a str,
    recipient: &'a KeyPath,
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    recipient_kid: Option<&'a [u8; 16]>,
    sender: &'a KeyPath,
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    sender_kid: Option<&'a [u8; 16]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ctx: bool,
}

#[derive(Serialize)]
struct EncryptedUnsigned<'a> {
    v: u8,
    suite: &'a str,
    recipient: &'a KeyPath,
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    recipient_kid: Option<&'a [u8; 16]>,
    sender: &'a KeyPath,
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    sender_kid: Option<&'a [u8; 16]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ctx: bool,
    #[serde(with = "serde_bytes")]
    enc: &'a [u8],
    #[serde(with = "serde_bytes")]
    ct: &'a [u8],
}

impl Encrypted {
    /// The HPKE associated data: the canonical CBOR of the header (version, suite,
    /// recipient and sender with their key ids, the context flag), then the context.
    pub fn aad(&self, context: &[u8]) -> Vec<u8> {
        let header = cbor_bytes(&EncryptedHeader {
            v: self.v,
            suite: &self.suite,
            recipient: &self.recipient,
            recipient_kid: self.recipient_kid.as_ref(),
            sender: &self.sender,
            sender_kid: self.sender_kid.as_ref(),
            ctx: self.ctx,
        });
        with_context(header, context)
    }

    /// The bytes the sender signs: [`SIGN_DOMAIN`] and the canonical CBOR of every field
    /// but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = SIGN_DOMAIN.to_vec();
        out.extend(cbor_bytes(&EncryptedUnsigned {
            v: self.v,
            suite: &self.suite,
            recipient: &self.recipient,
            recipient_kid: self.recipient_kid.as_ref(),
            sender: &self.sender,
            sender_kid: self.sender_kid.as_ref(),
            ctx: self.ctx,
            enc: &self.enc,
            ct: &self.ct,
        }));
        out
    }

    /// Encrypts `plaintext` to the recipient epoch key (its material: keyd holds the
    /// keys of its branch, and the X-Wing public key is not published in the chain) and
    /// signs it as `sender`.
    pub fn encrypt(
        suite: Suite,
        recipient: &KeyPath,
        recipient_keys: &KeyMaterial,
        sender: &KeyPath,
        sender_key: &SigningKey,
        plaintext: &[u8],
    ) -> Result<Encrypted, EnvelopeError> {
        let parties = (recipient, recipient_keys, sender, sender_key);
        Self::encrypt_with_rng(suite, parties, plaintext, &mut UnwrapErr(SysRng))
    }

    /// [`Encrypted::encrypt`] with the HPKE randomness drawn from `rng` (the system's
    /// CSPRNG in keyd; a fixed source makes the reproducible envelopes of
    /// `docs/test-vectors.json`). The parties: recipient path and keys, sender path and
    /// signing key.
    pub fn encrypt_with_rng(
        suite: Suite,
        (recipient, recipient_keys, sender, sender_key): (
            &KeyPath,
            &KeyMaterial,
            &KeyPath,
            &SigningKey,
        ),
        plaintext: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Encrypted, EnvelopeError> {
        Self::encrypt_in(
            suite,
            (recipient, recipient_keys, sender, sender_key),
            plaintext,
            &[],
            rng,
        )
    }

    /// [`Encrypted::encrypt_with_rng`] bound to `context` (associated data, not stored:
    /// the recipient needs it again; empty for none).
    pub fn encrypt_in(
        suite: Suite,
        (recipient, recipient_keys, sender, sender_key): (
            &KeyPath,
            &KeyMaterial,
            &KeyPath,
            &SigningKey,
        ),
        plaintext: &[u8],
        context: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Encrypted, EnvelopeError> {
        check_size(plaintext)?;
        let parties = (recipient, key_id(recipient_keys), sender, sender_key);
        Self::seal_signed(suite, parties, context, |aad| match suite {
            Suite::XWing => hpke_seal::<XWing>(&recipient_keys.x_wing().1, plaintext, aad, rng),
            Suite::X25519 => {
                let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(
                    recipient_keys.public_keys().x25519.as_bytes(),
                )
                .map_err(|_| EnvelopeError::Open)?;
                hpke_seal::<X25519HkdfSha256>(&pk, plaintext, aad, rng)
            }
        })
    }

    /// The envelope to `recipient` (its key id) from `sender`, sealed by `seal` under the
    /// envelope's associated data, then signed by the sender.
    fn seal_signed(
        suite: Suite,
        (recipient, recipient_kid, sender, sender_key): (&KeyPath, KeyId, &KeyPath, &SigningKey),
        context: &[u8],
        seal: impl FnOnce(&[u8]) -> Result<(Vec<u8>, Vec<u8>), EnvelopeError>,
    ) -> Result<Encrypted, EnvelopeError> {
        let mut e = Encrypted {
            v: ENVELOPE_VERSION,
            suite: suite.name().to_owned(),
            recipient: recipient.clone(),
            recipient_kid: Some(recipient_kid.0),
            sender: sender.clone(),
            sender_kid: Some(KeyId::of(&sender_key.verifying_key()).0),
            ctx: !context.is_empty(),
            enc: Vec::new(),
            ct: Vec::new(),
            signature: [0; 64],
        };
        (e.enc, e.ct) = seal(&e.aad(context))?;
        e.signature = sender_key.sign(&e.signed_bytes()).to_bytes();
        Ok(e)
    }

    /// An envelope to a key known only by its public keys — a node of a trusted
    /// cluster, from that cluster's chain — with suite X25519 (a chain publishes the
    /// Ed25519 and X25519 keys, not an X-Wing key). The recipient: its epoch key path,
    /// Ed25519 key (for the key id) and X25519 key.
    pub fn encrypt_to_public(
        (recipient, recipient_ed25519, recipient_x25519): (&KeyPath, &[u8; 32], &[u8; 32]),
        (sender, sender_key): (&KeyPath, &SigningKey),
        plaintext: &[u8],
        context: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Encrypted, EnvelopeError> {
        check_size(plaintext)?;
        let parties = (
            recipient,
            KeyId::of_bytes(recipient_ed25519),
            sender,
            sender_key,
        );
        Self::seal_signed(Suite::X25519, parties, context, |aad| {
            let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(recipient_x25519)
                .map_err(|_| EnvelopeError::Open)?;
            hpke_seal::<X25519HkdfSha256>(&pk, plaintext, aad, rng)
        })
    }

    /// The envelope's suite.
    pub fn suite(&self) -> Result<Suite, EnvelopeError> {
        Suite::parse(&self.suite)
    }

    /// Checks the sender's signature with its Ed25519 key (from the chain); the key id
    /// the envelope names must be that key's.
    pub fn verify_sender(&self, sender_key: &VerifyingKey) -> Result<(), EnvelopeError> {
        check_key_id(
            &self.sender,
            self.sender_kid.as_ref(),
            KeyId::of(sender_key),
        )?;
        sender_key
            .verify_strict(
                &self.signed_bytes(),
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| EnvelopeError::Signature)
    }

    /// Opens with the recipient epoch key's material (its key id must match).
    pub fn open(&self, recipient: &KeyMaterial) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        self.open_in(recipient, &[])
    }

    /// [`Encrypted::open`] with the context it was encrypted with (empty for none).
    pub fn open_in(
        &self,
        recipient: &KeyMaterial,
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        check_context(self.ctx, context)?;
        check_key_id(
            &self.recipient,
            self.recipient_kid.as_ref(),
            key_id(recipient),
        )?;
        let aad = self.aad(context);
        match self.suite()? {
            Suite::XWing => hpke_open::<XWing>(&recipient.x_wing().0, &self.enc, &self.ct, &aad),
            Suite::X25519 => {
                let secret = Zeroizing::new(recipient.x25519_secret().to_bytes());
                let sk = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(secret.as_ref())
                    .map_err(|_| EnvelopeError::Open)?;
                hpke_open::<X25519HkdfSha256>(&sk, &self.enc, &self.ct, &aad)
            }
        }
    }

    /// Canonical CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor_bytes(self)
    }

    /// Decodes canonical CBOR.
    pub fn from_cbor(bytes: &[u8]) -> Result<Encrypted, EnvelopeError> {
        let e: Encrypted = chain::decode_exact(bytes, MAX_ENVELOPE)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        let kids = match (e.recipient_kid.is_some(), e.sender_kid.is_some()) {
            (true, true) => true,
            (false, false) => false,
            _ => {
                return Err(EnvelopeError::Malformed(
                    "one key id without the other".into(),
                ));
            }
        };
        check_version(e.v, kids)?;
        Ok(e)
    }
}

mod recover;

pub use recover::{RecoverError, Recovered, open_as_ancestor};

#[cfg(test)]
mod tests;

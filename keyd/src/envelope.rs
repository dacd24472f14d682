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
    #[error("the envelope does not open: tampered, or not sealed to this key")]
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
    fn aad(&self) -> Vec<u8> {
        cbor_bytes(&SealedHeader {
            v: self.v,
            key: &self.key,
            kid: self.kid.as_ref(),
            salt: &self.salt,
            nonce: &self.nonce,
        })
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
        check_size(plaintext)?;
        let mut s = Sealed {
            v: ENVELOPE_VERSION,
            key: key.clone(),
            kid: Some(key_id(material).0),
            salt,
            nonce,
            ct: Vec::new(),
        };
        let k = seal_key(material, &s.salt);
        let cipher = ChaCha20Poly1305::new_from_slice(k.as_ref())
            .unwrap_or_else(|_| unreachable!("32-byte key"));
        let aad = s.aad();
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
        check_key_id(&self.key, self.kid.as_ref(), key_id(material))?;
        let k = seal_key(material, &self.salt);
        let cipher =
            ChaCha20Poly1305::new_from_slice(k.as_ref()).map_err(|_| EnvelopeError::Open)?;
        cipher
            .decrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: &self.ct,
                    aad: &self.aad(),
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
    #[serde(with = "serde_bytes")]
    enc: &'a [u8],
    #[serde(with = "serde_bytes")]
    ct: &'a [u8],
}

impl Encrypted {
    /// The HPKE associated data: the canonical CBOR of the header (version, suite,
    /// recipient and sender with their key ids).
    pub fn aad(&self) -> Vec<u8> {
        cbor_bytes(&EncryptedHeader {
            v: self.v,
            suite: &self.suite,
            recipient: &self.recipient,
            recipient_kid: self.recipient_kid.as_ref(),
            sender: &self.sender,
            sender_kid: self.sender_kid.as_ref(),
        })
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
        check_size(plaintext)?;
        let mut e = Encrypted {
            v: ENVELOPE_VERSION,
            suite: suite.name().to_owned(),
            recipient: recipient.clone(),
            recipient_kid: Some(key_id(recipient_keys).0),
            sender: sender.clone(),
            sender_kid: Some(KeyId::of(&sender_key.verifying_key()).0),
            enc: Vec::new(),
            ct: Vec::new(),
            signature: [0; 64],
        };
        let aad = e.aad();
        (e.enc, e.ct) = match suite {
            Suite::XWing => hpke_seal::<XWing>(&recipient_keys.x_wing().1, plaintext, &aad, rng)?,
            Suite::X25519 => {
                let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(
                    recipient_keys.public_keys().x25519.as_bytes(),
                )
                .map_err(|_| EnvelopeError::Open)?;
                hpke_seal::<X25519HkdfSha256>(&pk, plaintext, &aad, rng)?
            }
        };
        e.signature = sender_key.sign(&e.signed_bytes()).to_bytes();
        Ok(e)
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
        check_key_id(
            &self.recipient,
            self.recipient_kid.as_ref(),
            key_id(recipient),
        )?;
        let aad = self.aad();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> (KeyPath, KeyMaterial) {
        let path: KeyPath = format!("m/1'/{n}'/0'/0'").parse().expect("path");
        (path, KeyMaterial::from_node_key(&[n; 32]))
    }

    #[test]
    fn both_suites_open_at_the_recipient_only() {
        let (to, bob) = node(2);
        let (from, alice) = node(1);
        let (_, carol) = node(3);
        for suite in [Suite::XWing, Suite::X25519] {
            let e = Encrypted::encrypt(suite, &to, &bob, &from, alice.signing_key(), b"hi")
                .expect("encrypt");
            let e = Encrypted::from_cbor(&e.to_cbor()).expect("round trip");
            assert_eq!(e.suite(), Ok(suite));
            e.verify_sender(&alice.signing_key().verifying_key())
                .expect("sender");
            assert!(matches!(
                e.verify_sender(&carol.signing_key().verifying_key()),
                Err(EnvelopeError::KeyId { .. })
            ));
            assert_eq!(e.recipient_kid, Some(bob.public_keys().key_id.0));
            assert_eq!(e.sender_kid, Some(alice.public_keys().key_id.0));
            assert_eq!(e.open(&bob).expect("open").as_slice(), b"hi");
            assert!(matches!(e.open(&carol), Err(EnvelopeError::KeyId { .. })));
            // Carol pretending to be the recipient: the key id is signed and bound.
            let mut c = e.clone();
            c.recipient_kid = Some(carol.public_keys().key_id.0);
            assert_eq!(c.open(&carol), Err(EnvelopeError::Open));
            let mut t = e.clone();
            t.ct[0] ^= 1;
            assert_eq!(t.open(&bob), Err(EnvelopeError::Open));
            assert_eq!(
                t.verify_sender(&alice.signing_key().verifying_key()),
                Err(EnvelopeError::Signature)
            );
        }
    }

    #[test]
    fn the_suite_cannot_be_swapped() {
        let (to, bob) = node(2);
        let (from, alice) = node(1);
        let mut e = Encrypted::encrypt(Suite::XWing, &to, &bob, &from, alice.signing_key(), b"x")
            .expect("encrypt");
        e.suite = SUITE_X25519.into();
        // The suite is signed and bound as AAD: neither the signature nor HPKE accepts it.
        assert_eq!(
            e.verify_sender(&alice.signing_key().verifying_key()),
            Err(EnvelopeError::Signature)
        );
        assert_eq!(e.open(&bob), Err(EnvelopeError::Open));
        e.suite = "rot13".into();
        assert_eq!(e.open(&bob), Err(EnvelopeError::Suite("rot13".into())));
    }

    #[test]
    fn x_wing_keys_are_derived_deterministically() {
        let (_, a) = node(7);
        let (_, b) = node(7);
        let (_, c) = node(8);
        assert_eq!(a.x_wing().1.to_bytes(), b.x_wing().1.to_bytes());
        assert_ne!(a.x_wing().1.to_bytes(), c.x_wing().1.to_bytes());
        assert_eq!(a.x_wing().1.to_bytes().len(), 1216);
    }

    #[test]
    fn plaintexts_over_the_limit_are_refused_and_the_largest_envelope_opens() {
        let (to, bob) = node(2);
        let (from, alice) = node(1);
        let big = vec![7u8; MAX_PLAINTEXT + 1];
        assert_eq!(
            Sealed::seal(&to, &bob, &big, [1; 32], [2; 12]),
            Err(EnvelopeError::TooLarge(MAX_PLAINTEXT + 1))
        );
        assert_eq!(
            Encrypted::encrypt(Suite::XWing, &to, &bob, &from, alice.signing_key(), &big),
            Err(EnvelopeError::TooLarge(MAX_PLAINTEXT + 1))
        );
        let most = &big[..MAX_PLAINTEXT];
        let s = Sealed::seal(&to, &bob, most, [1; 32], [2; 12]).expect("seal");
        let s = Sealed::from_cbor(&s.to_cbor()).expect("the largest sealed envelope decodes");
        assert_eq!(s.open(&bob).expect("open").len(), MAX_PLAINTEXT);
        let e = Encrypted::encrypt(Suite::XWing, &to, &bob, &from, alice.signing_key(), most)
            .expect("encrypt");
        let e = Encrypted::from_cbor(&e.to_cbor()).expect("the largest envelope decodes");
        assert_eq!(e.open(&bob).expect("open").len(), MAX_PLAINTEXT);
    }

    /// Envelopes written by keyd before key ids (version 1) still open, and keep their
    /// format (re-encoding gives the same bytes).
    #[test]
    fn legacy_envelopes_still_open() {
        let fixture = include_str!("../tests/data/legacy-envelopes.txt");
        let get = |name: &str| -> Vec<u8> {
            let line = fixture
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .expect("fixture line");
            hex::decode(line.trim()).expect("hex")
        };
        let (_, m4) = node(4);
        let bytes = get("sealed");
        let s = Sealed::from_cbor(&bytes).expect("legacy sealed");
        assert_eq!((s.v, s.kid), (LEGACY_VERSION, None));
        assert_eq!(s.to_cbor(), bytes);
        assert_eq!(
            s.open(&m4).expect("open").as_slice(),
            b"sealed before key ids"
        );
        let (_, bob) = node(2);
        let (_, alice) = node(1);
        for (name, suite, text) in [
            ("x_wing", Suite::XWing, &b"x-wing before key ids"[..]),
            ("x25519", Suite::X25519, &b"x25519 before key ids"[..]),
        ] {
            let bytes = get(name);
            let e = Encrypted::from_cbor(&bytes).expect("legacy encrypted");
            assert_eq!(
                (e.v, e.recipient_kid, e.sender_kid),
                (LEGACY_VERSION, None, None)
            );
            assert_eq!(e.suite(), Ok(suite));
            assert_eq!(e.to_cbor(), bytes);
            e.verify_sender(&alice.signing_key().verifying_key())
                .expect("sender");
            assert_eq!(e.open(&bob).expect("open").as_slice(), text);
        }
        // A version that does not match its fields is refused.
        let mut mixed = s.clone();
        mixed.kid = Some([0; 16]);
        assert!(matches!(
            Sealed::from_cbor(&mixed.to_cbor()),
            Err(EnvelopeError::Malformed(_))
        ));
        mixed.v = ENVELOPE_VERSION;
        mixed.kid = None;
        assert!(matches!(
            Sealed::from_cbor(&mixed.to_cbor()),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn suite_names() {
        for (name, suite) in [
            ("x-wing", Suite::XWing),
            ("xwing", Suite::XWing),
            (SUITE_X_WING, Suite::XWing),
            ("x25519", Suite::X25519),
            (SUITE_X25519, Suite::X25519),
        ] {
            assert_eq!(Suite::parse(name), Ok(suite));
            assert_eq!(Suite::parse(suite.name()), Ok(suite));
        }
        assert_eq!(Suite::default(), Suite::XWing);
        assert!(Suite::parse("X25519 ").is_err());
    }

    #[test]
    fn sealed_round_trip_and_junk() {
        let (path, m) = node(4);
        let (_, other) = node(5);
        let s = Sealed::seal(&path, &m, b"mine", [1; 32], [2; 12]).expect("seal");
        let s = Sealed::from_cbor(&s.to_cbor()).expect("round trip");
        assert_eq!(s.kid, Some(m.public_keys().key_id.0));
        assert_eq!(s.open(&m).expect("open").as_slice(), b"mine");
        assert!(matches!(s.open(&other), Err(EnvelopeError::KeyId { .. })));
        // A changed key id is caught by the AEAD as well.
        let mut t = s.clone();
        t.kid = Some(other.public_keys().key_id.0);
        assert_eq!(t.open(&other), Err(EnvelopeError::Open));
        assert!(matches!(
            Sealed::from_cbor(b"junk"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Encrypted::from_cbor(&s.to_cbor()),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}

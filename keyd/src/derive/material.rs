//! Per-node keys drawn from the node key `k` with HKDF-SHA256.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hpke::Kem;
use hpke::kem::XWing;
use sha2::{Digest, Sha256};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::HKDF_SALT;

/// HKDF `info` labels: one secret per algorithm, never reused across them.
pub mod info {
    /// Ed25519 signing seed.
    pub const ED25519: &[u8] = b"ed25519";
    /// X25519 static secret.
    pub const X25519: &[u8] = b"x25519";
    /// X-Wing (ML-KEM-768 + X25519) seed.
    pub const X_WING: &[u8] = b"x-wing";
    /// AEAD storage key.
    pub const STORAGE: &[u8] = b"storage";
    /// HMAC-SHA2 key (a named key's transit `hmac`).
    pub const HMAC: &[u8] = b"hmac";
}

fn expand(hk: &Hkdf<Sha256>, info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 255 * 32 limit.
    if hk.expand(info, out.as_mut()).is_err() {
        unreachable!("HKDF-SHA256 can always expand 32 bytes");
    }
    out
}

fn hkdf(k: &[u8; 32]) -> Hkdf<Sha256> {
    Hkdf::<Sha256>::new(Some(HKDF_SALT), k)
}

/// All keys of one node.
pub struct KeyMaterial {
    signing: SigningKey,
    x25519: StaticSecret,
    x_wing_seed: Zeroizing<[u8; 32]>,
    x_wing: OnceLock<XWingKeyPair>,
    storage: Zeroizing<[u8; 32]>,
    hmac: Zeroizing<[u8; 32]>,
    public: OnceLock<PublicKeys>,
}

/// An X-Wing key pair (the private part zeroizes itself on drop).
pub type XWingKeyPair = (<XWing as Kem>::PrivateKey, <XWing as Kem>::PublicKey);

impl KeyMaterial {
    /// Draws every per-node key from `k`.
    pub fn from_node_key(k: &[u8; 32]) -> Self {
        let hk = hkdf(k);
        KeyMaterial {
            signing: SigningKey::from_bytes(&expand(&hk, info::ED25519)),
            x25519: StaticSecret::from(*expand(&hk, info::X25519)),
            x_wing_seed: expand(&hk, info::X_WING),
            x_wing: OnceLock::new(),
            storage: expand(&hk, info::STORAGE),
            hmac: expand(&hk, info::HMAC),
            public: OnceLock::new(),
        }
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The X25519 static secret.
    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.x25519
    }

    /// The 32-byte X-Wing seed.
    pub fn x_wing_seed(&self) -> &[u8; 32] {
        &self.x_wing_seed
    }

    /// The X-Wing key pair, drawn from the X-Wing seed with HPKE's `DeriveKeyPair`
    /// (computed on first use, then kept).
    pub fn x_wing(&self) -> &XWingKeyPair {
        self.x_wing
            .get_or_init(|| XWing::derive_keypair(self.x_wing_seed.as_ref()))
    }

    /// The 32-byte AEAD storage key.
    pub fn storage_key(&self) -> &[u8; 32] {
        &self.storage
    }

    /// The 32-byte HMAC key.
    pub fn hmac_key(&self) -> &[u8; 32] {
        &self.hmac
    }

    /// The public keys and key id (computed once: the X25519 public key costs a
    /// scalar multiplication).
    pub fn public_keys(&self) -> PublicKeys {
        *self.public.get_or_init(|| {
            PublicKeys::new(
                self.signing.verifying_key(),
                x25519_dalek::PublicKey::from(&self.x25519),
            )
        })
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("key_id", &self.public_keys().key_id)
            .finish_non_exhaustive()
    }
}

/// The public side of a node: what the chain publishes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PublicKeys {
    /// Ed25519 public key.
    pub ed25519: VerifyingKey,
    /// X25519 public key.
    pub x25519: x25519_dalek::PublicKey,
    /// Key id of the Ed25519 key.
    pub key_id: KeyId,
}

impl PublicKeys {
    fn new(ed25519: VerifyingKey, x25519: x25519_dalek::PublicKey) -> Self {
        PublicKeys {
            key_id: KeyId::of(&ed25519),
            ed25519,
            x25519,
        }
    }

    /// Computes only what the public keys need from `k` (no X-Wing, no storage key).
    pub fn from_node_key(k: &[u8; 32]) -> Self {
        let hk = hkdf(k);
        let signing = SigningKey::from_bytes(&expand(&hk, info::ED25519));
        let x25519 = StaticSecret::from(*expand(&hk, info::X25519));
        PublicKeys::new(
            signing.verifying_key(),
            x25519_dalek::PublicKey::from(&x25519),
        )
    }
}

/// Lowercase hex of the first 16 bytes of SHA-256(Ed25519 public key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// The key id of an Ed25519 public key.
    pub fn of(key: &VerifyingKey) -> Self {
        Self::of_bytes(key.as_bytes())
    }

    /// The key id of an encoded Ed25519 public key (not checked to be a valid point).
    pub fn of_bytes(key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(key);
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id)?;
        Ok(KeyId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_match_full_material() {
        let k = [42u8; 32];
        assert_eq!(
            KeyMaterial::from_node_key(&k).public_keys(),
            PublicKeys::from_node_key(&k)
        );
    }

    #[test]
    fn labels_give_independent_keys() {
        let m = KeyMaterial::from_node_key(&[1u8; 32]);
        let seeds = [
            m.signing_key().to_bytes(),
            m.x25519_secret().to_bytes(),
            *m.x_wing_seed(),
            *m.storage_key(),
        ];
        for i in 0..seeds.len() {
            for j in i + 1..seeds.len() {
                assert_ne!(seeds[i], seeds[j]);
            }
        }
    }

    #[test]
    fn key_id_hex_round_trip() {
        let id = PublicKeys::from_node_key(&[3u8; 32]).key_id;
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<KeyId>().unwrap(), id);
        assert!("zz".parse::<KeyId>().is_err());
    }
}

//! Branch bundles: how `keyctl ceremony issue` hands a level-1 branch to one keyd
//! instance. The branch secret `(k, c)` is sealed with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the instance's install
//! key, with the bundle's metadata as associated data; the root-signed chain that
//! certifies the branch travels with it. keyd seals an exported-mode node's secret the
//! same way, without a chain: the enrollment response carries the chain that certifies
//! the node. The secret is never written in clear.

use std::fmt;

use getrandom::SysRng;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, UnwrapErr};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::chain::{self, ChainError, KeyKind, KeySet, cbor_bytes};
use crate::derive::{KeyPath, NodeSecret};

/// Format tag of a bundle.
pub const BUNDLE_FORMAT: &str = "keyd-branch-bundle/v1";
/// HPKE `info` for bundles.
const HPKE_INFO: &[u8] = b"keyd/v1/branch-bundle";
/// Largest bundle accepted (the chain inside is bounded by it): a rebuilt branch's bundle
/// carries the whole branch log, some 740 bytes per node (74 MB for 100,000 nodes), so
/// the bound is the one of a chain fetch, 1 GiB.
pub const MAX_BUNDLE_BYTES: usize = 1 << 30;

type InstallKem = X25519HkdfSha256;

/// Why a bundle cannot be used.
#[derive(Debug, Error)]
pub enum BundleError {
    /// Not a bundle.
    #[error("not a keyd branch bundle: {0}")]
    Malformed(String),
    /// The chain inside does not verify.
    #[error("the bundle's chain does not verify: {0}")]
    Chain(Box<ChainError>),
    /// The chain does not certify this branch with these keys.
    #[error("the bundle's chain does not certify {path} with the bundle's keys")]
    NotCertified {
        /// The branch path.
        path: KeyPath,
    },
    /// Sealed to another install key.
    #[error("the bundle is sealed to install key {sealed_to}, not to this instance's {ours}")]
    OtherInstance {
        /// The bundle's recipient.
        sealed_to: String,
        /// This instance's key.
        ours: String,
    },
    /// Decryption failed (tampered, or wrong key).
    #[error("the sealed branch secret cannot be opened (tampered bundle or wrong install key)")]
    Open,
    /// The secret does not derive the certified keys.
    #[error("the branch secret does not match the certified public keys")]
    Mismatch,
    /// An install key that is not 32 bytes of hex.
    #[error("install key: {0}")]
    InstallKey(String),
}

/// A keyd instance's install key pair (X25519), the recipient of branch bundles.
pub struct InstallKey {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl InstallKey {
    /// A fresh key pair from the OS random generator.
    pub fn generate() -> Self {
        let (sk, pk) = InstallKem::gen_keypair();
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&sk.to_bytes());
        let mut public = [0u8; 32];
        public.copy_from_slice(&pk.to_bytes());
        InstallKey { secret, public }
    }

    /// Rebuilds a key pair from its secret.
    pub fn from_secret(bytes: &[u8; 32]) -> Result<Self, BundleError> {
        let sk = <InstallKem as Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|e| BundleError::InstallKey(e.to_string()))?;
        let pk = InstallKem::sk_to_pk(&sk);
        let mut public = [0u8; 32];
        public.copy_from_slice(&pk.to_bytes());
        Ok(InstallKey {
            secret: Zeroizing::new(*bytes),
            public,
        })
    }

    /// The secret, for sealed storage only.
    pub fn danger_secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }
}

impl fmt::Debug for InstallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstallKey(public {})", hex::encode(self.public))
    }
}

/// Parses an install public key given as 64 hex digits.
pub fn parse_install_public(hex_key: &str) -> Result<[u8; 32], BundleError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut out)
        .map_err(|e| BundleError::InstallKey(format!("expected 64 hex digits: {e}")))?;
    <InstallKem as Kem>::PublicKey::from_bytes(&out)
        .map_err(|e| BundleError::InstallKey(e.to_string()))?;
    Ok(out)
}

impl From<ChainError> for BundleError {
    fn from(e: ChainError) -> Self {
        BundleError::Chain(Box::new(e))
    }
}

/// A sealed branch and the chain that certifies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchBundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// Branch name.
    pub name: String,
    /// Branch path (`m/i'`).
    pub path: KeyPath,
    /// The branch identity's public keys, as certified.
    pub keys: KeySet,
    /// The install key it is sealed to.
    #[serde(with = "serde_bytes")]
    pub install_key: [u8; 32],
    /// HPKE encapsulated key.
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// HPKE ciphertext of `k || c`.
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
    /// The chain file (entries and a root-signed head) certifying the branch; empty in a
    /// node's bundle, which is checked against the chain the node holds.
    #[serde(with = "serde_bytes")]
    pub chain: Vec<u8>,
}

#[derive(Serialize)]
struct Aad<'a> {
    format: &'a str,
    name: &'a str,
    path: &'a KeyPath,
    keys: &'a KeySet,
    #[serde(with = "serde_bytes")]
    install_key: &'a [u8; 32],
}

impl BranchBundle {
    fn aad(&self) -> Vec<u8> {
        cbor_bytes(&Aad {
            format: &self.format,
            name: &self.name,
            path: &self.path,
            keys: &self.keys,
            install_key: &self.install_key,
        })
    }

    /// Seals `secret` (the node at `path`) to `install_key`.
    pub fn seal(
        name: &str,
        path: &KeyPath,
        secret: &NodeSecret,
        install_key: &[u8; 32],
        chain: Vec<u8>,
    ) -> Result<BranchBundle, BundleError> {
        Self::seal_with_rng(
            name,
            path,
            secret,
            (install_key, chain),
            &mut UnwrapErr(SysRng),
        )
    }

    /// [`BranchBundle::seal`] with the HPKE randomness drawn from `rng` (the system's
    /// CSPRNG in keyd and keyctl; a fixed source makes the reproducible bundle of
    /// `docs/test-vectors.json`). `to`: the install key and the chain file.
    pub fn seal_with_rng(
        name: &str,
        path: &KeyPath,
        secret: &NodeSecret,
        (install_key, chain): (&[u8; 32], Vec<u8>),
        rng: &mut impl CryptoRng,
    ) -> Result<BranchBundle, BundleError> {
        let pk = <InstallKem as Kem>::PublicKey::from_bytes(install_key)
            .map_err(|e| BundleError::InstallKey(e.to_string()))?;
        let mut bundle = BranchBundle {
            format: BUNDLE_FORMAT.to_owned(),
            name: name.to_owned(),
            path: path.clone(),
            keys: KeySet::from(&secret.public_keys()),
            install_key: *install_key,
            enc: Vec::new(),
            sealed: Vec::new(),
            chain,
        };
        let mut plain = Zeroizing::new([0u8; 64]);
        plain[..32].copy_from_slice(secret.danger_key());
        plain[32..].copy_from_slice(secret.danger_chain_code());
        let (enc, sealed) =
            hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, InstallKem>(
                &OpModeS::Base,
                &pk,
                HPKE_INFO,
                plain.as_ref(),
                &bundle.aad(),
                rng,
            )
            .map_err(|_| BundleError::Open)?;
        bundle.enc = enc.to_bytes().to_vec();
        bundle.sealed = sealed;
        Ok(bundle)
    }

    /// Verifies the chain inside (the branch must be certified, live, with these keys),
    /// opens the secret with `install`, and checks it derives the certified keys. Only a
    /// branch (`m/i'`) bundle opens here: that is what `keyd import` takes.
    pub fn open(&self, install: &InstallKey) -> Result<(NodeSecret, chain::Chain), BundleError> {
        if self.path.depth() != 1 {
            return Err(BundleError::NotCertified {
                path: self.path.clone(),
            });
        }
        let verified = chain::verify_file(&self.chain)?;
        let secret = self.open_node(install, &verified)?;
        Ok((secret, verified))
    }

    /// Opens a node's bundle at any depth against `chain`, a chain the caller verified:
    /// what an exported-mode node gets at enrollment, its identity secret sealed to the
    /// install key it sent. Such a bundle carries no chain of its own (the enrollment
    /// response's `chain` certifies the node); a chain inside is not consulted.
    pub fn open_node(
        &self,
        install: &InstallKey,
        chain: &chain::Chain,
    ) -> Result<NodeSecret, BundleError> {
        if self.format != BUNDLE_FORMAT {
            return Err(BundleError::Malformed(format!("format {:?}", self.format)));
        }
        if self.install_key != install.public {
            return Err(BundleError::OtherInstance {
                sealed_to: hex::encode(self.install_key),
                ours: hex::encode(install.public),
            });
        }
        let certified = chain.state().key(&self.path).is_some_and(|r| {
            r.keys == self.keys && matches!(r.kind, KeyKind::Node { .. }) && r.revoked.is_none()
        }) && chain.state().revocation(&self.path).is_none();
        if !certified {
            return Err(BundleError::NotCertified {
                path: self.path.clone(),
            });
        }
        let sk = <InstallKem as Kem>::PrivateKey::from_bytes(install.secret.as_ref())
            .map_err(|_| BundleError::Open)?;
        let enc = <InstallKem as Kem>::EncappedKey::from_bytes(&self.enc)
            .map_err(|_| BundleError::Open)?;
        let plain = Zeroizing::new(
            hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, InstallKem>(
                &OpModeR::Base,
                &sk,
                &enc,
                HPKE_INFO,
                &self.sealed,
                &self.aad(),
            )
            .map_err(|_| BundleError::Open)?,
        );
        if plain.len() != 64 {
            return Err(BundleError::Open);
        }
        let mut k = [0u8; 32];
        let mut c = [0u8; 32];
        k.copy_from_slice(&plain[..32]);
        c.copy_from_slice(&plain[32..]);
        let node = NodeSecret::danger_from_parts(k, c);
        k.zeroize();
        c.zeroize();
        if KeySet::from(&node.public_keys()) != self.keys {
            return Err(BundleError::Mismatch);
        }
        Ok(node)
    }

    /// Canonical CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor_bytes(self)
    }

    /// Decodes a bundle file.
    pub fn from_cbor(bytes: &[u8]) -> Result<BranchBundle, BundleError> {
        chain::decode_exact(bytes, MAX_BUNDLE_BYTES)
            .map_err(|e| BundleError::Malformed(e.to_string()))
    }
}

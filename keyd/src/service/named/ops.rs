//! Using a named key: sign and verify (ed25519), seal and open (aes256-gcm96), HMAC
//! (either type), each at a version its configuration allows.

use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, Verifier};
use hmac::{Hmac, KeyInit, Mac};
use zeroize::Zeroizing;

use super::{KeyVersion, NamedKey};
use crate::chain::KeyStatus;
use crate::derive::{KeyMaterial, KeyPath};
use crate::envelope::Sealed;
use crate::identity::Principal;
use crate::policy::Op;
use crate::service::keys::check_context;
use crate::service::{Service, ServiceError, describe, unix_now};

/// HMAC algorithms of transit's `hmac`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HmacAlg {
    /// HMAC-SHA-224.
    Sha224,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA-512.
    Sha512,
}

impl HmacAlg {
    /// The algorithm named as transit names it (`sha2-256`).
    pub fn parse(name: &str) -> Result<HmacAlg, ServiceError> {
        match name {
            "sha2-224" => Ok(HmacAlg::Sha224),
            "sha2-256" => Ok(HmacAlg::Sha256),
            "sha2-384" => Ok(HmacAlg::Sha384),
            "sha2-512" => Ok(HmacAlg::Sha512),
            other => Err(ServiceError::BadRequest(format!(
                "unsupported algorithm {other}"
            ))),
        }
    }

    fn mac(self, key: &[u8; 32], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            HmacAlg::Sha224 => run::<Hmac<sha2::Sha224>>(key, data),
            HmacAlg::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
            HmacAlg::Sha384 => run::<Hmac<sha2::Sha384>>(key, data),
            HmacAlg::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
        }
    }
}

impl Service {
    /// The version of `key` to sign, encrypt or HMAC with: `asked` (None or 0: the
    /// latest), at least its minimum encryption version.
    fn version_to_use(
        &self,
        key: &NamedKey,
        asked: Option<u32>,
    ) -> Result<(u32, KeyPath, Arc<KeyMaterial>), ServiceError> {
        let version = match asked {
            None | Some(0) => key.latest_version,
            Some(v) if v > key.latest_version => {
                return Err(ServiceError::BadRequest(format!(
                    "requested version {v} is greater than the latest version {} of the key",
                    key.latest_version
                )));
            }
            Some(v) if v < key.min_encryption_version => {
                return Err(ServiceError::BadRequest(format!(
                    "requested version {v} is less than the minimum encryption version {}",
                    key.min_encryption_version
                )));
            }
            Some(v) => v,
        };
        // A version that no longer decrypts makes nothing new either (and a key whose
        // configuration row failed its integrity tag makes nothing until it is set).
        if version < key.min_decryption_version {
            return Err(ServiceError::EpochRetired(format!(
                "version {version} of key {:?} is below its minimum decryption version {}: it signs and encrypts no more{}",
                key.name,
                key.min_decryption_version,
                if key.min_decryption_version > key.latest_version {
                    " (its configuration did not verify: set min_decryption_version again)"
                } else {
                    ""
                }
            )));
        }
        let v = key
            .versions
            .iter()
            .find(|x| x.version == version)
            .ok_or_else(|| ServiceError::BadRequest(format!("version {version} is revoked")))?;
        Ok((version, v.path.clone(), self.material(&v.path)?))
    }

    /// A version of `key` that opens or verifies: at least the minimum decryption
    /// version, not revoked.
    fn version_to_open(&self, key: &NamedKey, version: u32) -> Result<KeyVersion, ServiceError> {
        if version < key.min_decryption_version {
            return Err(ServiceError::EpochRetired(format!(
                "version {version} is below the key's minimum decryption version {}",
                key.min_decryption_version
            )));
        }
        key.versions
            .iter()
            .find(|v| v.version == version)
            .cloned()
            .ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "key {:?} has no version {version} (latest {})",
                    key.name, key.latest_version
                ))
            })
    }

    fn key_of_type(
        &self,
        principal: &Principal,
        op: Op,
        name: &str,
        signs: bool,
    ) -> Result<NamedKey, ServiceError> {
        let owner = Self::key_owner(principal)?;
        self.authorize_on(principal, op, owner)?;
        let key = self.find_named(owner, name)?;
        if key.key_type.signs() != signs {
            return Err(ServiceError::BadRequest(format!(
                "key type {} does not support {}",
                key.key_type.name(),
                if signs { "signing" } else { "encryption" }
            )));
        }
        Ok(key)
    }

    /// Signs `data` with the caller's ed25519 named key `name`: the version and the
    /// signature.
    pub fn named_sign(
        &self,
        principal: &Principal,
        name: &str,
        version: Option<u32>,
        data: &[u8],
    ) -> Result<(u32, Signature), ServiceError> {
        let key = self.key_of_type(principal, Op::Sign, name, true)?;
        if data.starts_with(crate::RESERVED_SIGNING_PREFIX) {
            return Err(ServiceError::ReservedPrefix);
        }
        let (version, path, material) = self.version_to_use(&key, version)?;
        self.audit_use(principal, Op::Sign, Some(&path));
        Ok((version, material.signing_key().sign(data)))
    }

    /// Whether `signature` over `data` is version `version` of the caller's ed25519
    /// named key `name`.
    pub fn named_verify(
        &self,
        principal: &Principal,
        name: &str,
        version: u32,
        data: &[u8],
        signature: &Signature,
    ) -> Result<bool, ServiceError> {
        let key = self.key_of_type(principal, Op::Verify, name, true)?;
        let v = self.version_to_open(&key, version)?;
        let public = ed25519_dalek::VerifyingKey::from_bytes(&v.ed25519)
            .map_err(|_| ServiceError::PartyNotValid(format!("{} is not a valid key", v.path)))?;
        Ok(public.verify(data, signature).is_ok())
    }

    /// Seals `plaintext` under a version of the caller's encryption key `name`, bound to
    /// `context`: the version and keyd's sealed envelope (as in `seal`).
    pub fn named_seal(
        &self,
        principal: &Principal,
        name: &str,
        version: Option<u32>,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<(u32, Vec<u8>), ServiceError> {
        let key = self.key_of_type(principal, Op::Seal, name, false)?;
        check_context(context)?;
        let (version, path, material) = self.version_to_use(&key, version)?;
        let sealed = Self::seal_with(&path, &material, plaintext, context)?;
        self.audit_use(principal, Op::Seal, Some(&path));
        Ok((version, sealed))
    }

    /// Opens an envelope of version `version` of the caller's encryption key `name`.
    pub fn named_unseal(
        &self,
        principal: &Principal,
        name: &str,
        version: u32,
        envelope: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
        let key = self.key_of_type(principal, Op::Unseal, name, false)?;
        if version < key.min_decryption_version {
            return Err(ServiceError::EpochRetired(format!(
                "version {version} is below the key's minimum decryption version {}",
                key.min_decryption_version
            )));
        }
        if version > key.latest_version {
            return Err(ServiceError::BadRequest(format!(
                "invalid ciphertext: version is too new (key {name:?} has {} versions)",
                key.latest_version
            )));
        }
        let sealed = Sealed::from_cbor(envelope).map_err(ServiceError::Envelope)?;
        let path = version
            .checked_sub(1)
            .and_then(|e| key.path.epoch_key(e))
            .filter(|p| *p == sealed.key)
            .ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "the ciphertext is not of version {version} of key {name:?}"
                ))
            })?;
        // After a root rekey, a version of the previous tree opens until it is retired
        // (named by the envelope's key id), as nodes' envelopes do.
        let material = match self.retired_key(&path, sealed.kid.as_ref())? {
            Some(old) => Arc::new(old),
            None => {
                let v = self.version_to_open(&key, version)?;
                let status = self.read_chain().state().status_at(&v.path, unix_now());
                if !matches!(
                    status,
                    KeyStatus::Valid { .. } | KeyStatus::Superseded { .. }
                ) {
                    return Err(ServiceError::Revoked(describe(&status)));
                }
                self.material(&v.path)?
            }
        };
        let plaintext = sealed
            .open_in(&material, context)
            .map_err(ServiceError::Envelope)?;
        self.audit_use(principal, Op::Unseal, Some(&path));
        Ok(plaintext)
    }

    /// HMAC of `data` under a version of the caller's named key `name` (any type).
    pub fn named_hmac(
        &self,
        principal: &Principal,
        name: &str,
        version: Option<u32>,
        alg: HmacAlg,
        data: &[u8],
    ) -> Result<(u32, Vec<u8>), ServiceError> {
        let owner = Self::key_owner(principal)?;
        self.authorize_on(principal, Op::Sign, owner)?;
        let key = self.find_named(owner, name)?;
        let (version, path, material) = self.version_to_use(&key, version)?;
        self.audit_use(principal, Op::Sign, Some(&path));
        Ok((version, alg.mac(material.hmac_key(), data)))
    }

    /// Checks an HMAC made by [`Service::named_hmac`] with version `version`.
    pub fn named_hmac_verify(
        &self,
        principal: &Principal,
        name: &str,
        version: u32,
        alg: HmacAlg,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool, ServiceError> {
        let owner = Self::key_owner(principal)?;
        self.authorize_on(principal, Op::Verify, owner)?;
        let key = self.find_named(owner, name)?;
        let v = self.version_to_open(&key, version)?;
        let want = alg.mac(self.material(&v.path)?.hmac_key(), data);
        Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
            want.as_slice(),
            mac,
        )))
    }
}

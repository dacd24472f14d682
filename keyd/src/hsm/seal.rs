//! The seal key: an AES-256 key on the online seal token that seals keyd's secrets at
//! rest (like Vault's PKCS#11 auto-unseal). Sealed blobs are `iv (12) || ciphertext ||
//! tag (16)` from `C_Encrypt(CKM_AES_GCM)`, bound to a caller-chosen AAD.

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use zeroize::Zeroizing;

use super::{Hsm, HsmError};

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

impl Hsm {
    fn find_seal_key(&self) -> Result<Option<ObjectHandle>, HsmError> {
        self.find_object(ObjectClass::SECRET_KEY)
    }

    /// Whether the token holds the seal key (the URI's `object`).
    pub fn has_seal_key(&self) -> Result<bool, HsmError> {
        Ok(self.find_seal_key()?.is_some())
    }

    /// Generates the AES-256 seal key on the token: sensitive, non-extractable, for
    /// encrypt/decrypt only. Refuses when one exists (a seal key is never replaced: data
    /// sealed under it would be lost).
    pub fn generate_seal_key(&self) -> Result<(), HsmError> {
        if self.has_seal_key()? {
            return Err(HsmError::SealKeyExists {
                label: self.token_label().to_owned(),
                object: self.root_label().to_owned(),
            });
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32u64.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sign(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(self.root_label().as_bytes().to_vec()),
        ];
        self.session()
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(HsmError::pkcs11("C_GenerateKey(CKM_AES_KEY_GEN)"))?;
        Ok(())
    }

    /// Destroys the seal key: only to roll back a `keyd init` that failed after making
    /// it (nothing is sealed under it yet).
    pub fn danger_destroy_seal_key(&self) -> Result<(), HsmError> {
        if let Some(handle) = self.find_seal_key()? {
            self.session()
                .destroy_object(handle)
                .map_err(HsmError::pkcs11("C_DestroyObject"))?;
        }
        Ok(())
    }

    fn seal_key(&self) -> Result<ObjectHandle, HsmError> {
        self.find_seal_key()?
            .ok_or_else(|| HsmError::SealKeyMissing {
                label: self.token_label().to_owned(),
                object: self.root_label().to_owned(),
            })
    }

    /// Seals `plaintext` under the seal key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let key = self.seal_key()?;
        let mut iv = [0u8; IV_LEN];
        self.session()
            .generate_random_slice(&mut iv)
            .map_err(HsmError::pkcs11("C_GenerateRandom"))?;
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, TAG_BITS.into())
            .map_err(HsmError::pkcs11("CK_GCM_PARAMS"))?;
        let ct = self
            .session()
            .encrypt(&Mechanism::AesGcm(params), key, plaintext)
            .map_err(HsmError::pkcs11("C_Encrypt(CKM_AES_GCM)"))?;
        let mut out = Vec::with_capacity(IV_LEN + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a blob made by [`Hsm::seal`] with the same `aad`.
    pub fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let key = self.seal_key()?;
        if sealed.len() < IV_LEN + 16 {
            return Err(HsmError::BadLength {
                operation: "unseal",
                got: sealed.len(),
                expected: IV_LEN + 16,
            });
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&sealed[..IV_LEN]);
        let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())
            .map_err(HsmError::pkcs11("CK_GCM_PARAMS"))?;
        self.session()
            .decrypt(&Mechanism::AesGcm(params), key, &sealed[IV_LEN..])
            .map(Zeroizing::new)
            .map_err(|_| HsmError::Unseal)
    }
}

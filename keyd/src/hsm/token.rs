//! An open, logged-in session on one token, and the root secret in it.

use std::fmt;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use zeroize::Zeroizing;

use super::{HsmError, Pkcs11Uri, SOFTHSM2_INSTALL_HINT};
use crate::derive::{DeriveError, RootSecret, root::HmacOutput};

/// Length of the root secret `R` (SoftHSM2 refuses shorter HMAC-SHA512 keys).
pub const ROOT_SECRET_LEN: usize = 64;

/// A logged-in read-write session on the token a URI names.
pub struct Hsm {
    session: Session,
    label: String,
    object: String,
    // Keeps the module loaded for as long as the session lives.
    _ctx: Pkcs11,
}

impl Hsm {
    /// Loads the module, finds the token by label (and serial, if given) and logs in as
    /// the user with the PIN from the URI's `pin-source`.
    pub fn open(uri: &Pkcs11Uri) -> Result<Self, HsmError> {
        let ctx = load(uri)?;
        let slot = find_slot(&ctx, uri)?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(HsmError::pkcs11("C_OpenSession"))?;
        let pin_source = uri
            .pin_source
            .as_ref()
            .ok_or(super::UriError::Missing("pin-source"))?;
        let pin = pin_source.read()?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                return Err(HsmError::WrongPin {
                    label: uri.token.clone(),
                });
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(HsmError::PinLocked {
                    label: uri.token.clone(),
                });
            }
            Err(e) => return Err(HsmError::pkcs11("C_Login")(e)),
        }
        Ok(Hsm {
            session,
            label: uri.token.clone(),
            object: uri.object_or_default().to_owned(),
            _ctx: ctx,
        })
    }

    /// The token label.
    pub fn token_label(&self) -> &str {
        &self.label
    }

    /// The label of the key object this handle works with: the URI's `object` (default
    /// `root`; the seal token names its AES key, e.g. `seal`).
    pub fn root_label(&self) -> &str {
        &self.object
    }

    /// `n` bytes from the token's random generator.
    pub fn random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let mut buf = Zeroizing::new(vec![0u8; n]);
        self.session
            .generate_random_slice(&mut buf)
            .map_err(HsmError::pkcs11("C_GenerateRandom"))?;
        Ok(buf)
    }

    /// Whether the token holds a root secret under [`Hsm::root_label`].
    pub fn has_root(&self) -> Result<bool, HsmError> {
        Ok(self.find_root()?.is_some())
    }

    /// Imports `secret` as the root: a token object, private, sensitive,
    /// non-extractable `CKK_GENERIC_SECRET` usable only to sign (HMAC).
    ///
    /// Refuses when a root already exists: a root is never overwritten.
    pub fn import_root(&self, secret: &[u8]) -> Result<(), HsmError> {
        if secret.len() != ROOT_SECRET_LEN {
            return Err(HsmError::BadLength {
                operation: "root import",
                got: secret.len(),
                expected: ROOT_SECRET_LEN,
            });
        }
        if self.has_root()? {
            return Err(self.root_exists());
        }
        let mut value = Zeroizing::new(Vec::with_capacity(secret.len()));
        value.extend_from_slice(secret);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Verify(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Modifiable(false),
            Attribute::AllowedMechanisms(vec![MechanismType::SHA512_HMAC]),
            Attribute::Label(self.object.as_bytes().to_vec()),
            Attribute::Value(std::mem::take(&mut *value)),
        ];
        let created = self.session.create_object(&template);
        // The template's copy of the secret is zeroized with it.
        for attr in template {
            if let Attribute::Value(v) = attr {
                drop(Zeroizing::new(v));
            }
        }
        created.map_err(HsmError::pkcs11("C_CreateObject"))?;
        Ok(())
    }

    /// Destroys the root secret (used to roll back a ceremony that failed after import).
    pub fn danger_destroy_root(&self) -> Result<(), HsmError> {
        if let Some(handle) = self.find_root()? {
            self.session
                .destroy_object(handle)
                .map_err(HsmError::pkcs11("C_DestroyObject"))?;
        }
        Ok(())
    }

    /// The root secret, checked on open: a token object, a generic secret, sensitive,
    /// not extractable, not modifiable, never derived from, wrapping or encrypting, and
    /// (where the token keeps CKA_ALLOWED_MECHANISMS) usable with CKM_SHA512_HMAC only.
    /// Anything else is refused, naming the attribute.
    pub fn root(&self) -> Result<HsmRoot<'_>, HsmError> {
        let key = self.find_root()?.ok_or_else(|| HsmError::RootMissing {
            label: self.label.clone(),
            object: self.object.clone(),
        })?;
        self.check_root_attributes(key)?;
        Ok(HsmRoot { hsm: self, key })
    }

    fn check_root_attributes(&self, key: ObjectHandle) -> Result<(), HsmError> {
        use AttributeType as T;
        let flags: [(T, &'static str, bool); 9] = [
            (T::Token, "CKA_TOKEN", true),
            (T::Sensitive, "CKA_SENSITIVE", true),
            (T::Extractable, "CKA_EXTRACTABLE", false),
            (T::Modifiable, "CKA_MODIFIABLE", false),
            (T::Derive, "CKA_DERIVE", false),
            (T::Wrap, "CKA_WRAP", false),
            (T::Unwrap, "CKA_UNWRAP", false),
            (T::Encrypt, "CKA_ENCRYPT", false),
            (T::Decrypt, "CKA_DECRYPT", false),
        ];
        let mut wanted: Vec<T> = flags.iter().map(|(t, _, _)| *t).collect();
        wanted.extend([T::KeyType, T::AllowedMechanisms]);
        let attrs = self
            .session
            .get_attributes(key, &wanted)
            .map_err(HsmError::pkcs11("C_GetAttributeValue"))?;
        let refuse = |attribute, found: String, want| HsmError::RootAttribute {
            label: self.label.clone(),
            object: self.object.clone(),
            attribute,
            found,
            want,
        };
        for (t, name, want) in flags {
            let found = attrs.iter().find_map(|a| match (t, a) {
                (T::Token, Attribute::Token(v))
                | (T::Sensitive, Attribute::Sensitive(v))
                | (T::Extractable, Attribute::Extractable(v))
                | (T::Modifiable, Attribute::Modifiable(v))
                | (T::Derive, Attribute::Derive(v))
                | (T::Wrap, Attribute::Wrap(v))
                | (T::Unwrap, Attribute::Unwrap(v))
                | (T::Encrypt, Attribute::Encrypt(v))
                | (T::Decrypt, Attribute::Decrypt(v)) => Some(*v),
                _ => None,
            });
            if found != Some(want) {
                let found = found.map_or_else(|| "not reported".to_owned(), |v| v.to_string());
                return Err(refuse(name, found, if want { "true" } else { "false" }));
            }
        }
        match attrs.iter().find_map(|a| match a {
            Attribute::KeyType(k) => Some(*k),
            _ => None,
        }) {
            Some(k) if k == KeyType::GENERIC_SECRET => {}
            other => {
                let found = other.map_or_else(|| "not reported".to_owned(), |k| k.to_string());
                return Err(refuse("CKA_KEY_TYPE", found, "CKK_GENERIC_SECRET"));
            }
        }
        // Tokens that do not keep the attribute do not report it.
        if let Some(mechanisms) = attrs.iter().find_map(|a| match a {
            Attribute::AllowedMechanisms(m) => Some(m),
            _ => None,
        }) && mechanisms.as_slice() != [MechanismType::SHA512_HMAC]
        {
            let found = format!(
                "[{}]",
                mechanisms
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Err(refuse("CKA_ALLOWED_MECHANISMS", found, "[CKM_SHA512_HMAC]"));
        }
        Ok(())
    }

    fn find_root(&self) -> Result<Option<ObjectHandle>, HsmError> {
        self.find_object(ObjectClass::SECRET_KEY)
    }

    pub(super) fn session(&self) -> &Session {
        &self.session
    }

    /// The object of `class` labelled like the URI's `object`.
    pub(super) fn find_object(&self, class: ObjectClass) -> Result<Option<ObjectHandle>, HsmError> {
        let template = [
            Attribute::Class(class),
            Attribute::Label(self.object.as_bytes().to_vec()),
        ];
        let found = self
            .session
            .find_objects(&template)
            .map_err(HsmError::pkcs11("C_FindObjects"))?;
        Ok(found.into_iter().next())
    }

    fn root_exists(&self) -> HsmError {
        HsmError::RootExists {
            label: self.label.clone(),
            object: self.object.clone(),
        }
    }
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.label)
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

/// The root secret inside a token: `HSM(x) = C_Sign(CKM_SHA512_HMAC, R, x)`.
pub struct HsmRoot<'a> {
    hsm: &'a Hsm,
    key: ObjectHandle,
}

impl RootSecret for HsmRoot<'_> {
    fn hmac_sha512(&self, msg: &[u8]) -> Result<HmacOutput, DeriveError> {
        let mac = Zeroizing::new(
            self.hsm
                .session
                .sign(&Mechanism::Sha512Hmac, self.key, msg)
                .map_err(HsmError::pkcs11("C_Sign(CKM_SHA512_HMAC)"))?,
        );
        if mac.len() != 64 {
            return Err(HsmError::BadLength {
                operation: "C_Sign(CKM_SHA512_HMAC)",
                got: mac.len(),
                expected: 64,
            }
            .into());
        }
        let mut out = Zeroizing::new([0u8; 64]);
        out.copy_from_slice(&mac);
        Ok(out)
    }
}

impl fmt::Debug for HsmRoot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmRoot")
            .field("token", &self.hsm.label)
            .finish_non_exhaustive()
    }
}

fn load(uri: &Pkcs11Uri) -> Result<Pkcs11, HsmError> {
    let path = &uri.module_path;
    if !path.exists() {
        return Err(HsmError::ModuleNotFound {
            path: path.clone(),
            hint: SOFTHSM2_INSTALL_HINT,
        });
    }
    let ctx = Pkcs11::new(path).map_err(|source| HsmError::ModuleLoad {
        path: path.clone(),
        source,
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(source) => Err(HsmError::ModuleLoad {
            path: path.clone(),
            source,
        }),
    }
}

fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(HsmError::pkcs11("C_GetSlotList"))?;
    let mut seen = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(HsmError::pkcs11("C_GetTokenInfo"))?;
        let label = info.label().trim_end().to_owned();
        let serial_ok = uri
            .serial
            .as_deref()
            .is_none_or(|s| s == info.serial_number().trim_end());
        if label == uri.token && serial_ok {
            return Ok(slot);
        }
        seen.push(label);
    }
    Err(HsmError::TokenNotFound {
        label: uri.token.clone(),
        available: if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        },
    })
}

//! The PKCS#11 adapter: the only user of `cryptoki` in keyd.
//!
//! A token is named by an RFC 7512 URI ([`Pkcs11Uri`]); [`Hsm::open`] loads the module,
//! finds the token by label and logs in with a PIN read from a file or the environment.
//! [`HsmRoot`] is the production [`crate::derive::RootSecret`]: `C_Sign(CKM_SHA512_HMAC)`
//! with the root secret, a non-extractable `CKK_GENERIC_SECRET`.

mod error;
mod mark;
mod pin;
mod seal;
mod token;
mod uri;

pub use error::{HsmError, UriError};
pub use pin::PinSource;
pub use token::{Hsm, HsmRoot, ROOT_SECRET_LEN};
pub use uri::{DEFAULT_ROOT_OBJECT, Pkcs11Uri};

/// Where Debian's SoftHSM2 package installs its PKCS#11 module.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// How to get SoftHSM2 on Debian, for error messages.
pub const SOFTHSM2_INSTALL_HINT: &str = "install SoftHSM2 with `apt-get install softhsm2` (Debian/Ubuntu; use sudo when not root), or point module-path at your PKCS#11 module";

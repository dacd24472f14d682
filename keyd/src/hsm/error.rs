//! Errors of the HSM layer. Messages name what was wrong and what to do; they never
//! contain a PIN or key bytes.

use std::path::PathBuf;

use thiserror::Error;

/// A malformed `pkcs11:` URI.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UriError {
    /// The URI does not start with `pkcs11:`.
    #[error(
        "a PKCS#11 URI starts with \"pkcs11:\" (for example pkcs11:token=keyd-root;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/to/user.pin)"
    )]
    Scheme,
    /// An attribute is not `name=value`.
    #[error("PKCS#11 URI attribute {0:?} is not of the form name=value")]
    Malformed(String),
    /// An attribute value has bad percent-encoding.
    #[error("PKCS#11 URI attribute {0:?} has invalid percent-encoding or is not UTF-8")]
    Encoding(String),
    /// An attribute keyd does not know.
    #[error(
        "PKCS#11 URI attribute {0:?} is not supported (known: token, object, serial, module-path, pin-source)"
    )]
    Unknown(String),
    /// An attribute given twice.
    #[error("PKCS#11 URI attribute {0:?} is given twice")]
    Duplicate(String),
    /// A required attribute is missing.
    #[error("PKCS#11 URI needs the attribute {0:?}")]
    Missing(&'static str),
    /// `pin-value` would put the PIN in argv and shell history.
    #[error(
        "PKCS#11 URI must not carry pin-value: PINs never go on the command line; use pin-source=file:/path or pin-source=env:VARIABLE"
    )]
    PinValue,
    /// `pin-source` is neither `file:` nor `env:`.
    #[error("pin-source {0:?} is not supported: use file:/absolute/path or env:VARIABLE")]
    PinSource(String),
}

/// A failure talking to, or refused by, a PKCS#11 token.
#[derive(Debug, Error)]
pub enum HsmError {
    /// The URI is malformed.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// The PKCS#11 module file does not exist.
    #[error("PKCS#11 module {path} not found: {hint}")]
    ModuleNotFound {
        /// The module path from the URI.
        path: PathBuf,
        /// How to install one.
        hint: &'static str,
    },
    /// The module exists but could not be loaded or initialised.
    #[error("PKCS#11 module {path} could not be loaded: {source}")]
    ModuleLoad {
        /// The module path from the URI.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: cryptoki::error::Error,
    },
    /// No token with the requested label.
    #[error(
        "no PKCS#11 token labelled {label:?} (tokens present: {available}); check token= in the URI, or SOFTHSM2_CONF for SoftHSM2 (hsm-sim init prints it)"
    )]
    TokenNotFound {
        /// The label asked for.
        label: String,
        /// Labels of the tokens present, comma separated.
        available: String,
    },
    /// The user PIN was rejected.
    #[error("the PIN for token {label:?} is incorrect (check the pin-source file or variable)")]
    WrongPin {
        /// Token label.
        label: String,
    },
    /// The user PIN is locked after too many failures.
    #[error("the PIN for token {label:?} is locked; the security officer must reset it")]
    PinLocked {
        /// Token label.
        label: String,
    },
    /// The PIN file could not be read.
    #[error("cannot read the PIN file {path}: {source}")]
    PinFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PIN file is readable by group or others.
    #[error(
        "the PIN file {path} has mode {mode:o}; it must not be readable by group or others (chmod 600 {path})"
    )]
    PinFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PIN variable is not set.
    #[error("the PIN variable {var} is not set (or not UTF-8)")]
    PinEnv {
        /// Variable name.
        var: String,
    },
    /// The PIN source gave an empty PIN.
    #[error("the PIN from {source_name} is empty")]
    PinEmpty {
        /// Where it came from.
        source_name: String,
    },
    /// The token already holds a root: a root is never overwritten.
    #[error(
        "token {label:?} already holds a root secret named {object:?}; a root is never overwritten — use a fresh token"
    )]
    RootExists {
        /// Token label.
        label: String,
        /// Object label.
        object: String,
    },
    /// The token holds no root.
    #[error(
        "token {label:?} holds no root secret named {object:?}; run `keyctl ceremony init` or `keyctl ceremony recover` first"
    )]
    RootMissing {
        /// Token label.
        label: String,
        /// Object label.
        object: String,
    },
    /// The root object has an attribute that could let the secret out or be misused.
    #[error(
        "the root secret {object:?} on token {label:?} has {attribute} = {found} (it must be {want}); keyd refuses a root object that could let the secret out"
    )]
    RootAttribute {
        /// Token label.
        label: String,
        /// Object label.
        object: String,
        /// The attribute.
        attribute: &'static str,
        /// Its value on the token ("not reported" when the token gave none).
        found: String,
        /// What it must be.
        want: &'static str,
    },
    /// The seal token already holds a seal key.
    #[error(
        "token {label:?} already holds a seal key named {object:?}; it is never replaced (data sealed under it would be lost)"
    )]
    SealKeyExists {
        /// Token label.
        label: String,
        /// Object label.
        object: String,
    },
    /// The seal token has no seal key.
    #[error("token {label:?} holds no seal key named {object:?}; run `keyd init` first")]
    SealKeyMissing {
        /// Token label.
        label: String,
        /// Object label.
        object: String,
    },
    /// A sealed blob that does not open (tampered, or sealed by another key).
    #[error("sealed data does not open with this seal key (tampered, or sealed by another token)")]
    Unseal,
    /// Any other PKCS#11 failure.
    #[error("PKCS#11 {operation} failed: {source}")]
    Pkcs11 {
        /// What keyd was doing.
        operation: &'static str,
        /// cryptoki's error.
        #[source]
        source: cryptoki::error::Error,
    },
    /// The token returned output of an unexpected size.
    #[error("PKCS#11 {operation} returned {got} bytes, expected {expected}")]
    BadLength {
        /// What keyd was doing.
        operation: &'static str,
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
}

impl HsmError {
    /// Wraps a cryptoki error with the operation that failed.
    pub(crate) fn pkcs11(operation: &'static str) -> impl FnOnce(cryptoki::error::Error) -> Self {
        move |source| HsmError::Pkcs11 { operation, source }
    }
}

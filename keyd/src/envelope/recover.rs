//! Opening any envelope as an ancestor of its key: the root (in a ceremony) or a keyd
//! for its branch derives the key the envelope names and opens it. The key is derived
//! afresh, so an envelope of another tree (or of a key that was never certified) does
//! not open: its key id is not the derived key's.

use ed25519_dalek::VerifyingKey;
use zeroize::Zeroizing;

use super::{Encrypted, EnvelopeError, Sealed};
use crate::derive::{KeyMaterial, KeyPath};

/// An envelope an ancestor opened.
pub struct Recovered {
    /// `sealed` or `encrypted`.
    pub kind: &'static str,
    /// The key it was sealed under or encrypted to.
    pub key: KeyPath,
    /// For an encrypted envelope: its sender, whose signature was checked with the
    /// sender's key derived the same way.
    pub sender: Option<KeyPath>,
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovered")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// Why an ancestor could not open an envelope.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// Not an envelope, or it does not open (names the reason).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The key it names cannot be derived here (not below this ancestor).
    #[error("{0}")]
    Key(String),
}

/// Opens `bytes` (a sealed or an encrypted envelope) with `context` (empty for none),
/// deriving the key it names with `derive`; an encrypted envelope's sender signature is
/// checked with `sender_key` (derived too, or read from the chain).
pub fn open_as_ancestor(
    bytes: &[u8],
    context: &[u8],
    derive: impl Fn(&KeyPath) -> Result<KeyMaterial, String>,
    sender_key: impl Fn(&KeyPath) -> Result<VerifyingKey, String>,
) -> Result<Recovered, RecoverError> {
    if let Ok(s) = Sealed::from_cbor(bytes) {
        let key = derive(&s.key).map_err(RecoverError::Key)?;
        let plaintext = s.open_in(&key, context)?;
        return Ok(Recovered {
            kind: "sealed",
            key: s.key,
            sender: None,
            plaintext,
        });
    }
    let e = Encrypted::from_cbor(bytes)?;
    e.verify_sender(&sender_key(&e.sender).map_err(RecoverError::Key)?)?;
    let key = derive(&e.recipient).map_err(RecoverError::Key)?;
    let plaintext = e.open_in(&key, context)?;
    Ok(Recovered {
        kind: "encrypted",
        key: e.recipient,
        sender: Some(e.sender),
        plaintext,
    })
}

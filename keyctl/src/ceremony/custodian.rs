//! Shares per custodian: each share file is encrypted to its custodian with the age
//! format (<https://age-encryption.org/v1>), to an X25519 recipient (`age1…`) or, for
//! a custodian without a key, to a passphrase (scrypt recipient).
//!
//! The plaintext inside is the share file of [`super::shares`], unchanged; the armored
//! age file is what the custodian keeps. Any age implementation opens it
//! (`age --decrypt -i key.txt share-1-alice.age`).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::shares::ShareError;
use crate::error::CtlError;
use crate::files;

/// The line every armored age file starts with.
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// The line every binary age file starts with.
const BINARY_BEGIN: &str = "age-encryption.org/v1";
/// Largest passphrase or identity file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// One custodian of one share: `NAME=age1…` or `NAME=passphrase-file:PATH`.
pub struct Custodian {
    /// The custodian's name, part of the share file name and of the transcript.
    pub name: String,
    recipient: Recipient,
}

enum Recipient {
    X25519(age::x25519::Recipient),
    Passphrase(SecretString),
}

impl fmt::Debug for Custodian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Custodian")
            .field("name", &self.name)
            .field("recipient", &self.recipient_text())
            .finish()
    }
}

impl Custodian {
    /// Parses `NAME=RECIPIENT` (`--custodian`). A passphrase is read from the file the
    /// spec names, never from the command line.
    pub fn parse(spec: &str) -> Result<Self, CtlError> {
        let bad = |message: String| CtlError::Arg {
            flag: "--custodian",
            message,
        };
        let (name, recipient) = spec.split_once('=').ok_or_else(|| {
            bad(format!(
                "{spec:?} is not NAME=RECIPIENT (RECIPIENT: an age1… X25519 recipient, or passphrase-file:PATH)"
            ))
        })?;
        // Custodian names follow node names (they name the share file).
        keyd::chain::check_name(name).map_err(|m| bad(format!("custodian {m}")))?;
        let recipient = if let Some(path) = recipient.strip_prefix("passphrase-file:") {
            let passphrase = read_passphrase(Path::new(path))?;
            Recipient::Passphrase(passphrase)
        } else {
            let parsed = age::x25519::Recipient::from_str(recipient).map_err(|e| {
                bad(format!(
                    "custodian {name}: {recipient:?} is not an age X25519 recipient ({e}); \
                     give age1… (from `keyctl ceremony custodian-key` or age-keygen) or passphrase-file:PATH"
                ))
            })?;
            Recipient::X25519(parsed)
        };
        Ok(Self {
            name: name.to_owned(),
            recipient,
        })
    }

    /// What the share is encrypted to, for the transcript: the X25519 recipient, or
    /// `passphrase`.
    pub fn recipient_text(&self) -> String {
        match &self.recipient {
            Recipient::X25519(r) => r.to_string(),
            Recipient::Passphrase(_) => "passphrase".to_owned(),
        }
    }

    /// Encrypts `plaintext` (a share file) to this custodian, ASCII-armored.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CtlError> {
        let sealed = match &self.recipient {
            Recipient::X25519(r) => age::encrypt_and_armor(r, plaintext),
            Recipient::Passphrase(p) => {
                age::encrypt_and_armor(&age::scrypt::Recipient::new(p.clone()), plaintext)
            }
        };
        sealed.map(String::into_bytes).map_err(|e| {
            CtlError::Mismatch(format!(
                "cannot encrypt the share to custodian {}: {e}",
                self.name
            ))
        })
    }
}

/// Checks that custodian names are distinct.
pub fn check_distinct(custodians: &[Custodian]) -> Result<(), CtlError> {
    for (i, c) in custodians.iter().enumerate() {
        if custodians[..i].iter().any(|o| o.name == c.name) {
            return Err(CtlError::Arg {
                flag: "--custodian",
                message: format!(
                    "custodian {} is named twice: one share per custodian",
                    c.name
                ),
            });
        }
    }
    Ok(())
}

fn read_limited(path: &Path) -> Result<Zeroizing<String>, CtlError> {
    let mut text = Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_string(&mut text))
        .map_err(CtlError::io("cannot read", path))?;
    Ok(text)
}

/// Reads a passphrase from a file: its first line, without the line end; never empty.
pub fn read_passphrase(path: &Path) -> Result<SecretString, CtlError> {
    let text = read_limited(path)?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(CtlError::Arg {
            flag: "passphrase-file",
            message: format!("{} holds no passphrase on its first line", path.display()),
        });
    }
    Ok(SecretString::from(line.to_owned()))
}

/// What can open custodians' shares: age identity files and passphrases.
#[derive(Default)]
pub struct Keys {
    identities: Vec<Box<dyn age::Identity>>,
    passphrases: Vec<SecretString>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("identities", &self.identities.len())
            .field("passphrases", &self.passphrases.len())
            .finish()
    }
}

impl Keys {
    /// Keys holding one X25519 identity.
    pub fn from_x25519(identity: age::x25519::Identity) -> Self {
        Keys {
            identities: vec![Box::new(identity)],
            passphrases: Vec::new(),
        }
    }

    /// Loads identity files (`AGE-SECRET-KEY-1…` lines) and passphrase files.
    pub fn load(
        identity_files: &[PathBuf],
        passphrase_files: &[PathBuf],
    ) -> Result<Self, CtlError> {
        let mut keys = Keys::default();
        for file in identity_files {
            let text = read_limited(file)?;
            let parsed = age::IdentityFile::from_buffer(text.as_bytes())
                .map_err(|e| CtlError::Arg {
                    flag: "--identity",
                    message: format!("{}: not an age identity file: {e}", file.display()),
                })?
                .into_identities()
                .map_err(|e| CtlError::Arg {
                    flag: "--identity",
                    message: format!("{}: {e}", file.display()),
                })?;
            if parsed.is_empty() {
                return Err(CtlError::Arg {
                    flag: "--identity",
                    message: format!("{} holds no age identity", file.display()),
                });
            }
            keys.identities.extend(parsed);
        }
        for file in passphrase_files {
            keys.passphrases.push(read_passphrase(file)?);
        }
        Ok(keys)
    }
}

/// Whether `bytes` are an age file (armored or binary) rather than a clear share.
pub fn is_sealed(bytes: &[u8]) -> bool {
    let text = bytes.trim_ascii_start();
    text.starts_with(ARMOR_BEGIN.as_bytes()) || text.starts_with(BINARY_BEGIN.as_bytes())
}

/// Opens an age-encrypted share file with whichever of `keys` was its recipient.
pub fn open(file: &Path, bytes: &[u8], keys: &Keys) -> Result<Zeroizing<Vec<u8>>, ShareError> {
    let locked = |reason: String| ShareError::Locked {
        file: file.to_owned(),
        reason,
    };
    let scrypt: Vec<age::scrypt::Identity> = keys
        .passphrases
        .iter()
        .map(|p| age::scrypt::Identity::new(SecretString::from(p.expose_secret().to_owned())))
        .collect();
    let candidates = keys
        .identities
        .iter()
        .map(|i| i.as_ref())
        .chain(scrypt.iter().map(|i| i as &dyn age::Identity));
    let mut tried = 0usize;
    for identity in candidates {
        tried += 1;
        let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(bytes))
            .map_err(|e| ShareError::Malformed {
                file: file.to_owned(),
                reason: format!("not a readable age file: {e}"),
            })?;
        let mut reader = match decryptor.decrypt(std::iter::once(identity)) {
            Ok(reader) => reader,
            // Not this custodian's key, or a wrong passphrase: try the next.
            Err(age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed) => {
                continue;
            }
            Err(e) => return Err(locked(e.to_string())),
        };
        let mut plain = Zeroizing::new(Vec::new());
        reader
            .by_ref()
            .take(super::shares::MAX_SHARE_FILE)
            .read_to_end(&mut plain)
            .map_err(|e| ShareError::Malformed {
                file: file.to_owned(),
                reason: format!("the age payload does not decrypt: {e}"),
            })?;
        return Ok(plain);
    }
    Err(locked(if tried == 0 {
        "it is encrypted to its custodian: give --identity FILE or --passphrase-file FILE"
            .to_owned()
    } else {
        format!("none of the {tried} identities and passphrases given opens it")
    }))
}

/// `keyctl ceremony custodian-key --out FILE`: a new age X25519 identity for a
/// custodian, written 0600; returns its recipient (`age1…`) to give the ceremony.
pub fn keygen(out: &Path) -> Result<String, CtlError> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = Zeroizing::new(format!(
        "# keyd share custodian key, made {}\n# public key: {recipient}\n{}\n",
        super::now(),
        identity.to_string().expose_secret()
    ));
    files::write_private(out, text.as_bytes())?;
    Ok(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_specs_are_checked() {
        assert!(Custodian::parse("alice").is_err());
        assert!(Custodian::parse("al ice=age1xyz").is_err());
        assert!(Custodian::parse("alice=age1notakey").is_err());
        assert!(Custodian::parse("a/b=age1xyz").is_err());
        let id = age::x25519::Identity::generate();
        let c = Custodian::parse(&format!("alice={}", id.to_public())).unwrap();
        assert_eq!(c.name, "alice");
        assert_eq!(c.recipient_text(), id.to_public().to_string());
    }

    #[test]
    fn only_the_right_identity_opens() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("alice.key");
        let recipient = keygen(&key).unwrap();
        let other = dir.path().join("bob.key");
        keygen(&other).unwrap();
        let c = Custodian::parse(&format!("alice={recipient}")).unwrap();
        let sealed = c.seal(b"share text").unwrap();
        assert!(is_sealed(&sealed));
        let file = Path::new("share-1-alice.age");

        let wrong = Keys::load(std::slice::from_ref(&other), &[]).unwrap();
        assert!(matches!(
            open(file, &sealed, &wrong),
            Err(ShareError::Locked { .. })
        ));
        let none = Keys::default();
        assert!(matches!(
            open(file, &sealed, &none),
            Err(ShareError::Locked { .. })
        ));
        let right = Keys::load(&[other, key], &[]).unwrap();
        assert_eq!(
            open(file, &sealed, &right).unwrap().as_slice(),
            b"share text"
        );
    }
}

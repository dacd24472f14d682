//! Shamir shares of the root secret (the `blahaj` crate, GF(256) byte-wise sharing),
//! stored one per file in a self-describing, checksummed JSON format.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use blahaj::{Share, Sharks};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use keyd::hsm::ROOT_SECRET_LEN;

use super::custodian::{self, Keys};

/// Format tag of a share file.
pub const SHARE_FORMAT: &str = "keyd-share/v1";
/// Largest share file keyctl reads (clear or age-encrypted).
pub const MAX_SHARE_FILE: u64 = 16 * 1024;
/// Domain tag of a share commitment.
const COMMITMENT_TAG: &[u8] = b"keyd/v1/share-commitment\0";

/// A share that cannot be used, naming the file and the problem.
#[derive(Debug, Error)]
pub enum ShareError {
    /// The file cannot be read.
    #[error("share {file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a share file at all (truncated, corrupted or another file).
    #[error("share {file}: not a keyd share file (truncated or corrupted?): {reason}")]
    Malformed {
        /// The file.
        file: PathBuf,
        /// What failed to parse.
        reason: String,
    },
    /// The checksum does not match the content.
    #[error(
        "share {file}: checksum mismatch, the share is corrupted (expected {expected}, computed {computed})"
    )]
    Checksum {
        /// The file.
        file: PathBuf,
        /// Checksum in the file.
        expected: String,
        /// Checksum of the content.
        computed: String,
    },
    /// The share belongs to another root.
    #[error("share {file} belongs to root {found}, not to root {expected}")]
    OtherRoot {
        /// The file.
        file: PathBuf,
        /// Its root fingerprint.
        found: String,
        /// The expected fingerprint.
        expected: String,
    },
    /// Two files carry the same share index.
    #[error("share {file} duplicates share #{index} already given in {first}")]
    Duplicate {
        /// The file.
        file: PathBuf,
        /// Share index.
        index: u8,
        /// The file that gave it first.
        first: PathBuf,
    },
    /// Shares disagree on the threshold or share count.
    #[error(
        "share {file} says {threshold}-of-{shares}, but {first} says {first_threshold}-of-{first_shares}"
    )]
    Inconsistent {
        /// The file.
        file: PathBuf,
        /// Its threshold.
        threshold: u8,
        /// Its share count.
        shares: u8,
        /// The first file.
        first: PathBuf,
        /// The first file's threshold.
        first_threshold: u8,
        /// The first file's share count.
        first_shares: u8,
    },
    /// The share is encrypted and none of the identities given opens it.
    #[error("share {file}: cannot open: {reason}")]
    Locked {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The share does not match its commitment in the signed ceremony transcript.
    #[error(
        "share {file} (#{index}{custodian}) does not match its commitment in the signed ceremony transcript: it was altered after the ceremony; leave it out"
    )]
    Tampered {
        /// The file.
        file: PathBuf,
        /// Share index.
        index: u8,
        /// `, custodian NAME` when the transcript names one.
        custodian: String,
    },
    /// The transcript holds no commitment for this share index.
    #[error("share {file}: the ceremony transcript made no share #{index}")]
    NotCommitted {
        /// The file.
        file: PathBuf,
        /// Share index.
        index: u8,
    },
    /// Not enough shares.
    #[error("{needed} shares are needed to rebuild this root, {given} given")]
    TooFew {
        /// The threshold.
        needed: u8,
        /// Distinct shares given.
        given: usize,
    },
}

/// What a share file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareFile {
    /// [`SHARE_FORMAT`].
    pub format: String,
    /// SHA-256 of the root identity's Ed25519 public key, hex.
    pub root_fingerprint: String,
    /// Key id of the root identity.
    pub root_key_id: String,
    /// Shares needed to rebuild the root.
    pub threshold: u8,
    /// Shares made.
    pub shares: u8,
    /// This share's index (its x coordinate), 1-based.
    pub index: u8,
    /// The share's y values, hex (secret).
    pub value: String,
    /// First 8 bytes of SHA-256 over the fields above, hex.
    pub checksum: String,
}

impl ShareFile {
    fn checksum_of(&self) -> String {
        let mut h = Sha256::new();
        for field in [
            self.format.as_str(),
            &self.root_fingerprint,
            &self.root_key_id,
            &self.threshold.to_string(),
            &self.shares.to_string(),
            &self.index.to_string(),
            &self.value,
        ] {
            h.update((field.len() as u32).to_be_bytes());
            h.update(field.as_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The share's commitment, recorded in the signed ceremony transcript: SHA-256 of
    /// `"keyd/v1/share-commitment\0" || fingerprint (32 bytes) || threshold || shares ||
    /// index || value (64 bytes)`, hex. It binds the secret value, so a share that was
    /// altered (even with a fresh checksum) is named at recovery; it reveals nothing of
    /// the value (64 uniformly random bytes behind SHA-256).
    pub fn commitment(&self) -> String {
        let mut h = Sha256::new();
        h.update(COMMITMENT_TAG);
        h.update(hex::decode(&self.root_fingerprint).unwrap_or_default());
        h.update([self.threshold, self.shares, self.index]);
        h.update(Zeroizing::new(hex::decode(&self.value).unwrap_or_default()).as_slice());
        hex::encode(h.finalize())
    }
}

impl Drop for ShareFile {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl fmt::Debug for ShareFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareFile")
            .field("root_key_id", &self.root_key_id)
            .field("threshold", &self.threshold)
            .field("shares", &self.shares)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// The root this set of shares is for.
#[derive(Debug, Clone)]
pub struct RootRef {
    /// Root fingerprint, hex.
    pub fingerprint: String,
    /// Root key id.
    pub key_id: String,
}

/// Splits `secret` into `shares` shares, any `threshold` of which rebuild it.
pub fn split(secret: &[u8], threshold: u8, shares: u8, root: &RootRef) -> Vec<ShareFile> {
    Sharks(threshold)
        .dealer(secret)
        .take(usize::from(shares))
        .map(|share| {
            let bytes = Zeroizing::new(Vec::from(&share));
            let mut file = ShareFile {
                format: SHARE_FORMAT.to_owned(),
                root_fingerprint: root.fingerprint.clone(),
                root_key_id: root.key_id.clone(),
                threshold,
                shares,
                index: bytes[0],
                value: hex::encode(&bytes[1..]),
                checksum: String::new(),
            };
            file.checksum = file.checksum_of();
            file
        })
        .collect()
}

/// Reads and checks one share file, opening it with `keys` when it is encrypted to its
/// custodian.
pub fn read(file: &Path, keys: &Keys) -> Result<ShareFile, ShareError> {
    use std::io::Read;
    let mut bytes = Zeroizing::new(Vec::new());
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_SHARE_FILE).read_to_end(&mut bytes))
        .map_err(|source| ShareError::Read {
            file: file.to_owned(),
            source,
        })?;
    if custodian::is_sealed(&bytes) {
        let plain = custodian::open(file, &bytes, keys)?;
        parse(file, &plain)
    } else {
        parse(file, &bytes)
    }
}

/// Parses and checks a clear share file (format, checksum, index, value length).
pub fn parse(file: &Path, bytes: &[u8]) -> Result<ShareFile, ShareError> {
    let malformed = |reason: String| ShareError::Malformed {
        file: file.to_owned(),
        reason,
    };
    let share: ShareFile = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if share.format != SHARE_FORMAT {
        return Err(malformed(format!(
            "format {:?}, expected {SHARE_FORMAT:?}",
            share.format
        )));
    }
    let computed = share.checksum_of();
    if computed != share.checksum {
        return Err(ShareError::Checksum {
            file: file.to_owned(),
            expected: share.checksum.clone(),
            computed,
        });
    }
    if share.index == 0 || share.threshold < 2 || share.threshold > share.shares {
        return Err(malformed(format!(
            "index {} of a {}-of-{} split is impossible",
            share.index, share.threshold, share.shares
        )));
    }
    if share.value.len() != ROOT_SECRET_LEN * 2 || hex::decode(&share.value).is_err() {
        return Err(malformed(format!(
            "value must be {} hex digits",
            ROOT_SECRET_LEN * 2
        )));
    }
    Ok(share)
}

/// What the signed ceremony transcript committed to for one share index.
#[derive(Debug, Clone)]
pub struct Committed {
    /// [`ShareFile::commitment`].
    pub commitment: String,
    /// The custodian the share was encrypted to, if any.
    pub custodian: Option<String>,
}

/// Checks that the shares are of `root`, consistent, match their commitments in the
/// signed ceremony transcript (when given), distinct and enough, then rebuilds the
/// secret. Each problem names the file.
pub fn combine(
    shares: &[(PathBuf, ShareFile)],
    root: &RootRef,
    committed: Option<&BTreeMap<u8, Committed>>,
) -> Result<Zeroizing<Vec<u8>>, ShareError> {
    let mut seen: BTreeMap<u8, &Path> = BTreeMap::new();
    let Some((first_file, first)) = shares.first() else {
        return Err(ShareError::TooFew {
            needed: 2,
            given: 0,
        });
    };
    for (file, share) in shares {
        if share.root_fingerprint != root.fingerprint {
            return Err(ShareError::OtherRoot {
                file: file.clone(),
                found: share.root_fingerprint.clone(),
                expected: root.fingerprint.clone(),
            });
        }
        if (share.threshold, share.shares) != (first.threshold, first.shares) {
            return Err(ShareError::Inconsistent {
                file: file.clone(),
                threshold: share.threshold,
                shares: share.shares,
                first: first_file.clone(),
                first_threshold: first.threshold,
                first_shares: first.shares,
            });
        }
        if let Some(committed) = committed {
            check_commitment(file, share, committed)?;
        }
        if let Some(prev) = seen.insert(share.index, file) {
            return Err(ShareError::Duplicate {
                file: file.clone(),
                index: share.index,
                first: prev.to_owned(),
            });
        }
    }
    if seen.len() < usize::from(first.threshold) {
        return Err(ShareError::TooFew {
            needed: first.threshold,
            given: seen.len(),
        });
    }
    let mut parsed = Vec::with_capacity(shares.len());
    for (file, share) in shares {
        let mut bytes = Zeroizing::new(Vec::with_capacity(1 + ROOT_SECRET_LEN));
        bytes.push(share.index);
        let value =
            Zeroizing::new(
                hex::decode(&share.value).map_err(|e| ShareError::Malformed {
                    file: file.clone(),
                    reason: e.to_string(),
                })?,
            );
        bytes.extend_from_slice(&value);
        parsed.push(
            Share::try_from(bytes.as_slice()).map_err(|e| ShareError::Malformed {
                file: file.clone(),
                reason: e.to_owned(),
            })?,
        );
    }
    let secret = Sharks(first.threshold)
        .recover(&parsed)
        .map(Zeroizing::new)
        .map_err(|_| ShareError::TooFew {
            needed: first.threshold,
            given: parsed.len(),
        });
    for share in &mut parsed {
        share.y.iter_mut().for_each(|v| v.0 = 0);
    }
    secret
}

fn check_commitment(
    file: &Path,
    share: &ShareFile,
    committed: &BTreeMap<u8, Committed>,
) -> Result<(), ShareError> {
    let Some(expected) = committed.get(&share.index) else {
        return Err(ShareError::NotCommitted {
            file: file.to_owned(),
            index: share.index,
        });
    };
    // Commitments are public: a plain comparison.
    if share.commitment() != expected.commitment {
        return Err(ShareError::Tampered {
            file: file.to_owned(),
            index: share.index,
            custodian: expected
                .custodian
                .as_ref()
                .map(|c| format!(", custodian {c}"))
                .unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> RootRef {
        RootRef {
            fingerprint: "ab".repeat(32),
            key_id: "cd".repeat(16),
        }
    }

    fn files(set: Vec<ShareFile>) -> Vec<(PathBuf, ShareFile)> {
        set.into_iter()
            .map(|s| (PathBuf::from(format!("share-{}.json", s.index)), s))
            .collect()
    }

    #[test]
    fn any_threshold_subset_rebuilds() {
        let secret = [9u8; 64];
        let mut all = files(split(&secret, 3, 5, &root()));
        let subset: Vec<_> = vec![all.remove(4), all.remove(2), all.remove(0)];
        assert_eq!(combine(&subset, &root(), None).unwrap().as_slice(), &secret);
    }

    #[test]
    fn refuses_too_few_duplicates_and_other_roots() {
        let secret = [1u8; 64];
        let set = files(split(&secret, 3, 5, &root()));
        let two: Vec<_> = set.into_iter().take(2).collect();
        assert!(matches!(
            combine(&two, &root(), None),
            Err(ShareError::TooFew {
                needed: 3,
                given: 2
            })
        ));

        let set = files(split(&secret, 3, 5, &root()));
        let dup = files(split(&secret, 3, 5, &root()));
        let mut mixed: Vec<_> = set.into_iter().take(2).collect();
        mixed.extend(dup.into_iter().take(1));
        assert!(matches!(
            combine(&mixed, &root(), None),
            Err(ShareError::Duplicate { index: 1, .. })
        ));

        let other = RootRef {
            fingerprint: "ef".repeat(32),
            key_id: "00".repeat(16),
        };
        let set = files(split(&secret, 2, 3, &other));
        assert!(matches!(
            combine(&set, &root(), None),
            Err(ShareError::OtherRoot { .. })
        ));
    }

    #[test]
    fn checksum_covers_every_field() {
        let mut s = split(&[5u8; 64], 2, 2, &root()).remove(0);
        assert_eq!(s.checksum_of(), s.checksum);
        s.threshold = 3;
        assert_ne!(s.checksum_of(), s.checksum);
    }

    #[test]
    fn debug_hides_the_value() {
        let s = split(&[0x77u8; 64], 2, 2, &root()).remove(0);
        let shown = format!("{s:?}");
        assert!(!shown.contains(&s.value), "{shown}");
    }
}

//! One deterministic CBOR encoding (ciborium): definite lengths, shortest integers,
//! struct fields in declaration order. Decoding accepts only that encoding: whatever
//! decodes is re-encoded and must give back the very same bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes are not a canonical encoding of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// Input ended inside an item.
    #[error("truncated CBOR (input ends inside an item)")]
    Truncated,
    /// Not CBOR, or not the expected structure (names the field or variant).
    #[error("malformed: {0}")]
    Malformed(String),
    /// Decodes, but not in the one canonical encoding.
    #[error("non-canonical encoding (it must be the deterministic encoding of its content)")]
    NonCanonical,
    /// Bytes left after the item.
    #[error("{0} trailing byte(s) after the item")]
    Trailing(usize),
    /// Larger than allowed.
    #[error("item of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Encodes `value`.
pub fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing to a Vec cannot fail, and keyd's types always serialise.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        unreachable!("CBOR encoding of keyd types cannot fail: {e}");
    }
    out
}

/// Decodes one item from the front of `input`, returning it and the number of bytes it
/// took. Rejects items over `limit` bytes and non-canonical encodings.
pub fn decode_prefix<T: Serialize + DeserializeOwned>(
    input: &[u8],
    limit: usize,
) -> Result<(T, usize), CborError> {
    let (value, used) = read_prefix(input, limit)?;
    if to_vec(&value) != input[..used] {
        return Err(CborError::NonCanonical);
    }
    Ok((value, used))
}

/// Decodes exactly one item filling all of `input`, without re-encoding it to check
/// that it is canonical: only for bytes that are hashed as they are and checked against
/// a signed hash (a store's own log rows, whose hashes link up to a signed head), where
/// any other encoding of the content fails that check.
pub fn decode_hashed<T: DeserializeOwned>(input: &[u8], limit: usize) -> Result<T, CborError> {
    if input.len() > limit {
        return Err(CborError::TooLarge {
            size: input.len(),
            limit,
        });
    }
    let (value, used) = read_prefix(input, limit)?;
    if used != input.len() {
        return Err(CborError::Trailing(input.len() - used));
    }
    Ok(value)
}

/// Reads one item from the front of `input` (at most `limit` bytes), without the
/// canonical check.
fn read_prefix<T: DeserializeOwned>(input: &[u8], limit: usize) -> Result<(T, usize), CborError> {
    // Never read past the limit: an item declaring a huge length ends as too large.
    let window = &input[..input.len().min(limit)];
    let mut rest = window;
    let value: T = ciborium::from_reader(&mut rest).map_err(|e| match e {
        ciborium::de::Error::Io(_) if input.len() > limit => CborError::TooLarge {
            size: input.len(),
            limit,
        },
        ciborium::de::Error::Io(_) => CborError::Truncated,
        ciborium::de::Error::Syntax(at) => {
            CborError::Malformed(format!("invalid CBOR at byte {at}"))
        }
        ciborium::de::Error::Semantic(_, msg) => CborError::Malformed(msg),
        ciborium::de::Error::RecursionLimitExceeded => {
            CborError::Malformed("nested too deeply".into())
        }
    })?;
    Ok((value, window.len() - rest.len()))
}

/// Decodes exactly one item filling all of `input`, in its canonical encoding.
pub fn decode_exact<T: Serialize + DeserializeOwned>(
    input: &[u8],
    limit: usize,
) -> Result<T, CborError> {
    let value = decode_hashed(input, limit)?;
    if to_vec(&value) != input {
        return Err(CborError::NonCanonical);
    }
    Ok(value)
}

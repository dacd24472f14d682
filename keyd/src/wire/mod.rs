//! The REST API's request and response bodies, defined once: keyd serves them, and
//! [`crate::client`] (keyctl, or any Rust node) sends and reads them.
//!
//! Every body is JSON by default or CBOR on request; byte fields are base64 text in
//! JSON and byte strings in CBOR ([`Blob`] in requests, [`Bytes`] in responses). Errors
//! are always JSON [`ErrorBody`]. A response type accepts fields it does not know (a
//! newer keyd may add some); a request type refuses them (keyd names the field).

mod admin;
mod ops;
mod policy;
mod trust;

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

pub use admin::*;
pub use ops::*;
pub use policy::*;
pub use trust::*;

/// The body of every error: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's stable code and its message.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable code (`bad_json`, `key_not_valid`, ...).
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub code: Cow<'static, str>,
    /// What was wrong, for people.
    pub message: String,
    /// For a refusal by policy (`forbidden`): the rule that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// An empty body (`{}`), for requests that carry nothing.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A byte field that is not base64 (named by [`Blob::bytes`]).
#[derive(Debug)]
pub struct BadBase64 {
    /// The field (`data`, `items[3].envelope`).
    pub field: String,
    /// What the decoder said.
    pub message: String,
}

impl fmt::Display for BadBase64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: not base64: {}", self.field, self.message)
    }
}

impl std::error::Error for BadBase64 {}

/// Bytes in a request: base64 text in JSON, a byte string in CBOR. A server decodes
/// them with [`Blob::bytes`], which names the field when the text is not base64; a
/// client makes one with [`Blob::new`].
pub enum Blob {
    /// Base64 text, not yet decoded.
    Text(Zeroizing<String>),
    /// Bytes (a CBOR byte string, or what a client sends).
    Raw(Zeroizing<Vec<u8>>),
}

impl Blob {
    /// Bytes to send.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Blob {
        Blob::Raw(Zeroizing::new(bytes.into()))
    }

    /// The bytes; `field` names the field in the error.
    pub fn bytes(&self, field: &str) -> Result<Zeroizing<Vec<u8>>, BadBase64> {
        match self {
            Blob::Raw(b) => Ok(b.clone()),
            Blob::Text(t) => B64
                .decode(t.as_bytes())
                .map(Zeroizing::new)
                .map_err(|e| BadBase64 {
                    field: field.to_owned(),
                    message: e.to_string(),
                }),
        }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blob(..)")
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Blob::Text(t) => s.serialize_str(t),
            Blob::Raw(b) => serialize_bytes(b, s),
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("base64 text (JSON) or a byte string (CBOR)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Blob, E> {
                Ok(Blob::Text(Zeroizing::new(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Blob, E> {
                Ok(Blob::Text(Zeroizing::new(v)))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob::Raw(Zeroizing::new(v.to_vec())))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob::Raw(Zeroizing::new(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Bytes in a response: base64 text in JSON, a byte string in CBOR; zeroized on drop.
pub struct Bytes(pub Zeroizing<Vec<u8>>);

impl Bytes {
    /// Wraps bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Bytes {
        Bytes(Zeroizing::new(bytes.into()))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

fn serialize_bytes<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&Zeroizing::new(B64.encode(bytes)))
    } else {
        s.serialize_bytes(bytes)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let blob = Blob::deserialize(d)?;
        blob.bytes("bytes")
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "server")]
mod schema {
    use std::borrow::Cow;

    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::{PartialSchema, ToSchema};

    use super::{Blob, Bytes};

    fn bytes_schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Byte)))
            .description(Some("base64 in JSON, a byte string in CBOR"))
            .into()
    }

    impl PartialSchema for Blob {
        fn schema() -> RefOr<Schema> {
            bytes_schema()
        }
    }

    impl ToSchema for Blob {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("Bytes")
        }
    }

    impl PartialSchema for Bytes {
        fn schema() -> RefOr<Schema> {
            bytes_schema()
        }
    }

    impl ToSchema for Bytes {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_base64_in_json_and_byte_strings_in_cbor_both_ways() {
        let json = serde_json::to_string(&Bytes::new(*b"hi")).unwrap_or_default();
        assert_eq!(json, "\"aGk=\"");
        let back: Result<Bytes, _> = serde_json::from_str(&json);
        assert_eq!(
            back.map(|b| b.as_slice().to_vec()).ok(),
            Some(b"hi".to_vec())
        );
        let mut cbor = Vec::new();
        assert!(ciborium::into_writer(&Blob::new(*b"hi"), &mut cbor).is_ok());
        assert_eq!(cbor, [0x42, b'h', b'i']);
        let back: Result<Bytes, _> = ciborium::from_reader(&cbor[..]);
        assert_eq!(
            back.map(|b| b.as_slice().to_vec()).ok(),
            Some(b"hi".to_vec())
        );
        let bad: Result<Bytes, _> = serde_json::from_str("\"not base64!\"");
        assert!(bad.is_err_and(|e| e.to_string().contains("not base64")));
        let text: Blob = serde_json::from_str("\"@@\"").unwrap_or(Blob::new(vec![]));
        assert!(
            text.bytes("items[2].data")
                .is_err_and(|e| e.to_string().starts_with("items[2].data: not base64"))
        );
    }
}

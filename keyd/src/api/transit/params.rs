//! Request parameters as transit takes them: a JSON object whatever the Content-Type
//! (the Go clients send none), an empty body or `null` as no parameters, and scalars
//! typed loosely (the bao CLI sends `"true"` and `"2"` as strings), `null` as absent.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// A transit-style failure: the status and the messages of `{"errors": [...]}`.
pub type Failure = String;

/// The parameters of a request (or of one batch item).
#[derive(Clone, Debug, Default)]
pub struct Params(Map<String, Value>);

impl Params {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Params, Failure> {
        let text = body.trim_ascii();
        if text.is_empty() {
            return Ok(Params::default());
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Params(map)),
            Ok(Value::Null) => Ok(Params::default()),
            Ok(other) => Err(format!(
                "failed to decode JSON input: cannot take {} as the request's parameters: an object is expected",
                kind(&other)
            )),
            Err(e) => Err(format!("failed to decode JSON input: {e}")),
        }
    }

    /// Sets `name` from the request path (it wins over the body).
    pub fn set(&mut self, name: &str, value: &str) {
        self.0
            .insert(name.to_owned(), Value::String(value.to_owned()));
    }

    /// The names given that are not in `known`, sorted.
    pub fn unknown(&self, known: &[&str]) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A text field; numbers and booleans as their text.
    pub fn text(&self, name: &str) -> Result<Option<String>, Failure> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(other) => Err(field_error(name, other, "string")),
        }
    }

    /// A boolean field: `true`, `"true"`, `1`, `"1"`, `"t"`… as Go's `ParseBool`.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, Failure> {
        let parse = |s: &str| match s {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
            _ => None,
        };
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
            Some(v @ Value::String(s)) => parse(s)
                .map(Some)
                .ok_or_else(|| field_error(name, v, "bool")),
            Some(other) => Err(field_error(name, other, "bool")),
        }
    }

    /// A non-negative integer field, as a number or its text.
    pub fn number(&self, name: &str) -> Result<Option<u32>, Failure> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| field_error(name, v, "int")),
            Some(v @ Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| field_error(name, v, "int")),
            Some(other) => Err(field_error(name, other, "int")),
        }
    }

    /// A base64 field (standard alphabet, padded), `what` naming it in the error.
    pub fn base64(&self, name: &str, what: &str) -> Result<Option<Vec<u8>>, Failure> {
        self.text(name)?
            .map(|t| {
                STANDARD
                    .decode(t.as_bytes())
                    .map_err(|e| format!("{what}{}", base64_error(&e)))
            })
            .transpose()
    }

    /// `batch_input`: the items, when given.
    pub fn batch(&self) -> Result<Option<Vec<Params>>, Failure> {
        match self.get("batch_input") {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::Object(m) => Ok(Params(m.clone())),
                    other => Err(field_error("batch_input", other, "object")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(field_error("batch_input", other, "array")),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field_error(name: &str, value: &Value, want: &str) -> Failure {
    let shown = match value {
        Value::String(s) if s.len() <= 64 => s.clone(),
        Value::String(_) => "(a long string)".into(),
        other => kind(other).into(),
    };
    format!(
        "Field validation failed: error converting input for field {name:?}: '{shown}' cannot parse value as '{want}'"
    )
}

/// Go's wording of a base64 error ("illegal base64 data at input byte N").
pub fn base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => {
            format!("illegal base64 data at input byte {at}")
        }
        base64::DecodeError::InvalidLength(at) => format!("illegal base64 data at input byte {at}"),
        base64::DecodeError::InvalidPadding => "illegal base64 data: bad padding".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_scalars_as_the_go_clients_send_them() {
        let p = Params::parse(br#"{"a":"true","b":1,"c":"2","d":null,"e":"x","f":3}"#).unwrap();
        assert_eq!(p.flag("a").unwrap(), Some(true));
        assert_eq!(p.flag("b").unwrap(), Some(true));
        assert_eq!(p.number("c").unwrap(), Some(2));
        assert_eq!(p.number("d").unwrap(), None);
        assert!(
            p.flag("e")
                .unwrap_err()
                .contains("cannot parse value as 'bool'")
        );
        assert!(p.number("e").unwrap_err().contains("\"e\""));
        assert_eq!(p.text("f").unwrap().as_deref(), Some("3"));
        assert!(Params::parse(b"").unwrap().0.is_empty());
        assert!(Params::parse(b"null").unwrap().0.is_empty());
        assert!(
            Params::parse(b"[1]")
                .unwrap_err()
                .starts_with("failed to decode JSON input")
        );
        assert!(
            Params::parse(b"{")
                .unwrap_err()
                .starts_with("failed to decode JSON input")
        );
        let bad = Params::parse(br#"{"input":"not base64!!"}"#).unwrap();
        assert_eq!(
            bad.base64("input", "unable to decode input as base64: ")
                .unwrap_err(),
            "unable to decode input as base64: illegal base64 data at input byte 3"
        );
    }
}

//! RFC 7512 `pkcs11:` URIs, limited to what keyd uses.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::{PinSource, UriError};

/// Object label used for the root secret when the URI names none.
pub const DEFAULT_ROOT_OBJECT: &str = "root";

/// A token (and optionally an object in it) named by an RFC 7512 URI, e.g.
/// `pkcs11:token=keyd-root;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyd/root.pin`.
///
/// Supported path attributes: `token` (required), `object`, `serial`; query attributes:
/// `module-path` (required) and `pin-source` (`file:` or `env:`). `pin-value` is refused.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Token label.
    pub token: String,
    /// Object label, if any.
    pub object: Option<String>,
    /// Token serial number, if any.
    pub serial: Option<String>,
    /// Path of the PKCS#11 module.
    pub module_path: PathBuf,
    /// Where the user PIN comes from.
    pub pin_source: Option<PinSource>,
}

impl Pkcs11Uri {
    /// The object label, or [`DEFAULT_ROOT_OBJECT`].
    pub fn object_or_default(&self) -> &str {
        self.object.as_deref().unwrap_or(DEFAULT_ROOT_OBJECT)
    }
}

fn decode(attr: &str, value: &str) -> Result<String, UriError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| UriError::Encoding(attr.to_owned()))
}

fn set(slot: &mut Option<String>, name: &str, value: String) -> Result<(), UriError> {
    if slot.replace(value).is_some() {
        return Err(UriError::Duplicate(name.to_owned()));
    }
    Ok(())
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(input: &str) -> Result<Self, UriError> {
        let rest = input.strip_prefix("pkcs11:").ok_or(UriError::Scheme)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object, mut serial) = (None, None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| UriError::Malformed(attr.to_owned()))?;
            let value = decode(name, value)?;
            match name {
                "token" => set(&mut token, name, value)?,
                "object" => set(&mut object, name, value)?,
                "serial" => set(&mut serial, name, value)?,
                other => return Err(UriError::Unknown(other.to_owned())),
            }
        }
        let (mut module_path, mut pin_source) = (None, None);
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| UriError::Malformed(attr.to_owned()))?;
            let value = decode(name, value)?;
            match name {
                "module-path" => set(&mut module_path, name, value)?,
                "pin-source" => set(&mut pin_source, name, value)?,
                "pin-value" => return Err(UriError::PinValue),
                other => return Err(UriError::Unknown(other.to_owned())),
            }
        }
        Ok(Pkcs11Uri {
            token: token.ok_or(UriError::Missing("token"))?,
            object,
            serial,
            module_path: PathBuf::from(module_path.ok_or(UriError::Missing("module-path"))?),
            pin_source: pin_source.as_deref().map(PinSource::parse).transpose()?,
        })
    }
}

/// Characters left unescaped in attribute values (RFC 7512 `pchar`/`qchar` subsets).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b':');

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pkcs11:token={}",
            utf8_percent_encode(&self.token, VALUE)
        )?;
        if let Some(o) = &self.object {
            write!(f, ";object={}", utf8_percent_encode(o, VALUE))?;
        }
        if let Some(s) = &self.serial {
            write!(f, ";serial={}", utf8_percent_encode(s, VALUE))?;
        }
        let module = self.module_path.to_string_lossy();
        write!(f, "?module-path={}", utf8_percent_encode(&module, VALUE))?;
        if let Some(p) = &self.pin_source {
            write!(
                f,
                "&pin-source={}",
                utf8_percent_encode(&p.to_string(), VALUE)
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_uri() {
        let uri: Pkcs11Uri = "pkcs11:token=keyd%20root;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/tmp/x/user.pin"
            .parse()
            .unwrap();
        assert_eq!(uri.token, "keyd root");
        assert_eq!(uri.object.as_deref(), Some("root"));
        assert_eq!(
            uri.module_path,
            PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(
            uri.pin_source,
            Some(PinSource::File("/tmp/x/user.pin".into()))
        );
        let again: Pkcs11Uri = uri.to_string().parse().unwrap();
        assert_eq!(again, uri);
    }

    #[test]
    fn env_and_file_url_pin_sources() {
        let uri: Pkcs11Uri = "pkcs11:token=t?module-path=/m.so&pin-source=env:ROOT_PIN"
            .parse()
            .unwrap();
        assert_eq!(uri.pin_source, Some(PinSource::Env("ROOT_PIN".into())));
        let uri: Pkcs11Uri = "pkcs11:token=t?module-path=/m.so&pin-source=file:///p"
            .parse()
            .unwrap();
        assert_eq!(uri.pin_source, Some(PinSource::File("/p".into())));
        assert_eq!(uri.object_or_default(), "root");
    }

    /// Found by the `text` fuzz target: a PIN file path starting with `//` printed as
    /// `file://…` and parsed back as another path.
    #[test]
    fn pin_file_paths_round_trip() {
        for path in ["/p", "//p", "///p", "p", "/a//b"] {
            let uri = Pkcs11Uri {
                token: "t".into(),
                object: None,
                serial: None,
                module_path: "/m.so".into(),
                pin_source: Some(PinSource::File(path.into())),
            };
            let back: Pkcs11Uri = uri.to_string().parse().unwrap();
            assert_eq!(back, uri, "{path}");
        }
    }

    #[test]
    fn rejects_bad_uris() {
        let cases: &[(&str, UriError)] = &[
            ("token=t", UriError::Scheme),
            ("pkcs11:object=o?module-path=/m", UriError::Missing("token")),
            ("pkcs11:token=t", UriError::Missing("module-path")),
            (
                "pkcs11:token=t?module-path=/m&pin-value=1234",
                UriError::PinValue,
            ),
            (
                "pkcs11:token=t;token=u?module-path=/m",
                UriError::Duplicate("token".into()),
            ),
            (
                "pkcs11:token=t;foo=1?module-path=/m",
                UriError::Unknown("foo".into()),
            ),
            (
                "pkcs11:token?module-path=/m",
                UriError::Malformed("token".into()),
            ),
            (
                "pkcs11:token=%ff?module-path=/m",
                UriError::Encoding("token".into()),
            ),
            (
                "pkcs11:token=t?module-path=/m&pin-source=http://x",
                UriError::PinSource("http://x".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&input.parse::<Pkcs11Uri>().unwrap_err(), want, "{input}");
        }
    }
}

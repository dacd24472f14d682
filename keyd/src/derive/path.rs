//! Hardened-only key paths, parsed and printed with the `bip32` crate.

use std::fmt;
use std::str::FromStr;

use bip32::{ChildNumber, DerivationPath};

use super::PathError;

/// Deepest path keyd accepts (root node excluded).
pub const MAX_DEPTH: usize = 64;

/// A key path whose every component is hardened, e.g. `m/3'/7'/0'/2'`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPath(DerivationPath);

impl KeyPath {
    /// The root node `m`.
    pub fn root() -> Self {
        KeyPath(DerivationPath::default())
    }

    /// The hardened child `index'` of this path.
    ///
    /// Returns `None` when `index >= 2^31` or the path would exceed [`MAX_DEPTH`].
    pub fn child(&self, index: u32) -> Option<Self> {
        if self.depth() >= MAX_DEPTH {
            return None;
        }
        let number = ChildNumber::new(index, true).ok()?;
        let mut path = self.0.clone();
        path.push(number);
        Some(KeyPath(path))
    }

    /// The parent path, `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        self.0.parent().map(KeyPath)
    }

    /// Number of components after `m` (0 for the root node).
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// The child indexes, without the hardened bit (`m/3'/7'` gives 3, 7).
    pub fn indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|c| c.index())
    }

    /// The components as `bip32` child numbers (hardened bit set).
    pub fn child_numbers(&self) -> &[ChildNumber] {
        self.0.as_ref()
    }
}

impl FromStr for KeyPath {
    type Err = PathError;

    fn from_str(input: &str) -> Result<Self, PathError> {
        let mut parts = input.split('/');
        if parts.next() != Some("m") {
            return Err(PathError::MissingRoot {
                input: input.to_owned(),
            });
        }
        // Parse component by component so the error can name the faulty one; the
        // representation stays bip32's.
        let mut path = DerivationPath::default();
        for (i, component) in parts.enumerate() {
            let position = i + 1;
            if position > MAX_DEPTH {
                return Err(PathError::TooDeep {
                    input: input.to_owned(),
                    depth: input.split('/').count() - 1,
                    max: MAX_DEPTH,
                });
            }
            let number = ChildNumber::from_str(component).map_err(|_| PathError::BadComponent {
                input: input.to_owned(),
                position,
                component: component.to_owned(),
            })?;
            if !number.is_hardened() {
                return Err(PathError::NotHardened {
                    input: input.to_owned(),
                    position,
                    component: component.to_owned(),
                });
            }
            path.push(number);
        }
        Ok(KeyPath(path))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPath({})", self.0)
    }
}

impl serde::Serialize for KeyPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_hardened_paths() {
        let p: KeyPath = "m/3'/7'/0'/2'".parse().unwrap();
        assert_eq!(p.to_string(), "m/3'/7'/0'/2'");
        assert_eq!(p.indexes().collect::<Vec<_>>(), vec![3, 7, 0, 2]);
        let h: KeyPath = "m/3h/7h".parse().unwrap();
        assert_eq!(h.to_string(), "m/3'/7'");
        assert_eq!(KeyPath::root().to_string(), "m");
        assert_eq!("m".parse::<KeyPath>().unwrap(), KeyPath::root());
    }

    #[test]
    fn rejects_non_hardened_naming_the_component() {
        let err = "m/1'/2/3'".parse::<KeyPath>().unwrap_err();
        assert_eq!(
            err,
            PathError::NotHardened {
                input: "m/1'/2/3'".into(),
                position: 2,
                component: "2".into()
            }
        );
        assert!(err.to_string().contains("write 2'"));
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in [
            "",
            "x/1'",
            "/1'",
            "m/",
            "m/abc'",
            "m/1''",
            "m/2147483648'",
            "m//1'",
            "m/-1'",
        ] {
            assert!(
                bad.parse::<KeyPath>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let deep = format!("m{}", "/1'".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            deep.parse::<KeyPath>(),
            Err(PathError::TooDeep { .. })
        ));
    }

    #[test]
    fn child_and_parent() {
        let p = KeyPath::root().child(5).unwrap().child(0).unwrap();
        assert_eq!(p.to_string(), "m/5'/0'");
        assert_eq!(p.parent().unwrap().to_string(), "m/5'");
        assert!(KeyPath::root().child(1 << 31).is_none());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(indexes in proptest::collection::vec(0u32..(1 << 31), 0..12)) {
            let mut p = KeyPath::root();
            for i in &indexes { p = p.child(*i).unwrap(); }
            let back: KeyPath = p.to_string().parse().unwrap();
            prop_assert_eq!(&back, &p);
            prop_assert_eq!(back.indexes().collect::<Vec<_>>(), indexes);
        }
    }
}

//! Hardened-only key paths, parsed with the `bip32` crate's component syntax.

use std::fmt;
use std::str::FromStr;

use bip32::ChildNumber;
use smallvec::SmallVec;

use super::PathError;

/// Deepest path keyd accepts (root node excluded).
pub const MAX_DEPTH: usize = 64;

/// Components held inline: a node under a branch and its epoch keys (`m/i'/1'/n'/0'/e'`)
/// take no allocation; deeper paths spill to the heap.
const INLINE: usize = 6;

/// A key path whose every component is hardened, e.g. `m/3'/7'/0'/2'`. Held as the
/// components' indexes (the hardened bit implied), inline up to six components: the
/// chain state holds millions of paths.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPath(SmallVec<[u32; INLINE]>);

impl KeyPath {
    /// The root node `m`.
    pub fn root() -> Self {
        KeyPath(SmallVec::new())
    }

    /// The hardened child `index'` of this path.
    ///
    /// Returns `None` when `index >= 2^31` or the path would exceed [`MAX_DEPTH`].
    pub fn child(&self, index: u32) -> Option<Self> {
        if self.depth() >= MAX_DEPTH {
            return None;
        }
        // Indexes of 2^31 and above have no hardened form.
        ChildNumber::new(index, true).ok()?;
        let mut path = self.0.clone();
        path.push(index);
        Some(KeyPath(path))
    }

    /// The parent path, `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        let (_, parent) = self.0.split_last()?;
        Some(KeyPath(SmallVec::from_slice(parent)))
    }

    /// Number of components after `m` (0 for the root node).
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// The child indexes, without the hardened bit (`m/3'/7'` gives 3, 7).
    pub fn indexes(&self) -> impl DoubleEndedIterator<Item = u32> + ExactSizeIterator + '_ {
        self.0.iter().copied()
    }

    /// The child indexes as a slice (`m/3'/7'` gives `[3, 7]`).
    pub fn index_slice(&self) -> &[u32] {
        &self.0
    }
}

/// What a path names in the key tree: `m`, nodes `m/i'(/1'/n')*`, named keys
/// `node/2'/n'`, and epoch keys `node/0'/e'` (a named key's versions: `key/0'/v'`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRole {
    /// The root node `m`.
    Root,
    /// A node (level 1 `m/i'`, or a child `P/1'/n'`).
    Node,
    /// A node's named key `P/2'/n'` (what transit calls a key): certified by its owner
    /// `P`, versions as its epochs, never a TLS identity, no children.
    Named {
        /// The node that owns it.
        owner: KeyPath,
        /// Its index under the owner's named-key branch.
        index: u32,
    },
    /// The epoch `epoch` key of `node` (a node, or a named key: then a version).
    Epoch {
        /// The node or named key.
        node: KeyPath,
        /// The epoch.
        epoch: u32,
    },
    /// Not a key keyd issues (e.g. `m/1'/2'`: branch 2 is unused).
    Other,
}

/// Branch under a node holding its epoch keys.
pub const EPOCH_BRANCH: u32 = 0;
/// Branch under a node holding its child nodes.
pub const CHILD_BRANCH: u32 = 1;
/// Branch under a node holding its named keys.
pub const NAMED_BRANCH: u32 = 2;

impl KeyPath {
    /// What this path names.
    pub fn role(&self) -> PathRole {
        let ix = self.index_slice();
        if ix.is_empty() {
            return PathRole::Root;
        }
        // After the level-1 component, pairs (branch, index).
        let rest = &ix[1..];
        if !rest.len().is_multiple_of(2) {
            return PathRole::Other;
        }
        let pairs = rest.len() / 2;
        // A named key ends the path, or is followed by one epoch pair.
        let mut named = false;
        for (i, pair) in rest.chunks(2).enumerate() {
            match pair[0] {
                CHILD_BRANCH if !named => {}
                NAMED_BRANCH if !named && i + 2 >= pairs => named = true,
                EPOCH_BRANCH if i + 1 == pairs => {
                    return PathRole::Epoch {
                        node: self.prefix(self.depth() - 2),
                        epoch: pair[1],
                    };
                }
                _ => return PathRole::Other,
            }
        }
        if named {
            let d = self.depth();
            return PathRole::Named {
                owner: self.prefix(d - 2),
                index: ix[d - 1],
            };
        }
        PathRole::Node
    }

    /// Whether this path names a node (`m/i'`, `P/1'/n'`): not the root, a named key
    /// or an epoch key.
    pub fn is_node(&self) -> bool {
        self.role() == PathRole::Node
    }

    /// The first `len` components (`len` at most the depth).
    pub fn prefix(&self, len: usize) -> KeyPath {
        KeyPath(SmallVec::from_slice(&self.0[..len.min(self.0.len())]))
    }

    /// Whether `self` is `other` or one of its ancestors (a prefix of it).
    pub fn is_prefix_of(&self, other: &KeyPath) -> bool {
        other.0.starts_with(&self.0)
    }

    /// The node that certifies this node or named key: `m` for a level-1 node, `P` for
    /// `P/1'/n'` and `P/2'/n'`. `None` for the root and for epoch keys.
    pub fn parent_node(&self) -> Option<KeyPath> {
        match (self.role(), self.depth()) {
            (PathRole::Node, 1) => Some(KeyPath::root()),
            (PathRole::Node, d) => Some(self.prefix(d - 2)),
            (PathRole::Named { owner, .. }, _) => Some(owner),
            _ => None,
        }
    }

    /// The named key `n` of this node: `self/2'/n'` (`None` for the root, which owns
    /// no named keys).
    pub fn named_key(&self, n: u32) -> Option<KeyPath> {
        if self.depth() == 0 {
            return None;
        }
        self.child(NAMED_BRANCH)?.child(n)
    }

    /// The node paths from level 1 down to this path's node (for an epoch key, its
    /// node), this one included.
    pub fn node_lineage(&self) -> impl Iterator<Item = KeyPath> + '_ {
        (1..=self.depth()).step_by(2).map(|len| self.prefix(len))
    }

    /// The epoch `epoch` key of this node: `self/0'/epoch'`.
    pub fn epoch_key(&self, epoch: u32) -> Option<KeyPath> {
        self.child(EPOCH_BRANCH)?.child(epoch)
    }

    /// The child node `n` of this node: `self/1'/n'` (`m/n'` for the root).
    pub fn child_node(&self, n: u32) -> Option<KeyPath> {
        if self.depth() == 0 {
            return self.child(n);
        }
        self.child(CHILD_BRANCH)?.child(n)
    }
}

impl std::hash::Hash for KeyPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for &c in self.0.iter() {
            state.write_u32(c);
        }
        state.write_usize(self.depth());
    }
}

impl PartialOrd for KeyPath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyPath {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_slice().cmp(other.0.as_slice())
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
        // Parse component by component (bip32's syntax) so the error can name the
        // faulty one.
        let mut path = SmallVec::new();
        for (i, component) in parts.enumerate() {
            let position = i + 1;
            if position > MAX_DEPTH {
                return Err(PathError::TooDeep {
                    input: input.to_owned(),
                    depth: input.split('/').count() - 1,
                    max: MAX_DEPTH,
                });
            }
            // `H` marks a hardened component as `h` and `'` do (BIP-32 writes all three).
            let normal;
            let component_text = match component.strip_suffix('H') {
                Some(index) => {
                    normal = format!("{index}h");
                    normal.as_str()
                }
                None => component,
            };
            let number =
                ChildNumber::from_str(component_text).map_err(|_| PathError::BadComponent {
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
            path.push(number.index());
        }
        Ok(KeyPath(path))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for index in self.indexes() {
            write!(f, "/{index}'")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPath({self})")
    }
}

impl serde::Serialize for KeyPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = KeyPath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key path such as m/1'/2'")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<KeyPath, E> {
                match KeyPath::parse_canonical(s) {
                    Some(path) => Ok(path),
                    None => s.parse().map_err(E::custom),
                }
            }
        }
        d.deserialize_str(Text)
    }
}

impl KeyPath {
    /// The text [`fmt::Display`] writes (`m/3'/7'`: indexes without leading zeros, each
    /// with `'`), parsed without allocating: every path in a stored or pulled entry is
    /// in this form. `None` for any other text, which [`FromStr`] parses (it also takes
    /// `h` and `H`, and names what is wrong).
    fn parse_canonical(s: &str) -> Option<KeyPath> {
        let rest = s.strip_prefix('m')?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        let mut path = SmallVec::new();
        for component in rest.split('/').skip(1) {
            let digits = component.strip_suffix('\'')?;
            let canonical = !digits.is_empty()
                && digits.len() <= 10
                && (digits == "0" || !digits.starts_with('0'))
                && digits.bytes().all(|b| b.is_ascii_digit());
            if !canonical || path.len() >= MAX_DEPTH {
                return None;
            }
            let index: u32 = digits.parse().ok()?;
            if index >= 1 << 31 {
                return None;
            }
            path.push(index);
        }
        Some(KeyPath(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_canonical_text_is_parsed_as_from_str_parses_it() {
        for text in [
            "m",
            "m/0'",
            "m/1'/1'/7'/0'/3'",
            "m/2147483647'",
            "m/10'/0'/1'/0'/1'/0'/1'",
        ] {
            let fast = KeyPath::parse_canonical(text).unwrap();
            assert_eq!(Some(&fast), text.parse::<KeyPath>().ok().as_ref(), "{text}");
            assert_eq!(fast.to_string(), text);
        }
        // Anything else is left to FromStr, which accepts or refuses it with its reason.
        for text in [
            "m/01'",
            "m/1h",
            "m/1H",
            "m/1",
            "m/",
            "mm",
            "m//1'",
            "m/2147483648'",
            "",
            "n/1'",
        ] {
            assert!(KeyPath::parse_canonical(text).is_none(), "{text}");
        }
        let deep = format!("m{}", "/1'".repeat(MAX_DEPTH + 1));
        assert!(KeyPath::parse_canonical(&deep).is_none());
        // Through serde: canonical and other accepted forms, and a refusal.
        let p: KeyPath = serde_json::from_str("\"m/1'/2'\"").unwrap();
        assert_eq!(p, "m/1'/2'".parse().unwrap());
        let h: KeyPath = serde_json::from_str("\"m/1h/2H\"").unwrap();
        assert_eq!(h, p);
        assert!(serde_json::from_str::<KeyPath>("\"m/1'/2\"").is_err());
    }

    proptest! {
        #[test]
        fn canonical_text_round_trips(ix in proptest::collection::vec(0u32..(1 << 31), 0..12)) {
            let text = format!("m{}", ix.iter().map(|i| format!("/{i}'")).collect::<String>());
            let fast = KeyPath::parse_canonical(&text).unwrap();
            prop_assert_eq!(fast.index_slice(), ix.as_slice());
            prop_assert_eq!(fast.to_string(), text);
        }
    }

    #[test]
    fn paths_up_to_six_components_take_no_allocation() {
        // The chain state holds millions of paths: a node under a branch and its epoch
        // keys sit inline, in 32 bytes.
        assert_eq!(std::mem::size_of::<KeyPath>(), 32);
        let epoch: KeyPath = "m/1'/1'/7'/0'/3'".parse().unwrap();
        assert!(!epoch.0.spilled());
        let deep: KeyPath = "m/1'/1'/7'/1'/2'/0'/3'".parse().unwrap();
        assert!(deep.0.spilled());
        assert_eq!(deep.to_string(), "m/1'/1'/7'/1'/2'/0'/3'");
        assert_eq!(deep.parent().unwrap().to_string(), "m/1'/1'/7'/1'/2'/0'");
        assert!(epoch.prefix(3).is_prefix_of(&deep));
        assert!(!deep.is_prefix_of(&epoch));
    }

    #[test]
    fn parses_and_prints_hardened_paths() {
        let p: KeyPath = "m/3'/7'/0'/2'".parse().unwrap();
        assert_eq!(p.to_string(), "m/3'/7'/0'/2'");
        assert_eq!(p.indexes().collect::<Vec<_>>(), vec![3, 7, 0, 2]);
        let h: KeyPath = "m/3h/7h".parse().unwrap();
        assert_eq!(h.to_string(), "m/3'/7'");
        let upper: KeyPath = "m/3H/7'".parse().unwrap();
        assert_eq!(upper, h);
        assert!("m/3HH".parse::<KeyPath>().is_err());
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

    #[test]
    fn roles_of_paths() {
        let p = |s: &str| s.parse::<KeyPath>().unwrap();
        assert_eq!(p("m").role(), PathRole::Root);
        assert_eq!(p("m/3'").role(), PathRole::Node);
        assert_eq!(p("m/3'/1'/7'").role(), PathRole::Node);
        assert_eq!(
            p("m/3'/0'/2'").role(),
            PathRole::Epoch {
                node: p("m/3'"),
                epoch: 2
            }
        );
        assert_eq!(
            p("m/3'/1'/7'/0'/9'").role(),
            PathRole::Epoch {
                node: p("m/3'/1'/7'"),
                epoch: 9
            }
        );
        assert_eq!(
            p("m/3'/0'/2'/1'/1'").role(),
            PathRole::Other,
            "epoch keys have no children"
        );
        assert_eq!(
            p("m/3'/2'/1'").role(),
            PathRole::Named {
                owner: p("m/3'"),
                index: 1
            }
        );
        assert_eq!(
            p("m/3'/1'/7'/2'/4'/0'/2'").role(),
            PathRole::Epoch {
                node: p("m/3'/1'/7'/2'/4'"),
                epoch: 2
            }
        );
        assert_eq!(
            p("m/3'/2'/1'/1'/1'").role(),
            PathRole::Other,
            "named keys have no children"
        );
        assert_eq!(p("m/3'/2'/1'/2'/1'").role(), PathRole::Other);
        assert_eq!(p("m/3'/2'/1'/0'/1'/0'/1'").role(), PathRole::Other);
        assert_eq!(p("m/3'/2'/1'").parent_node(), Some(p("m/3'")));
        assert_eq!(p("m/3'").named_key(1), Some(p("m/3'/2'/1'")));
        assert_eq!(KeyPath::root().named_key(1), None);
        assert_eq!(p("m/3'/3'/1'").role(), PathRole::Other);
        assert_eq!(p("m/3'/1'").role(), PathRole::Other);
        assert_eq!(p("m/3'/1'/7'").parent_node(), Some(p("m/3'")));
        assert_eq!(p("m/3'").parent_node(), Some(KeyPath::root()));
        assert_eq!(p("m/3'/0'/1'").parent_node(), None);
        assert!(p("m/3'").is_prefix_of(&p("m/3'/1'/7'")));
        assert!(!p("m/3'/1'/7'").is_prefix_of(&p("m/3'")));
        assert_eq!(
            p("m/3'/1'/7'/0'/9'")
                .node_lineage()
                .map(|x| x.to_string())
                .collect::<Vec<_>>(),
            ["m/3'", "m/3'/1'/7'", "m/3'/1'/7'/0'/9'"]
        );
        assert_eq!(p("m/3'").epoch_key(4), Some(p("m/3'/0'/4'")));
        assert_eq!(p("m/3'").child_node(4), Some(p("m/3'/1'/4'")));
        assert_eq!(KeyPath::root().child_node(4), Some(p("m/4'")));
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

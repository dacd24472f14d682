//! Patterns in policy rules: key paths (`m/1'/*`, `m/1'/**`) and names (`web-*`).

use std::fmt;

use crate::derive::KeyPath;

/// One component of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// Exactly this (hardened) index.
    Index(u32),
    /// Any one component.
    One,
    /// Any number of components, none included (last only).
    Rest,
}

/// A key path pattern: `m`, then components that are hardened indexes (`3'`), `*` (any
/// one component) or, last, `**` (any number of components, none included). `m/1'/1'/*`
/// matches every direct child node of `m/1'`; `m/1'/**` matches `m/1'` and everything
/// below it.
#[derive(Clone, PartialEq, Eq)]
pub struct PathPattern {
    parts: Vec<Part>,
}

impl PathPattern {
    /// Parses a pattern; the error says what is wrong.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let mut it = text.trim().split('/');
        if it.next() != Some("m") {
            return Err(format!("{text:?}: a path pattern starts with m"));
        }
        let mut parts = Vec::new();
        let rest: Vec<&str> = it.collect();
        for (i, c) in rest.iter().enumerate() {
            let part = match *c {
                "*" => Part::One,
                "**" if i + 1 == rest.len() => Part::Rest,
                "**" => return Err(format!("{text:?}: ** may only end a pattern")),
                c => {
                    let digits = c
                        .strip_suffix('\'')
                        .or_else(|| c.strip_suffix('h'))
                        .or_else(|| c.strip_suffix('H'))
                        .ok_or_else(|| {
                            format!("{text:?}: {c:?} is not a hardened index (3'), * or **")
                        })?;
                    let index: u32 = digits
                        .parse()
                        .ok()
                        .filter(|n| *n < 1 << 31)
                        .ok_or_else(|| format!("{text:?}: {c:?} is not an index below 2^31"))?;
                    Part::Index(index)
                }
            };
            parts.push(part);
        }
        if parts.len() > crate::derive::MAX_DEPTH + 1 {
            return Err(format!("{text:?}: deeper than any key path"));
        }
        Ok(PathPattern { parts })
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &KeyPath) -> bool {
        let mut indexes = path.indexes();
        for part in &self.parts {
            match part {
                Part::Rest => return true,
                Part::One => {
                    if indexes.next().is_none() {
                        return false;
                    }
                }
                Part::Index(want) => {
                    if indexes.next() != Some(*want) {
                        return false;
                    }
                }
            }
        }
        indexes.next().is_none()
    }

    /// The exact path this pattern names, when it has no wildcard.
    pub fn exact(&self) -> Option<KeyPath> {
        self.parts
            .iter()
            .try_fold(KeyPath::root(), |p, part| match part {
                Part::Index(i) => p.child(*i),
                _ => None,
            })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for part in &self.parts {
            match part {
                Part::Index(i) => write!(f, "/{i}'")?,
                Part::One => f.write_str("/*")?,
                Part::Rest => f.write_str("/**")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PathPattern({self})")
    }
}

/// A name pattern: the name itself, or with `*` standing for any run of characters
/// (`web-*`, `*-prod`, `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    /// Parses a pattern: a name of letters, digits, `-`, `_`, `.`, with `*` anywhere.
    pub fn parse(text: &str) -> Result<NamePattern, String> {
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.*".contains(c))
        {
            return Err(format!(
                "{text:?}: a name pattern is letters, digits, - _ . and *"
            ));
        }
        Ok(NamePattern(text.to_owned()))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut pieces = self.0.split('*');
        let first = pieces.next().unwrap_or_default();
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let pieces: Vec<&str> = pieces.collect();
        let Some((last, middle)) = pieces.split_last() else {
            return rest.is_empty();
        };
        for piece in middle {
            match rest.find(piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> KeyPath {
        text.parse().unwrap_or_else(|_| KeyPath::root())
    }

    #[test]
    fn path_patterns() {
        let children = PathPattern::parse("m/1'/1'/*").unwrap_or_else(|e| panic!("{e}"));
        assert!(children.matches(&p("m/1'/1'/0'")));
        assert!(children.matches(&p("m/1'/1'/7'")));
        assert!(!children.matches(&p("m/1'/1'")), "not the parent");
        assert!(
            !children.matches(&p("m/1'/1'/7'/1'/0'")),
            "not grandchildren"
        );
        assert!(!children.matches(&p("m/2'/1'/7'")));
        let below = PathPattern::parse("m/1'/**").unwrap_or_else(|e| panic!("{e}"));
        assert!(below.matches(&p("m/1'")), "** includes none");
        assert!(below.matches(&p("m/1'/1'/3'/0'/2'")));
        assert!(!below.matches(&p("m/2'")));
        assert!(!below.matches(&p("m")));
        let everything = PathPattern::parse("m/**").unwrap_or_else(|e| panic!("{e}"));
        assert!(everything.matches(&p("m")) && everything.matches(&p("m/9'/1'/2'")));
        assert!(PathPattern::parse("m/1h/2H").is_ok_and(|x| x.matches(&p("m/1'/2'"))));
        assert_eq!(
            PathPattern::parse("m/3'/1'").ok().and_then(|x| x.exact()),
            Some(p("m/3'/1'"))
        );
        for bad in [
            "",
            "1'/2'",
            "m/1",
            "m/**/1'",
            "m/x'",
            "m/2147483648'",
            "n/1'",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            PathPattern::parse("m/1h/*/**").map(|x| x.to_string()).ok(),
            Some("m/1'/*/**".into())
        );
    }

    #[test]
    fn name_patterns() {
        let m = |pat: &str, name: &str| NamePattern::parse(pat).is_ok_and(|x| x.matches(name));
        assert!(m("web-1", "web-1") && !m("web-1", "web-10"));
        assert!(m("web-*", "web-10") && m("web-*", "web-") && !m("web-*", "db-1"));
        assert!(m("*-prod", "db-prod") && !m("*-prod", "db-prod-2"));
        assert!(m("*", "anything") && m("a*b*c", "a-x-b-y-c") && !m("a*b*c", "a-c"));
        assert!(!m("ab*ba", "aba"), "the two ends may not overlap");
        assert!(NamePattern::parse("sp ace").is_err() && NamePattern::parse("").is_err());
    }
}

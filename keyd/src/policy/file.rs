//! The policy file (TOML), read and checked into a [`Policy`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use super::pattern::{NamePattern, PathPattern};
use super::{AdminEntry, LifecycleRule, Op, Policy, PolicyError, Rate, Role, Rule, TargetPat, Who};
use crate::derive::KeyPath;

/// The format version this keyd reads.
pub const FORMAT: u32 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    format: u32,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    admins: BTreeMap<String, RawAdmin>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    lifecycle: Vec<RawLifecycle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    nodes: Vec<String>,
    #[serde(default)]
    rotate_every: Option<String>,
    #[serde(default)]
    node_validity: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// The longest a node is certified for (5 years), and so the longest `node_validity`.
pub const MAX_NODE_SECONDS: u64 = 5 * 365 * 86_400;

fn lifecycle(index: usize, raw: RawLifecycle) -> Result<LifecycleRule, PolicyError> {
    let at = format!("lifecycle[{index}]");
    if raw.nodes.is_empty() {
        return Err(err(&at, "nodes may not be empty"));
    }
    let who = raw
        .nodes
        .iter()
        .enumerate()
        .map(|(i, p)| principal(&format!("{at}.nodes[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    let duration = |field: &str, text: &Option<String>, max: u64| {
        text.as_deref()
            .map(|t| match crate::parse_duration(t) {
                Ok(0) => Err(err(format!("{at}.{field}"), "must be at least 1 s")),
                Ok(s) if s > max => Err(err(
                    format!("{at}.{field}"),
                    format!("{t:?} is over {} days", max / 86_400),
                )),
                Ok(s) => Ok(s),
                Err(m) => Err(err(format!("{at}.{field}"), m)),
            })
            .transpose()
    };
    let rotate_every = duration("rotate_every", &raw.rotate_every, 10 * MAX_NODE_SECONDS)?;
    let node_validity = duration("node_validity", &raw.node_validity, MAX_NODE_SECONDS)?;
    if rotate_every.is_none() && node_validity.is_none() {
        return Err(err(&at, "give rotate_every, node_validity or both"));
    }
    let _ = raw.note;
    Ok(LifecycleRule {
        who,
        rotate_every,
        node_validity,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    effect: String,
    principals: Vec<String>,
    operations: Vec<String>,
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    valid_from: Option<toml::Value>,
    #[serde(default)]
    valid_until: Option<toml::Value>,
    #[serde(default)]
    max_batch: Option<u32>,
    #[serde(default)]
    rate: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

fn err(at: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        at: at.into(),
        message: message.into(),
    }
}

/// A time in a rule: an RFC 3339 string or a TOML date-time with an offset.
fn time(at: &str, value: &toml::Value) -> Result<u64, PolicyError> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        _ => return Err(err(at, "give an RFC 3339 time, e.g. 2027-01-31T00:00:00Z")),
    };
    let t = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            err(
                at,
                format!("{text:?}: {e} (give an RFC 3339 time with its offset, e.g. 2027-01-31T00:00:00Z)"),
            )
        })?;
    u64::try_from(t.unix_timestamp()).map_err(|_| err(at, format!("{text:?} is before 1970")))
}

fn rate(at: &str, text: &str) -> Result<Rate, PolicyError> {
    let bad = || {
        err(
            at,
            format!("{text:?}: give COUNT/UNIT, e.g. 10/h (units: s, min, h, d)"),
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per_seconds = match unit.trim() {
        "s" | "second" => 1,
        "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(err(at, "a rate of 0 allows nothing: use a deny rule"));
    }
    Ok(Rate { count, per_seconds })
}

fn role(at: &str, text: &str) -> Result<Role, PolicyError> {
    Role::parse(text).ok_or_else(|| {
        err(
            at,
            format!("{text:?} is not a role (admin, operator, auditor, node)"),
        )
    })
}

fn principal(at: &str, text: &str) -> Result<Who, PolicyError> {
    let bad = |m: String| err(at, m);
    Ok(match text.split_once(':') {
        None if text == "*" => Who::Anyone,
        Some(("role", r)) => Who::Role(role(at, r)?),
        Some(("node", p)) => Who::Node(PathPattern::parse(p).map_err(bad)?),
        Some(("name", n)) => Who::Name(NamePattern::parse(n).map_err(bad)?),
        Some(("admin", n)) => Who::Admin(NamePattern::parse(n).map_err(bad)?),
        Some(("trusted", level)) if ["full", "limited", "temporary"].contains(&level) => {
            Who::Trusted
        }
        _ => {
            return Err(bad(format!(
                "{text:?}: a principal is *, role:R, node:PATH_PATTERN, name:NODE_NAME, admin:ADMIN_NAME or trusted:full|limited|temporary"
            )));
        }
    })
}

fn target(at: &str, text: &str) -> Result<TargetPat, PolicyError> {
    let bad = |m: String| err(at, m);
    Ok(match text {
        "any" | "*" => TargetPat::Any,
        "self" => TargetPat::SelfNode,
        "children" => TargetPat::Children,
        "same-branch" => TargetPat::SameBranch,
        "same-cluster" => TargetPat::SameCluster,
        _ => match text.split_once(':') {
            Some(("node", p)) => TargetPat::Path(PathPattern::parse(p).map_err(bad)?),
            Some(("name", n)) => TargetPat::Name(NamePattern::parse(n).map_err(bad)?),
            Some(("admin", n)) => TargetPat::Admin(NamePattern::parse(n).map_err(bad)?),
            Some(("trusted", "full")) => TargetPat::Trusted(crate::chain::TrustLevel::Full),
            Some(("trusted", "limited")) => TargetPat::Trusted(crate::chain::TrustLevel::Limited),
            Some(("trusted", "temporary")) => {
                TargetPat::Trusted(crate::chain::TrustLevel::Temporary)
            }
            _ => {
                return Err(bad(format!(
                    "{text:?}: a target is any, self, children, same-branch, same-cluster, node:PATH_PATTERN, name:NODE_NAME, admin:ADMIN_NAME or trusted:full|limited|temporary"
                )));
            }
        },
    })
}

fn rule(index: usize, raw: RawRule, ids: &mut HashMap<String, usize>) -> Result<Rule, PolicyError> {
    let at = format!("rule[{index}] ({:?})", raw.id);
    if raw.id.is_empty()
        || !raw
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(err(&at, "id: letters, digits, - _ . only"));
    }
    if super::RESERVED_IDS.contains(&raw.id.as_str()) {
        return Err(err(
            &at,
            format!("id: {:?} is reserved for keyd's own decisions", raw.id),
        ));
    }
    if let Some(first) = ids.insert(raw.id.clone(), index) {
        return Err(err(&at, format!("id: rule[{first}] has the same id")));
    }
    let allow = match raw.effect.as_str() {
        "allow" => true,
        "deny" => false,
        other => return Err(err(&at, format!("effect: {other:?} is not allow or deny"))),
    };
    if raw.principals.is_empty() || raw.operations.is_empty() {
        return Err(err(&at, "principals and operations may not be empty"));
    }
    let principals = raw
        .principals
        .iter()
        .enumerate()
        .map(|(i, p)| principal(&format!("{at}.principals[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ops = 0u64;
    for (i, o) in raw.operations.iter().enumerate() {
        ops |= Op::matching(o).map_err(|m| err(format!("{at}.operations[{i}]"), m))?;
    }
    let targets = match &raw.targets {
        None => vec![TargetPat::Any],
        Some(t) if t.is_empty() => {
            return Err(err(&at, "targets may not be empty (omit it for any)"));
        }
        Some(t) => t
            .iter()
            .enumerate()
            .map(|(i, x)| target(&format!("{at}.targets[{i}]"), x))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let valid_from = raw
        .valid_from
        .as_ref()
        .map(|v| time(&format!("{at}.valid_from"), v))
        .transpose()?;
    let valid_until = raw
        .valid_until
        .as_ref()
        .map(|v| time(&format!("{at}.valid_until"), v))
        .transpose()?;
    if let (Some(from), Some(until)) = (valid_from, valid_until)
        && from >= until
    {
        return Err(err(&at, "valid_from is not before valid_until"));
    }
    let rate = raw
        .rate
        .as_deref()
        .map(|r| rate(&format!("{at}.rate"), r))
        .transpose()?;
    if !allow && (rate.is_some() || raw.max_batch.is_some()) {
        return Err(err(
            &at,
            "rate and max_batch limit what an allow rule grants; a deny rule refuses outright",
        ));
    }
    if raw.max_batch == Some(0) {
        return Err(err(&at, "max_batch: at least 1"));
    }
    let _ = raw.note;
    Ok(Rule {
        index: u16::try_from(index).map_err(|_| err(&at, "more than 65,535 rules"))?,
        id: Arc::from(raw.id.as_str()),
        allow,
        principals,
        ops,
        targets,
        valid_from,
        valid_until,
        max_batch: raw.max_batch,
        rate,
    })
}

impl Policy {
    /// Reads and checks a policy file. Errors name the rule and field.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| err("toml", e.to_string()))?;
        if raw.format != FORMAT {
            return Err(err(
                "format",
                format!("{} is not a format this keyd reads ({FORMAT})", raw.format),
            ));
        }
        let _ = raw.description;
        let mut admins = HashMap::new();
        for (name, a) in raw.admins {
            let at = format!("admins.{name}");
            crate::chain::check_name(&name).map_err(|e| err(&at, e.to_string()))?;
            let role = match a.role.as_deref() {
                None => Role::Admin,
                Some(r) => role(&format!("{at}.role"), r)?,
            };
            if role == Role::Node {
                return Err(err(
                    format!("{at}.role"),
                    "an admin cannot have the node role",
                ));
            }
            let scope = a
                .scope
                .as_deref()
                .map(|s| {
                    s.parse::<KeyPath>()
                        .map_err(|e| err(format!("{at}.scope"), format!("{s:?}: {e}")))
                })
                .transpose()?;
            let _ = a.note;
            admins.insert(name, AdminEntry { role, scope });
        }
        let mut ids = HashMap::new();
        let rules = raw
            .rule
            .into_iter()
            .enumerate()
            .map(|(i, r)| rule(i, r, &mut ids))
            .collect::<Result<Vec<_>, _>>()?;
        let lifecycle = raw
            .lifecycle
            .into_iter()
            .enumerate()
            .map(|(i, l)| lifecycle(i, l))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy::new(rules, admins, lifecycle))
    }
}

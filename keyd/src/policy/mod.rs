//! Policies: who may do what with which key (DESIGN section 7).
//!
//! A policy is a TOML file of rules (`policies/` holds the default and annotated
//! examples; `policies/policy.schema.json` its schema). Each rule names principals,
//! operations and targets, with optional conditions (a validity window, a largest batch,
//! a rate per principal and operation). Decisions:
//!
//! - **default deny**: a request no rule allows is refused (`default-deny`);
//! - **deny wins**: a deny rule that matches refuses, whatever allows it;
//! - an allow rule grants only while its conditions hold; when the only rules that
//!   would allow a request fail a condition, the refusal names the first of them and
//!   the condition;
//! - an admin given a `scope` in `[admins.NAME]` acts only on nodes below that path
//!   (and may add nodes at or below it); operations without a node target are refused
//!   to it, reads excepted (`scope`).
//!
//! Every [`Decision`] carries the rule that made it.

mod file;
mod op;
mod pattern;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use file::{FORMAT, MAX_NODE_SECONDS};
pub use op::Op;
pub use pattern::{NamePattern, PathPattern};

use crate::derive::KeyPath;

/// Rule ids keyd uses for its own decisions.
pub const RESERVED_IDS: &[&str] = &["default-deny", "scope"];

/// The policy a fresh cluster gets (`policies/default.toml`).
pub const DEFAULT: &str = include_str!("../../../policies/default.toml");

/// A policy file that is not valid: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct PolicyError {
    /// Where: `rule[3] ("nodes-sign").operations[1]`, `admins.alice.scope`, `toml`.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

/// A role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Manages the branch.
    Admin,
    /// Runs it day to day.
    Operator,
    /// Reads.
    Auditor,
    /// A node of the tree.
    Node,
}

impl Role {
    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "admin" => Role::Admin,
            "operator" => Role::Operator,
            "auditor" => Role::Auditor,
            "node" => Role::Node,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Node => "node",
        }
    }
}

/// Who a rule names.
#[derive(Clone, Debug)]
enum Who {
    Anyone,
    Role(Role),
    Node(PathPattern),
    Name(NamePattern),
    Admin(NamePattern),
    /// A trusted cluster's principals (none until trust between clusters exists).
    Trusted,
}

/// What a rule may be done to.
#[derive(Clone, Debug)]
enum TargetPat {
    Any,
    SelfNode,
    Children,
    SameBranch,
    SameCluster,
    Path(PathPattern),
    Name(NamePattern),
    Admin(NamePattern),
    /// Nodes of a cluster trusted at this level.
    Trusted(crate::chain::TrustLevel),
}

/// A rate: `count` per `per_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rate {
    count: u32,
    per_seconds: u64,
}

/// One rule, checked.
#[derive(Debug)]
struct Rule {
    index: u16,
    id: Arc<str>,
    allow: bool,
    principals: Vec<Who>,
    ops: u64,
    targets: Vec<TargetPat>,
    valid_from: Option<u64>,
    valid_until: Option<u64>,
    max_batch: Option<u32>,
    rate: Option<Rate>,
}

/// A `[[lifecycle]]` entry: the nodes it names and what it sets for them.
#[derive(Debug)]
struct LifecycleRule {
    who: Vec<Who>,
    rotate_every: Option<u64>,
    node_validity: Option<u64>,
}

/// What the policy sets for a node's keys over time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// keyd moves the node to a new epoch when its current epoch is this old (seconds).
    pub rotate_every: Option<u64>,
    /// How long a node added there is certified for (seconds), when the request does
    /// not say.
    pub node_validity: Option<u64>,
}

/// An admin's role and scope.
#[derive(Clone, Debug)]
struct AdminEntry {
    role: Role,
    scope: Option<KeyPath>,
}

/// Who asks.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A node, and its name when the policy uses names ([`Policy::uses_names`]).
    Node {
        /// Its path.
        path: &'a KeyPath,
        /// Its name.
        name: Option<&'a str>,
    },
    /// An admin credential's name.
    Admin(&'a str),
}

/// What a request acts on.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Nothing in particular (listing, pushing the root log, a key the chain does not
    /// know).
    None,
    /// A node (for a key, the node that holds it), and its name when the policy uses
    /// names.
    Node {
        /// Its path.
        path: &'a KeyPath,
        /// Its name.
        name: Option<&'a str>,
    },
    /// An admin name.
    Admin(&'a str),
    /// A node of another cluster this one trusts at that level.
    Trusted(crate::chain::TrustLevel),
}

/// A request to decide.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Who asks.
    pub subject: Subject<'a>,
    /// The operation.
    pub op: Op,
    /// What it acts on.
    pub target: Target<'a>,
    /// The size of the batch the request is an item of (1 alone): `max_batch` compares
    /// it; a rate counts each item once.
    pub batch: u32,
    /// The branch of the keyd deciding (`same-branch`).
    pub branch: &'a KeyPath,
}

/// A decision and the rule that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allowed: bool,
    /// The rule: a rule's id, `default-deny`, or `scope`.
    pub rule: Arc<str>,
    /// Why, when refused (empty when allowed).
    pub reason: String,
}

impl Decision {
    fn deny(rule: &Arc<str>, reason: String) -> Decision {
        Decision {
            allowed: false,
            rule: rule.clone(),
            reason,
        }
    }
}

/// A token bucket per rule, principal and operation.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: f64,
}

/// Whose rate a bucket counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RateKey {
    Node(KeyPath),
    Admin(String),
}

/// A checked policy, ready to decide.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    /// For each operation, the rules that name it, in file order.
    by_op: Vec<Vec<u16>>,
    admins: HashMap<String, AdminEntry>,
    lifecycle: Vec<LifecycleRule>,
    uses_names: bool,
    default_deny: Arc<str>,
    scope: Arc<str>,
    buckets: Mutex<HashMap<(u16, Op, RateKey), Bucket>>,
}

impl Policy {
    fn new(
        rules: Vec<Rule>,
        admins: HashMap<String, AdminEntry>,
        lifecycle: Vec<LifecycleRule>,
    ) -> Policy {
        let by_op = Op::ALL
            .iter()
            .map(|op| {
                (0..rules.len())
                    .filter(|&i| rules[i].ops & op.bit() != 0)
                    .map(|i| u16::try_from(i).unwrap_or(u16::MAX))
                    .collect()
            })
            .collect();
        let uses_names = rules.iter().any(|r| {
            r.principals.iter().any(|w| matches!(w, Who::Name(_)))
                || r.targets.iter().any(|t| matches!(t, TargetPat::Name(_)))
        }) || lifecycle
            .iter()
            .any(|l| l.who.iter().any(|w| matches!(w, Who::Name(_))));
        Policy {
            rules,
            by_op,
            admins,
            lifecycle,
            uses_names,
            default_deny: Arc::from("default-deny"),
            scope: Arc::from("scope"),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether it has no rule (and so refuses everything).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule names nodes by name: then requests carry names.
    pub fn uses_names(&self) -> bool {
        self.uses_names
    }

    /// What the `[[lifecycle]]` entries set for the node at `path` (named `name`): for
    /// each setting, the first entry that names the node and sets it.
    pub fn lifecycle(&self, path: &KeyPath, name: Option<&str>) -> Lifecycle {
        let subject = Subject::Node { path, name };
        let mut out = Lifecycle::default();
        for l in &self.lifecycle {
            if l.who.iter().any(|w| w.matches(&subject, Role::Node)) {
                out.rotate_every = out.rotate_every.or(l.rotate_every);
                out.node_validity = out.node_validity.or(l.node_validity);
            }
        }
        out
    }

    /// Whether any node is on a rotation schedule.
    pub fn rotates(&self) -> bool {
        self.lifecycle.iter().any(|l| l.rotate_every.is_some())
    }

    /// The subtree an admin is limited to, if it is.
    pub fn scope_of(&self, admin: &str) -> Option<&KeyPath> {
        self.admins.get(admin).and_then(|a| a.scope.as_ref())
    }

    /// A subject's role: `node` for nodes; for admins, the role `[admins.NAME]` gives,
    /// `admin` when it gives none.
    pub fn role_of(&self, subject: &Subject<'_>) -> Role {
        match subject {
            Subject::Node { .. } => Role::Node,
            Subject::Admin(name) => self.admins.get(*name).map_or(Role::Admin, |a| a.role),
        }
    }

    /// Decides `request` at `now` (Unix seconds), counting it against the rate of the
    /// rule that allows it.
    pub fn decide(&self, request: &Request<'_>, now: u64) -> Decision {
        self.decide_inner(request, now, true)
    }

    /// Decides without counting against any rate (`keyctl policy check`).
    pub fn explain(&self, request: &Request<'_>, now: u64) -> Decision {
        self.decide_inner(request, now, false)
    }

    fn decide_inner(&self, req: &Request<'_>, now: u64, count: bool) -> Decision {
        if let Some(refused) = self.scope_check(req) {
            return refused;
        }
        let role = self.role_of(&req.subject);
        let Some(candidates) = self.by_op.get(req.op as usize) else {
            return Decision::deny(&self.default_deny, "no rule names this operation".into());
        };
        let mut allowing: Option<&Rule> = None;
        let mut blocked: Option<(&Rule, String)> = None;
        for &i in candidates {
            let rule = &self.rules[usize::from(i)];
            if !rule.names(req, role) {
                continue;
            }
            if let Some(why) = rule.outside_window(now) {
                if rule.allow && blocked.is_none() {
                    blocked = Some((rule, why));
                }
                continue;
            }
            if !rule.allow {
                return Decision::deny(&rule.id, format!("denied by rule {}", rule.id));
            }
            if let Some(max) = rule.max_batch
                && req.batch > max
            {
                if blocked.is_none() {
                    blocked = Some((
                        rule,
                        format!("a batch of {} is over its max_batch of {max}", req.batch),
                    ));
                }
                continue;
            }
            // The first allowing rule without a rate settles it; one with a rate is
            // kept in case none without follows (deny rules are all seen first).
            if allowing.is_none_or(|a| a.rate.is_some() && rule.rate.is_none()) {
                allowing = Some(rule);
            }
        }
        let Some(rule) = allowing else {
            return match blocked {
                Some((rule, why)) => Decision::deny(&rule.id, why),
                None => Decision::deny(
                    &self.default_deny,
                    format!("no rule allows {} to {} this", role.name(), req.op),
                ),
            };
        };
        if let Some(rate) = rule.rate
            && count
            && !self.take(rule, rate, req, now)
        {
            return Decision::deny(
                &rule.id,
                format!(
                    "over the rate of {}/{} s per principal",
                    rate.count, rate.per_seconds
                ),
            );
        }
        Decision {
            allowed: true,
            rule: rule.id.clone(),
            reason: String::new(),
        }
    }

    /// A scoped admin's request outside its scope, refused.
    fn scope_check(&self, req: &Request<'_>) -> Option<Decision> {
        let Subject::Admin(name) = req.subject else {
            return None;
        };
        let scope = self.scope_of(name)?;
        let inside = match req.target {
            // A node is added below its parent: the parent may be the scope itself.
            Target::Node { path, .. } if req.op == Op::NodeAdd => scope.is_prefix_of(path),
            Target::Node { path, .. } => scope.is_prefix_of(path) && path != scope,
            Target::None | Target::Admin(_) | Target::Trusted(_) => req.op.is_read(),
        };
        (!inside).then(|| {
            Decision::deny(
                &self.scope,
                format!("admin {name} is scoped to nodes below {scope}"),
            )
        })
    }

    /// Takes a token from the bucket of (rule, principal, operation).
    fn take(&self, rule: &Rule, rate: Rate, req: &Request<'_>, now: u64) -> bool {
        let key = match req.subject {
            Subject::Node { path, .. } => RateKey::Node(path.clone()),
            Subject::Admin(name) => RateKey::Admin(name.to_owned()),
        };
        let index = rule.index;
        let capacity = f64::from(rate.count);
        let per_second = capacity / rate.per_seconds as f64;
        let now = now as f64;
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        // A bucket full again is forgotten, so the map holds only active principals.
        if buckets.len() > 100_000 {
            buckets.retain(|_, b| b.tokens + (now - b.at) * per_second < capacity);
        }
        let bucket = buckets.entry((index, req.op, key)).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        bucket.tokens = (bucket.tokens + (now - bucket.at) * per_second).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Rule {
    /// Whether the rule names this request's principal and target.
    fn names(&self, req: &Request<'_>, role: Role) -> bool {
        self.principals
            .iter()
            .any(|w| w.matches(&req.subject, role))
            && self.targets.iter().any(|t| t.matches(req))
    }

    /// Why the rule is not in force at `now`.
    fn outside_window(&self, now: u64) -> Option<String> {
        if let Some(from) = self.valid_from
            && now < from
        {
            return Some(format!(
                "rule {} applies from {}",
                self.id,
                crate::rfc3339(from)
            ));
        }
        match self.valid_until {
            Some(until) if now >= until => Some(format!(
                "rule {} expired at {}",
                self.id,
                crate::rfc3339(until)
            )),
            _ => None,
        }
    }
}

impl Who {
    fn matches(&self, subject: &Subject<'_>, role: Role) -> bool {
        match (self, subject) {
            (Who::Anyone, _) => true,
            (Who::Role(r), _) => *r == role,
            (Who::Node(p), Subject::Node { path, .. }) => p.matches(path),
            (
                Who::Name(n),
                Subject::Node {
                    name: Some(name), ..
                },
            ) => n.matches(name),
            (Who::Admin(n), Subject::Admin(name)) => n.matches(name),
            _ => false,
        }
    }
}

impl TargetPat {
    fn matches(&self, req: &Request<'_>) -> bool {
        let node = match req.target {
            Target::Node { path, .. } => Some(path),
            _ => None,
        };
        let own = match req.subject {
            Subject::Node { path, .. } => Some(path),
            Subject::Admin(_) => None,
        };
        match self {
            TargetPat::Any => true,
            TargetPat::SelfNode => match (req.subject, req.target) {
                (Subject::Admin(me), Target::Admin(it)) => me == it,
                _ => node.is_some() && node == own,
            },
            TargetPat::Children => {
                matches!((own, node), (Some(o), Some(t)) if o.is_prefix_of(t) && o != t)
            }
            TargetPat::SameBranch => node.is_some_and(|t| req.branch.is_prefix_of(t)),
            TargetPat::SameCluster => node.is_some(),
            TargetPat::Path(p) => node.is_some_and(|t| p.matches(t)),
            TargetPat::Name(n) => {
                matches!(req.target, Target::Node { name: Some(name), .. } if n.matches(name))
            }
            TargetPat::Admin(n) => matches!(req.target, Target::Admin(a) if n.matches(a)),
            TargetPat::Trusted(level) => matches!(req.target, Target::Trusted(l) if l == *level),
        }
    }
}

#[cfg(test)]
mod tests;

//! The decision table: who may do what to which target, and the rule that says so.

use super::*;

const T0: u64 = 1_796_000_000; // 2026-11-30
const POLICY: &str = r#"
format = 1

[admins.ops]
role = "operator"
[admins.audit]
role = "auditor"
[admins.team-a]
scope = "m/1'/1'/0'"

[[rule]]
id = "nodes-own"
effect = "allow"
principals = ["role:node"]
operations = ["sign", "seal", "unseal", "decrypt"]
targets = ["self"]

[[rule]]
id = "nodes-rekey"
effect = "allow"
principals = ["role:node"]
operations = ["rekey"]
targets = ["self"]
rate = "2/h"

[[rule]]
id = "encrypt-branch"
effect = "allow"
principals = ["role:node"]
operations = ["encrypt"]
targets = ["same-branch"]

[[rule]]
id = "no-encrypt-to-vault"
effect = "deny"
principals = ["*"]
operations = ["encrypt"]
targets = ["node:m/1'/1'/7'/**"]

[[rule]]
id = "parents-encrypt-to-children"
effect = "allow"
principals = ["node:m/2'/**"]
operations = ["encrypt"]
targets = ["children"]

[[rule]]
id = "batch-sign"
effect = "allow"
principals = ["node:m/1'/1'/*"]
operations = ["sign"]
targets = ["self"]
max_batch = 5

[[rule]]
id = "web-datakeys"
effect = "allow"
principals = ["name:web-*"]
operations = ["datakey"]
targets = ["self"]

[[rule]]
id = "temp-window"
effect = "allow"
principals = ["node:m/3'"]
operations = ["datakey"]
targets = ["self"]
valid_from = "2026-12-01T00:00:00Z"
valid_until = 2027-01-01T00:00:00Z

[[rule]]
id = "quarantine"
effect = "deny"
principals = ["node:m/1'/1'/6'"]
operations = ["*"]
valid_from = "2026-11-01T00:00:00Z"

[[rule]]
id = "verify-all"
effect = "allow"
principals = ["*"]
operations = ["verify"]

[[rule]]
id = "admins"
effect = "allow"
principals = ["role:admin"]
operations = ["node.*", "admin.*", "chain.*", "policy.*"]

[[rule]]
id = "no-revoking-root-admin"
effect = "deny"
principals = ["*"]
operations = ["admin.revoke", "admin.credentials.revoke"]
targets = ["admin:root-*"]

[[rule]]
id = "operators"
effect = "allow"
principals = ["role:operator"]
operations = ["node.list", "node.show", "node.rekey"]

[[rule]]
id = "auditors"
effect = "allow"
principals = ["role:auditor"]
operations = ["node.list", "node.show", "audit.read", "policy.show"]
"#;

fn path(text: &str) -> KeyPath {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e:?}"))
}

/// One row: subject, operation, target, batch size, time; allowed?, the rule.
struct Row {
    who: &'static str,
    op: &'static str,
    target: &'static str,
    count: u32,
    at: u64,
    allowed: bool,
    rule: &'static str,
}

const fn row(
    who: &'static str,
    op: &'static str,
    target: &'static str,
    allowed: bool,
    rule: &'static str,
) -> Row {
    Row {
        who,
        op,
        target,
        count: 1,
        at: T0,
        allowed,
        rule,
    }
}

const fn batch(mut r: Row, count: u32) -> Row {
    r.count = count;
    r
}

const fn at(mut r: Row, at: u64) -> Row {
    r.at = at;
    r
}

const DEC_2026: u64 = 1_796_083_200; // 2026-12-01T00:00:00Z
const JAN_2027: u64 = 1_798_761_600; // 2027-01-01T00:00:00Z

/// Parses `node:PATH[@NAME]`, `admin:NAME`, `-` (no target) into the request parts.
fn subject(text: &str) -> (Option<KeyPath>, Option<&str>, Option<&str>) {
    if let Some(rest) = text.strip_prefix("node:") {
        let (p, name) = match rest.split_once('@') {
            Some((p, n)) => (p, Some(n)),
            None => (rest, None),
        };
        return (Some(path(p)), name, None);
    }
    (None, None, text.strip_prefix("admin:"))
}

const ROWS: &[Row] = &[
    // Nodes and their own keys.
    row(
        "node:m/1'/1'/0'",
        "sign",
        "node:m/1'/1'/0'",
        true,
        "nodes-own",
    ),
    row(
        "node:m/1'/1'/0'",
        "seal",
        "node:m/1'/1'/0'",
        true,
        "nodes-own",
    ),
    row(
        "node:m/1'/1'/0'",
        "sign",
        "node:m/1'/1'/1'",
        false,
        "default-deny",
    ),
    row("node:m/1'/1'/0'", "unseal", "-", false, "default-deny"),
    row(
        "node:m/1'/1'/0'",
        "rewrap",
        "node:m/1'/1'/0'",
        false,
        "default-deny",
    ),
    row("admin:alice", "sign", "-", false, "default-deny"),
    // Encryption: same branch, deny wins, children, cross-branch.
    row(
        "node:m/1'/1'/0'",
        "encrypt",
        "node:m/1'/1'/3'",
        true,
        "encrypt-branch",
    ),
    row(
        "node:m/1'/1'/0'",
        "encrypt",
        "node:m/1'",
        true,
        "encrypt-branch",
    ),
    row(
        "node:m/1'/1'/0'",
        "encrypt",
        "node:m/2'/1'/0'",
        false,
        "default-deny",
    ),
    row(
        "node:m/1'/1'/0'",
        "encrypt",
        "node:m/1'/1'/7'",
        false,
        "no-encrypt-to-vault",
    ),
    row(
        "node:m/1'/1'/0'",
        "encrypt",
        "node:m/1'/1'/7'/1'/2'",
        false,
        "no-encrypt-to-vault",
    ),
    row(
        "node:m/1'/1'/0'",
        "encrypt",
        "node:m/1'/1'/70'",
        true,
        "encrypt-branch",
    ),
    row(
        "node:m/2'",
        "encrypt",
        "node:m/2'/1'/4'",
        true,
        "parents-encrypt-to-children",
    ),
    row("node:m/2'", "encrypt", "node:m/2'", false, "default-deny"),
    row(
        "node:m/2'/1'/4'",
        "encrypt",
        "node:m/2'",
        false,
        "default-deny",
    ),
    row(
        "node:m/2'",
        "encrypt",
        "node:m/1'/1'/7'",
        false,
        "no-encrypt-to-vault",
    ),
    // Pattern edges: m/1'/1'/* is exactly one level.
    row(
        "node:m/1'/1'/4'",
        "sign",
        "node:m/1'/1'/4'",
        true,
        "nodes-own",
    ),
    batch(
        row(
            "node:m/1'/1'/4'",
            "sign",
            "node:m/1'/1'/4'",
            true,
            "nodes-own",
        ),
        1,
    ),
    // Batch limits: the rule with max_batch grants up to 5, another rule without.
    batch(
        row(
            "node:m/1'/1'/4'",
            "seal",
            "node:m/1'/1'/4'",
            true,
            "nodes-own",
        ),
        100,
    ),
    batch(
        row(
            "node:m/1'/1'/4'",
            "datakey",
            "node:m/1'/1'/4'",
            false,
            "default-deny",
        ),
        5,
    ),
    // Names.
    row(
        "node:m/1'/1'/8'@web-1",
        "datakey",
        "node:m/1'/1'/8'",
        true,
        "web-datakeys",
    ),
    row(
        "node:m/1'/1'/8'@db-1",
        "datakey",
        "node:m/1'/1'/8'",
        false,
        "default-deny",
    ),
    row(
        "node:m/1'/1'/8'",
        "datakey",
        "node:m/1'/1'/8'",
        false,
        "default-deny",
    ),
    // Validity windows.
    row("node:m/3'", "datakey", "node:m/3'", false, "temp-window"),
    at(
        row("node:m/3'", "datakey", "node:m/3'", true, "temp-window"),
        DEC_2026,
    ),
    at(
        row("node:m/3'", "datakey", "node:m/3'", true, "temp-window"),
        JAN_2027 - 1,
    ),
    at(
        row("node:m/3'", "datakey", "node:m/3'", false, "temp-window"),
        JAN_2027,
    ),
    // A deny rule in force blocks everything, even what an allow names.
    row(
        "node:m/1'/1'/6'",
        "sign",
        "node:m/1'/1'/6'",
        false,
        "quarantine",
    ),
    row("node:m/1'/1'/6'", "verify", "-", false, "quarantine"),
    at(
        row(
            "node:m/1'/1'/6'",
            "sign",
            "node:m/1'/1'/6'",
            true,
            "nodes-own",
        ),
        1_700_000_000,
    ),
    // Verify: anyone.
    row("node:m/9'", "verify", "-", true, "verify-all"),
    row("admin:audit", "verify", "node:m/1'", true, "verify-all"),
    // Admins: default role admin.
    row("admin:alice", "node.add", "node:m/1'", true, "admins"),
    row(
        "admin:alice",
        "node.revoke",
        "node:m/1'/1'/3'",
        true,
        "admins",
    ),
    row("admin:alice", "policy.apply", "-", true, "admins"),
    row("admin:alice", "audit.read", "-", false, "default-deny"),
    row("admin:alice", "admin.revoke", "admin:bob", true, "admins"),
    row(
        "admin:alice",
        "admin.revoke",
        "admin:root-1",
        false,
        "no-revoking-root-admin",
    ),
    row(
        "admin:alice",
        "admin.credentials.revoke",
        "admin:root-x",
        false,
        "no-revoking-root-admin",
    ),
    // Operators and auditors.
    row(
        "admin:ops",
        "node.rekey",
        "node:m/1'/1'/3'",
        true,
        "operators",
    ),
    row(
        "admin:ops",
        "node.revoke",
        "node:m/1'/1'/3'",
        false,
        "default-deny",
    ),
    row("admin:ops", "policy.apply", "-", false, "default-deny"),
    row("admin:audit", "audit.read", "-", true, "auditors"),
    row(
        "admin:audit",
        "node.add",
        "node:m/1'",
        false,
        "default-deny",
    ),
    // A scoped admin: only below its scope; adds at or below it; no untargeted writes.
    row(
        "admin:team-a",
        "node.revoke",
        "node:m/1'/1'/0'/1'/2'",
        true,
        "admins",
    ),
    row(
        "admin:team-a",
        "node.revoke",
        "node:m/1'/1'/0'",
        false,
        "scope",
    ),
    row(
        "admin:team-a",
        "node.revoke",
        "node:m/1'/1'/1'",
        false,
        "scope",
    ),
    row(
        "admin:team-a",
        "node.add",
        "node:m/1'/1'/0'",
        true,
        "admins",
    ),
    row(
        "admin:team-a",
        "node.add",
        "node:m/1'/1'/0'/1'/5'",
        true,
        "admins",
    ),
    row("admin:team-a", "node.add", "node:m/1'", false, "scope"),
    row("admin:team-a", "node.list", "-", true, "admins"),
    row("admin:team-a", "policy.apply", "-", false, "scope"),
    row("admin:team-a", "chain.push", "-", false, "scope"),
    row("admin:team-a", "admin.revoke", "admin:bob", false, "scope"),
];

fn request<'a>(
    r: &Row,
    who: &'a (Option<KeyPath>, Option<&'a str>, Option<&'a str>),
    target: &'a (Option<KeyPath>, Option<&'a str>, Option<&'a str>),
    branch: &'a KeyPath,
) -> Request<'a> {
    let subject = match who {
        (Some(p), name, _) => Subject::Node {
            path: p,
            name: *name,
        },
        (None, _, Some(admin)) => Subject::Admin(admin),
        _ => panic!("{}: no subject", r.who),
    };
    let target = match target {
        (Some(p), name, _) => Target::Node {
            path: p,
            name: *name,
        },
        (None, _, Some(admin)) => Target::Admin(admin),
        _ => Target::None,
    };
    Request {
        subject,
        op: Op::parse(r.op).unwrap_or_else(|| panic!("{}: no such op", r.op)),
        target,
        batch: r.count,
        branch,
    }
}

#[test]
fn the_decision_table() {
    let policy = Policy::parse(POLICY).unwrap_or_else(|e| panic!("{e}"));
    let branch = path("m/1'");
    assert!(ROWS.len() >= 40, "{} rows", ROWS.len());
    for r in ROWS {
        let who = subject(r.who);
        let target = subject(r.target);
        let req = request(r, &who, &target, &branch);
        let d = policy.explain(&req, r.at);
        assert_eq!(
            (d.allowed, &*d.rule),
            (r.allowed, r.rule),
            "{} {} {} (x{} at {}): {}",
            r.who,
            r.op,
            r.target,
            r.count,
            r.at,
            d.reason
        );
        assert_eq!(d.allowed, d.reason.is_empty(), "a refusal says why: {d:?}");
    }
}

#[test]
fn batch_limits_and_rates() {
    let policy = Policy::parse(POLICY).unwrap_or_else(|e| panic!("{e}"));
    let branch = path("m/1'");
    let node = path("m/1'/1'/4'");
    let req = |op: Op, count: u32| Request {
        subject: Subject::Node {
            path: &node,
            name: None,
        },
        op,
        target: Target::Node {
            path: &node,
            name: None,
        },
        batch: count,
        branch: &branch,
    };
    // sign: nodes-own grants without a limit, so a big batch passes by it.
    assert!(policy.decide(&req(Op::Sign, 500), T0).allowed);
    // rekey: 2 an hour, per node; the third is refused naming the rule, and an hour
    // later it is allowed again. Another node has its own budget.
    assert!(policy.decide(&req(Op::Rekey, 1), T0).allowed);
    assert!(policy.decide(&req(Op::Rekey, 1), T0 + 1).allowed);
    let third = policy.decide(&req(Op::Rekey, 1), T0 + 2);
    assert!(!third.allowed && &*third.rule == "nodes-rekey", "{third:?}");
    assert!(third.reason.contains("rate"), "{third:?}");
    let other = path("m/1'/1'/5'");
    let other_req = Request {
        subject: Subject::Node {
            path: &other,
            name: None,
        },
        target: Target::Node {
            path: &other,
            name: None,
        },
        ..req(Op::Rekey, 1)
    };
    assert!(
        policy.decide(&other_req, T0 + 2).allowed,
        "another node's budget"
    );
    assert!(
        policy.decide(&req(Op::Rekey, 1), T0 + 1800 + 2).allowed,
        "half an hour: one back"
    );
    // explain never spends the budget.
    for _ in 0..5 {
        assert!(policy.explain(&req(Op::Rekey, 1), T0 + 1800 + 3).allowed);
    }
    // Each item of a batch counts once: a batch of 3 rekeys gets 2 through a full
    // 2/h bucket.
    let items: Vec<bool> = (0..3)
        .map(|_| policy.decide(&req(Op::Rekey, 3), T0 + 10_000).allowed)
        .collect();
    assert_eq!(items, [true, true, false]);

    // max_batch: the only rule granting batch-sign to a node outside nodes-own.
    let limited = Policy::parse(
        r#"format = 1
[[rule]]
id = "small-batches"
effect = "allow"
principals = ["role:node"]
operations = ["sign"]
targets = ["self"]
max_batch = 5
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(limited.decide(&req(Op::Sign, 5), T0).allowed);
    let big = limited.decide(&req(Op::Sign, 6), T0);
    assert!(
        !big.allowed && &*big.rule == "small-batches" && big.reason.contains("max_batch"),
        "{big:?}"
    );
}

#[test]
fn bad_policies_name_the_rule_and_field() {
    let bad = |text: &str, at: &str, says: &str| {
        let e = Policy::parse(text)
            .err()
            .unwrap_or_else(|| panic!("parsed: {text}"));
        assert!(
            e.at.starts_with(at) && e.message.contains(says),
            "{text}\n=> {e}"
        );
    };
    let rule = |body: &str| format!("format = 1\n[[rule]]\nid = \"r\"\n{body}");
    bad("format = 2", "format", "not a format");
    bad("format = 1\nrules = []", "toml", "unknown field");
    bad("format = 1\n[[rule]]\nid = \"r\"", "toml", "missing field");
    bad(
        &rule("effect = \"maybe\"\nprincipals=[\"*\"]\noperations=[\"sign\"]"),
        "rule[0] (\"r\")",
        "effect",
    );
    bad(
        &rule("effect = \"allow\"\nprincipals=[\"root\"]\noperations=[\"sign\"]"),
        "rule[0] (\"r\").principals[0]",
        "a principal is",
    );
    bad(
        &rule("effect = \"allow\"\nprincipals=[\"node:m/1\"]\noperations=[\"sign\"]"),
        "rule[0] (\"r\").principals[0]",
        "hardened",
    );
    bad(
        &rule("effect = \"allow\"\nprincipals=[\"*\"]\noperations=[\"sing\"]"),
        "rule[0] (\"r\").operations[0]",
        "names no operation",
    );
    bad(
        &rule("effect = \"allow\"\nprincipals=[\"*\"]\noperations=[\"nodes.*\"]"),
        "rule[0] (\"r\").operations[0]",
        "names no operation",
    );
    bad(
        &rule("effect = \"allow\"\nprincipals=[\"*\"]\noperations=[\"sign\"]\ntargets=[\"mine\"]"),
        "rule[0] (\"r\").targets[0]",
        "a target is",
    );
    bad(
        &rule("effect = \"allow\"\nprincipals=[\"*\"]\noperations=[\"sign\"]\nrate=\"5/week\""),
        "rule[0] (\"r\").rate",
        "COUNT/UNIT",
    );
    bad(
        &rule("effect = \"deny\"\nprincipals=[\"*\"]\noperations=[\"sign\"]\nrate=\"5/h\""),
        "rule[0] (\"r\")",
        "deny rule",
    );
    bad(
        &rule(
            "effect = \"allow\"\nprincipals=[\"*\"]\noperations=[\"sign\"]\nvalid_until=\"tomorrow\"",
        ),
        "rule[0] (\"r\").valid_until",
        "RFC 3339",
    );
    bad(
        &rule(
            "effect = \"allow\"\nprincipals=[\"*\"]\noperations=[\"sign\"]\nvalid_from=\"2027-01-01T00:00:00Z\"\nvalid_until=\"2026-01-01T00:00:00Z\"",
        ),
        "rule[0] (\"r\")",
        "not before",
    );
    bad(
        "format = 1\n[[rule]]\nid = \"default-deny\"\neffect=\"deny\"\nprincipals=[\"*\"]\noperations=[\"*\"]",
        "rule[0]",
        "reserved",
    );
    bad(
        "format = 1\n[[rule]]\nid = \"a\"\neffect=\"deny\"\nprincipals=[\"*\"]\noperations=[\"*\"]\n[[rule]]\nid = \"a\"\neffect=\"deny\"\nprincipals=[\"*\"]\noperations=[\"*\"]",
        "rule[1] (\"a\")",
        "rule[0] has the same id",
    );
    bad(
        "format = 1\n[admins.x]\nrole = \"boss\"",
        "admins.x.role",
        "not a role",
    );
    bad(
        "format = 1\n[admins.x]\nrole = \"node\"",
        "admins.x.role",
        "node role",
    );
    bad(
        "format = 1\n[admins.x]\nscope = \"m/1\"",
        "admins.x.scope",
        "m/1",
    );
}

#[test]
fn an_empty_policy_refuses_everything() {
    let policy = Policy::parse("format = 1").unwrap_or_else(|e| panic!("{e}"));
    let branch = path("m/1'");
    let d = policy.decide(
        &Request {
            subject: Subject::Admin("alice"),
            op: Op::PolicyApply,
            target: Target::None,
            batch: 1,
            branch: &branch,
        },
        T0,
    );
    assert!(!d.allowed && &*d.rule == "default-deny", "{d:?}");
}

#[test]
fn every_file_in_policies_parses_and_the_default_is_built_in() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut seen = 0;
    for sub in [dir.clone(), dir.join("examples")] {
        for entry in std::fs::read_dir(&sub).unwrap_or_else(|e| panic!("{}: {e}", sub.display())) {
            let file = entry.map(|e| e.path()).unwrap_or_default();
            if file.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let policy =
                    Policy::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                assert!(!policy.is_empty(), "{}", file.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "{seen} policy files");
    assert_eq!(
        DEFAULT,
        std::fs::read_to_string(dir.join("default.toml")).unwrap_or_default()
    );
}

#[test]
fn the_default_policy_decides_as_documented() {
    let policy = Policy::parse(DEFAULT).unwrap_or_else(|e| panic!("{e}"));
    let branch = path("m/1'");
    let (a, b) = (path("m/1'/1'/0'"), path("m/2'/1'/0'"));
    let node = |p: &'static KeyPath| Subject::Node {
        path: p,
        name: None,
    };
    let _ = node;
    let ask = |subject: Subject<'_>, op: Op, target: Target<'_>| {
        policy
            .explain(
                &Request {
                    subject,
                    op,
                    target,
                    batch: 1,
                    branch: &branch,
                },
                T0,
            )
            .allowed
    };
    let na = Subject::Node {
        path: &a,
        name: None,
    };
    let ta = Target::Node {
        path: &a,
        name: None,
    };
    let tb = Target::Node {
        path: &b,
        name: None,
    };
    assert!(ask(na, Op::Sign, ta) && !ask(na, Op::Sign, tb));
    assert!(ask(na, Op::Encrypt, tb), "to any node of the cluster");
    assert!(ask(na, Op::Verify, Target::None));
    assert!(!ask(na, Op::NodeAdd, ta), "nodes manage nothing");
    assert!(ask(Subject::Admin("root"), Op::NodeRevoke, tb));
    assert!(!ask(Subject::Admin("root"), Op::Sign, Target::None));
    // Nodes encrypt to trusted clusters' nodes (the trust's permissions decide
    // further); nothing else is allowed on them; anyone lists the trusted clusters.
    use crate::chain::TrustLevel;
    for level in [TrustLevel::Full, TrustLevel::Limited, TrustLevel::Temporary] {
        assert!(ask(na, Op::Encrypt, Target::Trusted(level)));
        assert!(!ask(na, Op::Sign, Target::Trusted(level)));
    }
    assert!(ask(na, Op::TrustList, Target::None));
    assert!(!ask(na, Op::TrustInvite, Target::None));
    assert!(ask(Subject::Admin("root"), Op::TrustRevoke, Target::None));
}

#[test]
fn trusted_targets_name_one_level_and_nothing_else() {
    let policy = Policy::parse(
        r#"
format = 1
[[rule]]
id = "limited-only"
effect = "allow"
principals = ["role:node"]
operations = ["encrypt"]
targets = ["trusted:limited"]
[[rule]]
id = "in-cluster"
effect = "allow"
principals = ["role:node"]
operations = ["encrypt"]
targets = ["same-cluster"]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (branch, a) = (path("m/1'"), path("m/1'/1'/0'"));
    let ask = |target: Target<'_>| {
        policy
            .explain(
                &Request {
                    subject: Subject::Node {
                        path: &a,
                        name: None,
                    },
                    op: Op::Encrypt,
                    target,
                    batch: 1,
                    branch: &branch,
                },
                T0,
            )
            .allowed
    };
    use crate::chain::TrustLevel;
    assert!(ask(Target::Trusted(TrustLevel::Limited)));
    assert!(!ask(Target::Trusted(TrustLevel::Full)), "another level");
    assert!(ask(Target::Node {
        path: &a,
        name: None
    }));
    let bad = Policy::parse(
        "format = 1\n[[rule]]\nid = \"x\"\neffect = \"allow\"\nprincipals = [\"*\"]\noperations = [\"encrypt\"]\ntargets = [\"trusted:some\"]\n",
    );
    assert!(bad.is_err_and(|e| e.to_string().contains("trusted:full|limited|temporary")));
}

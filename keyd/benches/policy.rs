//! Policy evaluation: `cargo bench -p keyd --bench policy`.
//!
//! The time keyd's policy takes to decide one request, for the decisions on the hot
//! path (a node signing, sealing, encrypting within its cluster under the default
//! policy), with rules naming nodes by name, with a rate-limited rule, and with a
//! policy of 200 rules. Compare with the server time of a sign request (bench/README.md,
//! "Policy and audit": the issue asks for under 5%).

use std::hint::black_box;
use std::time::Duration;

use keyd::derive::KeyPath;
use keyd::policy::{Op, Policy, Request, Subject, Target};

mod support;

fn row(name: &str, ns: f64) {
    println!("{name:<60} {ns:>8.0} ns/decision");
    support::emit(&serde_json::json!({"bench": "policy", "case": name, "ns": ns}));
}

fn path(text: &str) -> KeyPath {
    text.parse().unwrap_or_else(|_| unreachable!("a path"))
}

fn main() {
    let budget = Duration::from_millis(1500);
    println!("keyd policy benchmark (one core, median of 5 runs)\n");
    let branch = path("m/1'");
    let node = path("m/1'/1'/3'");
    let other = path("m/1'/1'/7'");
    let default = Policy::parse(keyd::policy::DEFAULT).unwrap_or_else(|e| panic!("{e}"));
    let ask = |policy: &Policy, op: Op, target: &KeyPath, name: Option<&str>| {
        let req = Request {
            subject: Subject::Node { path: &node, name },
            op,
            target: Target::Node { path: target, name },
            batch: 1,
            branch: &branch,
        };
        support::measure(budget, || {
            black_box(policy.decide(black_box(&req), 1_800_000_000));
        })
    };
    row(
        "default policy: sign (node, self)",
        ask(&default, Op::Sign, &node, None),
    );
    row(
        "default policy: seal (node, self)",
        ask(&default, Op::Seal, &node, None),
    );
    row(
        "default policy: encrypt (node, same-cluster)",
        ask(&default, Op::Encrypt, &other, None),
    );
    row(
        "default policy: node.add by a node (denied)",
        ask(&default, Op::NodeAdd, &other, None),
    );

    let names = Policy::parse(
        r#"format = 1
[[rule]]
id = "web-signs"
effect = "allow"
principals = ["name:web-*", "name:api-*"]
operations = ["sign"]
targets = ["self"]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    row(
        "names: sign (name:web-*)",
        ask(&names, Op::Sign, &node, Some("web-3")),
    );

    let rated = Policy::parse(
        r#"format = 1
[[rule]]
id = "signs-rated"
effect = "allow"
principals = ["role:node"]
operations = ["sign"]
targets = ["self"]
rate = "1000000000/s"
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    row(
        "rate-limited rule: sign (token bucket)",
        ask(&rated, Op::Sign, &node, None),
    );

    // 200 rules naming other subtrees before the one that allows.
    let mut big = String::from("format = 1\n");
    for i in 0..200 {
        big.push_str(&format!(
            "[[rule]]\nid = \"team-{i}\"\neffect = \"allow\"\nprincipals = [\"node:m/1'/1'/{}'/**\"]\noperations = [\"sign\", \"seal\"]\ntargets = [\"self\"]\n",
            1000 + i
        ));
    }
    big.push_str("[[rule]]\nid = \"deny-quarantine\"\neffect = \"deny\"\nprincipals = [\"node:m/1'/1'/66'\"]\noperations = [\"*\"]\n");
    big.push_str("[[rule]]\nid = \"nodes\"\neffect = \"allow\"\nprincipals = [\"role:node\"]\noperations = [\"sign\"]\ntargets = [\"self\"]\n");
    let big = Policy::parse(&big).unwrap_or_else(|e| panic!("{e}"));
    row(
        "202 rules: sign (the allowing rule last)",
        ask(&big, Op::Sign, &node, None),
    );
}

//! The library's typed client (`keyd::client`) against a real keyd: the example node
//! (enroll, renew, sign, encrypt and decrypt) run as a user would run it, and the typed
//! answers and errors an admin gets.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use keyd::client::{Client, ClientError};
use keyd::wire::{AddNode, Blob, EnrollMode, Item, SignRequest, SignResponse};

use crate::cluster::Cluster;
use crate::helpers::bins;

fn example(args: &[&str]) -> Result<(bool, String, String)> {
    let out = std::process::Command::new(&bins().example_node)
        .args(args)
        .output()
        .context("running the example node")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn the_example_node_enrolls_renews_signs_and_decrypts() -> Result<()> {
    let c = Cluster::start()?;
    let admin = Client::from_config(Path::new(&c.admin_config()?))?;
    let added = admin.add_node(&AddNode {
        name: "ex".into(),
        ..AddNode::default()
    })?;
    ensure!(added.mode == EnrollMode::Held, "{added:?}");
    let token = c.dir.path().join("ex.token");
    std::fs::write(&token, &added.token)?;
    let dir = c.dir.path().join("ex");
    let ca = c.data().join("ca.pem");

    let (ok, out, err) = example(&[
        "ex",
        s(&dir),
        "--enroll",
        &c.addr,
        s(&ca),
        s(&token),
        "--renew-now",
    ])?;
    ensure!(ok, "example failed: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.len() == 4, "{out}");
    ensure!(
        lines[0].starts_with(&format!("enrolled as {} (", added.path)),
        "{out}"
    );
    ensure!(
        lines[1].starts_with("certificate renewed: valid until "),
        "{out}"
    );
    ensure!(
        lines[2].starts_with(&format!("signed with {}/", added.path))
            && lines[2].ends_with(": valid"),
        "{out}"
    );
    ensure!(
        lines[3].starts_with("decrypted 17 bytes (xwing-") && lines[3].contains(&added.path),
        "{out}"
    );
    // The credential it saved is the node's: keyd names it in the signature's path.
    let node = Client::from_config(&dir.join("keyctl.toml"))?;
    let signed = node.sign(b"x")?;
    ensure!(signed.path.starts_with(&added.path), "{signed:?}");

    // Later runs use the saved credential; the token was spent.
    let (ok, out, err) = example(&["ex", s(&dir)])?;
    ensure!(ok && out.lines().count() == 2, "{out}{err}");
    let again = c.dir.path().join("again");
    let (ok, out, err) = example(&["ex", s(&again), "--enroll", &c.addr, s(&ca), s(&token)])?;
    ensure!(
        !ok && err.contains("keyd refused: bad_token (401)"),
        "{out}{err}"
    );
    ensure!(
        !again.join("keyctl.toml").exists(),
        "a refused enrollment wrote files"
    );

    // A revoked node: the example stops with keyd's reason, nothing printed as valid.
    admin.revoke_node("ex", "test")?;
    let (ok, out, err) = example(&["ex", s(&dir)])?;
    ensure!(
        !ok && !out.contains("valid") && err.contains("key_not_valid"),
        "{out}{err}"
    );
    Ok(())
}

#[test]
fn typed_answers_and_typed_errors() -> Result<()> {
    let c = Cluster::start()?;
    let admin = Client::from_config(Path::new(&c.admin_config()?))?;
    admin.add_node(&AddNode {
        name: "a".into(),
        ..AddNode::default()
    })?;
    let names: Vec<String> = admin.nodes()?.nodes.into_iter().map(|n| n.name).collect();
    ensure!(names.contains(&"a".to_owned()), "{names:?}");
    // A name is one path segment however it is spelled: a path works as a name does.
    let by_name = admin.node("a")?;
    let by_path = admin.node(&by_name.path)?;
    ensure!(
        by_path.name == "a" && by_path.key_id == by_name.key_id,
        "{by_path:?}"
    );

    // keyd's refusals arrive as its status, stable code and message.
    match admin.add_node(&AddNode {
        name: "a".into(),
        ..AddNode::default()
    }) {
        Err(ClientError::Api {
            status: 409 | 400,
            code,
            message,
        }) => {
            ensure!(
                !code.is_empty() && message.contains('a'),
                "{code}: {message}"
            )
        }
        other => anyhow::bail!("a second node named a: {other:?}"),
    }
    match admin.node("nobody") {
        Err(ClientError::Api {
            status: 404, code, ..
        }) => ensure!(code == "not_found"),
        other => anyhow::bail!("an unknown node: {other:?}"),
    }
    // An admin is not a node: it has no key to sign with.
    ensure!(
        matches!(admin.sign(b"x"), Err(ClientError::Api { status: 403, .. })),
        "an admin signed"
    );

    // A batch answers every item: a bad one carries its own error, the others theirs.
    let (node, _) = c.enrolled_node("b")?;
    drop(node);
    let token = admin.reenroll("b", EnrollMode::Held)?;
    let enrolled = keyd::client::enroll::enroll(&c.addr, &c.data().join("ca.pem"), &token.token)?;
    let dir = c.dir.path().join("b");
    let saved = enrolled.save(&dir)?;
    let b = Client::from_config(&saved.config)?;
    let results = b.batch::<SignRequest, SignResponse>(
        "sign",
        vec![
            SignRequest {
                data: Blob::new(*b"one"),
            },
            SignRequest {
                data: Blob::Text(zeroize::Zeroizing::new("not base64!".into())),
            },
        ],
    )?;
    match &results.results[..] {
        [Item::Ok(first), Item::Err(second)] => {
            ensure!(first.signature.as_slice().len() == 64, "{first:?}");
            ensure!(second.error.code == "bad_base64", "{second:?}");
            ensure!(
                second.error.message.starts_with("items[1].data"),
                "{second:?}"
            );
        }
        other => anyhow::bail!("batch results: {other:?}"),
    }
    // Nothing overwrites a node's directory.
    ensure!(
        matches!(enrolled.save(&dir), Err(ClientError::OutExists(_))),
        "saved twice into one directory"
    );

    // No keyd there: a transport error, not a refusal.
    let unreachable = Client::anonymous("https://127.0.0.1:1", &c.data().join("ca.pem"))?;
    ensure!(
        matches!(unreachable.ca(), Err(ClientError::Http(_))),
        "a closed port answered"
    );
    Ok(())
}

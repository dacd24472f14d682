//! Shares per custodian (age), commitments in the signed transcript, and the share
//! arithmetic of docs/formats/shares.md checked by an independent implementation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, ensure};
use hsm_sim::TestToken;
use keyd::derive::{KeyPath, SoftwareRoot, derive_node};
use serde_json::Value;

use crate::helpers::{has_root, keyctl_err, keyctl_ok, mode, token};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn read_json(p: &Path) -> Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
}

/// `keyctl ceremony custodian-key`: a custodian's identity file and its recipient.
fn custodian_key(t: &TestToken, dir: &Path, name: &str) -> Result<(PathBuf, String)> {
    let key = dir.join(format!("{name}.key"));
    let out: Value = serde_json::from_str(&keyctl_ok(
        t,
        &[
            "--output",
            "json",
            "ceremony",
            "custodian-key",
            "--out",
            s(&key),
        ],
    )?)?;
    ensure!(mode(&key)? == 0o600, "identity file mode");
    let recipient = out["recipient"].as_str().context("recipient")?.to_owned();
    ensure!(recipient.starts_with("age1"), "{recipient}");
    Ok((key, recipient))
}

struct Recover<'a> {
    shares: Vec<PathBuf>,
    identities: Vec<&'a Path>,
    passphrases: Vec<&'a Path>,
}

fn recover(t: &TestToken, out: &Path, r: &Recover<'_>) -> Result<std::process::Output> {
    let mut args: Vec<String> = vec![
        "ceremony".into(),
        "recover".into(),
        "--hsm".into(),
        t.uri().into(),
        "--expect".into(),
        s(&out.join("root.json")).into(),
        "--init-transcript".into(),
        s(&out.join("transcript.json")).into(),
    ];
    for f in &r.shares {
        args.extend(["--share".into(), s(f).into()]);
    }
    for f in &r.identities {
        args.extend(["--identity".into(), s(f).into()]);
    }
    for f in &r.passphrases {
        args.extend(["--passphrase-file".into(), s(f).into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::helpers::keyctl(t, &args)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// init with three custodians (two age keys, one passphrase), 2 needed: each share is
/// an age file only its custodian opens; recovery works with the right identities and
/// names the share it cannot open otherwise; a share replaced by someone who knew the
/// custodian's public recipient is named as altered.
#[test]
fn shares_encrypted_per_custodian_recover_only_with_the_right_identities() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = token("custodian-root")?;
    let (alice_key, alice) = custodian_key(&root, tmp.path(), "alice")?;
    let (bob_key, bob) = custodian_key(&root, tmp.path(), "bob")?;
    let (mallory_key, _) = custodian_key(&root, tmp.path(), "mallory")?;
    let carol_pass = tmp.path().join("carol.pass");
    hsm_sim::write_secret_file(&carol_pass, "correct horse battery staple\n")?;
    let wrong_pass = tmp.path().join("wrong.pass");
    hsm_sim::write_secret_file(&wrong_pass, "incorrect horse\n")?;

    // Without custodians and without --plain-shares: refused, nothing made.
    let out = tmp.path().join("ceremony");
    let err = keyctl_err(
        &root,
        &[
            "ceremony",
            "init",
            "--hsm",
            root.uri(),
            "--threshold",
            "2",
            "--out",
            s(&out),
        ],
    )?;
    ensure!(err.contains("--plain-shares"), "{err}");
    ensure!(!out.exists() && !has_root(&root)?);
    // A bad recipient is named before the token is touched.
    let err = keyctl_err(
        &root,
        &[
            "ceremony",
            "init",
            "--hsm",
            root.uri(),
            "--custodian",
            "alice=age1nope",
            "--custodian",
            &format!("bob={bob}"),
            "--threshold",
            "2",
            "--out",
            s(&out),
        ],
    )?;
    ensure!(
        err.contains("custodian alice") && err.contains("age1nope"),
        "{err}"
    );
    ensure!(!out.exists() && !has_root(&root)?);

    let carol = format!("carol=passphrase-file:{}", s(&carol_pass));
    let said = keyctl_ok(
        &root,
        &[
            "ceremony",
            "init",
            "--hsm",
            root.uri(),
            "--custodian",
            &format!("alice={alice}"),
            "--custodian",
            &format!("bob={bob}"),
            "--custodian",
            &carol,
            "--threshold",
            "2",
            "--out",
            s(&out),
        ],
    )?;
    ensure!(said.contains("3 (2 needed to recover)"), "{said}");
    let files = ["share-1-alice.age", "share-2-bob.age", "share-3-carol.age"].map(|n| out.join(n));
    for f in &files {
        ensure!(mode(f)? == 0o600, "{} mode", f.display());
        let text = std::fs::read_to_string(f)?;
        ensure!(
            text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        ensure!(!text.contains("keyd-share"), "the share is not in clear");
    }
    ensure!(!out.join("share-1.json").exists(), "no clear share written");
    let transcript = read_json(&out.join("transcript.json"))?;
    let commitments = transcript["body"]["share_commitments"]
        .as_array()
        .context("share_commitments")?;
    ensure!(commitments.len() == 3);
    ensure!(commitments[0]["custodian"] == "alice" && commitments[0]["recipient"] == alice);
    ensure!(commitments[2]["custodian"] == "carol" && commitments[2]["recipient"] == "passphrase");
    let expected_root = read_json(&out.join("root.json"))?["key_id"].clone();

    // Each custodian's share opens only with their key: any age implementation works.
    let alice_share = open_age(&files[0], &alice_key)?;
    ensure!(alice_share["index"] == 1 && alice_share["format"] == "keyd-share/v1");
    ensure!(
        open_age(&files[1], &alice_key).is_err(),
        "alice cannot open bob's share"
    );

    let fresh = token("custodian-fresh")?;
    // Bob's share with only alice's and mallory's identities: named, token untouched.
    let o = recover(
        &fresh,
        &out,
        &Recover {
            shares: vec![files[0].clone(), files[1].clone()],
            identities: vec![&alice_key, &mallory_key],
            passphrases: vec![],
        },
    )?;
    ensure!(!o.status.success());
    let err = stderr(&o);
    ensure!(
        err.contains(&format!("share {}: cannot open", files[1].display())),
        "{err}"
    );
    // Carol's share with a wrong passphrase: named.
    let o = recover(
        &fresh,
        &out,
        &Recover {
            shares: vec![files[0].clone(), files[2].clone()],
            identities: vec![&alice_key],
            passphrases: vec![&wrong_pass],
        },
    )?;
    let err = stderr(&o);
    ensure!(
        !o.status.success() && err.contains("share-3-carol.age: cannot open"),
        "{err}"
    );
    ensure!(!has_root(&fresh)?, "token untouched");

    // The attack: someone who knows bob's public recipient replaces bob's share with a
    // well-formed share (fresh checksum) of another value, encrypted to bob.
    let mut forged = open_age(&files[1], &bob_key)?;
    let value = forged["value"].as_str().context("value")?;
    let flipped: String = value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '0' { '1' } else { '0' }
            } else {
                c
            }
        })
        .collect();
    forged["value"] = Value::String(flipped);
    forged["checksum"] = Value::String(share_checksum(&forged)?);
    let recipient = age::x25519::Recipient::from_str(&bob).map_err(anyhow::Error::msg)?;
    let sealed = age::encrypt_and_armor(&recipient, &serde_json::to_vec(&forged)?)?;
    let forged_file = tmp.path().join("share-2-bob.age");
    std::fs::write(&forged_file, sealed)?;
    let o = recover(
        &fresh,
        &out,
        &Recover {
            shares: vec![files[0].clone(), forged_file.clone()],
            identities: vec![&alice_key, &bob_key],
            passphrases: vec![],
        },
    )?;
    let err = stderr(&o);
    ensure!(!o.status.success(), "a forged share must be refused");
    ensure!(
        err.contains(&format!(
            "share {} (#2, custodian bob) does not match its commitment",
            forged_file.display()
        )),
        "{err}"
    );
    ensure!(!has_root(&fresh)?, "token untouched");

    // A transcript edited to carry the forged commitment fails its signature.
    let mut edited = transcript.clone();
    edited["body"]["share_commitments"][1]["commitment"] = Value::String("00".repeat(32));
    let edited_dir = tmp.path().join("edited");
    std::fs::create_dir(&edited_dir)?;
    std::fs::copy(out.join("root.json"), edited_dir.join("root.json"))?;
    std::fs::write(
        edited_dir.join("transcript.json"),
        serde_json::to_vec(&edited)?,
    )?;
    let o = recover(
        &fresh,
        &edited_dir,
        &Recover {
            shares: vec![files[0].clone(), files[1].clone()],
            identities: vec![&alice_key, &bob_key],
            passphrases: vec![],
        },
    )?;
    let err = stderr(&o);
    ensure!(
        !o.status.success() && err.contains("the signature is not root"),
        "{err}"
    );

    // The right identities: alice's key and carol's passphrase rebuild the root.
    let o = recover(
        &fresh,
        &out,
        &Recover {
            shares: vec![files[2].clone(), files[0].clone()],
            identities: vec![&mallory_key, &alice_key],
            passphrases: vec![&wrong_pass, &carol_pass],
        },
    )?;
    ensure!(o.status.success(), "{}", stderr(&o));
    let derived: Value = serde_json::from_str(&keyctl_ok(
        &fresh,
        &["ceremony", "derive", "--hsm", fresh.uri(), "--path", "m"],
    )?)?;
    ensure!(derived["key_id"] == expected_root);
    Ok(())
}

/// Opens an age share file with an identity file through the age crate (not keyctl).
fn open_age(file: &Path, identity: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(identity)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .context("no identity line")?;
    let id = age::x25519::Identity::from_str(line).map_err(anyhow::Error::msg)?;
    let plain = age::decrypt(&id, &std::fs::read(file)?)?;
    Ok(serde_json::from_slice(&plain)?)
}

/// The share checksum of docs/formats/shares.md.
fn share_checksum(v: &Value) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for field in [
        "format",
        "root_fingerprint",
        "root_key_id",
        "threshold",
        "shares",
        "index",
        "value",
    ] {
        let text = match &v[field] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => anyhow::bail!("{field}: {other}"),
        };
        h.update((text.len() as u32).to_be_bytes());
        h.update(text.as_bytes());
    }
    Ok(hex::encode(&h.finalize()[..8]))
}

/// GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1, written from docs/formats/shares.md:
/// carry-less multiplication with reduction, inverse as a^254. No tables, no crate.
fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        let carry = a & 0x80 != 0;
        a <<= 1;
        if carry {
            a ^= 0x1d;
        }
        b >>= 1;
    }
    p
}

fn gf_inv(a: u8) -> u8 {
    (0..254).fold(1u8, |acc, _| gf_mul(acc, a))
}

/// Lagrange interpolation at 0, byte by byte.
fn rebuild(shares: &BTreeMap<u8, Vec<u8>>) -> Vec<u8> {
    let len = shares.values().next().map_or(0, Vec::len);
    (0..len)
        .map(|j| {
            shares.iter().fold(0u8, |acc, (&xi, yi)| {
                let basis = shares
                    .keys()
                    .filter(|&&xk| xk != xi)
                    .fold(1u8, |b, &xk| gf_mul(b, gf_mul(xk, gf_inv(xk ^ xi))));
                acc ^ gf_mul(yi[j], basis)
            })
        })
        .collect()
}

/// Clear shares of a real ceremony, rebuilt by the independent implementation above:
/// every 3-subset of a 3-of-5 split gives the secret whose root identity is root.json's.
#[test]
fn shares_rebuild_with_an_independent_shamir_implementation() -> Result<()> {
    ensure!(gf_mul(0x80, 0x02) == 0x1d, "reduction by 0x11d");
    ensure!((1..=255u8).all(|a| gf_mul(a, gf_inv(a)) == 1), "inverses");
    let tmp = tempfile::tempdir()?;
    let root = token("shamir-independent")?;
    let out = tmp.path().join("ceremony");
    keyctl_ok(
        &root,
        &[
            "ceremony",
            "init",
            "--hsm",
            root.uri(),
            "--plain-shares",
            "--shares",
            "5",
            "--threshold",
            "3",
            "--out",
            s(&out),
        ],
    )?;
    let root_json = read_json(&out.join("root.json"))?;
    let mut points = BTreeMap::new();
    for k in 1..=5u8 {
        let v = read_json(&out.join(format!("share-{k}.json")))?;
        ensure!(
            v["index"] == k,
            "x coordinate of share {k} is {}",
            v["index"]
        );
        ensure!(
            v["checksum"] == share_checksum(&v)?,
            "checksum as documented"
        );
        points.insert(k, hex::decode(v["value"].as_str().context("value")?)?);
    }
    let identity = |secret: &[u8]| -> Result<String> {
        let node = derive_node(&SoftwareRoot::danger_from_bytes(secret), &KeyPath::root())?;
        Ok(hex::encode(node.public_keys().ed25519.as_bytes()))
    };
    for subset in [[1u8, 2, 3], [1, 3, 5], [2, 4, 5], [5, 4, 1]] {
        let chosen: BTreeMap<u8, Vec<u8>> =
            subset.iter().map(|k| (*k, points[k].clone())).collect();
        let secret = rebuild(&chosen);
        ensure!(secret.len() == 64);
        ensure!(
            identity(&secret)? == root_json["ed25519_public"].as_str().unwrap_or_default(),
            "subset {subset:?} rebuilds the root"
        );
    }
    // Two shares are not enough: the rebuilt value is another secret.
    let two: BTreeMap<u8, Vec<u8>> = [1u8, 2].iter().map(|k| (*k, points[k].clone())).collect();
    ensure!(identity(&rebuild(&two))? != root_json["ed25519_public"].as_str().unwrap_or_default());
    Ok(())
}

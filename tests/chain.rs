//! The chain of a real ceremony (init, issue, revoke) through the keyctl binary and a
//! real SoftHSM2 token, and the branch bundle opened with the keyd library.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use hsm_sim::TestToken;
use keyd::bundle::{BranchBundle, BundleError, InstallKey};
use keyd::chain::{KeyStatus, verify_file};
use keyd::derive::KeyPath;
use serde_json::Value;

use crate::helpers::{keyctl_err, keyctl_ok, mode, token};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

struct Ceremony {
    token: TestToken,
    dir: tempfile::TempDir,
}

impl Ceremony {
    fn new(label: &str) -> Result<Self> {
        let token = token(label)?;
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("ceremony");
        keyctl_ok(
            &token,
            &[
                "ceremony",
                "init",
                "--hsm",
                token.uri(),
                "--plain-shares",
                "--shares",
                "3",
                "--threshold",
                "2",
                "--cluster",
                "acme",
                "--out",
                s(&out),
            ],
        )?;
        Ok(Ceremony { token, dir })
    }
    fn chain(&self) -> std::path::PathBuf {
        self.dir.path().join("ceremony/chain.cbor")
    }
    fn issue(&self, name: &str, index: &str, to: &InstallKey) -> Result<std::path::PathBuf> {
        let out = self.dir.path().join(format!("{name}.bundle"));
        let to = hex::encode(to.public());
        keyctl_ok(
            &self.token,
            &[
                "ceremony",
                "issue",
                "--hsm",
                self.token.uri(),
                "--chain",
                s(&self.chain()),
                "--name",
                name,
                "--index",
                index,
                "--to",
                &to,
                "--out",
                s(&out),
            ],
        )?;
        Ok(out)
    }
    fn issue_err(&self, name: &str, index: &str, to: &str, out: &Path) -> Result<String> {
        keyctl_err(
            &self.token,
            &[
                "ceremony",
                "issue",
                "--hsm",
                self.token.uri(),
                "--chain",
                s(&self.chain()),
                "--name",
                name,
                "--index",
                index,
                "--to",
                to,
                "--out",
                s(out),
            ],
        )
    }
    fn revoke(&self, path: &str) -> Result<String> {
        keyctl_ok(
            &self.token,
            &[
                "ceremony",
                "revoke",
                "--hsm",
                self.token.uri(),
                "--chain",
                s(&self.chain()),
                "--path",
                path,
                "--reason",
                "host lost",
            ],
        )
    }
}

#[test]
fn init_issue_revoke_chain_verifies() -> Result<()> {
    let c = Ceremony::new("chain-root")?;
    let said = keyctl_ok(&c.token, &["chain", "verify", s(&c.chain())])?;
    ensure!(
        said.contains("verifies: 1 entries in 1 log(s)")
            && said.contains("log m: 1 entries, head seq 0"),
        "{said}"
    );
    let said = keyctl_ok(
        &c.token,
        &["chain", "verify", s(&c.chain()), "--output", "json"],
    )?;
    let said: serde_json::Value = serde_json::from_str(&said)?;
    ensure!(said["verifies"] == true && said["entries"] == 1, "{said}");

    let dc1_key = InstallKey::generate();
    let dc2_key = InstallKey::generate();
    let dc1 = c.issue("dc1", "1", &dc1_key)?;
    let dc2 = c.issue("dc2", "2", &dc2_key)?;
    ensure!(mode(&dc1)? == 0o600, "bundle mode");

    // The bundle opens with its install key, and the secret is the branch the token derives.
    let bundle = BranchBundle::from_cbor(&std::fs::read(&dc1)?)?;
    let (secret, verified) = bundle.open(&dc1_key)?;
    let derived: Value = serde_json::from_str(&keyctl_ok(
        &c.token,
        &[
            "ceremony",
            "derive",
            "--hsm",
            c.token.uri(),
            "--path",
            "m/1'",
        ],
    )?)?;
    ensure!(derived["key_id"] == secret.public_keys().key_id.to_string());
    ensure!(verified.state().find("dc1").is_some());
    // Not with another instance's key; not when tampered.
    ensure!(matches!(
        bundle.open(&dc2_key),
        Err(BundleError::OtherInstance { .. })
    ));
    let mut tampered = bundle.clone();
    tampered.sealed[3] ^= 1;
    ensure!(matches!(tampered.open(&dc1_key), Err(BundleError::Open)));
    let mut renamed = bundle.clone();
    renamed.name = "evil".into();
    ensure!(
        matches!(renamed.open(&dc1_key), Err(BundleError::Open)),
        "metadata is bound to the secret"
    );
    // No secret in clear in the bundle file.
    let raw = std::fs::read(&dc1)?;
    ensure!(
        !raw.windows(32).any(|w| w == secret.danger_key()),
        "branch key in clear"
    );

    let said = c.revoke("dc2")?;
    ensure!(said.contains("revoked 1 key(s):\n  m/2'"), "{said}");
    let said = keyctl_ok(&c.token, &["chain", "verify", s(&c.chain())])?;
    ensure!(
        said.contains("4 entries") && said.contains("1 revoked"),
        "{said}"
    );

    let v = verify_file(&std::fs::read(c.chain())?)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let m2: KeyPath = "m/2'".parse()?;
    ensure!(
        matches!(v.state().status_at(&m2, now), KeyStatus::Revoked { ref by, .. } if by.depth() == 0)
    );
    ensure!(v.state().status_at(&"m/1'".parse()?, now).is_valid());
    // dc2's bundle carries the chain of its issue: it still opens, but keyd will see
    // the revocation as soon as it syncs the chain.
    let (_, _) = BranchBundle::from_cbor(&std::fs::read(&dc2)?)?.open(&dc2_key)?;

    let text = keyctl_ok(&c.token, &["chain", "show", s(&c.chain())])?;
    ensure!(text.contains("m cluster \"acme\" (root)"), "{text}");
    ensure!(
        text.contains("m/1' dc1 [keyd]") && text.contains("valid"),
        "{text}"
    );
    ensure!(
        text.contains("m/2' dc2 [keyd]") && text.contains("REVOKED by m at seq 3 (host lost)"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&keyctl_ok(
        &c.token,
        &["chain", "show", "--output", "json", s(&c.chain())],
    )?)?;
    let keys = json["keys"].as_array().context("keys")?;
    ensure!(keys.len() == 3);
    let dc2_json = keys.iter().find(|k| k["name"] == "dc2").context("dc2")?;
    ensure!(dc2_json["status"]["state"] == "revoked" && dc2_json["status"]["by"] == "m");
    Ok(())
}

#[test]
fn ceremony_refusals_leave_the_chain_unchanged() -> Result<()> {
    let c = Ceremony::new("refusals")?;
    let key = InstallKey::generate();
    c.issue("dc1", "1", &key)?;
    let before = std::fs::read(c.chain())?;
    let out = c.dir.path().join("x.bundle");
    let to = hex::encode(key.public());
    for (name, index, to, want) in [
        (
            "dc1",
            "5",
            to.as_str(),
            "name \"dc1\" is already used by live key m/1'",
        ),
        ("dc9", "1", to.as_str(), "m/1' is already certified"),
        ("dc9", "2", "zz", "install key: expected 64 hex digits"),
        ("bad name", "2", to.as_str(), "must be 1-64 characters"),
        ("dc9", "2147483648", to.as_str(), "--index"),
    ] {
        let err = c.issue_err(name, index, to, &out)?;
        ensure!(err.contains(want), "want {want:?} in:\n{err}");
        ensure!(!out.exists(), "no bundle after a refusal");
        ensure!(
            std::fs::read(c.chain())? == before,
            "chain changed after: {want}"
        );
    }
    // The bundle path must be new.
    std::fs::write(&out, "keep")?;
    let err = c.issue_err("dc9", "2", &to, &out)?;
    ensure!(err.contains("already exists"), "{err}");
    ensure!(std::fs::read_to_string(&out)? == "keep");

    for (path, want) in [
        ("m", "the root cannot be revoked"),
        ("m/7'", "m/7' is not a key of this chain"),
        ("m/1", "not hardened"),
    ] {
        let err = keyctl_err(
            &c.token,
            &[
                "ceremony",
                "revoke",
                "--hsm",
                c.token.uri(),
                "--chain",
                s(&c.chain()),
                "--path",
                path,
                "--reason",
                "x",
            ],
        )?;
        ensure!(err.contains(want), "want {want:?} in:\n{err}");
        ensure!(std::fs::read(c.chain())? == before);
    }

    // Another root's token cannot extend this chain.
    let other = Ceremony::new("other-root")?;
    let err = keyctl_err(
        &other.token,
        &[
            "ceremony",
            "revoke",
            "--hsm",
            other.token.uri(),
            "--chain",
            s(&c.chain()),
            "--path",
            "m/1'",
            "--reason",
            "x",
        ],
    )?;
    ensure!(err.contains("is the chain of another root"), "{err}");
    ensure!(std::fs::read(c.chain())? == before);
    Ok(())
}

#[test]
fn chain_verify_names_the_broken_entry() -> Result<()> {
    let c = Ceremony::new("broken")?;
    c.issue("dc1", "1", &InstallKey::generate())?;
    c.revoke("dc1")?;
    let good = std::fs::read(c.chain())?;
    let dir = c.dir.path();
    let write = |name: &str, bytes: &[u8]| -> Result<std::path::PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, bytes)?;
        Ok(p)
    };
    // Flip one byte inside the second entry's signature region: a bad signature or prev.
    let v = verify_file(&good)?;
    let first_len = keyd::chain::cbor_bytes(&keyd::chain::Record::Entry(
        v.entries(&KeyPath::root())[0].clone(),
    ))
    .len();
    let second_len = keyd::chain::cbor_bytes(&keyd::chain::Record::Entry(
        v.entries(&KeyPath::root())[1].clone(),
    ))
    .len();
    let mut flipped = good.clone();
    flipped[first_len + second_len - 20] ^= 0x01;
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"\x00junk");
    let cases = [
        (
            write("flipped.cbor", &flipped)?,
            "log m entry 1 (record 1): bad signature",
        ),
        (
            write("truncated.cbor", &good[..good.len() - 7])?,
            "truncated CBOR",
        ),
        (write("trailing.cbor", &trailing)?, "cannot decode"),
        (
            write("headless.cbor", &good[..first_len])?,
            "no signed head",
        ),
        (write("empty.cbor", b"")?, "no signed head"),
    ];
    for (file, want) in cases {
        let err = keyctl_err(&c.token, &["chain", "verify", s(&file)])?;
        ensure!(err.contains(want), "want {want:?} in:\n{err}");
    }
    let err = keyctl_err(&c.token, &["chain", "verify", s(&dir.join("missing.cbor"))])?;
    ensure!(err.contains("cannot read"), "{err}");
    Ok(())
}

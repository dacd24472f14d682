//! What each operation sends to each server, and how its answer is checked.
//!
//! Operations that consume the output of another (verify, unseal, decrypt) are prepared
//! with one request of that other operation before the load starts, so every measured
//! request carries a real signature or envelope made by the same server.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::ValueEnum;
use serde_json::{Value, json};

/// An operation of the load.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// keyd: POST /v1/sign (`--batch`: /v1/batch/sign). OpenBao: transit sign with an
    /// ed25519 key (`--batch`: batch_input).
    Sign,
    /// keyd: POST /v1/verify of a signature by the cluster key `--verify-key` made by
    /// keyd-load's own sign request. OpenBao: transit verify of a transit signature.
    Verify,
    /// keyd: POST /v1/seal. OpenBao: transit encrypt with an aes256-gcm96 key.
    Seal,
    /// keyd: POST /v1/unseal of a sealed envelope. OpenBao: transit decrypt.
    Unseal,
    /// keyd: POST /v1/encrypt to `--to` with `--suite` (no OpenBao counterpart).
    Encrypt,
    /// keyd: POST /v1/decrypt of an envelope encrypted to the caller with `--suite`
    /// (made with `--to` naming the caller; no OpenBao counterpart).
    Decrypt,
    /// keyd: POST /v1/datakey. OpenBao: transit datakey/plaintext.
    Datakey,
    /// keyd-floor: an empty answer to a request carrying `--size` bytes.
    Floor,
    /// keyd-floor: the request (carrying `--size` bytes) echoed back as the answer: the
    /// payload both ways, as seal and unseal carry it.
    FloorEcho,
    /// keyd, as an admin: POST /v1/nodes, a new node per request (a durable change to
    /// the branch log).
    AddNode,
    /// keyd, as an admin: POST /v1/nodes/{to}/rekey, a new epoch per request (a durable
    /// change to the branch log).
    RekeyNode,
}

/// The server under load.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// keyd, with a client certificate.
    Keyd,
    /// OpenBao's transit engine, with a token.
    Openbao,
    /// keyd's transit facade (`/v1/transit/`, the caller's named keys), with a client
    /// certificate: the same requests as OpenBao's.
    Facade,
    /// keyd-floor (`keyd-floor serve`): the same actix-web + rustls stack answering
    /// nothing.
    Floor,
}

impl Target {
    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Target::Keyd => "keyd",
            Target::Openbao => "openbao",
            Target::Facade => "keyd-transit",
            Target::Floor => "floor",
        }
    }
}

/// What the operation needs besides the payload.
pub struct Params<'a> {
    /// Payload size.
    pub size: usize,
    /// Items per request (sign only).
    pub batch: usize,
    /// Recipient for encrypt.
    pub to: &'a str,
    /// HPKE suite for encrypt and decrypt.
    pub suite: &'a str,
    /// Cluster public key (hex) of the signer, for keyd verify.
    pub verify_key: Option<&'a str>,
    /// Transit keys.
    pub sign_key: &'a str,
    /// Transit key for encrypt, decrypt and datakey.
    pub seal_key: &'a str,
}

/// A request to repeat and the check of its answer.
pub struct Plan {
    /// Path below the base URL.
    pub path: String,
    /// JSON body.
    pub body: Vec<u8>,
    /// When set, each request adds a node named `PREFIX-CONNECTION-COUNT` instead of
    /// sending `body`.
    pub node_names: Option<String>,
    /// The status a success answers with.
    pub status: u16,
    /// Items per request (signatures for a batch).
    pub items: usize,
    /// A string the answer must contain, if any.
    pub must_contain: Option<&'static str>,
    /// A string the answer must not contain, if any.
    pub must_not_contain: Option<&'static str>,
    /// The operation's name in the output.
    pub name: String,
}

/// Sends one request (with `post`) and returns the answer's JSON.
pub type Post<'a> = dyn Fn(&str, &Value) -> Result<Value> + 'a;

fn field<'v>(v: &'v Value, path: &[&str]) -> Result<&'v str> {
    let mut at = v;
    for p in path {
        at = at.get(p).with_context(|| format!("no field {p} in {v}"))?;
    }
    at.as_str()
        .with_context(|| format!("{} is not a string", path.join(".")))
}

/// The request for `op` on `target`, preparing what it consumes with `post`.
pub fn plan(target: Target, op: Op, p: &Params, post: &Post) -> Result<Plan> {
    let payload = B64.encode(vec![0x5a; p.size]);
    if p.batch == 0 || p.batch > 1000 {
        bail!("--batch: 1 to 1000");
    }
    if p.batch > 1 && op != Op::Sign {
        bail!("--batch is for sign");
    }
    let sign_path = format!("/v1/transit/sign/{}", p.sign_key);
    let (path, body, name, ok, bad): (String, Value, String, _, _) = match (target, op) {
        (Target::Keyd, Op::AddNode) => {
            ("/v1/nodes".into(), json!({}), "add node".into(), None, None)
        }
        (Target::Keyd, Op::RekeyNode) => (
            format!("/v1/nodes/{}/rekey", p.to),
            json!({}),
            "rekey node".into(),
            None,
            None,
        ),
        (_, Op::AddNode | Op::RekeyNode) => bail!("admin changes are measured on keyd only"),
        (Target::Floor, Op::Floor) => (
            "/floor".into(),
            json!({ "data": payload }),
            "empty request".into(),
            None,
            None,
        ),
        (Target::Floor, Op::FloorEcho) => (
            "/floor/echo".into(),
            json!({ "data": payload }),
            "echo request".into(),
            None,
            None,
        ),
        (Target::Floor, _) | (_, Op::Floor | Op::FloorEcho) => {
            bail!("--op floor and floor-echo go with --target floor")
        }
        (Target::Keyd, Op::Sign) if p.batch > 1 => (
            "/v1/batch/sign".into(),
            json!({ "items": vec![json!({ "data": payload }); p.batch] }),
            format!("batch sign {}", p.batch),
            None,
            Some("\"error\""),
        ),
        (Target::Openbao | Target::Facade, Op::Sign) if p.batch > 1 => (
            sign_path,
            json!({ "batch_input": vec![json!({ "input": payload }); p.batch] }),
            format!("transit batch sign {}", p.batch),
            None,
            Some("\"error\""),
        ),
        (Target::Keyd, Op::Sign) => (
            "/v1/sign".into(),
            json!({ "data": payload }),
            "sign".into(),
            None,
            None,
        ),
        (Target::Openbao | Target::Facade, Op::Sign) => (
            sign_path,
            json!({ "input": payload }),
            "transit sign".into(),
            None,
            None,
        ),
        (Target::Keyd, Op::Verify) => {
            let key = p
                .verify_key
                .context("keyd verify needs --verify-key (the caller's current epoch key, hex)")?;
            let signed = post("/v1/sign", &json!({ "data": payload }))?;
            let signature = field(&signed, &["signature"])?;
            (
                "/v1/verify".into(),
                json!({ "data": payload, "signature": signature, "public_key": key }),
                "verify".into(),
                Some("\"valid\":true"),
                None,
            )
        }
        (Target::Openbao | Target::Facade, Op::Verify) => {
            let signed = post(&sign_path, &json!({ "input": payload }))?;
            let signature = field(&signed, &["data", "signature"])?;
            (
                format!("/v1/transit/verify/{}", p.sign_key),
                json!({ "input": payload, "signature": signature }),
                "transit verify".into(),
                Some("\"valid\":true"),
                None,
            )
        }
        (Target::Keyd, Op::Seal) => (
            "/v1/seal".into(),
            json!({ "plaintext": payload }),
            "seal".into(),
            None,
            None,
        ),
        (Target::Openbao | Target::Facade, Op::Seal) => (
            format!("/v1/transit/encrypt/{}", p.seal_key),
            json!({ "plaintext": payload }),
            "transit encrypt".into(),
            None,
            None,
        ),
        (Target::Keyd, Op::Unseal) => {
            let sealed = post("/v1/seal", &json!({ "plaintext": payload }))?;
            let envelope = field(&sealed, &["envelope"])?;
            (
                "/v1/unseal".into(),
                json!({ "envelope": envelope }),
                "unseal".into(),
                None,
                None,
            )
        }
        (Target::Openbao | Target::Facade, Op::Unseal) => {
            let path = format!("/v1/transit/encrypt/{}", p.seal_key);
            let sealed = post(&path, &json!({ "plaintext": payload }))?;
            let ciphertext = field(&sealed, &["data", "ciphertext"])?;
            (
                format!("/v1/transit/decrypt/{}", p.seal_key),
                json!({ "ciphertext": ciphertext }),
                "transit decrypt".into(),
                None,
                None,
            )
        }
        (Target::Keyd, Op::Encrypt) => (
            "/v1/encrypt".into(),
            json!({ "to": p.to, "plaintext": payload, "suite": p.suite }),
            format!("encrypt/{}", p.suite),
            None,
            None,
        ),
        (Target::Keyd, Op::Decrypt) => {
            let body = json!({ "to": p.to, "plaintext": payload, "suite": p.suite });
            let sealed = post("/v1/encrypt", &body)?;
            let envelope = field(&sealed, &["envelope"])?;
            (
                "/v1/decrypt".into(),
                json!({ "envelope": envelope }),
                format!("decrypt/{}", p.suite),
                None,
                None,
            )
        }
        (Target::Openbao | Target::Facade, Op::Encrypt | Op::Decrypt) => {
            bail!("OpenBao's transit engine has no public-key encryption to a node")
        }
        (Target::Keyd, Op::Datakey) => (
            "/v1/datakey".into(),
            json!({}),
            "datakey".into(),
            None,
            None,
        ),
        (Target::Openbao | Target::Facade, Op::Datakey) => (
            format!("/v1/transit/datakey/plaintext/{}", p.seal_key),
            json!({}),
            "transit datakey".into(),
            None,
            None,
        ),
    };
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    Ok(Plan {
        path,
        body: serde_json::to_vec(&body)?,
        node_names: (op == Op::AddNode).then(|| format!("load-{}-{unique}", std::process::id())),
        status: if op == Op::AddNode { 201 } else { 200 },
        items: p.batch,
        must_contain: ok,
        must_not_contain: bad,
        name,
    })
}

/// Checks one answer against the plan.
pub fn check(plan: &Plan, status: u16, answer: &[u8]) -> Result<()> {
    let has = |s: &str| answer.windows(s.len()).any(|w| w == s.as_bytes());
    if status != plan.status {
        bail!("status {status}: {}", String::from_utf8_lossy(answer));
    }
    if let Some(s) = plan.must_contain
        && !has(s)
    {
        bail!("answer without {s}: {}", String::from_utf8_lossy(answer));
    }
    if let Some(s) = plan.must_not_contain
        && has(s)
    {
        bail!("answer with {s}: {}", String::from_utf8_lossy(answer));
    }
    Ok(())
}

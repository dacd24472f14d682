//! transit's operations on the caller's named keys — sign, verify, encrypt, decrypt,
//! rewrap, datakey, hmac — each with `batch_input` where transit has it, and `random`
//! and `hash`. Signatures, ciphertexts and HMACs are `vault:v<N>:<base64>`: for
//! ciphertexts the base64 is keyd's sealed envelope under version `N`'s storage key.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::params::Params;
use super::{Fail, answer, blocking, caller, counted, is_write, write_request};
use crate::api::MAX_BATCH;
use crate::identity::Principal;
use crate::service::Service;
use crate::service::named::{HmacAlg, KeyType};

/// The path parameters of a request (key name, hash or algorithm).
struct Route {
    name: String,
    /// The optional last segment (`sign/:name/:hash`, `hmac/:name/:alg`, datakey kind).
    extra: Option<String>,
}

/// One item of an operation: its parameters to its `data`.
type Op = fn(&Service, &Principal, &Route, &Params) -> Result<Map<String, Value>, Fail>;

/// How an operation answers a batch with failed items.
struct Shape {
    /// The metric name.
    metric: &'static str,
    /// The parameters it takes.
    known: &'static [&'static str],
    /// Whether a failed item makes the whole answer a 400 (encrypt, decrypt).
    batch_fails: bool,
    /// The fields a failed item carries beside `error`.
    on_error: fn() -> Map<String, Value>,
}

fn none() -> Map<String, Value> {
    Map::new()
}

pub(super) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object"),
    }
}

/// Runs `op` on the request (or on each item of its `batch_input`).
async fn run(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
    shape: Shape,
    op: Op,
) -> Result<HttpResponse, Fail> {
    let (who, params) = write_request(&req, &svc, &body)?;
    let route = Route {
        name: req.match_info().get("name").unwrap_or_default().to_owned(),
        extra: ["hash", "alg", "kind"]
            .iter()
            .find_map(|k| req.match_info().get(k))
            .map(str::to_owned),
    };
    let Some(items) = params.batch()? else {
        let data = counted(shape.metric, op(&svc, &who, &route, &params))?;
        return Ok(answer(data, &params, shape.known));
    };
    if items.is_empty() {
        return Err(Fail::bad("missing batch input to process"));
    }
    if items.len() > MAX_BATCH {
        return Err(Fail::bad(format!(
            "batch_input: {} items, at most {MAX_BATCH}",
            items.len()
        )));
    }
    let n = items.len();
    let (results, failed) = blocking(move || {
        Ok(crate::service::policy::in_batch(n, || {
            let mut failed = 0u64;
            let results: Vec<Value> = items
                .iter()
                .map(|item| {
                    let reference = item.text("reference").ok().flatten().unwrap_or_default();
                    let mut m = op(&svc, &who, &route, item).unwrap_or_else(|f| {
                        failed += 1;
                        let mut m = (shape.on_error)();
                        m.insert("error".into(), json!(f.errors.join("; ")));
                        m
                    });
                    m.insert("reference".into(), json!(reference));
                    Value::Object(m)
                })
                .collect();
            (results, failed)
        }))
    })
    .await?;
    crate::api::metrics().operations(shape.metric, n as u64 - failed, failed);
    let mut data = Map::new();
    data.insert("batch_results".into(), Value::Array(results));
    if failed > 0 && shape.batch_fails {
        return Err(Fail {
            status: StatusCode::BAD_REQUEST,
            errors: Vec::new(),
            data: Some(Value::Object(data)),
        });
    }
    Ok(answer(
        data,
        &params,
        &[shape.known, &["batch_input"]].concat(),
    ))
}

/// `vault:v<N>:<base64>` as `(N, bytes)`; `what` names it in errors.
fn unprefix(text: &str, what: &str) -> Result<(u32, Vec<u8>), Fail> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.first() != Some(&"vault") || parts.len() < 2 {
        return Err(Fail::bad(format!("invalid {what}: no prefix")));
    }
    if parts.len() != 3 {
        return Err(Fail::bad(format!("invalid {what}: wrong number of fields")));
    }
    let version = parts[1]
        .strip_prefix('v')
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            Fail::bad(format!(
                "invalid {what}: version number could not be decoded"
            ))
        })?;
    let bytes = STANDARD.decode(parts[2]).map_err(|_| {
        Fail::bad(match what {
            "signature" => "invalid base64 signature value".to_owned(),
            _ => format!("invalid {what}: could not decode base64"),
        })
    })?;
    Ok((version, bytes))
}

fn prefixed(version: u32, bytes: &[u8]) -> String {
    format!("vault:v{version}:{}", STANDARD.encode(bytes))
}

pub(super) fn input(p: &Params) -> Result<Vec<u8>, Fail> {
    Ok(p.base64("input", "unable to decode input as base64: ")?
        .unwrap_or_default())
}

const HASHES: [&str; 9] = [
    "sha1", "sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha3-224", "sha3-256", "sha3-384",
    "sha3-512",
];

fn sign_one(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
) -> Result<Map<String, Value>, Fail> {
    let hash = r.extra.clone().or(p.text("hash_algorithm")?);
    if let Some(h) = hash.filter(|h| !HASHES.contains(&h.as_str()) && h != "none") {
        return Err(Fail::bad(format!("invalid hash algorithm {h:?}")));
    }
    if p.flag("prehashed")? == Some(true) {
        return Err(Fail::bad(
            "prehashed input is not supported for ed25519 keys: keyd signs the message itself (pure Ed25519)",
        ));
    }
    let data = input(p)?;
    let (version, sig) = svc.named_sign(who, &r.name, p.number("key_version")?, &data)?;
    Ok(obj(
        json!({"signature": prefixed(version, &sig.to_bytes()), "key_version": version}),
    ))
}

/// `sign/:name(/:hash)`: Ed25519 over `input` (base64). `prehashed` is refused.
#[utoipa::path(post, path = "/v1/transit/sign/{name}", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "`data.signature` `vault:v<N>:<base64>`, `data.key_version`; also `sign/{name}/{hash}`, PUT alike, `batch_input`")))]
pub async fn sign(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let known = &[
        "input",
        "key_version",
        "hash_algorithm",
        "prehashed",
        "signature_algorithm",
        "marshaling_algorithm",
        "reference",
    ];
    let on_error = || obj(json!({"key_version": 0}));
    run(
        req,
        svc,
        body,
        Shape {
            metric: "transit.sign",
            known,
            batch_fails: false,
            on_error,
        },
        sign_one,
    )
    .await
}

fn verify_one(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
) -> Result<Map<String, Value>, Fail> {
    let data = input(p)?;
    let valid = match (p.text("signature")?, p.text("hmac")?) {
        (Some(sig), None) => {
            let (version, bytes) = unprefix(&sig, "signature")?;
            match ed25519_dalek::Signature::from_slice(&bytes) {
                Ok(sig) => svc.named_verify(who, &r.name, version, &data, &sig)?,
                Err(_) => false,
            }
        }
        (None, Some(mac)) => {
            let alg = hmac_alg(
                r.extra
                    .clone()
                    .or(p.text("hash_algorithm")?)
                    .or(p.text("algorithm")?),
            )?;
            let (version, bytes) = unprefix(&mac, "hmac")?;
            svc.named_hmac_verify(who, &r.name, version, alg, &data, &bytes)?
        }
        (Some(_), Some(_)) => {
            return Err(Fail::bad("provide one of 'signature' or 'hmac', not both"));
        }
        (None, None) => {
            return Err(Fail::bad(
                "neither a 'signature' nor an 'hmac' were given to verify",
            ));
        }
    };
    Ok(obj(json!({"valid": valid})))
}

/// `verify/:name(/:hash)`: `signature` (or `hmac`) over `input`.
#[utoipa::path(post, path = "/v1/transit/verify/{name}", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "`data.valid`; also `verify/{name}/{hash}`, PUT alike, `batch_input`")))]
pub async fn verify(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let known = &[
        "input",
        "signature",
        "hmac",
        "hash_algorithm",
        "algorithm",
        "prehashed",
        "signature_algorithm",
        "marshaling_algorithm",
        "reference",
        "name",
    ];
    let on_error = || obj(json!({"valid": false}));
    run(
        req,
        svc,
        body,
        Shape {
            metric: "transit.verify",
            known,
            batch_fails: false,
            on_error,
        },
        verify_one,
    )
    .await
}

fn context(p: &Params) -> Result<Vec<u8>, Fail> {
    Ok(p.base64("associated_data", "associated_data: ")?
        .unwrap_or_default())
}

/// Seals `plaintext` under the version `p` asks for (the latest by default), bound to
/// its associated data: `ciphertext` and `key_version`.
fn seal(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
    plaintext: &[u8],
) -> Result<Map<String, Value>, Fail> {
    let version = p.number("key_version")?;
    let (version, sealed) = svc.named_seal(who, &r.name, version, plaintext, &context(p)?)?;
    let ciphertext = prefixed(version, &sealed);
    Ok(obj(
        json!({"ciphertext": ciphertext, "key_version": version}),
    ))
}

fn encrypt_one(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
) -> Result<Map<String, Value>, Fail> {
    let plaintext = p
        .base64("plaintext", "")?
        .ok_or_else(|| Fail::bad("missing plaintext to encrypt"))?;
    seal(svc, who, r, p, &plaintext)
}

/// `encrypt/:name`: seals `plaintext` (base64) under the latest version (or
/// `key_version`), bound to `associated_data`. A missing key is created (aes256-gcm96),
/// as transit does, when the policy grants `key.create`.
#[utoipa::path(post, path = "/v1/transit/encrypt/{name}", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "`data.ciphertext` `vault:v<N>:<base64>`, `data.key_version`; PUT alike, `batch_input`")))]
pub async fn encrypt(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let who = caller(&req, &svc)?;
    let name = req.match_info().get("name").unwrap_or_default().to_owned();
    // One lookup on the hot path; the key is read (and authorized) once, by the
    // operation itself.
    if is_write(&req) && !svc.has_named_key(&who, &name) {
        match Params::parse(&body)?.text("type")?.as_deref() {
            None | Some("aes256-gcm96") => {}
            Some(other) => return Err(Fail::bad(format!("unknown key type {other}"))),
        }
        let svc = svc.clone();
        blocking(move || Ok(svc.create_named_key(&who, &name, KeyType::Aes256Gcm96)?)).await?;
    }
    let known = &[
        "plaintext",
        "associated_data",
        "context",
        "nonce",
        "key_version",
        "type",
        "reference",
    ];
    run(
        req,
        svc,
        body,
        Shape {
            metric: "transit.encrypt",
            known,
            batch_fails: true,
            on_error: none,
        },
        encrypt_one,
    )
    .await
}

fn open(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Fail> {
    let text = p
        .text("ciphertext")?
        .ok_or_else(|| Fail::bad("missing ciphertext to decrypt"))?;
    let (version, sealed) = unprefix(&text, "ciphertext")?;
    Ok(svc.named_unseal(who, &r.name, version, &sealed, &context(p)?)?)
}

fn decrypt_one(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
) -> Result<Map<String, Value>, Fail> {
    let plaintext = open(svc, who, r, p)?;
    Ok(obj(
        json!({"plaintext": STANDARD.encode(plaintext.as_slice())}),
    ))
}

/// `decrypt/:name`: opens a `vault:v<N>:` ciphertext of the key.
#[utoipa::path(post, path = "/v1/transit/decrypt/{name}", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "`data.plaintext` (base64); PUT alike, `batch_input`")))]
pub async fn decrypt(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let known = &[
        "ciphertext",
        "associated_data",
        "context",
        "nonce",
        "reference",
    ];
    let on_error = || obj(json!({"plaintext": ""}));
    run(
        req,
        svc,
        body,
        Shape {
            metric: "transit.decrypt",
            known,
            batch_fails: true,
            on_error,
        },
        decrypt_one,
    )
    .await
}

fn rewrap_one(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
) -> Result<Map<String, Value>, Fail> {
    let plaintext = open(svc, who, r, p)?;
    seal(svc, who, r, p, &plaintext)
}

/// `rewrap/:name`: a ciphertext of an older version sealed again under the latest (or
/// `key_version`).
#[utoipa::path(post, path = "/v1/transit/rewrap/{name}", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "`data.ciphertext`, `data.key_version`; PUT alike, `batch_input`")))]
pub async fn rewrap(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let known = &[
        "ciphertext",
        "associated_data",
        "context",
        "nonce",
        "key_version",
        "reference",
    ];
    run(
        req,
        svc,
        body,
        Shape {
            metric: "transit.rewrap",
            known,
            batch_fails: false,
            on_error: none,
        },
        rewrap_one,
    )
    .await
}

fn datakey_one(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
) -> Result<Map<String, Value>, Fail> {
    let plain = match r.extra.as_deref() {
        Some("plaintext") => true,
        Some("wrapped") => false,
        _ => return Err(Fail::bad("Invalid path, must be 'plaintext' or 'wrapped'")),
    };
    let bits = p.number("bits")?.unwrap_or(256);
    if ![128, 256, 512].contains(&bits) {
        return Err(Fail::bad("invalid bit length"));
    }
    let key = zeroize::Zeroizing::new(random_bytes(bits as usize / 8)?);
    let mut data = seal(svc, who, r, p, &key)?;
    if plain {
        data.insert("plaintext".into(), json!(STANDARD.encode(key.as_slice())));
    }
    Ok(data)
}

/// `datakey/{plaintext|wrapped}/:name`: a fresh data key (`bits` 128, 256 or 512)
/// sealed under the key, with its plaintext for `plaintext`.
#[utoipa::path(post, path = "/v1/transit/datakey/{kind}/{name}", tag = "transit",
    params(("kind" = String, Path, description = "plaintext or wrapped"), ("name" = String, Path, description = "key name")),
    responses((status = 200, description = "`data.ciphertext`, `data.key_version`, `data.plaintext` (plaintext only); PUT alike")))]
pub async fn datakey(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let known = &["bits", "associated_data", "context", "nonce", "key_version"];
    run(
        req,
        svc,
        body,
        Shape {
            metric: "transit.datakey",
            known,
            batch_fails: false,
            on_error: none,
        },
        datakey_one,
    )
    .await
}

fn hmac_alg(name: Option<String>) -> Result<HmacAlg, Fail> {
    HmacAlg::parse(name.as_deref().unwrap_or("sha2-256")).map_err(|_| {
        Fail::bad(format!(
            "unsupported algorithm {}",
            name.unwrap_or_default()
        ))
    })
}

fn hmac_one(
    svc: &Service,
    who: &Principal,
    r: &Route,
    p: &Params,
) -> Result<Map<String, Value>, Fail> {
    let alg = hmac_alg(r.extra.clone().or(p.text("algorithm")?))?;
    let data = input(p)?;
    let (version, mac) = svc.named_hmac(who, &r.name, p.number("key_version")?, alg, &data)?;
    Ok(obj(json!({"hmac": prefixed(version, &mac)})))
}

/// `hmac/:name(/:alg)`: HMAC-SHA2 of `input` under the key's HMAC key.
#[utoipa::path(post, path = "/v1/transit/hmac/{name}", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "`data.hmac` `vault:v<N>:<base64>`; also `hmac/{name}/{alg}`, PUT alike, `batch_input`")))]
pub async fn hmac(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let known = &["input", "algorithm", "key_version", "reference"];
    run(
        req,
        svc,
        body,
        Shape {
            metric: "transit.hmac",
            known,
            batch_fails: false,
            on_error: none,
        },
        hmac_one,
    )
    .await
}

/// `n` bytes from the system's CSPRNG.
pub(super) fn random_bytes(n: usize) -> Result<Vec<u8>, Fail> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| {
        Fail::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("randomness: {e}"),
        )
    })?;
    Ok(bytes)
}

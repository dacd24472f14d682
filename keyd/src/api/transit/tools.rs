//! transit's `random` and `hash`: no key involved, any authenticated caller.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha2::Digest;

use super::crypto::{input, obj, random_bytes};
use super::{Fail, answer, counted, write_request};
use crate::service::Service;

fn encoded(bytes: &[u8], format: Option<String>, default: &str) -> Result<String, Fail> {
    match format.as_deref().unwrap_or(default) {
        "hex" => Ok(hex::encode(bytes)),
        "base64" => Ok(STANDARD.encode(bytes)),
        other => Err(Fail::bad(format!(
            "unsupported encoding format {other}; must be \"hex\" or \"base64\""
        ))),
    }
}

/// `random(/:bytes)`, `random/:source/:bytes`: random bytes (default 32, base64).
#[utoipa::path(post, path = "/v1/transit/random", tag = "transit",
    responses((status = 200, description = "`data.random_bytes`; also `random/{bytes}`, PUT alike")))]
pub async fn random(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let (_, params) = write_request(&req, &svc, &body)?;
    let segments: Vec<&str> = ["a", "b"]
        .iter()
        .filter_map(|k| req.match_info().get(k))
        .collect();
    // `random/hex`, `random/32`, `random/platform/32`: the last number is the count.
    let (count, format) = match segments.as_slice() {
        [] => (None, None),
        [one] => match one.parse::<u32>() {
            Ok(n) => (Some(n), None),
            Err(_) if ["hex", "base64"].contains(one) => (None, Some((*one).to_owned())),
            Err(_) => (None, None),
        },
        [_, n] => (
            Some(
                n.parse::<u32>()
                    .map_err(|e| Fail::bad(format!("error parsing url-set byte count: {e}")))?,
            ),
            None,
        ),
        _ => unreachable!("at most two segments"),
    };
    let count = count.or(params.number("bytes")?).unwrap_or(32);
    if !(1..131_072).contains(&count) {
        return Err(Fail::bad("'bytes' should be between 1 and 131071"));
    }
    let bytes = random_bytes(count as usize)?;
    let out = encoded(&bytes, format.or(params.text("format")?), "base64")?;
    Ok(answer(
        obj(json!({"random_bytes": out})),
        &params,
        &["bytes", "format", "source"],
    ))
}

/// `hash(/:alg)`: SHA-2 or SHA-3 of `input` (default sha2-256, hex).
#[utoipa::path(post, path = "/v1/transit/hash", tag = "transit",
    responses((status = 200, description = "`data.sum`; also `hash/{alg}`, PUT alike")))]
pub async fn hash(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let (_, params) = write_request(&req, &svc, &body)?;
    let alg = req
        .match_info()
        .get("alg")
        .map(str::to_owned)
        .or(params.text("algorithm")?)
        .unwrap_or_else(|| "sha2-256".into());
    let data = input(&params)?;
    let sum = match alg.as_str() {
        "sha2-224" => sha2::Sha224::digest(&data).to_vec(),
        "sha2-256" => sha2::Sha256::digest(&data).to_vec(),
        "sha2-384" => sha2::Sha384::digest(&data).to_vec(),
        "sha2-512" => sha2::Sha512::digest(&data).to_vec(),
        "sha3-224" => sha3::Sha3_224::digest(&data).to_vec(),
        "sha3-256" => sha3::Sha3_256::digest(&data).to_vec(),
        "sha3-384" => sha3::Sha3_384::digest(&data).to_vec(),
        "sha3-512" => sha3::Sha3_512::digest(&data).to_vec(),
        other => return Err(Fail::bad(format!("unsupported algorithm {other}"))),
    };
    let out = encoded(&sum, params.text("format")?, "hex")?;
    counted("transit.hash", Ok(()))?;
    Ok(answer(
        obj(json!({"sum": out})),
        &params,
        &["input", "algorithm", "format"],
    ))
}

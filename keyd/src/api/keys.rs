//! Public keys in the formats other tools read: `GET /v1/keys/{name}` (the format the
//! `Accept` header names) and `GET /v1/jwks.json` (for JOSE libraries). Public, like the
//! chain they come from.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiError;
use super::error::ErrorBody;
use crate::export::{Format, Use};
use crate::service::Service;

/// Which of the key's public keys.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    /// `sig` (Ed25519, the default) or `enc` (X25519).
    #[serde(default, rename = "use")]
    key_use: Option<String>,
}

/// The media types of the formats, in the order an `Accept` header is matched.
const MEDIA: &[(&str, Format)] = &[
    ("application/jwk+json", Format::Jwk),
    ("application/json", Format::Jwk),
    ("application/x-pem-file", Format::Pem),
    ("text/plain", Format::OpenSsh),
    ("application/octet-stream", Format::Raw),
];

/// The format `Accept` asks for (its first type keyd knows), JWK when it names none.
fn wanted(req: &HttpRequest) -> (&'static str, Format) {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept
        .split(',')
        .filter_map(|m| m.split(';').next().map(str::trim))
        .find_map(|m| MEDIA.iter().find(|(t, _)| *t == m).copied())
        .unwrap_or(MEDIA[0])
}

/// A public key: a node's current epoch key (by name or node path), or the key a path
/// names exactly, as JWK (default), PEM, OpenSSH or the raw bytes, per `Accept`.
#[utoipa::path(get, path = "/v1/keys/{name}", tag = "cluster",
    params(("name" = String, Path, description = "node name or key path"), KeyQuery),
    responses(
        (status = 200, description = "the key: application/jwk+json (default), application/x-pem-file, text/plain (OpenSSH) or application/octet-stream (32 bytes)", body = String),
        (status = "4XX", body = ErrorBody)))]
pub async fn key(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    query: web::Query<KeyQuery>,
) -> Result<HttpResponse, ApiError> {
    let usage = match query.key_use.as_deref() {
        None | Some("sig") => Use::Sig,
        Some("enc") => Use::Enc,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("use: {other:?}; sig or enc"),
            ));
        }
    };
    let (media, format) = wanted(&req);
    let body = svc.export_key(&name, usage, format)?;
    Ok(HttpResponse::Ok().content_type(media).body(body))
}

/// The JWKS of every valid node's current signing key, `kid` = key id: what a JOSE
/// library needs to check a JWS signed through `POST /v1/sign`.
#[utoipa::path(get, path = "/v1/jwks.json", tag = "cluster",
    responses((status = 200, description = "a JSON Web Key Set (RFC 7517)", content_type = "application/jwk-set+json", body = Object)))]
pub async fn jwks(svc: web::Data<Service>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .body(svc.jwks().to_string())
}

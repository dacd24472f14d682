//! `transit/keys`: create, read, list, rotate, configure and delete the caller's named
//! keys. Create, rotate and config answer with the key as a read does; delete with 204.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::params::Params;
use super::{Fail, answer, blocking, caller, counted, write_request};
use crate::service::named::{KeyConfigChange, KeyType, NamedKey};
use crate::service::{Service, ServiceError};

/// The key as transit's read shows it (plus keyd's `path`). Versions below the minimum
/// decryption version are left out, as transit does.
pub(super) fn key_data(k: &NamedKey) -> Map<String, Value> {
    let signs = k.key_type.signs();
    let keys: Map<String, Value> = k
        .versions
        .iter()
        .filter(|v| v.version >= k.min_decryption_version)
        .map(|v| {
            let value = match k.key_type {
                KeyType::Aes256Gcm96 => json!(v.created_at),
                KeyType::Ed25519 => json!({
                    "certificate_chain": "",
                    "creation_time": crate::rfc3339(v.created_at),
                    "name": "ed25519",
                    "public_key": STANDARD.encode(v.ed25519),
                }),
            };
            (v.version.to_string(), value)
        })
        .collect();
    let data = json!({
        "allow_plaintext_backup": false,
        "auto_rotate_period": 0,
        "deletion_allowed": k.deletion_allowed,
        "derived": false,
        "exportable": false,
        "imported_key": false,
        "keys": keys,
        "latest_version": k.latest_version,
        "min_available_version": 0,
        "min_decryption_version": k.min_decryption_version,
        "min_encryption_version": k.min_encryption_version,
        "name": k.name,
        "path": k.path.to_string(),
        "soft_deleted": false,
        "supports_decryption": !signs,
        "supports_derivation": false,
        "supports_encryption": !signs,
        "supports_signing": signs,
        "type": k.key_type.name(),
    });
    match data {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object"),
    }
}

/// `LIST transit/keys`, `GET transit/keys?list=true`: the names of the caller's keys.
#[utoipa::path(get, path = "/v1/transit/keys", tag = "transit",
    params(("list" = Option<bool>, Query, description = "true (or the LIST method)")),
    responses((status = 200, description = "`data.keys`: names"), (status = 404, description = "no keys: `{\"errors\": []}`")))]
pub async fn list(req: HttpRequest, svc: web::Data<Service>) -> Result<HttpResponse, Fail> {
    let listing = req.method().as_str() == "LIST"
        || (req.method() == Method::GET
            && web::Query::<Map<String, Value>>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.get("list").and_then(|v| v.as_str().map(|s| s == "true")))
                .unwrap_or(false));
    if !listing {
        return Err(Fail::unsupported());
    }
    let who = caller(&req, &svc)?;
    let names = svc.named_key_names(&who)?;
    if names.is_empty() {
        return Err(Fail::absent());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(names));
    Ok(answer(data, &Params::default(), &[]))
}

/// `transit/keys/:name`: `GET` reads, `POST`/`PUT` creates (`type`: `ed25519` or
/// `aes256-gcm96`, the default; an existing key is left as it is), `DELETE` deletes.
#[utoipa::path(post, path = "/v1/transit/keys/{name}", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "the key (GET reads, POST/PUT create, DELETE deletes: 204)")))]
pub async fn key(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let who = caller(&req, &svc)?;
    let name = name.into_inner();
    let params = Params::parse(&body)?;
    match req.method().as_str() {
        "GET" => match svc.read_named_key(&who, &name) {
            Ok(k) => Ok(answer(key_data(&k), &Params::default(), &[])),
            Err(ServiceError::NotFound(_)) => Err(Fail::absent()),
            Err(e) => Err(e.into()),
        },
        "POST" | "PUT" => {
            let key_type = match params.text("type")? {
                None => KeyType::Aes256Gcm96,
                Some(t) => KeyType::parse(&t).map_err(|_| format!("unknown key type {t}"))?,
            };
            let r = blocking(move || Ok(svc.create_named_key(&who, &name, key_type)?)).await;
            let (k, _) = counted("transit.key_create", r)?;
            Ok(answer(key_data(&k), &params, &["type"]))
        }
        "DELETE" => {
            let shown = name.clone();
            blocking(move || {
                svc.delete_named_key(&who, &name).map_err(|e| match e {
                    ServiceError::NotFound(_) => Fail::bad(format!(
                        "error deleting policy {shown}: could not delete key; not found"
                    )),
                    ServiceError::BadRequest(m) => {
                        Fail::bad(format!("error deleting policy {shown}: {m}"))
                    }
                    e => e.into(),
                })
            })
            .await?;
            Ok(HttpResponse::build(StatusCode::NO_CONTENT).finish())
        }
        _ => Err(Fail::unsupported()),
    }
}

/// `transit/keys/:name/rotate`: a new version (a new epoch of the named key).
#[utoipa::path(post, path = "/v1/transit/keys/{name}/rotate", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "the key after the rotation (PUT alike)")))]
pub async fn rotate(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let (who, params) = write_request(&req, &svc, &body)?;
    let name = name.into_inner();
    let r = blocking(move || {
        svc.rotate_named_key(&who, &name).map_err(|e| match e {
            ServiceError::NotFound(_) => Fail::bad("key not found"),
            e => e.into(),
        })
    })
    .await;
    let k = counted("transit.key_rotate", r)?;
    Ok(answer(key_data(&k), &params, &[]))
}

/// `transit/keys/:name/config`: `min_decryption_version`, `min_encryption_version`,
/// `deletion_allowed`.
#[utoipa::path(post, path = "/v1/transit/keys/{name}/config", tag = "transit",
    params(("name" = String, Path, description = "key name")),
    responses((status = 200, description = "the key as configured (PUT alike)")))]
pub async fn config(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    let (who, params) = write_request(&req, &svc, &body)?;
    let change = KeyConfigChange {
        min_decryption_version: params.number("min_decryption_version")?,
        min_encryption_version: params.number("min_encryption_version")?,
        deletion_allowed: params.flag("deletion_allowed")?,
    };
    let name = name.into_inner();
    let r = blocking(move || {
        svc.configure_named_key(&who, &name, change)
            .map_err(|e| match e {
                ServiceError::NotFound(_) => {
                    Fail::bad(format!("no existing key named {name} could be found"))
                }
                e => e.into(),
            })
    })
    .await;
    let k = counted("transit.key_config", r)?;
    let known = [
        "min_decryption_version",
        "min_encryption_version",
        "deletion_allowed",
    ];
    Ok(answer(key_data(&k), &params, &known))
}

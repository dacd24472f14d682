//! The transit-compatible facade (DESIGN.md section 6): under `/v1/transit/` keyd answers
//! the requests of Vault/OpenBao's transit engine for the caller's named keys, in the
//! shapes transit's clients parse (the `bao` CLI, sops, hvac, cosign, go-kms-wrapping):
//! the response envelope `{request_id, lease_id, renewable, lease_duration, data,
//! wrap_info, warnings, auth}`, errors as `{"errors": [...]}`, `vault:v<N>:<base64>`
//! strings, PUT and POST alike, `LIST` as `GET ?list=true`, parameters typed loosely.
//!
//! The client certificate authenticates every request, as everywhere in keyd;
//! `POST /v1/auth/cert/login` gives clients that insist on a token an opaque one, and a
//! token is accepted only on a connection presenting the certificate it was issued to.

pub(super) mod crypto;
pub(super) mod keys;
pub mod params;
pub(super) mod tools;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Map, Value, json};

use self::params::Params;
use super::{ApiError, PeerCertificate, metrics};
use crate::identity::Principal;
use crate::service::{Service, ServiceError};

/// A transit-style failure: the status and the messages of `{"errors": [...]}`, or, for
/// a batch that failed as a whole, the envelope with its results.
#[derive(Debug)]
pub struct Fail {
    status: StatusCode,
    errors: Vec<String>,
    data: Option<Value>,
}

impl Fail {
    fn new(status: StatusCode, message: impl Into<String>) -> Fail {
        Fail {
            status,
            errors: vec![message.into()],
            data: None,
        }
    }

    fn bad(message: impl Into<String>) -> Fail {
        Fail::new(StatusCode::BAD_REQUEST, message)
    }

    /// Transit's answer for a key that is not there (a read, an empty list): 404 with
    /// no message, which the Go clients take as "no value".
    fn absent() -> Fail {
        Fail {
            status: StatusCode::NOT_FOUND,
            errors: Vec::new(),
            data: None,
        }
    }

    fn unsupported() -> Fail {
        Fail::new(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.errors.join("; "))
    }
}

impl ResponseError for Fail {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        match &self.data {
            Some(data) => envelope(self.status, Some(data.clone()), Vec::new(), None),
            None => HttpResponse::build(self.status)
                .insert_header(("cache-control", "no-store"))
                .json(json!({"errors": self.errors})),
        }
    }
}

impl From<String> for Fail {
    fn from(message: String) -> Fail {
        Fail::bad(message)
    }
}

impl From<ServiceError> for Fail {
    fn from(e: ServiceError) -> Fail {
        let api = ApiError::from(e);
        let status = match api.status() {
            // Transit answers 400 for an unknown key in an operation; 403 for anything
            // about who may do what.
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED => StatusCode::FORBIDDEN,
            other => other,
        };
        let message = match status {
            StatusCode::FORBIDDEN => format!("permission denied: {}", api.message()),
            _ => api.message().to_owned(),
        };
        super::metrics().error(api.code());
        Fail::new(status, message)
    }
}

/// A transit response envelope.
fn envelope(
    status: StatusCode,
    data: Option<Value>,
    warnings: Vec<String>,
    auth: Option<Value>,
) -> HttpResponse {
    let mut id = [0u8; 16];
    // A request id is a label, not a secret: zeros if the system has no randomness.
    let _ = getrandom::fill(&mut id);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let h = hex::encode(id);
    let request_id = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    HttpResponse::build(status)
        .insert_header(("cache-control", "no-store"))
        .json(json!({
            "request_id": request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": data,
            "wrap_info": null,
            "warnings": (!warnings.is_empty()).then_some(warnings),
            "auth": auth,
        }))
}

/// A 200 with `data`, warning of the parameters the endpoint does not take.
fn answer(data: Map<String, Value>, params: &Params, known: &[&str]) -> HttpResponse {
    envelope(
        StatusCode::OK,
        Some(Value::Object(data)),
        ignored(params, known),
        None,
    )
}

fn ignored(params: &Params, known: &[&str]) -> Vec<String> {
    let unknown = params.unknown(known);
    if unknown.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "Endpoint ignored these unrecognized parameters: [{}]",
        unknown.join(" ")
    )]
}

/// The token a request carries (`X-Vault-Token`, or `Authorization: Bearer`).
fn token_of(req: &HttpRequest) -> Option<String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    header("x-vault-token")
        .map(str::to_owned)
        .or_else(|| {
            header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .filter(|t| !t.is_empty())
}

/// The principal of the client certificate (transit's 403 when there is none valid).
fn certified(req: &HttpRequest, svc: &Service) -> Result<Principal, Fail> {
    super::principal(req, svc).map_err(|e| {
        Fail::new(
            StatusCode::FORBIDDEN,
            format!("permission denied: {}", e.message()),
        )
    })
}

/// The caller, authenticated by its client certificate; a token, when sent, must have
/// been issued to that certificate and not have expired.
fn caller(req: &HttpRequest, svc: &Service) -> Result<Principal, Fail> {
    let principal = certified(req, svc)?;
    if let Some(token) = token_of(req) {
        let fingerprint = req.conn_data::<PeerCertificate>().map(|c| c.0.fingerprint);
        if !fingerprint.is_some_and(|fp| svc.check_transit_token(&token, &principal, &fp)) {
            return Err(Fail::new(
                StatusCode::FORBIDDEN,
                "permission denied: the token was not issued to this client certificate, or it has expired (log in again: POST /v1/auth/cert/login)",
            ));
        }
    }
    Ok(principal)
}

fn is_write(req: &HttpRequest) -> bool {
    req.method() == Method::POST || req.method() == Method::PUT
}

/// A PUT or POST: the caller and the parameters.
fn write_request(
    req: &HttpRequest,
    svc: &Service,
    body: &[u8],
) -> Result<(Principal, Params), Fail> {
    if !is_write(req) {
        return Err(Fail::unsupported());
    }
    let who = caller(req, svc)?;
    Ok((who, Params::parse(body)?))
}

/// Runs a service call off the async workers (it may wait for a commit).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Fail> + Send + 'static,
) -> Result<T, Fail> {
    web::block(f)
        .await
        .map_err(|_| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
}

/// Counts a facade operation in the metrics.
fn counted<T>(name: &'static str, r: Result<T, Fail>) -> Result<T, Fail> {
    let ok = u64::from(r.is_ok());
    metrics().operations(name, ok, 1 - ok);
    r
}

/// `POST /v1/auth/cert/login`: an opaque token bound to the client certificate of the
/// connection (for clients that insist on one), valid for an hour at every replica.
#[utoipa::path(post, path = "/v1/auth/cert/login", tag = "transit",
    responses((status = 200, description = "transit envelope with `auth.client_token` (PUT alike)"),
        (status = 400, description = "`{\"errors\": [\"no client certificate found\"]}`")))]
pub async fn login(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, Fail> {
    if !is_write(&req) {
        return Err(Fail::unsupported());
    }
    let params = Params::parse(&body)?;
    let Some(cert) = req.conn_data::<PeerCertificate>().map(|c| c.0.clone()) else {
        return Err(Fail::bad(
            "no client certificate found: present a client certificate keyd issued",
        ));
    };
    // A login needs no token: one the client still holds (expired, another's) is
    // ignored, as transit ignores it on login.
    let principal = certified(&req, &svc)?;
    let (token, ttl) = svc.transit_token(&principal, &cert.fingerprint)?;
    let auth = json!({
        "client_token": token,
        "accessor": "",
        "policies": ["keyd"],
        "token_policies": ["keyd"],
        "metadata": {"principal": principal.uri(), "cert_name": svc.name_of(&principal)},
        "lease_duration": ttl,
        "renewable": false,
        "entity_id": "",
        "token_type": "service",
        "orphan": true,
        "mfa_requirement": null,
        "num_uses": 0,
    });
    metrics().operations("transit.login", 1, 0);
    Ok(envelope(
        StatusCode::OK,
        None,
        ignored(&params, &["name"]),
        Some(auth),
    ))
}

/// The facade's answer to a request without a client certificate (`route`: the matched
/// pattern), `None` for routes outside the facade.
pub fn without_certificate(route: &str) -> Option<HttpResponse> {
    let fail = if route == "/v1/auth/cert/login" {
        Fail::bad("no client certificate found: present a client certificate keyd issued")
    } else if route.starts_with("/v1/transit/") {
        Fail::new(
            StatusCode::FORBIDDEN,
            "permission denied: a client certificate issued by this keyd is required (a token alone is not enough)",
        )
    } else {
        return None;
    };
    Some(fail.error_response())
}

/// Routes of the facade (inside `/v1/transit`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/keys", web::route().to(keys::list))
        .route("/keys/{name}", web::route().to(keys::key))
        .route("/keys/{name}/rotate", web::route().to(keys::rotate))
        .route("/keys/{name}/config", web::route().to(keys::config))
        .route("/sign/{name}", web::route().to(crypto::sign))
        .route("/sign/{name}/{hash}", web::route().to(crypto::sign))
        .route("/verify/{name}", web::route().to(crypto::verify))
        .route("/verify/{name}/{hash}", web::route().to(crypto::verify))
        .route("/encrypt/{name}", web::route().to(crypto::encrypt))
        .route("/decrypt/{name}", web::route().to(crypto::decrypt))
        .route("/rewrap/{name}", web::route().to(crypto::rewrap))
        .route("/datakey/{kind}/{name}", web::route().to(crypto::datakey))
        .route("/hmac/{name}", web::route().to(crypto::hmac))
        .route("/hmac/{name}/{alg}", web::route().to(crypto::hmac))
        .route("/random", web::route().to(tools::random))
        .route("/random/{a}", web::route().to(tools::random))
        .route("/random/{a}/{b}", web::route().to(tools::random))
        .route("/hash", web::route().to(tools::hash))
        .route("/hash/{alg}", web::route().to(tools::hash))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(Fail::new(StatusCode::NOT_FOUND, "unsupported path"))
        }));
}

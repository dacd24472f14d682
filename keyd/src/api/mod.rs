//! The REST API (DESIGN.md section 6): routes, request and response bodies, and the
//! client-certificate extractor.

mod access;
mod admin;
mod audit;
mod body;
mod credentials;
mod error;
mod keys;
mod limits;
mod metrics;
mod ops;
mod policy;
mod replicas;
pub mod transit;
mod trust;

use actix_web::dev::Extensions;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use utoipa::OpenApi;

pub use access::{REQUEST_ID, observe};
pub use body::{Blob, Bytes, CBOR, Format, JSON};
pub use error::{ApiError, ErrorBody};
pub use limits::{PerIp, Slot};
pub use metrics::{Metrics, metrics};

use crate::identity::{Presented, Principal};
use crate::service::{Service, ServiceError};

/// Largest request body accepted (JSON or CBOR).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest body of enrollment and renewal (a CSR and a token): anonymous callers never
/// make keyd buffer more.
pub const SMALL_BODY: usize = 16 * 1024;
/// Most items in a batch request.
pub const MAX_BATCH: usize = 1000;

/// What the client certificate of a connection presents (principal, `notAfter`,
/// credential generation): parsed once per connection by [`on_connect`], not per request.
#[derive(Clone)]
pub struct PeerCertificate(pub Presented);

/// The connection hook: counts the connection against its address's limit ([`PerIp`])
/// and records the principal of its client certificate for the requests on it (a
/// certificate naming no principal authenticates nothing).
pub fn on_connect(
    per_ip: std::sync::Arc<PerIp>,
) -> impl Fn(&dyn std::any::Any, &mut Extensions) + Send + Sync + 'static {
    move |conn, ext| {
        use actix_tls::accept::rustls_0_23::TlsStream;
        let Some(tls) = conn.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>() else {
            return;
        };
        if let Ok(peer) = tls.get_ref().0.peer_addr() {
            ext.insert(per_ip.admit(peer.ip()));
        }
        if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first())
            && let Some(presented) = Principal::of_certificate(cert)
        {
            ext.insert(PeerCertificate(presented));
        }
    }
}

/// The caller: the principal its client certificate names, if that certificate has not
/// expired (the TLS layer lets expired certificates through so that this can say so),
/// belongs to the principal's current credential generation, and the chain still holds
/// the principal valid.
fn principal(req: &HttpRequest, svc: &Service) -> Result<Principal, ApiError> {
    principal_and_generation(req, svc).map(|(p, _)| p)
}

/// [`principal`] and the credential generation of its certificate.
fn principal_and_generation(
    req: &HttpRequest,
    svc: &Service,
) -> Result<(Principal, u32), ApiError> {
    let presented = req.conn_data::<PeerCertificate>().map(|c| c.0.clone());
    if let Some(p) = &presented {
        let now = i64::try_from(crate::service::unix_now()).unwrap_or(i64::MAX);
        if p.not_after < now {
            return Err(ApiError::with_status(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "certificate_expired",
                format!(
                    "the client certificate for {} expired at {} (Unix time); \
                     renew before expiry (keyctl renew) or enroll again",
                    p.principal.uri(),
                    p.not_after
                ),
            ));
        }
    }
    let generation = presented.as_ref().map_or(0, |p| p.generation);
    let principal = svc.authenticate(presented.map(|p| p.principal))?;
    svc.check_credential(&principal, generation)?;
    Ok((principal, generation))
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyd",
        description = "Hierarchical key management: node keys, chain, operations. \
        Clients authenticate with mTLS certificates issued by keyd. Every body is JSON by \
        default or CBOR on request (Content-Type / Accept: application/cbor); byte fields \
        are base64 text in JSON and byte strings in CBOR. Errors are JSON \
        {\"error\": {\"code\", \"message\"}} with a stable code."
    ),
    paths(
        healthz,
        readyz,
        prometheus,
        openapi,
        admin::ca,
        keys::key,
        keys::jwks,
        admin::chain,
        admin::push_root,
        admin::succession,
        trust::invite,
        trust::accept,
        trust::session,
        trust::consent,
        trust::confirm,
        trust::rendezvous,
        trust::clusters,
        trust::cluster_chain,
        trust::revoke,
        trust::reset,
        trust::reset_request,
        trust::introduce,
        trust::introduce_request,
        trust::introduced_request,
        trust::sync,
        admin::pull_peers,
        admin::enroll,
        admin::renew,
        admin::add_node,
        admin::list_nodes,
        admin::show_node,
        admin::revoke,
        admin::rekey_self,
        admin::rekey_node,
        admin::order_rekey,
        admin::list_admins,
        admin::revoke_admin,
        credentials::revoke_node_credentials,
        credentials::revoke_admin_credentials,
        credentials::reenroll,
        credentials::set_suite,
        credentials::set_min_epoch,
        credentials::extend,
        policy::show,
        policy::apply,
        policy::check,
        audit::page,
        audit::recover,
        replicas::add,
        replicas::remove,
        replicas::list,
        ops::sign,
        ops::batch_sign,
        ops::verify,
        ops::batch_verify,
        ops::encrypt,
        ops::batch_encrypt,
        ops::decrypt,
        ops::batch_decrypt,
        ops::seal,
        ops::batch_seal,
        ops::unseal,
        ops::batch_unseal,
        ops::rewrap,
        ops::batch_rewrap,
        ops::datakey,
        ops::batch_datakey,
        transit::login,
        transit::keys::list,
        transit::keys::key,
        transit::keys::rotate,
        transit::keys::config,
        transit::crypto::sign,
        transit::crypto::verify,
        transit::crypto::encrypt,
        transit::crypto::decrypt,
        transit::crypto::rewrap,
        transit::crypto::datakey,
        transit::crypto::hmac,
        transit::tools::random,
        transit::tools::hash,
    )
)]
pub struct ApiDoc;

/// Fuzzing: decodes `data` as every request body keyd accepts, in JSON and in CBOR, the
/// way the handlers do. Whatever the bytes, this returns (an error or a value), never
/// panics.
#[doc(hidden)]
pub fn fuzz_bodies(data: &[u8]) {
    for format in [Format::Json, Format::Cbor] {
        let _ = format.decode::<crate::wire::SignRequest>(data);
        let _ = format.decode::<crate::wire::Batch<crate::wire::SignRequest>>(data);
        let _ = format.decode::<crate::wire::VerifyRequest>(data);
        let _ = format.decode::<crate::wire::EncryptRequest>(data);
        let _ = format.decode::<crate::wire::Batch<crate::wire::EncryptRequest>>(data);
        let _ = format.decode::<crate::wire::EnvelopeRequest>(data);
        let _ = format.decode::<crate::wire::SealRequest>(data);
        let _ = format.decode::<crate::wire::DatakeyRequest>(data);
        let _ = format.decode::<crate::wire::EnrollRequest>(data);
        let _ = format.decode::<crate::wire::RenewRequest>(data);
        let _ = format.decode::<crate::wire::AddNode>(data);
        let _ = format.decode::<crate::wire::RevokeRequest>(data);
        let _ = format.decode::<crate::wire::ReenrollRequest>(data);
        let _ = format.decode::<crate::wire::SuiteRequest>(data);
        let _ = format.decode::<crate::wire::PolicyApply>(data);
        let _ = format.decode::<crate::wire::MinEpochRequest>(data);
        let _ = format.decode::<crate::wire::ExtendRequest>(data);
        let _ = format.decode::<crate::wire::RecoverRequest>(data);
        let _ = format.decode::<crate::wire::ReplicaRequest>(data);
        let _ = format.decode::<crate::wire::PolicyCheck>(data);
    }
}

/// Routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request("bad_query", e.to_string()).into()),
    )
    .app_data(web::PayloadConfig::default().limit(MAX_BODY))
    .route("/healthz", web::get().to(healthz))
    .route("/readyz", web::get().to(readyz))
    .route("/metrics", web::get().to(prometheus))
    // The transit facade in its own scope: its requests skip the patterns of the rest
    // of /v1, and the rest pays one prefix check for it.
    .service(web::scope("/v1/transit").configure(transit::routes))
    .service(
        // Node operations first: routing (and the route lookups of the middleware) try
        // routes in order, and these static paths match without the patterns of the
        // admin routes below.
        web::scope("/v1")
            .route("/sign", web::post().to(ops::sign))
            .route("/verify", web::post().to(ops::verify))
            .route("/encrypt", web::post().to(ops::encrypt))
            .route("/decrypt", web::post().to(ops::decrypt))
            .route("/seal", web::post().to(ops::seal))
            .route("/unseal", web::post().to(ops::unseal))
            .route("/rewrap", web::post().to(ops::rewrap))
            .route("/datakey", web::post().to(ops::datakey))
            .route("/batch/sign", web::post().to(ops::batch_sign))
            .route("/batch/verify", web::post().to(ops::batch_verify))
            .route("/batch/encrypt", web::post().to(ops::batch_encrypt))
            .route("/batch/decrypt", web::post().to(ops::batch_decrypt))
            .route("/batch/seal", web::post().to(ops::batch_seal))
            .route("/batch/unseal", web::post().to(ops::batch_unseal))
            .route("/batch/rewrap", web::post().to(ops::batch_rewrap))
            .route("/batch/datakey", web::post().to(ops::batch_datakey))
            .route("/openapi.json", web::get().to(openapi))
            .route("/ca", web::get().to(admin::ca))
            .route("/keys/{name}", web::get().to(keys::key))
            .route("/jwks.json", web::get().to(keys::jwks))
            .route("/chain", web::get().to(admin::chain))
            .route("/chain/root", web::post().to(admin::push_root))
            .route("/chain/succession", web::get().to(admin::succession))
            .route("/chain/pull", web::post().to(admin::pull_peers))
            .service(
                web::resource("/enroll")
                    .app_data(web::PayloadConfig::default().limit(SMALL_BODY))
                    .route(web::post().to(admin::enroll)),
            )
            .service(
                web::resource("/renew")
                    .app_data(web::PayloadConfig::default().limit(SMALL_BODY))
                    .route(web::post().to(admin::renew)),
            )
            .route("/nodes", web::post().to(admin::add_node))
            .route("/nodes", web::get().to(admin::list_nodes))
            .route("/nodes/{name}", web::get().to(admin::show_node))
            .route("/nodes/{name}/revoke", web::post().to(admin::revoke))
            .route("/nodes/{name}/rekey", web::post().to(admin::rekey_node))
            .route(
                "/nodes/{name}/rekey-order",
                web::post().to(admin::order_rekey),
            )
            .route("/rekey", web::post().to(admin::rekey_self))
            .route("/admins", web::get().to(admin::list_admins))
            .route("/admins/{name}/revoke", web::post().to(admin::revoke_admin))
            .route(
                "/admins/{name}/credentials/revoke",
                web::post().to(credentials::revoke_admin_credentials),
            )
            .route(
                "/nodes/{name}/credentials/revoke",
                web::post().to(credentials::revoke_node_credentials),
            )
            .route(
                "/nodes/{name}/reenroll",
                web::post().to(credentials::reenroll),
            )
            .route(
                "/nodes/{name}/suite",
                web::post().to(credentials::set_suite),
            )
            .route(
                "/nodes/{name}/min-epoch",
                web::post().to(credentials::set_min_epoch),
            )
            .route("/nodes/{name}/extend", web::post().to(credentials::extend))
            .route("/policy", web::get().to(policy::show))
            .route("/policy", web::post().to(policy::apply))
            .route("/policy/check", web::post().to(policy::check))
            .route("/audit", web::get().to(audit::page))
            .route("/admin/recover", web::post().to(audit::recover))
            .route("/admin/replicas", web::post().to(replicas::add))
            .route("/admin/replicas", web::get().to(replicas::list))
            .route(
                "/admin/replicas/{name}/remove",
                web::post().to(replicas::remove),
            )
            .route("/trust/invite", web::post().to(trust::invite))
            .route("/trust/accept", web::post().to(trust::accept))
            .route("/trust/sessions/{id}", web::get().to(trust::session))
            .route(
                "/trust/sessions/{id}/consent",
                web::post().to(trust::consent),
            )
            .route(
                "/trust/sessions/{id}/confirm",
                web::post().to(trust::confirm),
            )
            .route("/trust/rendezvous", web::post().to(trust::rendezvous))
            .route("/trust/clusters", web::get().to(trust::clusters))
            .route(
                "/trust/clusters/{root}/chain",
                web::get().to(trust::cluster_chain),
            )
            .route(
                "/trust/clusters/{root}/revoke",
                web::post().to(trust::revoke),
            )
            .route("/trust/clusters/{root}/reset", web::post().to(trust::reset))
            .route("/trust/reset", web::post().to(trust::reset_request))
            .route(
                "/trust/clusters/{root}/introduce",
                web::post().to(trust::introduce),
            )
            .route("/trust/introduce", web::post().to(trust::introduce_request))
            .route(
                "/trust/introduced",
                web::post().to(trust::introduced_request),
            )
            .route("/trust/sync", web::post().to(trust::sync))
            .route("/auth/cert/login", web::route().to(transit::login)),
    )
    .default_service(web::to(unrouted));
}

/// No route: a known path with the wrong method (405), or an unknown path (404).
async fn unrouted(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(if req.match_pattern().is_some() {
        ApiError::with_status(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} does not take {}; see /v1/openapi.json",
                req.path(),
                req.method()
            ),
        )
    } else {
        crate::service::ServiceError::NotFound("no such endpoint".into()).into()
    })
}

/// Liveness and readiness: keyd answers once its branch is unsealed and its chain loaded.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: keyd's store answers and its chain is loaded (keyd listens only once its
/// branch is unsealed); 503 `not_ready` when the store does not answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ready\", \"chain_entries\": N}`"),
        (status = 503, body = ErrorBody, description = "`not_ready`")))]
async fn readyz(svc: web::Data<crate::service::Service>) -> Result<HttpResponse, ApiError> {
    let entries = web::block(move || svc.ready())
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| match e {
            e @ ServiceError::BranchRevoked { .. } => ApiError::from(e),
            e => {
                tracing::error!(error = %e, "not ready");
                ApiError::with_status(
                    actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "the store does not answer",
                )
            }
        })?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready", "chain_entries": entries})))
}

/// Prometheus metrics: requests and latency by route and status, errors by code,
/// operations by kind.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text")))]
async fn prometheus(svc: web::Data<Service>) -> HttpResponse {
    let head_age = svc
        .own_head()
        .map(|h| crate::service::unix_now().saturating_sub(h.signed_at));
    metrics().chain(&svc.log_lengths(), head_age);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics().render())
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1")))]
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

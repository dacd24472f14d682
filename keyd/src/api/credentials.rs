//! Credential endpoints (admin): end every certificate of a node or an admin at once,
//! and re-enroll a node (a new one-time token; its enrollment starts a new credential
//! generation).

use super::admin::committed;
use super::body::{Body, Format};
use super::error::ErrorBody;
use super::{ApiError, principal};
use crate::identity::Principal;
use crate::service::{Service, ServiceError};
use crate::wire::{
    CredentialsRevoked, ExtendRequest, Extended, MinEpochRequest, MinEpochSet, ReenrollRequest,
    Reenrollment, RevokeRequest, SuiteRequest, SuiteSet,
};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

/// Ends every client certificate of a node (name or path below this keyd's branch) at
/// once, without touching its keys (admin). It needs re-enrollment to get one again.
#[utoipa::path(post, path = "/v1/nodes/{name}/credentials/revoke", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    request_body(content = RevokeRequest),
    responses((status = 200, body = CredentialsRevoked), (status = "4XX", body = ErrorBody)))]
pub async fn revoke_node_credentials(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    revoke(req, svc, body, move |s| s.node_principal(&name)).await
}

/// Ends every client certificate of an admin at once (admin; not one's own). A new one
/// comes from `keyd admin issue`.
#[utoipa::path(post, path = "/v1/admins/{name}/credentials/revoke", tag = "admin",
    params(("name" = String, Path, description = "admin name")),
    request_body(content = RevokeRequest),
    responses((status = 200, body = CredentialsRevoked), (status = "4XX", body = ErrorBody)))]
pub async fn revoke_admin_credentials(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    revoke(req, svc, body, move |s| s.admin_principal(&name)).await
}

/// Revokes the credentials of the principal `target` names, for the caller.
async fn revoke(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<RevokeRequest>,
    target: impl FnOnce(&Service) -> Result<Principal, ServiceError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, reason) = (svc.clone(), body.0.reason);
    let (principal, credentials) = committed("revoke_credentials", move || {
        let target = target(&s)?;
        let g = s.revoke_credentials(&who, &target, &reason)?;
        Ok((target.uri(), g))
    })
    .await?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &CredentialsRevoked {
            principal,
            credentials,
        },
    )
}

/// A new one-time enrollment token for an existing, valid node (admin): enrolling with
/// it starts a new credential generation and ends every earlier certificate of the node.
#[utoipa::path(post, path = "/v1/nodes/{name}/reenroll", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    request_body(content = ReenrollRequest),
    responses((status = 201, body = Reenrollment), (status = "4XX", body = ErrorBody)))]
pub async fn reenroll(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<ReenrollRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, mode) = (svc.clone(), body.0.mode);
    let (path, token, expires_at) =
        committed("reenroll", move || s.reenroll(&who, &name, mode)).await?;
    Format::wanted(&req).reply(
        StatusCode::CREATED,
        &Reenrollment {
            path: path.to_string(),
            token: token.as_str().to_owned(),
            expires_at,
            mode,
        },
    )
}

/// Sets which envelope suites a node accepts (an admin, or the node itself): with
/// `x-wing`, keyd refuses to encrypt to it with X25519 and to decrypt an X25519 envelope
/// for it (`suite_not_allowed`), so no sender can downgrade it.
#[utoipa::path(post, path = "/v1/nodes/{name}/suite", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    request_body(content = SuiteRequest),
    responses((status = 200, body = SuiteSet), (status = "4XX", body = ErrorBody)))]
pub async fn set_suite(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<SuiteRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, suite) = (svc.clone(), body.0.suite);
    let path = committed("set_suite", move || s.set_suite_policy(&who, &name, suite)).await?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &SuiteSet {
            path: path.to_string(),
            suite,
        },
    )
}

/// Sets a node's minimum decryption epoch (an admin, or the node itself raising its
/// own): envelopes of older epochs no longer open (`epoch_retired`), without those keys
/// being revoked.
#[utoipa::path(post, path = "/v1/nodes/{name}/min-epoch", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    request_body(content = MinEpochRequest),
    responses((status = 200, body = MinEpochSet), (status = "4XX", body = ErrorBody)))]
pub async fn set_min_epoch(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<MinEpochRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, epoch) = (svc.clone(), body.0.epoch);
    let (path, previous, now) =
        committed("set_min_epoch", move || s.set_min_epoch(&who, &name, epoch)).await?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &MinEpochSet {
            path: path.to_string(),
            min_decrypt_epoch: now,
            previous,
        },
    )
}

/// Renews a node's validity (admin): its parent signs an `extend` in the branch log.
#[utoipa::path(post, path = "/v1/nodes/{name}/extend", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    request_body(content = ExtendRequest),
    responses((status = 200, body = Extended), (status = "4XX", body = ErrorBody)))]
pub async fn extend(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<ExtendRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, seconds) = (svc.clone(), body.0.valid_seconds);
    let (path, not_after) =
        committed("extend", move || s.extend_node(&who, &name, seconds)).await?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &Extended {
            path: path.to_string(),
            not_after,
        },
    )
}

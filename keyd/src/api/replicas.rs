//! The replicas of this keyd's group (etcd): approve one by its install key, list them,
//! remove one — each recorded in the branch log (`admin.replica`; audited).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::admin::committed;
use super::body::{Body, Bytes, Format};
use super::error::ErrorBody;
use super::{ApiError, principal};
use crate::service::Service;
use crate::wire::{ReplicaInfo, ReplicaRequest, ReplicaResponse};

/// Approves a new replica of this keyd's group (etcd): `replica add` in the branch log,
/// then the branch sealed to its install key, as a bundle for its `keyd import`
/// (admin, `admin.replica`; audited).
#[utoipa::path(post, path = "/v1/admin/replicas", tag = "admin",
    request_body(content = ReplicaRequest),
    responses((status = 200, body = ReplicaResponse), (status = "4XX", body = ErrorBody)))]
pub async fn add(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<ReplicaRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let r = body.0;
    let s = svc.clone();
    let name = r.name.clone();
    let bundle = committed("add_replica", move || {
        s.add_replica(&who, &r.name, &r.install_key)
    })
    .await?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &ReplicaResponse {
            name,
            bundle: Bytes(zeroize::Zeroizing::new(bundle)),
        },
    )
}

/// Removes a replica of this keyd's group: `replica remove` in the branch log; the
/// replica stops serving when it sees it (admin, `admin.replica`; audited).
#[utoipa::path(post, path = "/v1/admin/replicas/{name}/remove", tag = "admin",
    params(("name" = String, Path, description = "the replica")),
    responses((status = 200, body = ReplicaInfo), (status = "4XX", body = ErrorBody)))]
pub async fn remove(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let s = svc.clone();
    let removed = committed("remove_replica", move || s.remove_replica(&who, &name)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &removed)
}

/// The replicas the branch log records (admin, `admin.replica`).
#[utoipa::path(get, path = "/v1/admin/replicas", tag = "admin",
    responses((status = 200, body = Vec<ReplicaInfo>), (status = "4XX", body = ErrorBody)))]
pub async fn list(req: HttpRequest, svc: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    Format::wanted(&req).reply(StatusCode::OK, &svc.list_replicas(&who)?)
}

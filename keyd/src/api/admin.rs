//! Cluster endpoints: the CA certificate, the chain, enrollment and certificate
//! renewal, and the admin's node operations.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::body::{Body, Bytes, Format};
use super::error::ErrorBody;
use super::{ApiError, metrics, principal, principal_and_generation};
use crate::service::{Service, ServiceError};
use crate::wire::{
    AddNode, AdminList, AdminRevocation, EnrollRequest, EnrollResponse, NodeAdded, NodeDetail,
    NodeInfo, NodeList, PullRequested, Rekeyed, RenewRequest, RenewResponse, RevokeRequest,
    Revoked,
};

/// Runs a call that commits to disk (or issues a certificate) off the async workers,
/// and counts it in `keyd_operations_total` as `op`.
pub(super) async fn committed<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    let result = web::block(f).await.map_err(|_| ApiError::internal())?;
    let ok = u64::from(result.is_ok());
    metrics().operations(op, ok, 1 - ok);
    Ok(result?)
}

/// The CA certificate (PEM) that clients trust for keyd's server certificate.
#[utoipa::path(get, path = "/v1/ca", tag = "cluster",
    responses((status = 200, description = "PEM certificate", content_type = "application/x-pem-file", body = String)))]
pub async fn ca(svc: web::Data<Service>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(svc.ca().cert_pem().to_owned())
}

/// Most entries in one answer of `GET /v1/chain`.
pub const CHAIN_PAGE: usize = 10_000;
/// The response header giving the number of entries keyd holds over all logs.
pub const CHAIN_LENGTH: &str = crate::chain::LENGTH_HEADER;
/// The response header saying whether the answer reached every log's head (`true`) or
/// is a page cut short (`false`: pull again from the positions now held).
pub const CHAIN_COMPLETE: &str = crate::chain::COMPLETE_HEADER;

/// Which part of the chain.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChainQuery {
    /// The positions held, per log: `m:5,2:10` (the root log from seq 5, the log of
    /// `m/2'` from seq 10); logs not named are sent from seq 0. Default: everything.
    #[serde(default)]
    since: String,
    /// At most this many entries (1 to 10,000; default 10,000).
    #[serde(default)]
    limit: Option<usize>,
}

/// Every log keyd holds (the root log, its own branch log, the logs mirrored from its
/// peers), from the positions the caller holds, as CBOR chain records: per log its new
/// entries and, when the answer reaches the log's end, the log's signed head (a head is
/// always over the last entry of its log; a page cut short by `limit` carries no head
/// for the log it cuts). `x-keyd-chain-complete` says whether every log reached its
/// head; pull again from the positions held until it is `true`. Public: the chain is
/// public, verify it with `keyctl chain verify` or `keyd::chain`.
#[utoipa::path(get, path = "/v1/chain", tag = "cluster", params(ChainQuery),
    responses((status = 200, description = "CBOR chain records; headers x-keyd-chain-complete, x-keyd-chain-length", content_type = "application/cbor", body = Vec<u8>),
        (status = "4XX", body = ErrorBody)))]
pub async fn chain(
    svc: web::Data<Service>,
    q: web::Query<ChainQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(CHAIN_PAGE);
    if limit == 0 || limit > CHAIN_PAGE {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit: {limit}; 1 to {CHAIN_PAGE}"),
        ));
    }
    let positions = crate::chain::parse_positions(&q.since)
        .map_err(|m| ApiError::bad_request("bad_query", format!("since: {m}")))?;
    let (page, length, cached) = web::block(move || svc.chain_page(&positions, limit))
        .await
        .map_err(|_| ApiError::internal())??;
    super::metrics().chain_page(cached);
    Ok(HttpResponse::Ok()
        .content_type("application/cbor")
        .insert_header((CHAIN_LENGTH, length.to_string()))
        .insert_header((CHAIN_COMPLETE, page.complete.to_string()))
        .body(page.bytes.clone()))
}

/// The previous root's chain (its root log ending in the `succession` to the current
/// root, and this keyd's branch log under it), kept after a root rekey until the old
/// root is retired: how a holder of the old chain checks that the root it sees now is
/// the one its old root named. Public, like the chain. 404 `no_succession` when this
/// keyd keeps no previous root.
#[utoipa::path(get, path = "/v1/chain/succession", tag = "cluster",
    responses((status = 200, description = "CBOR chain records of the previous root's chain", content_type = "application/cbor", body = Vec<u8>),
        (status = 404, body = ErrorBody)))]
pub async fn succession(svc: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let bytes = svc.retired_chain().ok_or_else(|| {
        ApiError::with_status(
            StatusCode::NOT_FOUND,
            "no_succession",
            "this keyd keeps no chain of a previous root",
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/cbor")
        .body(bytes))
}

/// Takes a root-log extension from a ceremony (admin only): CBOR chain records of the
/// root log `m` ending with its root-signed head, as `keyctl ceremony` writes them.
/// Verified against the root log held and stored in one transaction, or refused naming
/// the entry; nothing is stored on a refusal.
#[utoipa::path(post, path = "/v1/chain/root", tag = "cluster",
    request_body(content = Vec<u8>, content_type = "application/cbor"),
    responses((status = 200, body = crate::service::Pushed), (status = "4XX", body = ErrorBody)))]
pub async fn push_root(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let pushed = committed("push", move || svc.push_root(&who, &body)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &pushed)
}

/// Asks keyd to pull its peers' logs now instead of at the next interval (admin).
#[utoipa::path(post, path = "/v1/chain/pull", tag = "cluster",
    responses((status = 202, body = PullRequested), (status = "4XX", body = ErrorBody)))]
pub async fn pull_peers(
    req: HttpRequest,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let peers = svc.pull_peers(&who)?;
    Format::wanted(&req).reply(StatusCode::ACCEPTED, &PullRequested { peers })
}

/// Redeems an enrollment token (once) for a client certificate.
#[utoipa::path(post, path = "/v1/enroll", tag = "cluster",
    request_body(content = EnrollRequest),
    responses((status = 200, body = EnrollResponse), (status = "4XX", body = ErrorBody)))]
pub async fn enroll(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<EnrollRequest>,
) -> Result<HttpResponse, ApiError> {
    let r = body.0;
    let s = svc.clone();
    let (enrolled, chain) = committed("enroll", move || {
        let enrolled = s.enroll(&r.token, &r.csr, r.install_key.as_deref())?;
        Ok((enrolled, s.own_logs()?))
    })
    .await?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &EnrollResponse {
            certificate: enrolled.certificate,
            ca: svc.ca().cert_pem().to_owned(),
            path: enrolled.path.to_string(),
            mode: enrolled.mode,
            chain: Bytes::new(chain),
            bundle: enrolled.bundle.map(Bytes::new),
        },
    )
}

/// A fresh short-lived client certificate for the caller (authenticated by its current,
/// still valid certificate; a revoked node gets none).
#[utoipa::path(post, path = "/v1/renew", tag = "cluster",
    request_body(content = RenewRequest),
    responses((status = 200, body = RenewResponse), (status = "4XX", body = ErrorBody)))]
pub async fn renew(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<RenewRequest>,
) -> Result<HttpResponse, ApiError> {
    let (who, generation) = principal_and_generation(&req, &svc)?;
    let csr = body.0.csr;
    let s = svc.clone();
    let certificate = committed("renew", move || s.renew(&who, generation, &csr)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &RenewResponse { certificate })
}

/// Creates a node (certified in the chain) and its one-time enrollment token (admin).
#[utoipa::path(post, path = "/v1/nodes", tag = "admin",
    request_body(content = AddNode),
    responses((status = 201, body = NodeAdded), (status = "4XX", body = ErrorBody)))]
pub async fn add_node(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<AddNode>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let AddNode {
        name,
        parent,
        mode,
        valid_seconds,
    } = body.0;
    let (s, n) = (svc.clone(), name.clone());
    let (path, token, expires_at) = committed("add_node", move || {
        s.add_node(&who, &n, parent.as_deref(), mode, valid_seconds)
    })
    .await?;
    Format::wanted(&req).reply(
        StatusCode::CREATED,
        &NodeAdded {
            name,
            path: path.to_string(),
            token: token.as_str().to_owned(),
            expires_at,
            mode,
        },
    )
}

/// Lists the nodes with their status (admin).
#[utoipa::path(get, path = "/v1/nodes", tag = "admin",
    responses((status = 200, body = NodeList), (status = "4XX", body = ErrorBody)))]
pub async fn list_nodes(
    req: HttpRequest,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let nodes = svc
        .list_nodes(&who)?
        .into_iter()
        .map(|(name, path, status)| NodeInfo { name, path, status })
        .collect();
    Format::wanted(&req).reply(StatusCode::OK, &NodeList { nodes })
}

/// One node in detail: its keys, epochs and children (admin).
#[utoipa::path(get, path = "/v1/nodes/{name}", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    responses((status = 200, body = NodeDetail), (status = "4XX", body = ErrorBody)))]
pub async fn show_node(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let node = svc.show_node(&who, &name)?;
    Format::wanted(&req).reply(StatusCode::OK, &node)
}

/// Revokes a node and, with it, every descendant (admin).
#[utoipa::path(post, path = "/v1/nodes/{name}/revoke", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    request_body(content = RevokeRequest),
    responses((status = 200, body = Revoked), (status = "4XX", body = ErrorBody)))]
pub async fn revoke(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, reason) = (svc.clone(), body.0.reason);
    let cut = committed("revoke", move || s.revoke(&who, &name, &reason)).await?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &Revoked {
            revoked: cut.iter().map(|p| p.to_string()).collect(),
        },
    )
}

/// Moves the caller (a node) to its next epoch.
#[utoipa::path(post, path = "/v1/rekey", tag = "node operations",
    responses((status = 200, body = Rekeyed), (status = "4XX", body = ErrorBody)))]
pub async fn rekey_self(
    req: HttpRequest,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let s = svc.clone();
    let key = committed("rekey", move || s.rekey(&who, None))
        .await?
        .to_string();
    Format::wanted(&req).reply(StatusCode::OK, &Rekeyed { key })
}

/// Moves a node to its next epoch (admin).
#[utoipa::path(post, path = "/v1/nodes/{name}/rekey", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    responses((status = 200, body = Rekeyed), (status = "4XX", body = ErrorBody)))]
pub async fn rekey_node(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let s = svc.clone();
    let key = committed("rekey", move || s.rekey(&who, Some(&name)))
        .await?
        .to_string();
    Format::wanted(&req).reply(StatusCode::OK, &Rekeyed { key })
}

/// The revoked admin names (admin).
#[utoipa::path(get, path = "/v1/admins", tag = "admin",
    responses((status = 200, body = AdminList), (status = "4XX", body = ErrorBody)))]
pub async fn list_admins(
    req: HttpRequest,
    svc: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let revoked = svc.revoked_admins(&who)?;
    Format::wanted(&req).reply(StatusCode::OK, &AdminList { revoked })
}

/// Revokes every credential naming an admin, at once (admin; not its own).
#[utoipa::path(post, path = "/v1/admins/{name}/revoke", tag = "admin",
    params(("name" = String, Path, description = "admin name")),
    request_body(content = RevokeRequest),
    responses((status = 200, body = AdminRevocation), (status = "4XX", body = ErrorBody)))]
pub async fn revoke_admin(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, reason) = (svc.clone(), body.0.reason);
    let revoked = committed("revoke_admin", move || s.revoke_admin(&who, &name, &reason)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &revoked)
}

/// Orders a node to rekey (admin): a `rekey_order` in the branch log, for a node that
/// keeps its own keys to act on (its keyctl does, on its next chain fetch).
#[utoipa::path(post, path = "/v1/nodes/{name}/rekey-order", tag = "admin",
    params(("name" = String, Path, description = "node name or path")),
    request_body(content = RevokeRequest, description = "`reason`: why (recorded in the chain)"),
    responses((status = 200, body = Rekeyed), (status = "4XX", body = ErrorBody)))]
pub async fn order_rekey(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: Body<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, reason) = (svc.clone(), body.0.reason);
    let node = committed("rekey_order", move || s.order_rekey(&who, &name, &reason))
        .await?
        .to_string();
    Format::wanted(&req).reply(StatusCode::OK, &Rekeyed { key: node })
}

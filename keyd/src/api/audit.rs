//! The audit log, page by page (`audit.read`), and ancestor decryption (always
//! audited).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::admin::committed;
use super::body::{Body, Bytes, Format};
use super::error::ErrorBody;
use super::{ApiError, principal};
use crate::service::Service;
use crate::wire::{AuditPage, RecoverRequest, RecoverResponse};

/// Most records in one page.
pub const MAX_PAGE: usize = 10_000;

/// Which records.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Records after this seq (0: from the first).
    #[serde(default)]
    since: u64,
    /// At most this many (default and most: 10,000).
    #[serde(default)]
    limit: Option<usize>,
}

/// Audit records after `since` with the signed heads among them (`audit.read`).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = "4XX", body = ErrorBody)))]
pub async fn page(
    req: HttpRequest,
    svc: web::Data<Service>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let since = query.since;
    let s = svc.clone();
    let (records, heads, last) = web::block(move || s.audit_page(&who, since, limit))
        .await
        .map_err(|_| ApiError::internal())??;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &AuditPage {
            records,
            heads,
            last,
        },
    )
}

/// Opens an envelope of any node below the branch as its ancestor (admin,
/// `admin.recover`; recorded in the audit log).
#[utoipa::path(post, path = "/v1/admin/recover", tag = "admin",
    request_body(content = RecoverRequest),
    responses((status = 200, body = RecoverResponse), (status = "4XX", body = ErrorBody)))]
pub async fn recover(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<RecoverRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let r = body.0;
    let envelope = r.envelope.bytes("envelope")?;
    let context = match &r.context {
        Some(c) => c.bytes("context")?,
        None => zeroize::Zeroizing::new(Vec::new()),
    };
    let s = svc.clone();
    let opened = committed("recover", move || s.recover(&who, &envelope, &context)).await?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &RecoverResponse {
            kind: opened.kind.to_owned(),
            key: opened.key.to_string(),
            sender: opened.sender.map(|s| s.to_string()),
            plaintext: Bytes(opened.plaintext),
        },
    )
}

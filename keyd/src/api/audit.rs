//! The audit log, page by page (`audit.read`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::body::Format;
use super::error::ErrorBody;
use super::{ApiError, principal};
use crate::service::Service;
use crate::wire::AuditPage;

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

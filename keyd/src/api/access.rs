//! Per-request observation: a request id (echoed in `x-request-id` and carried by every
//! log line of the request), the access log, and the request metrics.
//!
//! The access log names the method, the matched route (never the query or the body),
//! the status and the time taken; nothing a client sent is logged.
//!
//! A request without a client certificate to a route that needs one is refused here
//! (401 `unauthenticated`; the transit facade's 403 or 400, in its shape), before its
//! body is read or decoded.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use super::{PeerCertificate, metrics};
use crate::service::ServiceError;

/// Routes anyone may call, without a client certificate.
const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/openapi.json",
    "/v1/ca",
    "/v1/keys/{name}",
    "/v1/jwks.json",
    "/v1/chain",
    "/v1/chain/succession",
    "/v1/enroll",
    "/v1/trust/rendezvous",
    "/v1/trust/reset",
    "/v1/trust/introduce",
    "/v1/trust/introduced",
];

/// The response header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// A process-unique request id: a random per-process prefix and a counter.
fn request_id() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        u32::from_be_bytes(b)
    });
    format!("{prefix:08x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The middleware (`actix_web::middleware::from_fn(observe)`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let start = Instant::now();
    let pattern = req.match_pattern();
    let needs_certificate = pattern.as_deref().is_some_and(|p| !PUBLIC.contains(&p));
    let route = pattern.unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let id = request_id();
    let span = tracing::info_span!("request", id = %id);
    let presented = req.conn_data::<PeerCertificate>();
    let anonymous = presented.is_none();
    // The access log names who asked (the certificate's principal, as presented).
    let who = presented.map_or_else(|| "anonymous".to_owned(), |p| p.0.principal.uri());
    let over_limit = req.conn_data::<super::Slot>().is_some_and(|s| s.over);
    let mut res = if over_limit {
        let refused = super::ApiError::with_status(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "this address holds more open connections than max_connections_per_ip; close some (or reuse one) and retry",
        );
        let mut res = req.into_response(refused.error_response());
        res.response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        res.map_into_right_body()
    } else if anonymous && needs_certificate {
        // The transit facade refuses in transit's shape.
        let refused = super::transit::without_certificate(&route).unwrap_or_else(|| {
            super::ApiError::from(ServiceError::Unauthenticated).error_response()
        });
        req.into_response(refused).map_into_right_body()
    } else {
        next.call(req)
            .instrument(span.clone())
            .await?
            .map_into_left_body()
    };
    let took = start.elapsed();
    let status = res.status().as_u16();
    metrics().request(&route, status, took);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), v);
    }
    span.in_scope(|| {
        tracing::info!(target: "keyd::access", %method, %route, status, principal = %who,
            micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    });
    Ok(res)
}

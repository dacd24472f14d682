//! Per-request observation: a request id (echoed in `x-request-id` and carried by every
//! log line of the request), the access log, and the request metrics.
//!
//! The access log names the method, the matched route (never the query or the body),
//! the status and the time taken; nothing a client sent is logged.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use super::metrics;

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
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let id = request_id();
    let span = tracing::info_span!("request", id = %id);
    let mut res = next.call(req).instrument(span.clone()).await?;
    let took = start.elapsed();
    let status = res.status().as_u16();
    metrics().request(&route, status, took);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), v);
    }
    span.in_scope(|| {
        tracing::info!(target: "keyd::access", %method, %route, status,
            micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    });
    Ok(res)
}

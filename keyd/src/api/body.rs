//! Request and response bodies: JSON by default, CBOR on request.
//!
//! A request names its format with `Content-Type` (`application/json` or
//! `application/cbor`); a response is CBOR when `Accept` names `application/cbor`, JSON
//! otherwise. Byte fields are base64 text in JSON and byte strings in CBOR. Errors are
//! always JSON.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiError, MAX_BODY};
pub use crate::wire::{Blob, Bytes};

/// The JSON media type.
pub const JSON: &str = "application/json";
/// The CBOR media type.
pub const CBOR: &str = "application/cbor";

/// A body format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/cbor`.
    Cbor,
}

impl Format {
    /// The response format a request asks for with `Accept`.
    pub fn wanted(req: &HttpRequest) -> Format {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept
            .split(',')
            .any(|m| m.split(';').next().is_some_and(|m| m.trim() == CBOR))
        {
            Format::Cbor
        } else {
            Format::Json
        }
    }

    /// The format of a request body, from its `Content-Type`.
    fn of_body(req: &HttpRequest) -> Result<Format, ApiError> {
        match req.mime_type() {
            Ok(Some(m)) if m.essence_str() == JSON => Ok(Format::Json),
            Ok(Some(m)) if m.essence_str() == CBOR => Ok(Format::Cbor),
            _ => Err(ApiError::with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("send Content-Type: {JSON} or {CBOR}"),
            )),
        }
    }

    /// A response with `value` in this format. The body is encoded into a buffer that
    /// is zeroized when it grows and once the response has been written (responses
    /// carry plaintexts and data keys).
    pub fn reply<T: Serialize>(
        self,
        status: StatusCode,
        value: &T,
    ) -> Result<HttpResponse, ApiError> {
        let mut out = ZeroizingBuf::default();
        let content_type = match self {
            Format::Json => {
                serde_json::to_writer(&mut out, value).map_err(|_| ApiError::internal())?;
                JSON
            }
            Format::Cbor => {
                ciborium::into_writer(value, &mut out).map_err(|_| ApiError::internal())?;
                CBOR
            }
        };
        Ok(HttpResponse::build(status)
            .content_type(content_type)
            .body(web::Bytes::from_owner(out)))
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, ApiError> {
        match self {
            Format::Json => serde_json::from_slice(bytes)
                .map_err(|e| ApiError::bad_request("bad_json", format!("request body: {e}"))),
            Format::Cbor => {
                let mut rest = bytes;
                let value = ciborium::from_reader(&mut rest)
                    .map_err(|e| ApiError::bad_request("bad_cbor", format!("request body: {e}")))?;
                if !rest.is_empty() {
                    return Err(ApiError::bad_request(
                        "bad_cbor",
                        format!("request body: {} bytes after the value", rest.len()),
                    ));
                }
                Ok(value)
            }
        }
    }
}

/// A write buffer that never leaves a copy of what it held: when it grows, the old
/// allocation is zeroized before it is freed, and the whole buffer is zeroized on drop
/// (as a response body, once actix has written it).
#[derive(Default)]
pub struct ZeroizingBuf(Vec<u8>);

impl std::io::Write for ZeroizingBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let needed = self.0.len() + buf.len();
        if needed > self.0.capacity() {
            let mut grown = Vec::with_capacity(needed.max(self.0.capacity() * 2).max(256));
            grown.extend_from_slice(&self.0);
            zeroize::Zeroize::zeroize(&mut self.0);
            self.0 = grown;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsRef<[u8]> for ZeroizingBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ZeroizingBuf {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The body limit of the route `req` matched (for messages).
fn body_limit(req: &HttpRequest) -> usize {
    match req.match_pattern().as_deref() {
        Some("/v1/enroll" | "/v1/renew") => super::SMALL_BODY,
        _ => MAX_BODY,
    }
}

/// A request body in JSON or CBOR (extractor).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let format = Format::of_body(req);
        let limit = body_limit(req);
        let deadline = req
            .app_data::<web::Data<crate::service::Service>>()
            .map_or(std::time::Duration::from_secs(10), |s| {
                s.config().body_timeout
            });
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let format = format?;
            let bytes = actix_web::rt::time::timeout(deadline, bytes)
                .await
                .map_err(|_| {
                    ApiError::with_status(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        format!(
                            "the request body did not arrive within {} s",
                            deadline.as_secs_f32()
                        ),
                    )
                })?
                .map_err(|e| {
                    if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::with_status(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "too_large",
                            format!("the body exceeds {limit} bytes"),
                        )
                    } else {
                        ApiError::bad_request("bad_body", format!("request body: {e}"))
                    }
                })?;
            format.decode(&bytes).map(Body)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_zeroizing_buffer_keeps_what_is_written_across_growth() {
        let mut buf = ZeroizingBuf::default();
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let chunk = i.to_be_bytes();
            buf.write_all(&chunk).unwrap_or_default();
            want.extend_from_slice(&chunk);
        }
        assert_eq!(buf.as_ref(), want.as_slice());
        let body = web::Bytes::from_owner(buf);
        assert_eq!(&body[..], want.as_slice());
    }
}

//! The HTTP mapping of errors: a status and a stable code for every error, JSON
//! `{"error": {"code", "message"}}`; 5xx bodies say only "internal error".

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::envelope::EnvelopeError;
use crate::service::ServiceError;
use crate::store::StoreError;
pub use crate::wire::{BadBase64, ErrorBody, ErrorDetail};

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The policy rule that refused, for `forbidden` by policy.
    rule: Option<String>,
}

impl ApiError {
    /// A 500 that says nothing more.
    pub fn internal() -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error".to_owned(),
            rule: None,
        }
    }

    /// The error body, counted in the metrics (for batch items).
    pub fn counted_body(self) -> ErrorBody {
        super::metrics().error(self.code);
        ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                rule: self.rule,
            },
        }
    }

    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            rule: None,
        }
    }

    /// An error with an explicit status.
    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            rule: None,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<BadBase64> for ApiError {
    fn from(e: BadBase64) -> Self {
        ApiError::bad_request("bad_base64", e.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
            ServiceError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ServiceError::Revoked(_) => (StatusCode::UNAUTHORIZED, "key_not_valid"),
            ServiceError::PartyNotValid(_) => (StatusCode::BAD_REQUEST, "key_not_valid"),
            ServiceError::SuiteNotAllowed(_) => (StatusCode::BAD_REQUEST, "suite_not_allowed"),
            ServiceError::EpochRetired(_) => (StatusCode::BAD_REQUEST, "epoch_retired"),
            ServiceError::BranchBehind(_) => (StatusCode::SERVICE_UNAVAILABLE, "branch_behind"),
            ServiceError::Forbidden(_) | ServiceError::Denied { .. } => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServiceError::ReservedPrefix => (StatusCode::BAD_REQUEST, "reserved_prefix"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Chain(_) => (StatusCode::CONFLICT, "chain_refused"),
            ServiceError::ChainRecords(_) => (StatusCode::BAD_REQUEST, "bad_chain"),
            ServiceError::BranchRevoked { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "branch_revoked")
            }
            ServiceError::BadToken => (StatusCode::UNAUTHORIZED, "bad_token"),
            ServiceError::TrustRefused(_) => (StatusCode::CONFLICT, "trust_refused"),
            ServiceError::WrongMode(_) => (StatusCode::BAD_REQUEST, "wrong_mode"),
            ServiceError::Envelope(EnvelopeError::TooLarge(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            ServiceError::Envelope(_) => (StatusCode::BAD_REQUEST, "bad_envelope"),
            ServiceError::Store(StoreError::Conflict(_)) => {
                (StatusCode::CONFLICT, "replica_conflict")
            }
            ServiceError::Store(StoreError::Unavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            ServiceError::Store(StoreError::Corrupt { .. })
            | ServiceError::Store(_)
            | ServiceError::Identity(_)
            | ServiceError::Uncommitted(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let rule = match &e {
            ServiceError::Denied { rule, .. } => Some(rule.clone()),
            _ => None,
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "request failed");
            "internal error".to_owned()
        } else {
            e.to_string()
        };
        ApiError {
            status,
            code,
            message,
            rule,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        super::metrics().error(self.code);
        HttpResponse::build(self.status).json(ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message.clone(),
                rule: self.rule.clone(),
            },
        })
    }
}

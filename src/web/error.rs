//! [`WebError`]: every failure of the HTTP API, as one JSON shape.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;
use crate::store::StoreError;

/// What the HTTP API answers when it cannot do what was asked. Each
/// variant has its status and a stable `code`; the body is always
/// `{"error": {"code", "message", "field"?}}` ([`ErrorBody`]).
///
/// | variant | status | code |
/// | --- | --- | --- |
/// | `BadRequest` | 400 | as given (`invalid_json`, `invalid_field`, ...) |
/// | `Unauthorized` | 401 | `unauthorized` |
/// | `Forbidden` | 403 | `forbidden` |
/// | `NotFound` | 404 | as given (`job_not_found`, `schedule_not_found`, `route_not_found`) |
/// | `MethodNotAllowed` | 405 | `method_not_allowed` |
/// | `Conflict` | 409 | `wrong_state` |
/// | `PayloadTooLarge` | 413 | `payload_too_large` |
/// | `UnsupportedMediaType` | 415 | `unsupported_media_type` |
/// | `Unavailable` | 503 | `store_unavailable` or `shut_down` |
/// | `Internal` | 500 | `internal` (never for bad input) |
///
/// # Examples
///
/// ```
/// use actix_web::ResponseError;
/// use kessel::web::WebError;
///
/// let err = WebError::invalid_field("delay", "invalid duration `soon`");
/// assert_eq!(err.status_code(), 400);
/// assert_eq!(err.field(), Some("delay"));
/// assert_eq!(err.code(), "invalid_field");
///
/// let err = WebError::from(kessel::Error::UnknownJob(kessel::JobId::new()));
/// assert_eq!(err.status_code(), 404);
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The request cannot be read: malformed JSON, a field of the wrong
    /// type or value, an unknown field or query parameter.
    #[error("{message}")]
    BadRequest {
        /// What kind of problem (`invalid_json`, `invalid_field`, ...).
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
        /// The field at fault (`delay`, `jobs[2].task`), when one is.
        field: Option<String>,
    },
    /// No credentials, or credentials nobody knows.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials that do not allow this request (a read-only token on a
    /// mutation).
    #[error("{0}")]
    Forbidden(String),
    /// No such job, schedule or route.
    #[error("{message}")]
    NotFound {
        /// `job_not_found`, `schedule_not_found` or `route_not_found`.
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The job is in a state that does not allow the operation.
    #[error("{0}")]
    Conflict(String),
    /// The body is over the configured limit.
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not `application/json`.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The store cannot be reached, or the queue has shut down: worth
    /// retrying later.
    #[error("{message}")]
    Unavailable {
        /// `store_unavailable` or `shut_down`.
        code: &'static str,
        /// What failed.
        message: String,
    },
    /// Something that is not the client's fault and not worth retrying (a
    /// corrupt stored record).
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    /// A 400 naming the field at fault.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        WebError::BadRequest {
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// The error's stable code (`invalid_json`, `job_not_found`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            WebError::BadRequest { code, .. }
            | WebError::NotFound { code, .. }
            | WebError::Unavailable { code, .. } => code,
            WebError::Unauthorized(_) => "unauthorized",
            WebError::Forbidden(_) => "forbidden",
            WebError::MethodNotAllowed => "method_not_allowed",
            WebError::Conflict(_) => "wrong_state",
            WebError::PayloadTooLarge { .. } => "payload_too_large",
            WebError::UnsupportedMediaType => "unsupported_media_type",
            WebError::Internal(_) => "internal",
        }
    }

    /// The field at fault, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            WebError::BadRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The JSON body this error is answered with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field().map(str::to_owned),
            },
        }
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound { .. } => StatusCode::NOT_FOUND,
            WebError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let WebError::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"kessel\""));
        }
        response.json(self.body())
    }
}

impl From<Error> for WebError {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidDuration(e) => WebError::BadRequest {
                code: "invalid_field",
                message: e.to_string(),
                field: None,
            },
            Error::InvalidPayload { .. } => WebError::invalid_field("payload", err.to_string()),
            Error::InvalidInput { field, .. } => WebError::invalid_field(field, err.to_string()),
            Error::UnknownJob(id) => WebError::NotFound {
                code: "job_not_found",
                message: format!("no job with id {id}"),
            },
            Error::UnknownSchedule(name) => WebError::NotFound {
                code: "schedule_not_found",
                message: format!("no schedule called `{name}`"),
            },
            Error::WrongState { .. } => WebError::Conflict(err.to_string()),
            Error::Store(StoreError::Corrupt { .. }) => WebError::Internal(err.to_string()),
            Error::Store(_) => WebError::Unavailable {
                code: "store_unavailable",
                message: err.to_string(),
            },
            Error::ShutDown => WebError::Unavailable {
                code: "shut_down",
                message: err.to_string(),
            },
            // No endpoint enqueues in a caller's transaction.
            Error::NeedsPostgres { .. } => WebError::Internal(err.to_string()),
        }
    }
}

/// The body of every error response.
///
/// # Examples
///
/// ```
/// let body = kessel::web::WebError::invalid_field("delay", "bad").body();
/// assert_eq!(
///     serde_json::to_value(&body).unwrap(),
///     serde_json::json!({"error": {"code": "invalid_field", "message": "bad", "field": "delay"}})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, a message, and the field at fault.
///
/// # Examples
///
/// ```
/// let detail = kessel::web::ErrorDetail { code: "forbidden".into(), message: "read-only token".into(), field: None };
/// assert_eq!(serde_json::to_string(&detail).unwrap(), r#"{"code":"forbidden","message":"read-only token"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`invalid_json`, `job_not_found`).
    pub code: String,
    /// What is wrong, for a person.
    pub message: String,
    /// The field at fault (`delay`, `jobs[2].task`, `id`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The query string could not be read (an unknown parameter, a repeated
/// one).
pub(crate) fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    let message = err.to_string();
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field `"))
        .map(str::to_owned);
    WebError::BadRequest {
        code: "invalid_query",
        message,
        field,
    }
    .into()
}

/// A path segment could not be read.
pub(crate) fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    WebError::BadRequest {
        code: "invalid_path",
        message: err.to_string(),
        field: None,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_are_503_and_corrupt_records_500() {
        let unavailable = StoreError::Unavailable(std::sync::Arc::new(std::io::Error::other("x")));
        assert_eq!(
            WebError::from(Error::Store(unavailable)).status_code(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let corrupt = StoreError::Corrupt {
            id: "1".into(),
            reason: "x".into(),
        };
        assert_eq!(
            WebError::from(Error::Store(corrupt)).status_code(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            WebError::from(Error::ShutDown).status_code(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

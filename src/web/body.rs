//! The JSON body extractor: a size limit, and errors that name the field.
//!
//! actix-web's `Json` reports a bad field as serde_json's message without
//! its path; this one deserializes through `serde_path_to_error`, so a
//! wrong `jobs[2].delay` is named as such.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::WebError;
use super::state;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = state(req).map(|s| s.body_limit);
        let content_type = content_type_is_json(req);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let limit = limit?;
            if !content_type {
                return Err(WebError::UnsupportedMediaType.into());
            }
            if declared.is_some_and(|n| n > limit) {
                return Err(WebError::PayloadTooLarge { limit }.into());
            }
            let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| WebError::BadRequest {
                    code: "invalid_body",
                    message: format!("the body could not be read: {e}"),
                    field: None,
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(WebError::PayloadTooLarge { limit }.into());
                }
                body.extend_from_slice(&chunk);
            }
            decode(&body).map(JsonBody).map_err(Into::into)
        })
    }
}

/// A body with no content type is read as JSON (`curl -d` users forget
/// it less than they send the wrong one); any other type but JSON is not.
fn content_type_is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes `body`, naming the field at fault.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    de.end().map_err(|e| WebError::BadRequest {
        code: "invalid_json",
        message: format!("the body is not valid JSON: {e}"),
        field: None,
    })?;
    Ok(value)
}

fn path_error(err: serde_path_to_error::Error<serde_json::Error>) -> WebError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return WebError::BadRequest {
            code: "invalid_json",
            message: format!("the body is not valid JSON: {inner}"),
            field: None,
        };
    }
    let message = inner.to_string();
    // A missing field is reported at the object that lacks it: name the
    // field itself (an unknown field's path already ends with it).
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .filter(|f| !f.is_empty());
    let field = match named {
        Some(f) if path == "." => f.to_owned(),
        Some(f) => format!("{path}.{f}"),
        None if path == "." => {
            // The body as a whole has the wrong shape (an array, a number).
            return WebError::BadRequest {
                code: "invalid_body",
                message: format!("the body does not fit: {message}"),
                field: None,
            };
        }
        None => path,
    };
    WebError::invalid_field(field.clone(), format!("`{field}`: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        task: String,
        delay: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Batch {
        jobs: Vec<Item>,
    }

    #[test]
    fn errors_name_the_field_at_every_depth() {
        let err = decode::<Batch>(br#"{"jobs":[{"task":"a"},{"task":1}]}"#).unwrap_err();
        assert_eq!(err.field(), Some("jobs[1].task"));
        let err = decode::<Batch>(br#"{"jobs":[{"task":"a","dealy":"1s"}]}"#).unwrap_err();
        assert_eq!(err.field(), Some("jobs[0].dealy"));
        let err = decode::<Item>(br#"{}"#).unwrap_err();
        assert_eq!(err.field(), Some("task"));
        let err = decode::<Item>(br#"{"task":"a"} x"#).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        let err = decode::<Item>(br#"{"task":"#).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }
}

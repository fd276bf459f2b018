//! The HTTP client of a remote worker: one blocking ureq request at a
//! time, run on tokio's blocking pool so the worker's handlers go on.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// What went wrong between a remote worker and the API.
///
/// # Examples
///
/// ```
/// use kessel::remote::RemoteError;
/// let err = RemoteError::Api { status: 403, code: "forbidden".into(), message: "admin only".into() };
/// assert_eq!(err.status(), Some(403));
/// assert!(err.to_string().contains("forbidden"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The API could not be reached, or its answer not read.
    #[error("the kessel API at {url} cannot be reached: {reason}")]
    Unreachable {
        /// The API's base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The API answered with an error.
    #[error("the kessel API answered {status} {code}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error's code (`forbidden`, `wrong_state`, ...).
        code: String,
        /// What the API said.
        message: String,
    },
    /// The worker defines no task: there is nothing to ask for.
    #[error("the remote worker defines no task")]
    NoTasks,
    /// The API answered something a kessel API does not.
    #[error("the answer of {url} is not a kessel API's: {reason}")]
    NotKessel {
        /// The API's base URL.
        url: String,
        /// What did not fit.
        reason: String,
    },
}

impl RemoteError {
    /// The HTTP status of an error the API answered with.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(kessel::remote::RemoteError::NoTasks.status(), None);
    /// ```
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// The longest answer read.
const RESPONSE_LIMIT: u64 = 64 << 20;

/// Connections kept open for reuse, by default (a worker of concurrency 1:
/// a report, the fetch, a heartbeat).
const IDLE_CONNECTIONS: usize = 3;

/// An agent keeping up to `idle` connections to the API open: a request
/// that finds none opens one, and one closed on return is opened again by
/// the next, a TCP handshake and a thread's wake-up on the server each.
fn agent(idle: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .max_idle_connections(idle)
        .max_idle_connections_per_host(idle)
        .user_agent(concat!("kessel-remote/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

#[derive(Debug, Clone)]
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new(base: String, token: Option<String>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            agent: agent(IDLE_CONNECTIONS),
        }
    }

    /// The same client, keeping up to `idle` connections open for reuse.
    pub(crate) fn keeping(self, idle: usize) -> Self {
        Client {
            agent: agent(idle),
            ..self
        }
    }

    /// The error for an answer that does not fit.
    pub(crate) fn not_kessel(&self, err: impl std::fmt::Display) -> RemoteError {
        RemoteError::NotKessel {
            url: self.base.clone(),
            reason: err.to_string(),
        }
    }

    /// `POST path` with `body`; the answer's JSON. `timeout` bounds the
    /// whole request.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: Value,
        timeout: Duration,
    ) -> Result<Value, RemoteError> {
        let client = self.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || client.post_blocking(&path, &body, timeout))
            .await
            .map_err(|e| RemoteError::Unreachable {
                url: self.base.clone(),
                reason: format!("the request's thread failed: {e}"),
            })?
    }

    fn post_blocking(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, RemoteError> {
        let unreachable = |e: ureq::Error| RemoteError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("content-type", "application/json");
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let mut response = req.send(body.to_string()).map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_LIMIT)
            .read_to_string()
            .map_err(unreachable)?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| RemoteError::NotKessel {
                url: self.base.clone(),
                reason: format!("not JSON: {e}"),
            });
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(RemoteError::Api {
                status,
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(RemoteError::NotKessel {
                url: self.base.clone(),
                reason: format!("status {status} without a kessel error body"),
            }),
        }
    }
}

//! Who may use the API: bearer tokens with roles, or the embedding app's
//! own check.

use std::fmt;
use std::sync::Arc;

use actix_web::dev::RequestHead;
use actix_web::http::header;
use subtle::ConstantTimeEq;

use super::error::WebError;

/// What a caller may do.
///
/// # Examples
///
/// ```
/// use kessel::web::Role;
/// assert!(Role::Admin.may(Role::ReadOnly));
/// assert!(!Role::ReadOnly.may(Role::Admin));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// May read jobs, tasks and stats, and stream events (every `GET`).
    ReadOnly,
    /// May also create, cancel, kick, suspend, resume, clean and delete.
    Admin,
}

impl Role {
    /// Whether this role may do what `needed` may.
    pub fn may(self, needed: Role) -> bool {
        self >= needed
    }
}

/// Why the embedding app's check refused a request: no or unknown
/// credentials (401), or credentials without the right (403).
///
/// # Examples
///
/// ```
/// use kessel::web::Denied;
/// let denied = Denied::forbidden("interns may only read");
/// assert_eq!(denied.to_string(), "interns may only read");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    forbidden: bool,
    message: String,
}

impl Denied {
    /// No credentials, or credentials nobody knows: answered with 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Denied {
            forbidden: false,
            message: message.into(),
        }
    }

    /// Known credentials that may not use this API: answered with 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Denied {
            forbidden: true,
            message: message.into(),
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Denied> for WebError {
    fn from(denied: Denied) -> Self {
        if denied.forbidden {
            WebError::Forbidden(denied.message)
        } else {
            WebError::Unauthorized(denied.message)
        }
    }
}

/// The embedding app's own check: given the request's head (method, path,
/// headers), the caller's role, or why not. Implemented for closures.
///
/// It runs before the request's body is read, on every request to the
/// API, and must not block (it is called on the server's thread).
///
/// # Examples
///
/// ```
/// use kessel::web::{Auth, Denied, Role};
///
/// let auth = Auth::custom(|head: &actix_web::dev::RequestHead| {
///     match head.headers().get("x-user-group").and_then(|v| v.to_str().ok()) {
///         Some("ops") => Ok(Role::Admin),
///         Some(_) => Ok(Role::ReadOnly),
///         None => Err(Denied::unauthorized("sign in first")),
///     }
/// });
/// # let _ = auth;
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// The caller's role, or why it has none.
    ///
    /// # Errors
    ///
    /// [`Denied`]: 401 or 403.
    fn authorize(&self, head: &RequestHead) -> Result<Role, Denied>;
}

impl<F> Authorize for F
where
    F: Fn(&RequestHead) -> Result<Role, Denied> + Send + Sync + 'static,
{
    fn authorize(&self, head: &RequestHead) -> Result<Role, Denied> {
        self(head)
    }
}

/// Who may use the API. There is no default: the app says
/// [`Auth::none`] to run an open API, so an API that lets anyone cancel
/// and delete jobs is never one by accident.
///
/// # Examples
///
/// ```
/// use kessel::web::Auth;
/// let auth: Auth = Auth::tokens()
///     .read_only("dashboard-7f3a")
///     .admin("ops-91c2")
///     .into();
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct Auth(Kind);

#[derive(Clone)]
enum Kind {
    Open,
    Tokens(Tokens),
    Custom(Arc<dyn Authorize>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Open => f.write_str("Auth::none()"),
            Kind::Tokens(t) => t.fmt(f),
            Kind::Custom(_) => f.write_str("Auth::custom(..)"),
        }
    }
}

impl Auth {
    /// No authentication: **anyone who can reach the API may create,
    /// cancel and delete jobs.** Only for an API that is already behind
    /// the app's own protection (an internal network, a proxy that
    /// authenticates), or on localhost.
    ///
    /// # Examples
    ///
    /// ```
    /// let auth = kessel::web::Auth::none();
    /// # let _ = auth;
    /// ```
    pub fn none() -> Self {
        Auth(Kind::Open)
    }

    /// Bearer tokens with roles (`Authorization: Bearer <token>`); add
    /// them with [`Tokens::read_only`] and [`Tokens::admin`].
    ///
    /// # Examples
    ///
    /// ```
    /// let auth = kessel::web::Auth::tokens().admin("s3cret");
    /// # let _ = auth;
    /// ```
    pub fn tokens() -> Tokens {
        Tokens::default()
    }

    /// The embedding app's own check (see [`Authorize`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::web::{Auth, Role};
    /// let auth = Auth::custom(|_: &actix_web::dev::RequestHead| Ok(Role::ReadOnly));
    /// # let _ = auth;
    /// ```
    pub fn custom(check: impl Authorize) -> Self {
        Auth(Kind::Custom(Arc::new(check)))
    }

    /// Checks that the request may do what `needed` may.
    pub(crate) fn check(&self, head: &RequestHead, needed: Role) -> Result<(), WebError> {
        let role = match &self.0 {
            Kind::Open => return Ok(()),
            Kind::Tokens(tokens) => tokens.role(head)?,
            Kind::Custom(check) => check.authorize(head)?,
        };
        if role.may(needed) {
            Ok(())
        } else {
            Err(WebError::Forbidden(
                "this token may only read: creating, changing and deleting need an admin token"
                    .into(),
            ))
        }
    }

    /// The role of a dashboard request. With tokens, the token may come
    /// from the dashboard's cookie (`cookie_token`) as well as from the
    /// `Authorization` header; an open API gives everyone the admin role;
    /// the app's own check sees the request as it is.
    #[cfg(feature = "dashboard")]
    pub(crate) fn dashboard_role(
        &self,
        head: &RequestHead,
        cookie_token: Option<&str>,
    ) -> Result<Role, WebError> {
        match &self.0 {
            Kind::Open => Ok(Role::Admin),
            Kind::Tokens(tokens) => match cookie_token {
                Some(token) if !head.headers().contains_key(header::AUTHORIZATION) => tokens
                    .lookup(token.as_bytes())
                    .ok_or_else(|| WebError::Unauthorized("unknown token".into())),
                _ => tokens.role(head),
            },
            Kind::Custom(check) => Ok(check.authorize(head)?),
        }
    }

    /// Whether callers sign in with tokens (the dashboard then offers a
    /// sign-in form).
    #[cfg(feature = "dashboard")]
    pub(crate) fn takes_tokens(&self) -> bool {
        matches!(self.0, Kind::Tokens(_))
    }

    /// The role of `token`, when the API takes tokens and knows it.
    #[cfg(feature = "dashboard")]
    pub(crate) fn token_role(&self, token: &str) -> Option<Role> {
        match &self.0 {
            Kind::Tokens(tokens) => tokens.lookup(token.as_bytes()),
            _ => None,
        }
    }
}

/// Bearer tokens and their roles, built with [`Auth::tokens`].
///
/// Tokens are compared in constant time (`subtle`), each presented token
/// against every configured one, so the time a refusal takes tells
/// nothing about how close a guess was (beyond the number of tokens).
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<(Vec<u8>, Role)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("Tokens")
            .field("count", &self.tokens.len())
            .finish()
    }
}

impl Tokens {
    /// A token that may read and stream events.
    ///
    /// # Panics
    ///
    /// When `token` is empty or holds whitespace (it could never be sent
    /// as one bearer token).
    ///
    /// # Examples
    ///
    /// ```
    /// let tokens = kessel::web::Auth::tokens().read_only("dashboard-7f3a");
    /// # let _ = tokens;
    /// ```
    pub fn read_only(self, token: impl Into<String>) -> Self {
        self.with(token.into(), Role::ReadOnly)
    }

    /// A token that may do everything.
    ///
    /// # Panics
    ///
    /// When `token` is empty or holds whitespace.
    ///
    /// # Examples
    ///
    /// ```
    /// let tokens = kessel::web::Auth::tokens().admin("ops-91c2");
    /// # let _ = tokens;
    /// ```
    pub fn admin(self, token: impl Into<String>) -> Self {
        self.with(token.into(), Role::Admin)
    }

    fn with(mut self, token: String, role: Role) -> Self {
        assert!(
            !token.is_empty() && !token.contains(char::is_whitespace),
            "a bearer token must be non-empty and hold no whitespace"
        );
        self.tokens.push((token.into_bytes(), role));
        self
    }

    fn role(&self, head: &RequestHead) -> Result<Role, WebError> {
        let value = head
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or_else(|| WebError::Unauthorized("a bearer token is required".into()))?;
        let presented = value
            .as_bytes()
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token.trim_ascii())
            .ok_or_else(|| {
                WebError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        self.lookup(presented)
            .ok_or_else(|| WebError::Unauthorized("unknown bearer token".into()))
    }

    /// The role of `presented`, compared against every token without
    /// stopping at a match.
    fn lookup(&self, presented: &[u8]) -> Option<Role> {
        let mut found: Option<Role> = None;
        for (token, role) in &self.tokens {
            if bool::from(token.as_slice().ct_eq(presented)) {
                found = found.max(Some(*role));
            }
        }
        found
    }
}

impl From<Tokens> for Auth {
    fn from(tokens: Tokens) -> Self {
        Auth(Kind::Tokens(tokens))
    }
}

//! The OAuth wire form of a refusal (RFC 6749 §5.2): the token, revocation and introspection
//! endpoints answer with `error` / `error_description` rather than problem+json.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;

/// An RFC 6749 §5.2 error from a token, revocation or introspection endpoint: every refusal
/// the OAuth endpoints give, mapped to its status, `error` and description in one place
/// ([`OAuthError::parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// 400 `invalid_request`: a parameter missing, repeated, malformed or misplaced.
    InvalidRequest(Cow<'static, str>),
    /// 413 `invalid_request`: the body is over `tokens.max_request_bytes`.
    BodyTooLarge { limit: usize },
    /// 408 `invalid_request`: the body did not arrive within `tokens.request_read_timeout`.
    BodyTimeout,
    /// 401 `invalid_client`: no client authentication at all (with a `Basic` challenge).
    ClientAuthRequired { challenge: Option<HeaderValue> },
    /// 401 `invalid_client`: unknown client, wrong secret or disabled client, alike; after
    /// HTTP Basic the 401 carries a `Basic` challenge (RFC 6749 §5.2).
    InvalidClient { challenge: Option<HeaderValue> },
    /// 429 `invalid_client` with `Retry-After`: too many failed authentications.
    RateLimited { retry_after: u64 },
    /// 403 `access_denied`: the address may not call (the client's trusted IPs, or the
    /// network policy).
    AccessDenied(&'static str),
    /// 400 `unsupported_grant_type`: only `client_credentials` is served.
    UnsupportedGrantType,
    /// 400 `invalid_scope`: a scope the client does not hold.
    InvalidScope { scope: String },
    /// 503 `temporarily_unavailable` with `Retry-After: 1`: the store did not answer.
    TemporarilyUnavailable,
}

impl OAuthError {
    /// A 400 `invalid_request` saying what is wrong.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError::InvalidRequest(description.into())
    }

    /// Status, `error` code and `error_description`.
    pub fn parts(&self) -> (StatusCode, &'static str, Cow<'_, str>) {
        match self {
            OAuthError::InvalidRequest(d) => {
                (StatusCode::BAD_REQUEST, "invalid_request", Cow::Borrowed(d))
            }
            OAuthError::BodyTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("the body exceeds {limit} bytes").into(),
            ),
            OAuthError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the body did not arrive in time".into(),
            ),
            OAuthError::ClientAuthRequired { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required".into(),
            ),
            OAuthError::InvalidClient { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed".into(),
            ),
            OAuthError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_client",
                format!("too many failed authentications; retry after {retry_after} seconds")
                    .into(),
            ),
            OAuthError::AccessDenied(d) => (StatusCode::FORBIDDEN, "access_denied", (*d).into()),
            OAuthError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported".into(),
            ),
            OAuthError::InvalidScope { scope } => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("the client may not request scope '{scope}'").into(),
            ),
            OAuthError::TemporarilyUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the token store did not answer; retry shortly".into(),
            ),
        }
    }

    /// The JSON error response, with `Cache-Control: no-store` and `Pragma: no-cache`.
    pub fn into_response(self) -> Response<Body> {
        let (status, error, description) = self.parts();
        // error_description allows only %x20-21 / %x23-5B / %x5D-7E.
        let description: String = description
            .chars()
            .map(|c| {
                if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                    '\''
                } else {
                    c
                }
            })
            .collect();
        let json = serde_json::json!({"error": error, "error_description": description});
        let mut resp = crate::body::json_credential(status, json.to_string());
        let h = resp.headers_mut();
        match self {
            OAuthError::ClientAuthRequired { challenge: Some(c) }
            | OAuthError::InvalidClient { challenge: Some(c) } => {
                h.insert(header::WWW_AUTHENTICATE, c);
            }
            OAuthError::RateLimited { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            OAuthError::TemporarilyUnavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            _ => {}
        }
        resp
    }
}

//! The one place where a rejection becomes an HTTP response: `application/problem+json`
//! (RFC 9457) with a stable `code`, a `detail` a person can act on, and `Cache-Control: no-store`.
//! Details never carry secrets; internals go to the log, not to the client.

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::body::{Body, full};

/// Every way Warden refuses or fails a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No route matches the path (deny by default).
    RouteNotFound,
    /// The path has routes, but not for this method.
    MethodNotAllowed { allow: String },
    /// The body is larger than `server.max_body_bytes`.
    PayloadTooLarge { limit: u64 },
    /// The request is malformed in a way the client can fix.
    BadRequest { detail: String },
    /// The upstream refused the connection, reset it, or answered with garbage.
    UpstreamUnavailable,
    /// The upstream did not answer within `upstream.timeout`.
    UpstreamTimeout { after_ms: u128 },
    /// `/readyz` while a dependency is not usable.
    NotReady { detail: String },
    /// No credential on a route that needs one; carries the `WWW-Authenticate` challenge.
    TokenMissing { challenge: HeaderValue },
    /// A credential that is unknown, expired, revoked or disabled.
    InvalidToken { challenge: HeaderValue },
    /// An `Authorization` header that is not a well-formed bearer credential (RFC 6750 §3.1).
    MalformedCredential { detail: String },
    /// Client id or secret wrong, client unknown or disabled (never says which).
    InvalidClient,
    /// Requested scopes the client does not hold.
    InvalidScope { scope: String },
    /// The body's media type is not one the endpoint reads.
    UnsupportedMediaType { expected: &'static str },
    /// The caller's address is outside the networks its client or token may use.
    IpNotAllowed,
    /// Too many failed authentications from this client id or address.
    RateLimited { retry_after: u64 },
    /// A resource that does not exist, or is not the caller's (the two look the same).
    NotFound { what: &'static str },
    /// The store did not answer; nothing was decided.
    StoreUnavailable,
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
}

impl Problem {
    /// The status, stable code, title and detail of this problem.
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            Problem::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "route_not_found",
                "No route",
                "no route is configured for this path; requests are denied by default".into(),
            ),
            Problem::MethodNotAllowed { allow } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                format!("this path accepts only: {allow}"),
            ),
            Problem::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Body too large",
                format!("the request body exceeds the limit of {limit} bytes"),
            ),
            Problem::BadRequest { detail } => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Bad request",
                detail.clone(),
            ),
            Problem::UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "Upstream unavailable",
                "the service behind Warden could not be reached or closed the connection; retry later".into(),
            ),
            Problem::UpstreamTimeout { after_ms } => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "Upstream timeout",
                format!("the service behind Warden did not answer within {after_ms} ms"),
            ),
            Problem::NotReady { detail } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "Not ready",
                detail.clone(),
            ),
            Problem::TokenMissing { .. } => (
                StatusCode::UNAUTHORIZED,
                "token_missing",
                "Authentication required",
                "send a bearer token: Authorization: Bearer <token>".into(),
            ),
            Problem::InvalidToken { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Invalid token",
                "the token is unknown, expired, revoked or disabled; obtain a new one".into(),
            ),
            Problem::MalformedCredential { detail } => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Malformed credential",
                detail.clone(),
            ),
            Problem::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
                "the client id or secret is wrong, or the client is disabled".into(),
            ),
            Problem::InvalidScope { scope } => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "Scope not allowed",
                format!("the client may not request scope '{scope}'"),
            ),
            Problem::UnsupportedMediaType { expected } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                format!("send the body as {expected}"),
            ),
            Problem::IpNotAllowed => (
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                "Address not allowed",
                "requests from this address are not allowed for this client".into(),
            ),
            Problem::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many failed attempts",
                format!("too many failed authentications; retry after {retry_after} seconds"),
            ),
            Problem::NotFound { what } => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                format!("no such {what}"),
            ),
            Problem::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Store unavailable",
                "Warden's store did not answer; retry shortly".into(),
            ),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The response a client sees.
    pub fn into_response(self) -> Response<Body> {
        let (status, code, title, detail) = self.parts();
        let json = serde_json::to_vec(&ProblemJson {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            code,
            detail: &detail,
        })
        .unwrap_or_default();
        let mut resp = Response::new(full(json));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Problem::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    h.insert(header::ALLOW, v);
                }
            }
            Problem::TokenMissing { challenge } | Problem::InvalidToken { challenge } => {
                h.insert(header::WWW_AUTHENTICATE, challenge);
            }
            Problem::RateLimited { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Problem::StoreUnavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// An RFC 6749 §5.2 error from a token, revocation or introspection endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope`, …
    pub error: &'static str,
    pub description: String,
    /// `WWW-Authenticate` to send (401 after HTTP Basic must carry `Basic`).
    pub challenge: Option<HeaderValue>,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    /// A 400 with `error` and a description.
    pub fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// The JSON error response, with `Cache-Control: no-store` and `Pragma: no-cache`.
    pub fn into_response(self) -> Response<Body> {
        // error_description allows only %x20-21 / %x23-5B / %x5D-7E.
        let description: String = self
            .description
            .chars()
            .map(|c| {
                if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                    '\''
                } else {
                    c
                }
            })
            .collect();
        let json = serde_json::json!({"error": self.error, "error_description": description});
        let mut resp = Response::new(full(json.to_string()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(c) = self.challenge {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn problems_are_problem_json_and_not_cached() {
        let resp = Problem::PayloadTooLarge { limit: 10 }.into_response();
        assert_eq!(resp.status(), 413);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "payload_too_large");
        assert_eq!(v["status"], 413);
    }
}

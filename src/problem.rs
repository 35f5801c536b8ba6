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
        if let Problem::MethodNotAllowed { allow } = &self {
            if let Ok(v) = HeaderValue::from_str(allow) {
                h.insert(header::ALLOW, v);
            }
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

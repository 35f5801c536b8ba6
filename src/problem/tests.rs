use super::*;
use http_body_util::BodyExt;

/// A refusal, its status, `error`, `WWW-Authenticate` and `Retry-After`.
type Case = (
    OAuthError,
    u16,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

#[tokio::test]
async fn every_oauth_refusal_has_its_rfc6749_status_code_and_headers() {
    let basic = HeaderValue::from_static("Basic realm=\"warden\"");
    let cases: [Case; 10] = [
        (
            OAuthError::invalid_request("x \"q\" é"),
            400,
            "invalid_request",
            None,
            None,
        ),
        (
            OAuthError::BodyTooLarge { limit: 9 },
            413,
            "invalid_request",
            None,
            None,
        ),
        (OAuthError::BodyTimeout, 408, "invalid_request", None, None),
        (
            OAuthError::ClientAuthRequired {
                challenge: Some(basic.clone()),
            },
            401,
            "invalid_client",
            Some("Basic realm=\"warden\""),
            None,
        ),
        (
            OAuthError::InvalidClient { challenge: None },
            401,
            "invalid_client",
            None,
            None,
        ),
        (
            OAuthError::RateLimited { retry_after: 7 },
            429,
            "invalid_client",
            None,
            Some("7"),
        ),
        (
            OAuthError::AccessDenied("no"),
            403,
            "access_denied",
            None,
            None,
        ),
        (
            OAuthError::UnsupportedGrantType,
            400,
            "unsupported_grant_type",
            None,
            None,
        ),
        (
            OAuthError::InvalidScope { scope: "a".into() },
            400,
            "invalid_scope",
            None,
            None,
        ),
        (
            OAuthError::TemporarilyUnavailable,
            503,
            "temporarily_unavailable",
            None,
            Some("1"),
        ),
    ];
    for (e, status, code, challenge, retry) in cases {
        let resp = e.into_response();
        assert_eq!(resp.status(), status, "{code}");
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["pragma"], "no-cache");
        assert_eq!(
            h.get("www-authenticate").map(|v| v.to_str().unwrap()),
            challenge
        );
        assert_eq!(h.get("retry-after").map(|v| v.to_str().unwrap()), retry);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], code);
        // error_description keeps to the characters RFC 6749 allows.
        let d = v["error_description"].as_str().unwrap();
        assert!(
            d.chars()
                .all(|c| c != '"' && c != '\\' && (' '..='~').contains(&c)),
            "{d}"
        );
    }
}

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

//! The one place where a rejection becomes an HTTP response: `application/problem+json`
//! (RFC 9457) with a stable `code`, a `detail` a person can act on, and `Cache-Control: no-store`.
//! Details never carry secrets; internals go to the log, not to the client.
//!
//! [`Problem::parts`] is the one exhaustive table of statuses and codes, kept whole on purpose;
//! the OAuth endpoints' own wire form, [`OAuthError`], is in `problem/oauth.rs`.

mod body;
mod oauth;

pub use self::body::from_body_error;
pub use self::oauth::OAuthError;

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::body::{Body, full};

/// RFC 9421 §5.1: which components and parameters a new signature should have.
pub const ACCEPT_SIGNATURE: header::HeaderName =
    header::HeaderName::from_static("accept-signature");
/// RFC 9530 §4: which digest algorithms Warden accepts, by preference.
pub const WANT_CONTENT_DIGEST: header::HeaderName =
    header::HeaderName::from_static("want-content-digest");

/// Every way Warden refuses or fails a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No route matches the path (deny by default).
    RouteNotFound,
    /// The path has routes, but not for this method.
    MethodNotAllowed { allow: String },
    /// The body is larger than `server.max_body_bytes`.
    PayloadTooLarge { limit: u64 },
    /// The request line and headers are larger than `server.max_header_bytes`.
    HeadersTooLarge { limit: usize },
    /// The request is malformed in a way the client can fix.
    BadRequest { detail: String },
    /// A path spelled so that an upstream could read it as another path (see
    /// `router::PathRefusal`); `detail` says which rule it broke.
    InvalidPath { detail: &'static str },
    /// A method-override header or `_method` query parameter (400): upstreams that honour
    /// it would run another method than the one Warden routed; `name` is what was sent.
    MethodOverride { name: String },
    /// A method with lower-case letters (400): some upstreams upper-case it, others do not.
    MethodNotUpperCase,
    /// `Host` disagrees with the request target's authority (`:authority` in HTTP/2), or is
    /// sent more than once (400, RFC 9113 §8.3.1, RFC 9112 §3.2).
    HostMismatch,
    /// The upstream refused the connection, reset it, or answered with garbage.
    UpstreamUnavailable,
    /// The upstream did not answer within `upstream.timeout`.
    UpstreamTimeout { after_ms: u128 },
    /// A route signs its responses, and this one could not be signed (too large to buffer,
    /// or its body failed): it is not delivered unsigned (502).
    ResponseNotSignable { reason: &'static str, limit: u64 },
    /// `/readyz` while a dependency is not usable.
    NotReady { detail: String },
    /// No credential on a route that needs one; carries the `WWW-Authenticate` challenge.
    TokenMissing { challenge: HeaderValue },
    /// A credential that is unknown, expired, revoked or disabled.
    InvalidToken { challenge: HeaderValue },
    /// A token of another issuer (`[[issuers]]`) that is refused (401 `invalid_token`);
    /// `detail` says why (expired, wrong audience, unknown key…), never showing the token.
    RemoteTokenInvalid {
        detail: &'static str,
        challenge: HeaderValue,
    },
    /// The issuer of a token had to be asked (its keys, its introspection endpoint) and could
    /// not answer, and nothing cached decides (503 with `Retry-After`).
    IssuerUnavailable { retry_after: u64 },
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
    /// The credential lacks a scope the route or endpoint needs (403, RFC 6750 §3.1); `scope`
    /// names every scope needed, as the challenge does.
    InsufficientScope {
        scope: String,
        challenge: HeaderValue,
    },
    /// The credential was issued for another audience than the route's (403).
    InvalidAudience,
    /// A token-management request the caller can fix.
    TokenRequest {
        refusal: TokenRefusal,
        detail: String,
    },
    /// A webhook-subscription request the caller can fix.
    Webhook {
        refusal: WebhookRefusal,
        detail: String,
    },
    /// The store did not answer; nothing was decided.
    StoreUnavailable,
    /// A bounded resource shared by all requests is in use (the bytes keyed bodies may hold
    /// for their fingerprint); nothing was done (503 with `Retry-After`).
    ServerBusy { retry_after: u64 },
    /// The caller's address is refused by `server.allow_ips` / `server.deny_ips`.
    IpBlocked,
    /// A request signature (RFC 9421) is missing, malformed or does not authenticate.
    Signature(SignatureProblem),
    /// A `Content-Digest` (RFC 9530) is missing, malformed, unsupported or does not match the body.
    Digest {
        refusal: DigestRefusal,
        detail: String,
    },
    /// The client did not send the body it announced in time: its first frame, a next frame
    /// (`server.body_read_timeout`), or a keyed body whole (`idempotency.request_read_timeout`).
    BodyTimeout,
    /// An `Idempotency-Key` / `X-Idempotency-Key` that is not a valid key (400).
    IdempotencyKeyInvalid { detail: String },
    /// No idempotency key where the route's policy requires one (400); names the header.
    IdempotencyKeyMissing { header: String },
    /// The same request with this key is still running (409, draft §2.6).
    IdempotencyKeyInUse { retry_after: u64 },
    /// The key was already used for a different request (422, draft §2.7).
    IdempotencyKeyReused,
    /// The request with this key ran, but its response was not kept (streamed, too large,
    /// cut short), so it can be neither replayed nor run again (422).
    IdempotencyResponseNotReplayable { reason: String },
    /// A verified signature whose nonce cannot be remembered: the nonce cache holds
    /// `signatures.nonce_cache_capacity` nonces still within their window (503).
    NonceCacheFull { retry_after: u64 },
    /// A verified signature whose nonce cannot be remembered: its client already holds
    /// `limit` nonces still within their window (`signatures.nonce_cache_per_client`, 429).
    NonceQuotaExceeded { limit: u64, retry_after: u64 },
    /// A forward-auth decision request (`endpoints.forward_auth`) that cannot be decided.
    ForwardAuth(ForwardAuthRefusal),
}

/// Why the forward-auth endpoint cannot decide about the request a proxy describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardAuthRefusal {
    /// The asker is not in `server.trusted_proxies`: what it says the original request was is
    /// not believed (403 `forward_auth_untrusted_peer`).
    UntrustedPeer,
    /// Neither a path under the endpoint (Envoy) nor the original method and URI headers
    /// (400 `forward_auth_original_missing`).
    OriginalMissing,
    /// Both `X-Original-*` and `X-Forwarded-Method`/`-Uri`, or one of them twice: a client may
    /// have added one family (400 `forward_auth_original_ambiguous`).
    OriginalAmbiguous,
    /// An original URI that is not an origin-form path (with query), or a method that is not
    /// a token (400 `forward_auth_original_invalid`).
    OriginalInvalid,
    /// The request's `Content-Digest` must be checked and the proxy did not send the whole
    /// body (403 `digest_unverifiable`).
    DigestUnseen,
    /// The route requires an idempotency key for this request, which only Warden's own proxy
    /// can enforce (403 `idempotency_unenforceable`).
    IdempotencyUnenforceable,
}

/// Why a token-management request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// A `{tokenId}` that is not a managed token id (400 `malformed_token_id`).
    MalformedId,
    /// A body that is not the JSON object expected: bad syntax, an unknown field, a wrong
    /// type (400 `invalid_json`).
    InvalidJson,
    /// A field whose value is not acceptable (400 `invalid_field`).
    InvalidField,
    /// A name longer than `tokens.max_name_length` (400 `name_too_long`).
    NameTooLong,
    /// Scopes or an audience the caller does not hold itself (403 `scope_not_held`).
    ScopeNotHeld,
}

/// Why a webhook-subscription request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRefusal {
    /// A `{webhookId}` that is not a subscription id (400 `malformed_webhook_id`).
    MalformedId,
    /// A body that is not the JSON object expected (400 `invalid_json`).
    InvalidJson,
    /// A field whose value is not acceptable (400 `invalid_field`).
    InvalidField,
    /// A URL that leads where deliveries may not go: not https, or to a loopback, private,
    /// link-local or metadata address (422 `webhook_url_refused`).
    UrlRefused,
    /// The account holds `webhook_delivery.max_subscriptions_per_account` (409
    /// `webhook_limit_reached`).
    LimitReached,
}

/// Why a request signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// No signature where one is required (401 `signature_missing`).
    Missing,
    /// `Signature-Input` / `Signature` are not valid structured fields, or a member, component
    /// or parameter is invalid (400 `signature_malformed`).
    Malformed,
    /// The signature does not verify, or a covered component cannot be rebuilt (401).
    Invalid,
    /// `expires` has passed, or `created` is older than `signatures.max_age` (401).
    Expired,
    /// `created` lies in the future beyond `signatures.clock_skew` (401).
    NotYetValid,
    /// `keyid` names no key of the caller's client (401).
    UnknownKey,
    /// The signature leaves out a component the policy requires (401).
    ComponentNotCovered,
    /// `signatures.nonce = "required"` and the signature has none (401).
    NonceMissing,
    /// The nonce was already used within the signature window (401).
    Replayed,
    /// `alg` names another algorithm than the key's (401).
    AlgorithmMismatch,
    /// `X-Client-Id` names another client than the credential (401).
    ClientIdMismatch,
}

/// A refused signature: what is wrong, a detail the client can act on, the `Accept-Signature`
/// value naming what to cover (RFC 9421 §5.1) and the `WWW-Authenticate` challenge of a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureProblem {
    pub refusal: SignatureRefusal,
    pub detail: String,
    pub accept: Option<HeaderValue>,
    pub challenge: Option<HeaderValue>,
}

/// Why a `Content-Digest` was refused (all 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestRefusal {
    /// A body the policy requires a digest for came without one.
    Missing,
    /// Not a valid SF Dictionary, or a member of the wrong type or length.
    Malformed,
    /// Only algorithms other than sha-256 and sha-512.
    Unsupported,
    /// The body does not match.
    Mismatch,
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
            Problem::HeadersTooLarge { limit } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "Request headers too large",
                format!(
                    "the request line and headers exceed the limit of {limit} bytes; send \
                     fewer or shorter headers (large cookies are the usual cause)"
                ),
            ),
            Problem::BadRequest { detail } => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Bad request",
                detail.clone(),
            ),
            Problem::InvalidPath { detail } => (
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "Path not canonical",
                (*detail).into(),
            ),
            Problem::MethodOverride { name } => (
                StatusCode::BAD_REQUEST,
                "method_override_refused",
                "Method override refused",
                format!(
                    "send the intended method as the request method; {name} is refused because \
                     an upstream could run another method than the one Warden checked"
                ),
            ),
            Problem::MethodNotUpperCase => (
                StatusCode::BAD_REQUEST,
                "invalid_method",
                "Method not upper case",
                "send the method in upper case (GET, POST, …): methods are case-sensitive".into(),
            ),
            Problem::HostMismatch => (
                StatusCode::BAD_REQUEST,
                "host_mismatch",
                "Host mismatch",
                "send one Host header, equal to the request's authority (:authority in HTTP/2)"
                    .into(),
            ),
            Problem::UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "Upstream unavailable",
                "the service behind Warden could not be reached or closed the connection; retry later".into(),
            ),
            Problem::ResponseNotSignable { reason, limit } => (
                StatusCode::BAD_GATEWAY,
                "response_not_signable",
                "Response not signable",
                format!(
                    "this route's responses are signed, and the upstream's response could not be \
                     ({reason}; at most {limit} bytes are signed): it was not delivered unsigned"
                ),
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
            Problem::RemoteTokenInvalid { detail, .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Invalid token",
                (*detail).into(),
            ),
            Problem::IssuerUnavailable { retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "issuer_unavailable",
                "Token issuer unavailable",
                format!(
                    "the token's issuer could not be reached to check it, and nothing known \
                     decides; retry after {retry_after} seconds"
                ),
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
            Problem::InsufficientScope { scope, .. } => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "Insufficient scope",
                format!("this request needs a token holding: {scope}"),
            ),
            Problem::InvalidAudience => (
                StatusCode::FORBIDDEN,
                "invalid_audience",
                "Wrong audience",
                "the token was issued for another audience than this route's".into(),
            ),
            Problem::TokenRequest { refusal, detail } => {
                let (status, code, title) = match refusal {
                    TokenRefusal::MalformedId => (
                        StatusCode::BAD_REQUEST,
                        "malformed_token_id",
                        "Malformed token id",
                    ),
                    TokenRefusal::InvalidJson => {
                        (StatusCode::BAD_REQUEST, "invalid_json", "Invalid JSON body")
                    }
                    TokenRefusal::InvalidField => {
                        (StatusCode::BAD_REQUEST, "invalid_field", "Invalid field")
                    }
                    TokenRefusal::NameTooLong => {
                        (StatusCode::BAD_REQUEST, "name_too_long", "Name too long")
                    }
                    TokenRefusal::ScopeNotHeld => {
                        (StatusCode::FORBIDDEN, "scope_not_held", "Scope not held")
                    }
                };
                (status, code, title, detail.clone())
            }
            Problem::Webhook { refusal, detail } => {
                let (status, code, title) = match refusal {
                    WebhookRefusal::MalformedId => (
                        StatusCode::BAD_REQUEST,
                        "malformed_webhook_id",
                        "Malformed subscription id",
                    ),
                    WebhookRefusal::InvalidJson => {
                        (StatusCode::BAD_REQUEST, "invalid_json", "Invalid JSON body")
                    }
                    WebhookRefusal::InvalidField => {
                        (StatusCode::BAD_REQUEST, "invalid_field", "Invalid field")
                    }
                    WebhookRefusal::UrlRefused => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "webhook_url_refused",
                        "Webhook URL refused",
                    ),
                    WebhookRefusal::LimitReached => (
                        StatusCode::CONFLICT,
                        "webhook_limit_reached",
                        "Too many subscriptions",
                    ),
                };
                (status, code, title, detail.clone())
            }
            Problem::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Store unavailable",
                "Warden's store did not answer; retry shortly".into(),
            ),
            Problem::ServerBusy { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                "Server busy",
                "Warden is holding as many request bodies as it may at once; retry shortly".into(),
            ),
            Problem::IpBlocked => (
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                "Address not allowed",
                "requests from this address are not accepted".into(),
            ),
            Problem::Signature(p) => {
                let (status, code, title) = match p.refusal {
                    SignatureRefusal::Missing => (
                        StatusCode::UNAUTHORIZED,
                        "signature_missing",
                        "Signature required",
                    ),
                    SignatureRefusal::Malformed => (
                        StatusCode::BAD_REQUEST,
                        "signature_malformed",
                        "Malformed signature",
                    ),
                    SignatureRefusal::Invalid => (
                        StatusCode::UNAUTHORIZED,
                        "signature_invalid",
                        "Invalid signature",
                    ),
                    SignatureRefusal::Expired => (
                        StatusCode::UNAUTHORIZED,
                        "signature_expired",
                        "Signature expired",
                    ),
                    SignatureRefusal::NotYetValid => (
                        StatusCode::UNAUTHORIZED,
                        "signature_not_yet_valid",
                        "Signature from the future",
                    ),
                    SignatureRefusal::UnknownKey => {
                        (StatusCode::UNAUTHORIZED, "unknown_key", "Unknown key")
                    }
                    SignatureRefusal::ComponentNotCovered => (
                        StatusCode::UNAUTHORIZED,
                        "component_not_covered",
                        "Signature does not cover enough",
                    ),
                    SignatureRefusal::NonceMissing => (
                        StatusCode::UNAUTHORIZED,
                        "nonce_missing",
                        "Signature nonce required",
                    ),
                    SignatureRefusal::Replayed => (
                        StatusCode::UNAUTHORIZED,
                        "signature_replayed",
                        "Signature replayed",
                    ),
                    SignatureRefusal::AlgorithmMismatch => (
                        StatusCode::UNAUTHORIZED,
                        "algorithm_mismatch",
                        "Signature algorithm mismatch",
                    ),
                    SignatureRefusal::ClientIdMismatch => (
                        StatusCode::UNAUTHORIZED,
                        "client_id_mismatch",
                        "Client id mismatch",
                    ),
                };
                (status, code, title, p.detail.clone())
            }
            Problem::Digest { refusal, detail } => {
                let (code, title) = match refusal {
                    DigestRefusal::Missing => ("digest_missing", "Content-Digest required"),
                    DigestRefusal::Malformed => ("digest_malformed", "Malformed Content-Digest"),
                    DigestRefusal::Unsupported => {
                        ("digest_unsupported", "Unsupported digest algorithm")
                    }
                    DigestRefusal::Mismatch => ("digest_mismatch", "Content-Digest mismatch"),
                };
                (StatusCode::BAD_REQUEST, code, title, detail.clone())
            }
            Problem::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "Body not sent",
                "the request body did not arrive in time; send it without pauses".into(),
            ),
            Problem::IdempotencyKeyInvalid { detail } => (
                StatusCode::BAD_REQUEST,
                "idempotency_key_invalid",
                "Invalid idempotency key",
                format!("{detail}; a key is 1-255 visible ASCII characters, e.g. a UUID as \"…\""),
            ),
            Problem::IdempotencyKeyMissing { header } => (
                StatusCode::BAD_REQUEST,
                "idempotency_key_missing",
                "Idempotency key required",
                format!("this request must carry an idempotency key: send {header}: \"<a new UUID>\""),
            ),
            Problem::IdempotencyKeyInUse { .. } => (
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "Request in progress",
                "a request with this idempotency key is still being processed; retry it shortly".into(),
            ),
            Problem::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
                "this idempotency key was used for a different request (method, path, query or body); \
                 use a new key for a new request"
                    .into(),
            ),
            Problem::IdempotencyResponseNotReplayable { reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_response_not_replayable",
                "Response not replayable",
                format!(
                    "the request with this idempotency key was processed, but its response was not \
                     kept because {reason}; it will not run again with this key"
                ),
            ),
            Problem::NonceCacheFull { retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "nonce_cache_full",
                "Nonce cache full",
                format!(
                    "Warden cannot remember another signature nonce until older ones leave their \
                     window, and a nonce it cannot remember is not accepted; retry after \
                     {retry_after} seconds"
                ),
            ),
            Problem::ForwardAuth(refusal) => forward_auth_parts(*refusal),
            Problem::NonceQuotaExceeded { limit, retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "nonce_quota_exceeded",
                "Too many signature nonces",
                format!(
                    "this client already has {limit} signature nonces within the signature window \
                     (signatures.nonce_cache_per_client); retry after {retry_after} seconds"
                ),
            ),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The status a client is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
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
            Problem::TokenMissing { challenge }
            | Problem::InvalidToken { challenge }
            | Problem::RemoteTokenInvalid { challenge, .. }
            | Problem::InsufficientScope { challenge, .. } => {
                h.insert(header::WWW_AUTHENTICATE, challenge);
            }
            Problem::RateLimited { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Problem::StoreUnavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Problem::IdempotencyKeyInUse { retry_after }
            | Problem::ServerBusy { retry_after }
            | Problem::IssuerUnavailable { retry_after }
            | Problem::NonceCacheFull { retry_after }
            | Problem::NonceQuotaExceeded { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Problem::Signature(p) => {
                if let Some(challenge) = p.challenge {
                    h.insert(header::WWW_AUTHENTICATE, challenge);
                }
                if let Some(accept) = p.accept {
                    h.insert(ACCEPT_SIGNATURE, accept);
                }
            }
            // RFC 9530 §4: say which algorithms would be accepted (not needed for a mismatch).
            Problem::Digest { refusal, .. } if refusal != DigestRefusal::Mismatch => {
                h.insert(
                    WANT_CONTENT_DIGEST,
                    HeaderValue::from_static(crate::digest::WANT_CONTENT_DIGEST),
                );
            }
            _ => {}
        }
        resp
    }
}

/// The status, code, title and detail of a forward-auth refusal.
fn forward_auth_parts(
    refusal: ForwardAuthRefusal,
) -> (StatusCode, &'static str, &'static str, String) {
    let (status, code, title, detail) = match refusal {
        ForwardAuthRefusal::UntrustedPeer => (
            StatusCode::FORBIDDEN,
            "forward_auth_untrusted_peer",
            "Not a trusted proxy",
            "only a proxy in server.trusted_proxies may ask for a forward-auth decision",
        ),
        ForwardAuthRefusal::OriginalMissing => (
            StatusCode::BAD_REQUEST,
            "forward_auth_original_missing",
            "Original request missing",
            "send the original request as a path under the endpoint (Envoy ext_authz \
             path_prefix), or its method and URI in X-Original-Method and X-Original-URI \
             (nginx) or X-Forwarded-Method and X-Forwarded-Uri (Traefik, Caddy)",
        ),
        ForwardAuthRefusal::OriginalAmbiguous => (
            StatusCode::BAD_REQUEST,
            "forward_auth_original_ambiguous",
            "Original request ambiguous",
            "send the original method and URI once, in one family of headers: X-Original-* \
             and X-Forwarded-Method/-Uri together mean a client added one of them",
        ),
        ForwardAuthRefusal::OriginalInvalid => (
            StatusCode::BAD_REQUEST,
            "forward_auth_original_invalid",
            "Original request invalid",
            "the original URI must be an origin-form path starting with / (with its query), \
             under the endpoint exactly as configured, and the method a token",
        ),
        ForwardAuthRefusal::DigestUnseen => (
            StatusCode::FORBIDDEN,
            "digest_unverifiable",
            "Body not seen",
            "this request's Content-Digest must be checked against its body, and the proxy \
             asking did not send the whole body: send the request through Warden's proxy, or \
             have the proxy send the body (Envoy ext_authz with_request_body)",
        ),
        ForwardAuthRefusal::IdempotencyUnenforceable => (
            StatusCode::FORBIDDEN,
            "idempotency_unenforceable",
            "Idempotency not enforceable",
            "this route requires an idempotency key for this request, and only Warden's own \
             proxy can hold requests to their key: send it through Warden's proxy",
        ),
    };
    (status, code, title, detail.into())
}
#[cfg(test)]
mod tests;

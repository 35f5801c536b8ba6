//! Warden's own endpoints: the dispatch to their handlers (boxed, see [`Warden::handle`]), the
//! metrics exposition, the health and readiness answers, and the network policy's refusal.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::Warden;
use crate::body::{Body, BoxFuture, full};
use crate::gate::client_ip::Origin;
use crate::issuer::tokens_api::{AdminRequest, ApiMount};
use crate::issuer::{auth, oauth, tokens_api};
use crate::problem::{OAuthError, Problem};
use crate::router::Target;

impl Warden {
    /// The `endpoints.metrics` (and `admin.metrics`) answer: the exposition, or 404 when
    /// metrics are off.
    pub(crate) fn exposition(&self) -> Response<Body> {
        let Some(metrics) = &self.metrics else {
            return Problem::RouteNotFound.into_response();
        };
        let text = metrics.encode(self.forwarder.idle_connections());
        let mut resp = Response::new(full(text));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    /// Warden's own endpoints (not `/healthz`), boxed: see [`Warden::handle`].
    pub(super) fn own_endpoint<'a>(
        &'a self,
        target: Target<'a>,
        req: Request<Incoming>,
        origin: &'a Origin,
        client_ip: IpAddr,
    ) -> (&'static str, BoxFuture<'a, Response<Body>>) {
        // The tokens and webhooks APIs: one admission, at their own base path.
        let account_api = |base| AdminRequest {
            issuer: &self.issuer,
            signatures: &self.signatures,
            mount: ApiMount {
                base,
                verify_unsigned: self.settings.digest.verify_unsigned,
            },
            origin,
            ip: client_ip,
        };
        match target {
            Target::Ready => ("readyz", Box::pin(self.ready())),
            Target::Auth => (
                "auth",
                Box::pin(auth::handle(
                    &self.issuer,
                    &self.signatures,
                    &self.idempotency,
                    req,
                    origin,
                    client_ip,
                )),
            ),
            Target::OAuthToken => (
                "oauth_token",
                Box::pin(oauth::token(&self.issuer, req, client_ip)),
            ),
            Target::OAuthRevoke => (
                "oauth_revoke",
                Box::pin(oauth::revoke(&self.issuer, req, client_ip)),
            ),
            Target::OAuthIntrospect => (
                "oauth_introspect",
                Box::pin(oauth::introspect(&self.issuer, req, client_ip)),
            ),
            Target::Tokens => (
                "tokens",
                Box::pin(tokens_api::handle(
                    account_api(self.settings.endpoints.tokens.as_ref()),
                    req,
                )),
            ),
            Target::Webhooks => (
                "webhooks",
                Box::pin(crate::webhooks::api::handle(
                    account_api(self.settings.endpoints.webhooks.as_ref()),
                    &self.webhooks,
                    req,
                )),
            ),
            Target::ForwardAuth => (
                "forward_auth",
                Box::pin(super::forward_auth::handle(self, req, origin, client_ip)),
            ),
            Target::Health
            | Target::Metrics
            | Target::NotFound
            | Target::MethodNotAllowed(_)
            | Target::Proxy(_) => {
                // Answered by the caller; kept exhaustive so a new target cannot fall through.
                (
                    "-",
                    Box::pin(async { Problem::RouteNotFound.into_response() }),
                )
            }
        }
    }

    /// Ready when the store answers and the upstream accepts connections (the latter if
    /// `endpoints.readyz_checks_upstream`).
    pub(crate) async fn ready(&self) -> Response<Body> {
        if let Err(e) = self.issuer.store().ping().await {
            tracing::error!(error = %e, "store ping failed");
            return Problem::NotReady {
                detail: "the store does not answer".into(),
            }
            .into_response();
        }
        if self.settings.endpoints.readyz_checks_upstream {
            let authority = self.forwarder.authority();
            let port = authority
                .port_u16()
                .unwrap_or_else(|| self.forwarder.default_port());
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let probe = tokio::net::TcpStream::connect((host, port));
            match tokio::time::timeout(Duration::from_secs(1), probe).await {
                Ok(Ok(_)) => {}
                _ => {
                    return Problem::NotReady {
                        detail: "the upstream does not accept connections".into(),
                    }
                    .into_response();
                }
            }
        }
        crate::body::json(StatusCode::OK, r#"{"status":"ready"}"#)
    }
}

/// The refusal of an address by the network policy, in the endpoint's own error form.
pub(super) fn blocked(target: &Target<'_>) -> Response<Body> {
    match target {
        Target::OAuthToken | Target::OAuthRevoke | Target::OAuthIntrospect => {
            OAuthError::AccessDenied("requests from this address are not accepted").into_response()
        }
        _ => Problem::IpBlocked.into_response(),
    }
}

/// The liveness answer (`endpoints.healthz`, `admin.healthz`).
pub(crate) fn health() -> Response<Body> {
    crate::body::json(StatusCode::OK, r#"{"status":"ok"}"#)
}

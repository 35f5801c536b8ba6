//! OAuth 2.0 endpoints: client-credentials token (RFC 6749 §4.4, JSON or form, client
//! authentication by HTTP Basic or in the body), revocation (RFC 7009) and introspection
//! (RFC 7662). Errors are RFC 6749 §5.2 JSON.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::form::{self, FormError, Params};
use super::{ClientAuthError, Issuer, effective_scopes, narrow_scopes};
use crate::body::Body;
use crate::problem::{OAuthError, Problem};
use crate::store::ClientRecord;

fn form_error(e: FormError, json_allowed: bool) -> OAuthError {
    match e {
        FormError::TooLarge { limit } => OAuthError::BodyTooLarge { limit },
        FormError::TimedOut => OAuthError::BodyTimeout,
        FormError::Unreadable => OAuthError::invalid_request("the body could not be read"),
        FormError::UnsupportedMediaType => OAuthError::invalid_request(if json_allowed {
            "send the parameters as application/x-www-form-urlencoded or application/json"
        } else {
            "send the parameters as application/x-www-form-urlencoded"
        }),
        FormError::Malformed(d) => OAuthError::invalid_request(d),
        FormError::Duplicate(name) => {
            OAuthError::invalid_request(format!("parameter '{name}' is repeated"))
        }
    }
}

fn store_unavailable() -> OAuthError {
    OAuthError::TemporarilyUnavailable
}

/// Reads and parses the parameters of a POST to an OAuth endpoint.
async fn read_params(
    issuer: &Issuer,
    req: Request<Incoming>,
    json_allowed: bool,
) -> Result<(HeaderMap, Params), Response<Body>> {
    if req.method() != Method::POST {
        return Err(Problem::MethodNotAllowed {
            allow: "POST".into(),
        }
        .into_response());
    }
    if req
        .uri()
        .query()
        .is_some_and(|q| q.contains("client_secret"))
    {
        // RFC 6749 §2.3.1: credentials MUST NOT be in the URI.
        return Err(
            OAuthError::invalid_request("client credentials must not be sent in the URL")
                .into_response(),
        );
    }
    let (parts, body) = req.into_parts();
    let limit = issuer.settings().max_request_bytes;
    let bytes = form::read_body(body, limit, issuer.settings().request_read_timeout)
        .await
        .map_err(|e| form_error(e, json_allowed).into_response())?;
    let params = form::parse_params(&parts.headers, &bytes, json_allowed)
        .map_err(|e| form_error(e, json_allowed).into_response())?;
    Ok((parts.headers, params))
}

/// Authenticates the calling client by HTTP Basic or `client_id`/`client_secret` in the body
/// (exactly one method), removing those parameters.
async fn authenticate(
    issuer: &Issuer,
    headers: &HeaderMap,
    params: &mut Params,
    ip: IpAddr,
) -> Result<ClientRecord, OAuthError> {
    let basic = form::basic_credentials(headers).map_err(|e| form_error(e, true))?;
    let body_id = params.remove("client_id");
    let body_secret = params.remove("client_secret");
    let realm = &issuer.settings().realm;
    let basic_challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")).ok();
    let (id, secret, used_basic) = match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method: HTTP Basic or client_secret in the body",
            ));
        }
        (Some((id, _)), Some(body_id), None) if body_id != id => {
            return Err(OAuthError::invalid_request(
                "client_id differs from the Basic credentials",
            ));
        }
        (Some((id, secret)), _, None) => (id, secret, true),
        (None, Some(id), Some(secret)) => (id, secret, false),
        (None, _, _) => {
            return Err(OAuthError::ClientAuthRequired {
                challenge: basic_challenge,
            });
        }
    };
    issuer
        .authenticate_client(&id, &secret, ip)
        .await
        .map_err(|e| match e {
            ClientAuthError::RateLimited { retry_after } => OAuthError::RateLimited { retry_after },
            // Only after the right secret: a wrong one is `invalid_client` from anywhere.
            ClientAuthError::IpNotAllowed => OAuthError::AccessDenied(
                "requests from this address are not allowed for this client",
            ),
            ClientAuthError::Store(err) => {
                tracing::error!(error = %err, "store failed during client authentication");
                store_unavailable()
            }
            ClientAuthError::UnknownClient
            | ClientAuthError::WrongSecret
            | ClientAuthError::Disabled => {
                // RFC 6749 §5.2: after Basic, 401 MUST carry a Basic challenge.
                OAuthError::InvalidClient {
                    challenge: if used_basic { basic_challenge } else { None },
                }
            }
        })
}

fn json_no_store(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    crate::body::json_credential(status, value.to_string())
}

/// `POST /v1/oauth/token`.
pub async fn token(issuer: &Issuer, req: Request<Incoming>, ip: IpAddr) -> Response<Body> {
    let (headers, mut params) = match read_params(issuer, req, true).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    match params.get("grant_type").map(String::as_str) {
        None => {
            return OAuthError::invalid_request("grant_type is required").into_response();
        }
        Some("client_credentials") => {}
        Some(_) => {
            return OAuthError::UnsupportedGrantType.into_response();
        }
    }
    let client = match authenticate(issuer, &headers, &mut params, ip).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let scopes = match narrow_scopes(params.get("scope").map(String::as_str), &client.scopes) {
        Ok(s) => s,
        Err(bad) => {
            return OAuthError::InvalidScope { scope: bad }.into_response();
        }
    };
    match issuer.issue_access_token(&client, scopes).await {
        Ok(issued) => {
            let r = &issued.record;
            let expires_in = r.expires_at.map(|e| e - r.created_at).unwrap_or(0);
            tracing::info!(client_id = %client.id, token_id = %r.id, "access token issued");
            json_no_store(
                StatusCode::OK,
                serde_json::json!({
                    "access_token": issued.value,
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                    "scope": r.scopes.join(" "),
                }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "store failed while issuing a token");
            store_unavailable().into_response()
        }
    }
}

/// What revocation and introspection start with: the parameters read, the calling client
/// authenticated ([`authenticate`]), and the `token` it asks about, which is required.
async fn client_and_token(
    issuer: &Issuer,
    req: Request<Incoming>,
    ip: IpAddr,
) -> Result<(ClientRecord, String), Response<Body>> {
    let (headers, mut params) = read_params(issuer, req, false).await?;
    let client = authenticate(issuer, &headers, &mut params, ip)
        .await
        .map_err(OAuthError::into_response)?;
    let Some(value) = params.remove("token") else {
        return Err(OAuthError::invalid_request("token is required").into_response());
    };
    Ok((client, value))
}

/// `POST /v1/oauth/revoke` (RFC 7009): 200 whether or not the token was known; a client can
/// revoke only its own tokens.
pub async fn revoke(issuer: &Issuer, req: Request<Incoming>, ip: IpAddr) -> Response<Body> {
    let (client, value) = match client_and_token(issuer, req, ip).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    match issuer.find_by_value(&value).await {
        Ok(Some(t)) if t.client_id == client.id => {
            if let Err(e) = issuer.revoke(&t).await {
                tracing::error!(error = %e, "store failed while revoking");
                return store_unavailable().into_response();
            }
            tracing::info!(client_id = %client.id, token_id = %t.id, "token revoked");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "store failed while revoking");
            return store_unavailable().into_response();
        }
    }
    json_no_store(StatusCode::OK, serde_json::json!({}))
}

/// `POST /v1/oauth/introspect` (RFC 7662). A client sees only its own tokens as active.
pub async fn introspect(issuer: &Issuer, req: Request<Incoming>, ip: IpAddr) -> Response<Body> {
    let (client, value) = match client_and_token(issuer, req, ip).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let now = issuer.clock().now();
    let token = match issuer.find_by_value(&value).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "store failed during introspection");
            return store_unavailable().into_response();
        }
    };
    let body = match token {
        Some(t) if t.client_id == client.id && t.is_active(now) => {
            let mut v = serde_json::json!({
                "active": true,
                // What the token may do now, as the proxy sees it.
                "scope": effective_scopes(&t.scopes, &client.scopes).join(" "),
                "client_id": t.client_id,
                "token_type": "Bearer",
                "iat": t.created_at,
                "sub": t.user.clone().unwrap_or_else(|| t.client_id.clone()),
                "jti": t.id,
            });
            if let Some(exp) = t.expires_at {
                v["exp"] = exp.into();
            }
            if let Some(aud) = &t.audience {
                v["aud"] = aud.clone().into();
            }
            v
        }
        _ => serde_json::json!({"active": false}),
    };
    json_no_store(StatusCode::OK, body)
}

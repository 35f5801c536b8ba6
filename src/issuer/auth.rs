//! `POST /v1/auth` (form `clientId`, `clientSecret` → 201 with the access-token entity) and
//! `DELETE /v1/auth?accessTokenId=…` (revocation by the token's own client), Pipevest style.
//! Errors are problem+json.

use std::net::IpAddr;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::form::{self, FormError};
use super::{BearerError, ClientAuthError, Issuer, narrow_scopes};
use crate::body::{Body, full};
use crate::gate::bearer::{Presented, presented};
use crate::problem::Problem;

fn form_problem(e: FormError) -> Problem {
    match e {
        FormError::TooLarge { limit } => Problem::PayloadTooLarge {
            limit: limit as u64,
        },
        FormError::Unreadable => Problem::BadRequest {
            detail: "the body could not be read".into(),
        },
        FormError::UnsupportedMediaType => Problem::UnsupportedMediaType {
            expected: "application/x-www-form-urlencoded",
        },
        FormError::Malformed(detail) => Problem::BadRequest { detail },
        FormError::Duplicate(name) => Problem::BadRequest {
            detail: format!("parameter '{name}' is repeated"),
        },
    }
}

/// Dispatches `/v1/auth` by method.
pub async fn handle(issuer: &Issuer, req: Request<Incoming>, ip: IpAddr) -> Response<Body> {
    let result = match *req.method() {
        Method::POST => create(issuer, req, ip).await,
        Method::DELETE => delete(issuer, req).await,
        _ => Err(Problem::MethodNotAllowed {
            allow: "DELETE, POST".into(),
        }),
    };
    result.unwrap_or_else(Problem::into_response)
}

async fn create(
    issuer: &Issuer,
    req: Request<Incoming>,
    ip: IpAddr,
) -> Result<Response<Body>, Problem> {
    let (parts, body) = req.into_parts();
    if form::media_type(&parts.headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(form_problem(FormError::UnsupportedMediaType));
    }
    let bytes = form::read_body(body, issuer.settings().max_request_bytes)
        .await
        .map_err(form_problem)?;
    let params = form::parse_form(&bytes).map_err(form_problem)?;
    let (Some(id), Some(secret)) = (params.get("clientId"), params.get("clientSecret")) else {
        return Err(Problem::BadRequest {
            detail: "clientId and clientSecret are required".into(),
        });
    };
    let client = issuer
        .authenticate_client(id, secret, ip)
        .await
        .map_err(|e| match e {
            ClientAuthError::RateLimited { retry_after } => Problem::RateLimited { retry_after },
            ClientAuthError::IpNotAllowed => Problem::IpNotAllowed,
            ClientAuthError::Store(err) => {
                tracing::error!(error = %err, "store failed during client authentication");
                Problem::StoreUnavailable
            }
            ClientAuthError::UnknownClient
            | ClientAuthError::WrongSecret
            | ClientAuthError::Disabled => Problem::InvalidClient,
        })?;
    let scopes = narrow_scopes(params.get("scope").map(String::as_str), &client.scopes)
        .map_err(|scope| Problem::InvalidScope { scope })?;
    let issued = issuer
        .issue_access_token(&client, scopes)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "store failed while issuing a token");
            Problem::StoreUnavailable
        })?;
    let r = &issued.record;
    tracing::info!(client_id = %client.id, token_id = %r.id, "access token issued");
    let expires_in = r.expires_at.map(|e| e - r.created_at).unwrap_or(0);
    let entity = serde_json::json!({
        "accessTokenId": r.id,
        "accessToken": issued.value,
        "expiresIn": expires_in,
        "maxTTL": issuer.settings().max_ttl.as_secs(),
        "type": "Bearer",
        "scope": r.scopes.join(" "),
        "trustedIps": r.trusted_ips,
        "createdAt": r.created_at,
        "updatedAt": r.updated_at,
    });
    let mut resp = Response::new(full(entity.to_string()));
    *resp.status_mut() = StatusCode::CREATED;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

async fn delete(issuer: &Issuer, req: Request<Incoming>) -> Result<Response<Body>, Problem> {
    let caller = match presented(req.headers()) {
        Presented::Missing => {
            return Err(Problem::TokenMissing {
                challenge: issuer.challenge(),
            });
        }
        Presented::Malformed(detail) => {
            return Err(Problem::MalformedCredential {
                detail: detail.into(),
            });
        }
        Presented::Bearer(v) => issuer.authenticate_bearer(v).await.map_err(|e| match e {
            BearerError::Invalid => Problem::InvalidToken {
                challenge: issuer.invalid_challenge(),
            },
            BearerError::Store(err) => {
                tracing::error!(error = %err, "store failed during bearer check");
                Problem::StoreUnavailable
            }
        })?,
    };
    let query = req.uri().query().unwrap_or("");
    let params = form::parse_form(query.as_bytes()).map_err(form_problem)?;
    let Some(id) = params.get("accessTokenId") else {
        return Err(Problem::BadRequest {
            detail: "the accessTokenId query parameter is required".into(),
        });
    };
    let token = issuer.store().get_token(id).await.map_err(|e| {
        tracing::error!(error = %e, "store failed while revoking");
        Problem::StoreUnavailable
    })?;
    // Another client's token looks exactly like an unknown one.
    let Some(token) = token.filter(|t| t.client_id == caller.client_id) else {
        return Err(Problem::NotFound {
            what: "access token",
        });
    };
    issuer.revoke(&token).await.map_err(|e| {
        tracing::error!(error = %e, "store failed while revoking");
        Problem::StoreUnavailable
    })?;
    tracing::info!(client_id = %caller.client_id, token_id = %token.id, "access token revoked");
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

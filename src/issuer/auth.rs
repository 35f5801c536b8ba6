//! `POST /v1/auth` (form `clientId`, `clientSecret` → 201 with the access-token entity) and
//! `DELETE /v1/auth?accessTokenId=…` (revocation of an access token by itself, or by an admin
//! of its account), Pipevest style.
//! Both are RFC 9421-signed when the client has a key (`signatures.auth_endpoint`). Errors are
//! problem+json.

use std::net::IpAddr;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::form::{self, FormError};
use super::{ClientAuthError, Issuer, narrow_scopes};
use crate::body::Body;
use crate::gate::client_ip::Origin;
use crate::gate::digest;
use crate::gate::idempotency::{self, BodyDigest, Idempotency, TokenRun};
use crate::gate::signature::{ClientKeys, Endpoint, RequestParts, SignatureGate};
use crate::problem::Problem;
use crate::store::TokenKind;

fn form_problem(e: FormError) -> Problem {
    match e {
        FormError::TooLarge { limit } => Problem::PayloadTooLarge {
            limit: limit as u64,
        },
        FormError::TimedOut => Problem::BodyTimeout,
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
pub async fn handle(
    issuer: &Issuer,
    signatures: &SignatureGate,
    idem: &Idempotency,
    req: Request<Incoming>,
    origin: &Origin,
    ip: IpAddr,
) -> Response<Body> {
    let result = match *req.method() {
        Method::POST => create(issuer, signatures, idem, req, origin, ip).await,
        Method::DELETE => delete(issuer, signatures, req, origin, ip).await,
        _ => Err(Problem::MethodNotAllowed {
            allow: "DELETE, POST".into(),
        }),
    };
    result.unwrap_or_else(Problem::into_response)
}

async fn create(
    issuer: &Issuer,
    signatures: &SignatureGate,
    idem: &Idempotency,
    req: Request<Incoming>,
    origin: &Origin,
    ip: IpAddr,
) -> Result<Response<Body>, Problem> {
    let (parts, body) = req.into_parts();
    // A retry returns the token the first request got instead of minting a second one.
    let idem_key = idem.auth_key(&parts.headers, signatures.settings().auth_endpoint)?;
    if form::media_type(&parts.headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(form_problem(FormError::UnsupportedMediaType));
    }
    let bytes = form::read_body(
        body,
        issuer.settings().max_request_bytes,
        issuer.settings().request_read_timeout,
    )
    .await
    .map_err(form_problem)?;
    // A digest that is sent is checked against the bytes read, before anything trusts them.
    if let Some(verifier) = digest::plan(&parts.headers, true)? {
        digest::check_whole(verifier, &bytes)?;
    }
    let params = form::parse_form(&bytes).map_err(form_problem)?;
    let fingerprint = idem_key
        .as_ref()
        .map(|_| idempotency::fingerprint(&parts.method, &parts.uri, BodyDigest::Bytes(&bytes)));
    let (Some(id), Some(secret)) = (params.get("clientId"), params.get("clientSecret")) else {
        return Err(Problem::BadRequest {
            detail: "clientId and clientSecret are required".into(),
        });
    };
    signatures.check_client_id(&parts.headers, id)?;
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
    // The signature is checked after the secret, so that whether a client has a key tells
    // nothing to a caller without its secret. The keys come from the record just read.
    let keys = ClientKeys::from_record(
        &client,
        signatures.client_mode(&client.id),
        signatures.hmac_secrets(),
    );
    let has_body = !bytes.is_empty();
    // Besides the global policy, a signed form covers its media type, which gives the digested
    // bytes their meaning (as in the Pipevest contract).
    let content_type = [String::from("content-type")];
    let parts = RequestParts {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        has_body,
        origin,
    };
    let at = Endpoint {
        mode: signatures.settings().auth_endpoint,
        cover: if has_body { &content_type } else { &[] },
        public_url: None,
    };
    signatures
        .check(&parts, &at, &client.id, &keys, issuer.clock().now(), true)
        .await?;
    let scopes = narrow_scopes(params.get("scope").map(String::as_str), &client.scopes)
        .map_err(|scope| Problem::InvalidScope { scope })?;
    let ticket = match idem_key.zip(fingerprint) {
        Some((key, fp)) => match idem.begin_token(&client.id, key, fp, secret).await? {
            TokenRun::Replay(resp) => return Ok(resp),
            TokenRun::Run(ticket) => Some(ticket),
        },
        None => None,
    };
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
    let resp = crate::body::json_credential(StatusCode::CREATED, entity.to_string());
    match ticket {
        Some(ticket) => Ok(ticket.finish(resp).await),
        None => Ok(resp),
    }
}

async fn delete(
    issuer: &Issuer,
    signatures: &SignatureGate,
    req: Request<Incoming>,
    origin: &Origin,
    ip: IpAddr,
) -> Result<Response<Body>, Problem> {
    // The body of a DELETE is never read, so its digest (a malformed field is still
    // refused) goes unchecked.
    let parts = RequestParts::of(&req, origin, false);
    let mode = signatures.settings().auth_endpoint;
    let (caller, _) = issuer
        .admitted_caller(signatures, &parts, ip, mode, false)
        .await?;
    let query = req.uri().query().unwrap_or("");
    let params = form::parse_form(query.as_bytes()).map_err(form_problem)?;
    let Some(id) = params.get("accessTokenId") else {
        return Err(Problem::BadRequest {
            detail: "the accessTokenId query parameter is required".into(),
        });
    };
    // A credential revokes itself; any other token needs the account's admin level, as in the
    // tokens API (token ids are not secret: upstreams and logs see them). Asked before the
    // lookup, so the answer says nothing about the id.
    let admin = &issuer.settings().admin_scope;
    let is_admin = crate::scope::granted(admin, &caller.scopes);
    if *id != caller.token_id && !is_admin {
        return Err(Problem::InsufficientScope {
            scope: admin.clone(),
            challenge: crate::scope::insufficient_scope_challenge(
                &issuer.settings().realm,
                std::slice::from_ref(admin),
            ),
        });
    }
    let token = issuer.store().get_token(id).await.map_err(|e| {
        tracing::error!(error = %e, "store failed while revoking");
        Problem::StoreUnavailable
    })?;
    // Only access tokens: API keys and managed tokens have their own endpoints and commands.
    // Another account's token looks exactly like an unknown one.
    let Some(token) = token.filter(|t| t.kind == TokenKind::Access && t.account == caller.account)
    else {
        return Err(Problem::NotFound {
            what: "access token",
        });
    };
    issuer.revoke(&token).await.map_err(|e| {
        tracing::error!(error = %e, "store failed while revoking");
        Problem::StoreUnavailable
    })?;
    tracing::info!(client_id = %token.client_id, token_id = %token.id, by = %caller.token_id, "access token revoked");
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

//! Token management, Devo style: `POST`/`GET {base}`, `GET`/`DELETE {base}/{tokenId}`,
//! `PUT {base}/{tokenId}/enable|disable|rename`, with `{base}` = `endpoints.tokens`
//! (`/ws/accounts/{account}/credentials/tokens`). Callers are bearer credentials of the account
//! holding `tokens.admin_scope`; they grant only scopes they hold. Token values are shown once,
//! at creation: only their hashes are stored. Also the managed-token operations the CLI uses.
//!
//! This file is the HTTP side (authentication, dispatch by [`TokenOp`], one function per
//! operation). Beside it: `spec.rs` (what a
//! token is made of, vetted for HTTP and CLI alike), `json.rs` (the bodies in and the entity
//! out) and `managed.rs` (the issuer's store operations on managed tokens).

mod json;
mod managed;
mod spec;

pub use self::json::entity;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use self::json::parse_body;
pub use self::spec::{
    MAX_SCOPES, MAX_USER_CHARS, ManagedSpec, Refusal, check_name, valid_token_id,
};

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use hyper::body::Incoming;

use self::json::{
    CreateBody, DisableBody, EnableBody, RenameBody, parse_json, spec_of, token_problem,
};
use self::spec::refuse;
use super::Issuer;
use super::form::{self, FormError};
use crate::body::Body;
use crate::cache::Identity;
use crate::gate::client_ip::Origin;
use crate::gate::digest;
use crate::gate::signature::{RequestParts, SignatureGate};
use crate::problem::{Problem, TokenRefusal};
use crate::router::{Rest, TokensBase};
use crate::scope;
use crate::store::{StoreError, TokenRecord};

// ------------------------------------------------------------------ HTTP

/// Where an account API (the tokens API, the webhooks API) is served and how its bodies are
/// checked: what the service passes from config.
#[derive(Debug, Clone, Copy)]
pub struct ApiMount<'a> {
    /// The API's base path (`endpoints.tokens`, `endpoints.webhooks`); `None`: off.
    pub base: Option<&'a TokensBase>,
    /// `digest.verify_unsigned`.
    pub verify_unsigned: bool,
}

/// Serves a request under `endpoints.tokens`.
pub async fn handle(api: AdminRequest<'_>, req: Request<Incoming>) -> Response<Body> {
    serve(&api, req)
        .await
        .unwrap_or_else(Problem::into_response)
}

fn store_failed(e: StoreError) -> Problem {
    tracing::error!(error = %e, "store failed in the token API");
    Problem::StoreUnavailable
}

/// A request to one of an account's administration APIs (this one and the webhooks API),
/// with what admits it.
pub struct AdminRequest<'a> {
    pub issuer: &'a Issuer,
    pub signatures: &'a SignatureGate,
    /// Where the API is served and how its bodies are checked.
    pub mount: ApiMount<'a>,
    pub origin: &'a Origin,
    pub ip: IpAddr,
}

/// A caller admitted to administer the account its request's path names.
pub(crate) struct Admin<'p> {
    pub caller: Arc<Identity>,
    /// The body's digest check, if the body gets one.
    pub digest: Option<crate::digest::DigestVerifier>,
    pub base: &'p TokensBase,
    /// What the path names under the base.
    pub rest: Rest<'p>,
}

impl AdminRequest<'_> {
    /// Admits `req`, whose path is `path`, to the API rooted at `base` (`None`: the API is
    /// off, 404). First who calls: a valid bearer credential, used from an address it may use,
    /// signed as its client's policy asks; only then what the path names (404 `what` when
    /// nothing), and that the caller administers that account ([`admin_of`]).
    pub(crate) async fn admit<'p>(
        &self,
        base: Option<&'p TokensBase>,
        what: &'static str,
        req: &Request<Incoming>,
        path: &'p str,
    ) -> Result<Admin<'p>, Problem> {
        let Some(base) = base else {
            return Err(Problem::RouteNotFound);
        };
        let parts = RequestParts::of(req, self.origin, !req.body().is_end_stream());
        let (caller, admitted) = self
            .issuer
            .admitted_caller(
                self.signatures,
                &parts,
                self.ip,
                self.signatures.settings().policy,
                self.mount.verify_unsigned,
            )
            .await?;
        let Some(at) = base.resolve(path) else {
            return Err(Problem::NotFound { what });
        };
        admin_of(self.issuer, &caller, at.account)?;
        Ok(Admin {
            caller,
            digest: admitted.digest,
            base,
            rest: at.rest,
        })
    }
}

/// The caller may manage `account`'s tokens and webhook subscriptions: a credential of that
/// account (another account looks exactly like one that does not exist: 404) holding the
/// admin scope (403 `insufficient_scope`).
fn admin_of(issuer: &Issuer, caller: &Identity, account: &str) -> Result<(), Problem> {
    if account != caller.account {
        return Err(Problem::NotFound { what: "account" });
    }
    let admin = &issuer.settings().admin_scope;
    if !scope::granted(admin, &caller.scopes) {
        return Err(Problem::InsufficientScope {
            scope: admin.clone(),
            challenge: scope::insufficient_scope_challenge(
                &issuer.settings().realm,
                std::slice::from_ref(admin),
            ),
        });
    }
    Ok(())
}

async fn serve(api: &AdminRequest<'_>, req: Request<Incoming>) -> Result<Response<Body>, Problem> {
    let issuer = api.issuer;
    let path = req.uri().path().to_owned();
    let tokens = api.mount.base;
    let Admin {
        caller,
        digest,
        base,
        rest,
    } = api.admit(tokens, "token", &req, &path).await?;
    let op = TokenOp::of(req.method(), rest)?;
    let now = issuer.clock().now();
    let max_name = issuer.settings().max_name_length;
    let (token, updated) = match op {
        TokenOp::List => return list(issuer, &caller.account, now).await,
        TokenOp::Create => {
            let bytes = read_json(issuer, req, digest, true).await?;
            return create(issuer, base, &caller, &bytes, now).await;
        }
        TokenOp::Show(id) => {
            let token = load(issuer, &caller, id).await?;
            return Ok(json(StatusCode::OK, &entity(&token, now)));
        }
        TokenOp::Delete(id) => {
            return delete(issuer, &caller, &load(issuer, &caller, id).await?).await;
        }
        TokenOp::Rename(id) => {
            let token = load(issuer, &caller, id).await?;
            let bytes = read_json(issuer, req, digest, true).await?;
            let body: RenameBody = parse_json(&bytes)?;
            check_name("name", &body.name, max_name).map_err(token_problem)?;
            let updated = issuer.rename_managed_token(&token, body.name).await;
            (token, updated)
        }
        TokenOp::Disable(id) => {
            let token = load(issuer, &caller, id).await?;
            let bytes = read_json(issuer, req, digest, false).await?;
            let body: DisableBody = if bytes.is_empty() {
                DisableBody::default()
            } else {
                parse_json(&bytes)?
            };
            if let Some(reason) = &body.reason {
                check_name("reason", reason, max_name).map_err(token_problem)?;
            }
            let updated = issuer.set_managed_enabled(&token, false, body.reason).await;
            (token, updated)
        }
        TokenOp::Enable(id) => {
            let token = load(issuer, &caller, id).await?;
            let bytes = read_json(issuer, req, digest, false).await?;
            if !bytes.is_empty() {
                let EnableBody {} = parse_json(&bytes)?;
            }
            let updated = issuer.set_managed_enabled(&token, true, None).await;
            (token, updated)
        }
    };
    let updated = updated
        .map_err(store_failed)?
        .ok_or(Problem::NotFound { what: "token" })?;
    tracing::info!(account = %caller.account, token_id = %token.id, by = %caller.token_id, operation = op.name(), "managed token changed");
    Ok(json(StatusCode::OK, &entity(&updated, now)))
}

/// One operation of the API: what a (method, path) pair under the base asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenOp<'a> {
    /// `GET {base}`.
    List,
    /// `POST {base}`.
    Create,
    /// `GET {base}/{tokenId}`.
    Show(&'a str),
    /// `DELETE {base}/{tokenId}`.
    Delete(&'a str),
    /// `PUT {base}/{tokenId}/rename`.
    Rename(&'a str),
    /// `PUT {base}/{tokenId}/enable`.
    Enable(&'a str),
    /// `PUT {base}/{tokenId}/disable`.
    Disable(&'a str),
}

impl<'a> TokenOp<'a> {
    /// The operation `method` asks of `rest`: 404 for an operation segment the API does not
    /// have, 405 with the methods the path takes for any other method.
    pub(crate) fn of(method: &Method, rest: Rest<'a>) -> Result<Self, Problem> {
        let (op, allow) = match rest {
            Rest::Collection => (
                match *method {
                    Method::GET => Some(TokenOp::List),
                    Method::POST => Some(TokenOp::Create),
                    _ => None,
                },
                "GET, POST",
            ),
            Rest::Token(id) => (
                match *method {
                    Method::GET => Some(TokenOp::Show(id)),
                    Method::DELETE => Some(TokenOp::Delete(id)),
                    _ => None,
                },
                "DELETE, GET",
            ),
            Rest::Operation(id, name) => {
                let op = match name {
                    "rename" => TokenOp::Rename(id),
                    "enable" => TokenOp::Enable(id),
                    "disable" => TokenOp::Disable(id),
                    _ => {
                        return Err(Problem::NotFound {
                            what: "token operation",
                        });
                    }
                };
                ((*method == Method::PUT).then_some(op), "PUT")
            }
        };
        op.ok_or_else(|| Problem::MethodNotAllowed {
            allow: allow.into(),
        })
    }

    /// Its name in logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TokenOp::List => "list",
            TokenOp::Create => "create",
            TokenOp::Show(_) => "show",
            TokenOp::Delete(_) => "delete",
            TokenOp::Rename(_) => "rename",
            TokenOp::Enable(_) => "enable",
            TokenOp::Disable(_) => "disable",
        }
    }
}

/// The caller's account's token `id`: 400 for an id of the wrong shape, 404 for any other
/// account's token or none.
async fn load(issuer: &Issuer, caller: &Identity, id: &str) -> Result<TokenRecord, Problem> {
    if !valid_token_id(id) {
        return Err(token_problem(refuse(
            TokenRefusal::MalformedId,
            "a token id is mt_ followed by 32 lowercase hex digits",
        )));
    }
    issuer
        .managed_token(id, Some(&caller.account))
        .await
        .map_err(store_failed)?
        .ok_or(Problem::NotFound { what: "token" })
}

async fn delete(
    issuer: &Issuer,
    caller: &Identity,
    token: &TokenRecord,
) -> Result<Response<Body>, Problem> {
    issuer
        .delete_managed_token(token)
        .await
        .map_err(store_failed)?;
    tracing::info!(account = %caller.account, token_id = %token.id, by = %caller.token_id, "managed token deleted");
    Ok(deleted())
}

/// Reads a JSON body (at most `tokens.max_request_bytes`) and checks its digest. Without
/// `required`, an empty body is accepted whatever its media type.
pub(crate) async fn read_json(
    issuer: &Issuer,
    req: Request<Incoming>,
    digest: Option<crate::digest::DigestVerifier>,
    required: bool,
) -> Result<bytes::Bytes, Problem> {
    let (parts, body) = req.into_parts();
    let bytes = form::read_body(
        body,
        issuer.settings().max_request_bytes,
        issuer.settings().request_read_timeout,
    )
    .await
    .map_err(|e| match e {
        FormError::TooLarge { limit } => Problem::PayloadTooLarge {
            limit: limit as u64,
        },
        FormError::TimedOut => Problem::BodyTimeout,
        _ => Problem::BadRequest {
            detail: "the body could not be read".into(),
        },
    })?;
    // A digest that is sent is checked against the bytes read, before anything trusts them.
    if let Some(verifier) = digest {
        digest::check_whole(verifier, &bytes)?;
    }
    if (required || !bytes.is_empty())
        && form::media_type(&parts.headers).as_deref() != Some("application/json")
    {
        return Err(Problem::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    Ok(bytes)
}

async fn list(issuer: &Issuer, account: &str, now: i64) -> Result<Response<Body>, Problem> {
    let tokens = issuer.managed_tokens(account).await.map_err(store_failed)?;
    let items: Vec<serde_json::Value> = tokens.iter().map(|t| entity(t, now)).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "tokens": items }),
    ))
}

async fn create(
    issuer: &Issuer,
    base: &TokensBase,
    caller: &Identity,
    bytes: &[u8],
    now: i64,
) -> Result<Response<Body>, Problem> {
    let body: CreateBody = parse_json(bytes)?;
    let mut spec = spec_of(body, now)?;
    let client = issuer
        .store()
        .get_client(&caller.client_id)
        .await
        .map_err(store_failed)?
        .filter(|c| c.enabled)
        .ok_or_else(|| Problem::InvalidToken {
            challenge: issuer.invalid_challenge(),
        })?;
    let grantors: [&[String]; 2] = [&caller.scopes, &client.scopes];
    spec.vet(
        issuer.settings().max_name_length,
        &grantors,
        caller.audience.as_deref(),
        now,
    )
    .map_err(token_problem)?;
    let issued = issuer
        .create_managed_token(&client, spec)
        .await
        .map_err(store_failed)?;
    let r = &issued.record;
    tracing::info!(account = %r.account, token_id = %r.id, by = %caller.token_id, "managed token created");
    let mut shown = entity(r, now);
    shown["token"] = issued.value.clone().into();
    let mut resp = crate::body::json_credential(StatusCode::CREATED, shown.to_string());
    if let Ok(location) = HeaderValue::from_str(&base.token_path(&r.account, &r.id)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

/// A JSON answer of the account APIs (tokens, webhooks): [`crate::body::json`].
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    crate::body::json(status, value.to_string())
}

/// The answer of the account APIs to a DELETE that removed what it named: 204, not stored.
pub(crate) fn deleted() -> Response<Body> {
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests;

//! Token management, Devo style: `POST`/`GET {base}`, `GET`/`DELETE {base}/{tokenId}`,
//! `PUT {base}/{tokenId}/enable|disable|rename`, with `{base}` = `endpoints.tokens`
//! (`/ws/accounts/{account}/credentials/tokens`). Callers are bearer credentials of the account
//! holding `tokens.admin_scope`; they grant only scopes they hold. Token values are shown once,
//! at creation: only their hashes are stored. Also the managed-token operations the CLI uses.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use hyper::body::Incoming;
use serde::Deserialize;

use super::form::{self, FormError};
use super::{Issued, Issuer, new_token_record};
use crate::body::Body;
use crate::cache::Identity;
use crate::config::Settings;
use crate::forward::Origin;
use crate::gate::digest;
use crate::gate::signature::{Endpoint, RequestParts, SignatureGate};
use crate::problem::{Problem, TokenRefusal};
use crate::scope;
use crate::secret::{self, SecretKind};
use crate::store::{ClientRecord, StoreError, TokenKind, TokenRecord};
use crate::webhooks::events::{self, Gone};

/// The most scopes one managed token may hold.
pub const MAX_SCOPES: usize = 64;
/// The longest `user`, in characters.
pub const MAX_USER_CHARS: usize = 256;

// ------------------------------------------------------------------ paths

#[derive(Debug, Clone, PartialEq, Eq)]
enum BaseSeg {
    Literal(String),
    Account,
}

/// The compiled `endpoints.tokens` base path: literal segments and one `{account}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensBase {
    pattern: String,
    segments: Vec<BaseSeg>,
}

/// What a path under the base names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest<'a> {
    /// `{base}`: the account's tokens.
    Collection,
    /// `{base}/{tokenId}`.
    Token(&'a str),
    /// `{base}/{tokenId}/{operation}`.
    Operation(&'a str, &'a str),
}

/// A path under the base, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensPath<'a> {
    /// The `{account}` segment, undecoded.
    pub account: &'a str,
    pub rest: Rest<'a>,
}

impl TokensBase {
    /// Parses a base path such as `/ws/accounts/{account}/credentials/tokens`.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("'{pattern}' must start with /"));
        }
        let mut segments = Vec::new();
        for seg in pattern[1..].split('/') {
            segments.push(match seg {
                "{account}" => BaseSeg::Account,
                "" => return Err(format!("'{pattern}' has an empty segment")),
                s if s.contains(['{', '}', '*', '?', '#', '%']) => {
                    return Err(format!(
                        "in '{pattern}', segment '{s}' may hold only literal text or {{account}}"
                    ));
                }
                s => BaseSeg::Literal(s.to_owned()),
            });
        }
        if segments.iter().filter(|s| **s == BaseSeg::Account).count() != 1 {
            return Err(format!(
                "'{pattern}' must hold exactly one {{account}} segment"
            ));
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            segments,
        })
    }

    /// Splits `path` into the base's segments and what follows, if it starts with the base.
    fn split<'p>(&self, path: &'p str) -> Option<(&'p str, std::str::Split<'p, char>)> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut account = None;
        for seg in &self.segments {
            let p = parts.next()?;
            match seg {
                BaseSeg::Literal(lit) if p == lit => {}
                BaseSeg::Literal(_) => return None,
                BaseSeg::Account if p.is_empty() => return None,
                BaseSeg::Account => account = Some(p),
            }
        }
        Some((account?, parts))
    }

    /// Whether `path` is the base or lies under it: all of that is Warden's, never forwarded.
    pub fn claims(&self, path: &str) -> bool {
        self.split(path).is_some()
    }

    /// What `path` names; `None` for paths under the base that name nothing.
    pub fn resolve<'p>(&self, path: &'p str) -> Option<TokensPath<'p>> {
        let (account, parts) = self.split(path)?;
        let rest: Vec<&str> = parts.collect();
        let rest = match rest[..] {
            [] => Rest::Collection,
            [id] if !id.is_empty() => Rest::Token(id),
            [id, op] if !id.is_empty() => Rest::Operation(id, op),
            _ => return None,
        };
        Some(TokensPath { account, rest })
    }

    /// The base path as configured, `{account}` included.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The path of one token of `account`, for `Location`.
    pub fn token_path(&self, account: &str, id: &str) -> String {
        format!("{}/{id}", self.pattern.replace("{account}", account))
    }
}

/// Whether `id` looks like a managed token id: `mt_` and 32 lowercase hex digits.
pub fn valid_token_id(id: &str) -> bool {
    id.strip_prefix("mt_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

// ------------------------------------------------------------------ what a token is made of

/// What a new managed token is to be, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedSpec {
    pub name: String,
    pub user: Option<String>,
    pub audience: Option<String>,
    pub scopes: Vec<String>,
    /// Unix seconds; `None`: never expires.
    pub expires_at: Option<i64>,
}

/// A refusal of a token request, as the HTTP API and the CLI both report it.
pub type Refusal = (TokenRefusal, String);

fn refuse(kind: TokenRefusal, detail: impl Into<String>) -> Refusal {
    (kind, detail.into())
}

/// Checks a token name: 1 to `max` characters, not blank, no control characters.
pub fn check_name(field: &str, name: &str, max: usize) -> Result<(), Refusal> {
    if name.trim().is_empty() {
        return Err(refuse(
            TokenRefusal::InvalidField,
            format!("{field} must not be empty"),
        ));
    }
    if name.chars().count() > max {
        return Err(refuse(
            TokenRefusal::NameTooLong,
            format!("{field} is longer than {max} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(refuse(
            TokenRefusal::InvalidField,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

impl ManagedSpec {
    /// Checks the spec against the limits, and against what its grantor holds: every scope
    /// must be granted by every list in `grantors` (the caller's token and its client), and a
    /// grantor limited to an audience can only create tokens for that audience. Removes
    /// repeated scopes.
    pub fn vet(
        &mut self,
        max_name: usize,
        grantors: &[&[String]],
        grantor_audience: Option<&str>,
        now: i64,
    ) -> Result<(), Refusal> {
        check_name("name", &self.name, max_name)?;
        if let Some(user) = &self.user {
            if user.trim().is_empty()
                || user.chars().count() > MAX_USER_CHARS
                || user.chars().any(char::is_control)
            {
                return Err(refuse(
                    TokenRefusal::InvalidField,
                    format!(
                        "user must be 1-{MAX_USER_CHARS} characters without control characters"
                    ),
                ));
            }
        }
        if let Some(aud) = &self.audience {
            if !crate::config::valid_audience(aud) {
                return Err(refuse(
                    TokenRefusal::InvalidField,
                    "audience must be 1-256 visible ASCII characters without spaces or quotes",
                ));
            }
        }
        if let Some(held) = grantor_audience {
            match &self.audience {
                None => self.audience = Some(held.to_owned()),
                Some(aud) if aud == held => {}
                Some(aud) => {
                    return Err(refuse(
                        TokenRefusal::ScopeNotHeld,
                        format!(
                            "the caller is limited to audience '{held}' and cannot grant '{aud}'"
                        ),
                    ));
                }
            }
        }
        if self.scopes.is_empty() {
            return Err(refuse(
                TokenRefusal::InvalidField,
                "scopes must name at least one scope",
            ));
        }
        let mut unique: Vec<String> = Vec::with_capacity(self.scopes.len());
        for s in &self.scopes {
            if let Err(e) = scope::check(s) {
                return Err(refuse(
                    TokenRefusal::InvalidField,
                    format!("scope '{s}': {e}"),
                ));
            }
            if !unique.contains(s) {
                unique.push(s.clone());
            }
        }
        if unique.len() > MAX_SCOPES {
            return Err(refuse(
                TokenRefusal::InvalidField,
                format!("a token holds at most {MAX_SCOPES} scopes"),
            ));
        }
        for s in &unique {
            if grantors.iter().any(|held| !scope::granted(s, held)) {
                return Err(refuse(
                    TokenRefusal::ScopeNotHeld,
                    format!("scope '{s}' is not held by the caller, so it cannot be granted"),
                ));
            }
        }
        self.scopes = unique;
        if let Some(end) = self.expires_at {
            if end <= now {
                return Err(refuse(
                    TokenRefusal::InvalidField,
                    "the expiry must lie in the future",
                ));
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ the issuer's side

impl Issuer {
    /// A managed token by id, if there is one and it belongs to `account` (any, for `None`).
    pub async fn managed_token(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let token = self.store.get_token(id).await?;
        Ok(
            token
                .filter(|t| t.kind == TokenKind::Managed && account.is_none_or(|a| a == t.account)),
        )
    }

    /// An account's managed tokens, oldest first.
    pub async fn managed_tokens(&self, account: &str) -> Result<Vec<TokenRecord>, StoreError> {
        self.store
            .list_tokens(account, Some(TokenKind::Managed))
            .await
    }

    /// Creates a managed token for `client` (its account, its trusted IPs) from a vetted spec;
    /// the value is in the answer, and nowhere else ever again.
    pub async fn create_managed_token(
        &self,
        client: &ClientRecord,
        spec: ManagedSpec,
    ) -> Result<Issued, StoreError> {
        let now = self.clock.now();
        let minted = secret::mint(SecretKind::ManagedToken);
        let record = TokenRecord {
            hash: minted.hash,
            user: spec.user,
            audience: spec.audience,
            ..new_token_record(
                client,
                TokenKind::Managed,
                spec.scopes,
                spec.expires_at,
                Some(spec.name),
                now,
            )
        };
        let event = events::token_created(&record, now);
        self.store.insert_token(record.clone(), Some(event)).await?;
        Ok(Issued {
            record,
            value: minted.value,
        })
    }

    /// Enables or disables a managed token (with a reason); the very next request with it
    /// sees the change, here at once and on every other instance through the change feed.
    /// Returns the token as it now is (`None` if it went away meanwhile).
    pub async fn set_managed_enabled(
        &self,
        token: &TokenRecord,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = self.clock.now();
        let event = events::token_enabled(token, enabled, reason.as_deref(), now);
        let found = self
            .store
            .set_token_enabled(&token.id, enabled, reason, now, Some(event))
            .await?;
        self.cache.invalidate(&token.hash);
        if !found {
            return Ok(None);
        }
        self.store.get_token(&token.id).await
    }

    /// Renames a managed token; returns it as it now is.
    pub async fn rename_managed_token(
        &self,
        token: &TokenRecord,
        name: String,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = self.clock.now();
        let event = events::token_renamed(token, &name, now);
        let found = self
            .store
            .rename_token(&token.id, name, now, Some(event))
            .await?;
        self.cache.invalidate(&token.hash);
        if !found {
            return Ok(None);
        }
        self.store.get_token(&token.id).await
    }

    /// Deletes a managed token for good; the very next request with it is refused.
    pub async fn delete_managed_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let event = events::token_deleted(token, Gone::Deleted, self.clock.now());
        let found = self.store.delete_token(&token.id, Some(event)).await?;
        self.cache.invalidate(&token.hash);
        Ok(found)
    }
}

/// A token as the API shows it: never its value.
pub fn entity(t: &TokenRecord, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "user": t.user,
        "audience": t.audience,
        "scopes": t.scopes.join(" "),
        "clientId": t.client_id,
        "createdAt": t.created_at,
        "updatedAt": t.updated_at,
        "expiresAt": t.expires_at,
        "active": t.is_active(now),
        "enabled": t.enabled,
        "expired": t.expires_at.is_some_and(|end| end <= now),
        "disabledReason": t.disabled_reason,
    })
}

// ------------------------------------------------------------------ request bodies

/// `POST {base}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    name: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    /// A space-separated string or an array of strings.
    scopes: serde_json::Value,
    /// Unix seconds.
    #[serde(default)]
    expires_at: Option<i64>,
    /// Seconds from now.
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `PUT {base}/{id}/rename`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

/// `PUT {base}/{id}/disable` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisableBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `PUT {base}/{id}/enable` (the body is optional, and empty if present).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableBody {}

fn token_problem((refusal, detail): Refusal) -> Problem {
    Problem::TokenRequest { refusal, detail }
}

fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        token_problem(refuse(
            TokenRefusal::InvalidJson,
            format!("the body is not the JSON object expected: {e}"),
        ))
    })
}

fn scopes_of(v: &serde_json::Value) -> Result<Vec<String>, Problem> {
    let bad = || {
        token_problem(refuse(
            TokenRefusal::InvalidJson,
            "scopes must be a space-separated string or an array of strings",
        ))
    };
    match v {
        serde_json::Value::String(s) => Ok(scope::split_list(s).map(str::to_owned).collect()),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

fn spec_of(body: CreateBody, now: i64) -> Result<ManagedSpec, Problem> {
    let expires_at = match (body.expires_at, body.expires_in) {
        (Some(_), Some(_)) => {
            return Err(token_problem(refuse(
                TokenRefusal::InvalidField,
                "send expiresAt or expiresIn, not both",
            )));
        }
        (Some(at), None) => Some(at),
        (None, Some(0)) => {
            return Err(token_problem(refuse(
                TokenRefusal::InvalidField,
                "expiresIn must be more than 0 seconds",
            )));
        }
        (None, Some(secs)) => Some(now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))),
        (None, None) => None,
    };
    Ok(ManagedSpec {
        scopes: scopes_of(&body.scopes)?,
        name: body.name,
        user: body.user,
        audience: body.audience,
        expires_at,
    })
}

/// Reads `bytes` as the body of `op` (`create`, `rename`, `disable`, `enable`) exactly as
/// [`serve`] does, up to the store: the entry point of the fuzz targets and property tests.
/// `Some` is the unvetted spec of a create body.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_body(
    op: &str,
    bytes: &[u8],
    max_name: usize,
    now: i64,
) -> Result<Option<ManagedSpec>, Problem> {
    match op {
        "create" => spec_of(parse_json(bytes)?, now).map(Some),
        "rename" => {
            let body: RenameBody = parse_json(bytes)?;
            check_name("name", &body.name, max_name).map_err(token_problem)?;
            Ok(None)
        }
        "disable" if bytes.is_empty() => Ok(None),
        "disable" => {
            let body: DisableBody = parse_json(bytes)?;
            if let Some(reason) = &body.reason {
                check_name("reason", reason, max_name).map_err(token_problem)?;
            }
            Ok(None)
        }
        _ if bytes.is_empty() => Ok(None),
        _ => parse_json::<EnableBody>(bytes).map(|EnableBody {}| None),
    }
}

// ------------------------------------------------------------------ HTTP

/// Serves a request under `endpoints.tokens`.
pub async fn handle(
    issuer: &Issuer,
    signatures: &SignatureGate,
    settings: &Settings,
    req: Request<Incoming>,
    origin: &Origin,
    ip: IpAddr,
) -> Response<Body> {
    serve(issuer, signatures, settings, req, origin, ip)
        .await
        .unwrap_or_else(Problem::into_response)
}

fn store_failed(e: StoreError) -> Problem {
    tracing::error!(error = %e, "store failed in the token API");
    Problem::StoreUnavailable
}

/// Who calls: a valid bearer credential, used from an address it may use, signed as its
/// client's policy asks. Returns it with the body's digest check, if the body gets one.
pub(crate) async fn authenticate(
    issuer: &Issuer,
    signatures: &SignatureGate,
    settings: &Settings,
    req: &Request<Incoming>,
    origin: &Origin,
    ip: IpAddr,
) -> Result<(Arc<Identity>, Option<crate::digest::DigestVerifier>), Problem> {
    let identity = issuer.caller(req.headers(), ip).await?;
    let parts = RequestParts {
        method: req.method(),
        uri: req.uri(),
        headers: req.headers(),
        has_body: !req.body().is_end_stream(),
        origin,
    };
    let at = Endpoint {
        mode: signatures.settings().policy,
        cover: &[],
        public_url: None,
    };
    let admitted = signatures
        .admit(
            issuer.store().as_ref(),
            &parts,
            &at,
            &identity.client_id,
            issuer.clock().now(),
            settings.digest.verify_unsigned,
        )
        .await?;
    Ok((identity, admitted.digest))
}

async fn serve(
    issuer: &Issuer,
    signatures: &SignatureGate,
    settings: &Settings,
    req: Request<Incoming>,
    origin: &Origin,
    ip: IpAddr,
) -> Result<Response<Body>, Problem> {
    let Some(base) = settings.endpoints.tokens.as_ref() else {
        return Err(Problem::RouteNotFound);
    };
    let (caller, digest) = authenticate(issuer, signatures, settings, &req, origin, ip).await?;
    let path = req.uri().path().to_owned();
    let Some(at) = base.resolve(&path) else {
        return Err(Problem::NotFound { what: "token" });
    };
    // Another account looks exactly like one that does not exist.
    if at.account != caller.account {
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
    let op = TokenOp::of(req.method(), at.rest)?;
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
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
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
    let mut resp = json(StatusCode::CREATED, &shown);
    if let Ok(location) = HeaderValue::from_str(&base.token_path(&r.account, &r.id)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    crate::body::json(status, value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TokensBase {
        TokensBase::parse("/ws/accounts/{account}/credentials/tokens").unwrap()
    }

    #[test]
    fn the_base_splits_account_id_and_operation() {
        let b = base();
        let p = |s| b.resolve(s).map(|p| (p.account, p.rest));
        assert_eq!(
            p("/ws/accounts/acme/credentials/tokens"),
            Some(("acme", Rest::Collection))
        );
        assert_eq!(
            p("/ws/accounts/acme/credentials/tokens/mt_1"),
            Some(("acme", Rest::Token("mt_1")))
        );
        assert_eq!(
            p("/ws/accounts/acme/credentials/tokens/mt_1/enable"),
            Some(("acme", Rest::Operation("mt_1", "enable")))
        );
        assert_eq!(p("/ws/accounts/acme/credentials/tokens/"), None);
        assert_eq!(p("/ws/accounts/acme/credentials/tokens/a/b/c"), None);
        assert_eq!(p("/ws/accounts//credentials/tokens"), None);
        assert!(b.claims("/ws/accounts/acme/credentials/tokens/a/b/c"));
        assert!(!b.claims("/ws/accounts/acme/credentials/tokensx"));
        assert!(!b.claims("/ws/accounts/acme/credentials"));
        assert!(!b.claims("/ws/accounts//credentials/tokens"));
        assert_eq!(
            b.token_path("acme", "mt_1"),
            "/ws/accounts/acme/credentials/tokens/mt_1"
        );
    }

    #[test]
    fn each_method_and_path_is_one_operation_or_a_clear_refusal() {
        let id = "mt_0123456789abcdef0123456789abcdef";
        let cases = [
            (Method::GET, Rest::Collection, Ok(TokenOp::List)),
            (Method::POST, Rest::Collection, Ok(TokenOp::Create)),
            (Method::GET, Rest::Token(id), Ok(TokenOp::Show(id))),
            (Method::DELETE, Rest::Token(id), Ok(TokenOp::Delete(id))),
            (
                Method::PUT,
                Rest::Operation(id, "rename"),
                Ok(TokenOp::Rename(id)),
            ),
            (
                Method::PUT,
                Rest::Operation(id, "enable"),
                Ok(TokenOp::Enable(id)),
            ),
            (
                Method::PUT,
                Rest::Operation(id, "disable"),
                Ok(TokenOp::Disable(id)),
            ),
            (Method::DELETE, Rest::Collection, Err("GET, POST")),
            (Method::HEAD, Rest::Token(id), Err("DELETE, GET")),
            (Method::POST, Rest::Operation(id, "enable"), Err("PUT")),
        ];
        for (method, rest, want) in cases {
            match (TokenOp::of(&method, rest), want) {
                (Ok(op), Ok(w)) => assert_eq!(op, w),
                (Err(Problem::MethodNotAllowed { allow }), Err(w)) => assert_eq!(allow, w),
                (got, w) => panic!("{method} {rest:?}: {got:?}, wanted {w:?}"),
            }
        }
        // An operation the API does not have is not found, whatever the method.
        for method in [Method::PUT, Method::GET] {
            assert!(matches!(
                TokenOp::of(&method, Rest::Operation(id, "Enable")),
                Err(Problem::NotFound {
                    what: "token operation"
                })
            ));
        }
    }

    #[test]
    fn bad_bases_are_refused() {
        assert!(TokensBase::parse("ws/{account}").is_err());
        assert!(TokensBase::parse("/ws/tokens").is_err());
        assert!(TokensBase::parse("/ws/{account}/{account}").is_err());
        assert!(TokensBase::parse("/ws//{account}").is_err());
        assert!(TokensBase::parse("/ws/{account}/").is_err());
        assert!(TokensBase::parse("/ws/{acct}/{account}").is_err());
        assert!(TokensBase::parse("/ws/*/{account}").is_err());
        assert!(TokensBase::parse("/{account}/tokens").is_ok());
    }

    #[test]
    fn token_ids_are_checked_for_shape() {
        assert!(valid_token_id("mt_0123456789abcdef0123456789abcdef"));
        assert!(!valid_token_id("mt_0123456789ABCDEF0123456789abcdef"));
        assert!(!valid_token_id("at_0123456789abcdef0123456789abcdef"));
        assert!(!valid_token_id("mt_0123"));
        assert!(!valid_token_id("../etc"));
    }

    fn spec(scopes: &[&str]) -> ManagedSpec {
        ManagedSpec {
            name: "ci".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..ManagedSpec::default()
        }
    }

    #[test]
    fn a_spec_grants_only_what_every_grantor_holds() {
        let caller = vec!["table://*.**".to_string(), "level://admin".to_string()];
        let client = vec!["table://**".to_string(), "level://*".to_string()];
        let grantors: [&[String]; 2] = [&caller, &client];
        let mut ok = spec(&["table://a.b", "table://a.b", "level://admin"]);
        ok.vet(128, &grantors, None, 0).unwrap();
        assert_eq!(ok.scopes, ["table://a.b", "level://admin"]);
        let e = spec(&["level://root"])
            .vet(128, &grantors, None, 0)
            .unwrap_err();
        assert_eq!(e.0, TokenRefusal::ScopeNotHeld);
        let e = spec(&["table://a"])
            .vet(128, &grantors, None, 0)
            .unwrap_err();
        assert_eq!(e.0, TokenRefusal::ScopeNotHeld);
        let e = spec(&["table://a..b"])
            .vet(128, &grantors, None, 0)
            .unwrap_err();
        assert_eq!(e.0, TokenRefusal::InvalidField);
        let e = spec(&[]).vet(128, &grantors, None, 0).unwrap_err();
        assert_eq!(e.0, TokenRefusal::InvalidField);
    }

    #[test]
    fn names_audiences_and_expiry_are_checked() {
        let held = vec!["read".to_string()];
        let grantors: [&[String]; 1] = [&held];
        let mut long = spec(&["read"]);
        long.name = "x".repeat(9);
        assert_eq!(
            long.vet(8, &grantors, None, 0).unwrap_err().0,
            TokenRefusal::NameTooLong
        );
        let mut blank = spec(&["read"]);
        blank.name = "  ".into();
        assert_eq!(
            blank.vet(8, &grantors, None, 0).unwrap_err().0,
            TokenRefusal::InvalidField
        );
        let mut inherits = spec(&["read"]);
        inherits.vet(8, &grantors, Some("orders"), 0).unwrap();
        assert_eq!(inherits.audience.as_deref(), Some("orders"));
        let mut other = spec(&["read"]);
        other.audience = Some("billing".into());
        assert_eq!(
            other.vet(8, &grantors, Some("orders"), 0).unwrap_err().0,
            TokenRefusal::ScopeNotHeld
        );
        let mut past = spec(&["read"]);
        past.expires_at = Some(100);
        assert_eq!(
            past.vet(8, &grantors, None, 100).unwrap_err().0,
            TokenRefusal::InvalidField
        );
    }

    #[test]
    fn create_bodies_refuse_unknown_fields_and_take_scopes_either_way() {
        let e = parse_json::<CreateBody>(br#"{"name":"a","scopes":"x","admin":true}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        let b: CreateBody =
            parse_json(br#"{"name":"a","scopes":" x  y ","expiresIn":60}"#).unwrap();
        let s = spec_of(b, 1000).unwrap();
        assert_eq!(s.scopes, ["x", "y"]);
        assert_eq!(s.expires_at, Some(1060));
        let b: CreateBody = parse_json(br#"{"name":"a","scopes":["x","y"]}"#).unwrap();
        assert_eq!(spec_of(b, 0).unwrap().scopes, ["x", "y"]);
        let b: CreateBody = parse_json(br#"{"name":"a","scopes":[1]}"#).unwrap();
        assert_eq!(spec_of(b, 0).unwrap_err().code(), "invalid_json");
        let b: CreateBody =
            parse_json(br#"{"name":"a","scopes":"x","expiresIn":1,"expiresAt":5}"#).unwrap();
        assert_eq!(spec_of(b, 0).unwrap_err().code(), "invalid_field");
    }
}

//! An account's webhook subscriptions over HTTP, under `endpoints.webhooks`
//! (`/ws/accounts/{account}/webhooks`): `GET`/`POST {base}`, `GET`/`DELETE {base}/{id}`,
//! `PUT {base}/{id}/enable|disable`, `POST {base}/{id}/rotate-secret`. Callers are admitted as
//! by the tokens API: a bearer credential of the account holding `tokens.admin_scope`, signed
//! as its client's policy asks; another account's subscriptions look like none (404). A secret
//! is shown once, in the answer that made it.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use super::{Refusal, Webhooks, WithSecret};
use crate::body::Body;
use crate::issuer::tokens_api::{Admin, AdminRequest, deleted, json, read_json};
use crate::problem::{Problem, WebhookRefusal};
use crate::router::Rest;
use crate::store::{StoreError, WebhookSubscription};

/// Whether `id` looks like a subscription id made through the API: `wh_` and 32 lowercase hex
/// digits.
pub fn valid_subscription_id(id: &str) -> bool {
    id.strip_prefix("wh_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// A subscription as the API shows it: never its secret.
pub fn entity(s: &WebhookSubscription) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "url": s.url,
        "events": s.events,
        "description": s.description,
        "enabled": s.enabled,
        "disabledReason": s.disabled_reason,
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
    })
}

/// `POST {base}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    /// An array of patterns, or a space-separated string.
    events: serde_json::Value,
    #[serde(default)]
    description: Option<String>,
}

/// `PUT {base}/{id}/disable` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisableBody {
    #[serde(default)]
    reason: Option<String>,
}

/// A body that must be empty or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn refused(refusal: WebhookRefusal, detail: impl Into<String>) -> Problem {
    Problem::Webhook {
        refusal,
        detail: detail.into(),
    }
}

fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        refused(
            WebhookRefusal::InvalidJson,
            format!("the body is not the JSON object expected: {e}"),
        )
    })
}

fn optional_json<T: for<'a> Deserialize<'a> + Default>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.is_empty() {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

fn store_failed(e: StoreError) -> Problem {
    tracing::error!(error = %e, "store failed in the webhooks API");
    Problem::StoreUnavailable
}

fn problem_of(r: Refusal) -> Problem {
    match r {
        Refusal::Invalid(why) => refused(WebhookRefusal::InvalidField, why),
        Refusal::UrlRefused(why) => refused(WebhookRefusal::UrlRefused, why),
        r @ Refusal::LimitReached(_) => refused(WebhookRefusal::LimitReached, r.to_string()),
        // Operator subscriptions have no account: the API never finds one.
        Refusal::NotFound | Refusal::Declared(_) => Problem::NotFound {
            what: "subscription",
        },
        Refusal::Store(e) => store_failed(e),
    }
}

/// Shows a subscription with its new secret, this once.
fn with_secret(status: StatusCode, made: &WithSecret) -> Response<Body> {
    let mut shown = entity(&made.subscription);
    shown["secret"] = made.secret.expose().into();
    crate::body::json_credential(status, shown.to_string())
}

/// Serves a request under `endpoints.webhooks`.
pub async fn handle(
    api: AdminRequest<'_>,
    webhooks: &Webhooks,
    req: Request<Incoming>,
) -> Response<Body> {
    serve(&api, webhooks, req)
        .await
        .unwrap_or_else(Problem::into_response)
}

async fn serve(
    api: &AdminRequest<'_>,
    webhooks: &Webhooks,
    req: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    let issuer = api.issuer;
    let path = req.uri().path().to_owned();
    // The tokens API's admission: credential, address, signature, body digest, account admin.
    let subscriptions = api.mount.base;
    let Admin {
        caller,
        digest,
        base,
        rest,
    } = api
        .admit(subscriptions, "subscription", &req, &path)
        .await?;
    let account = caller.account.as_str();
    let (id, op) = match rest {
        Rest::Collection => (None, None),
        Rest::Token(id) => (Some(id), None),
        Rest::Operation(id, op @ ("enable" | "disable" | "rotate-secret")) => (Some(id), Some(op)),
        Rest::Operation(..) => {
            return Err(Problem::NotFound {
                what: "subscription operation",
            });
        }
    };
    let allow = match (id, op) {
        (None, _) => "GET, POST",
        (Some(_), None) => "DELETE, GET",
        (Some(_), Some("rotate-secret")) => "POST",
        (Some(_), Some(_)) => "PUT",
    };
    let method = req.method().clone();
    if !allow.split(", ").any(|m| m == method.as_str()) {
        return Err(Problem::MethodNotAllowed {
            allow: allow.into(),
        });
    }
    let Some(id) = id else {
        if method == Method::GET {
            let all = webhooks.list(Some(account)).await.map_err(store_failed)?;
            let items: Vec<serde_json::Value> = all.iter().map(entity).collect();
            return Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "webhooks": items }),
            ));
        }
        let bytes = read_json(issuer, req, digest, true).await?;
        let body: CreateBody = parse_json(&bytes)?;
        let events = patterns(&body.events)?;
        let made = webhooks
            .create(account, &body.url, &events, body.description)
            .await
            .map_err(problem_of)?;
        let s = &made.subscription;
        tracing::info!(account, subscription = %s.id, by = %caller.token_id, "webhook subscription created");
        let mut resp = with_secret(StatusCode::CREATED, &made);
        let location = base.token_path(account, &s.id);
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(resp);
    };
    if !valid_subscription_id(id) {
        return Err(refused(
            WebhookRefusal::MalformedId,
            "a subscription id is wh_ followed by 32 lowercase hex digits",
        ));
    }
    let found = webhooks.get(id, Some(account)).await.map_err(problem_of)?;
    let changed = match op {
        None if method == Method::GET => return Ok(json(StatusCode::OK, &entity(&found))),
        None => {
            webhooks
                .delete(id, Some(account))
                .await
                .map_err(problem_of)?;
            tracing::info!(account, subscription = %id, by = %caller.token_id, "webhook subscription deleted");
            return Ok(deleted());
        }
        Some("rotate-secret") => {
            let bytes = read_json(issuer, req, digest, false).await?;
            let Empty {} = optional_json(&bytes)?;
            let made = webhooks
                .rotate(id, Some(account), None)
                .await
                .map_err(problem_of)?;
            tracing::info!(account, subscription = %id, by = %caller.token_id, "webhook secret rotated");
            return Ok(with_secret(StatusCode::OK, &made));
        }
        Some("disable") => {
            let bytes = read_json(issuer, req, digest, false).await?;
            let body: DisableBody = optional_json(&bytes)?;
            webhooks
                .set_enabled(id, Some(account), false, body.reason)
                .await
        }
        Some(_) => {
            let bytes = read_json(issuer, req, digest, false).await?;
            let Empty {} = optional_json(&bytes)?;
            webhooks.set_enabled(id, Some(account), true, None).await
        }
    };
    let changed = changed.map_err(problem_of)?;
    tracing::info!(account, subscription = %id, by = %caller.token_id, operation = op.unwrap_or("-"), "webhook subscription changed");
    Ok(json(StatusCode::OK, &entity(&changed)))
}

fn patterns(v: &serde_json::Value) -> Result<Vec<String>, Problem> {
    let bad = || {
        refused(
            WebhookRefusal::InvalidJson,
            "events must be an array of strings or a space-separated string",
        )
    };
    match v {
        serde_json::Value::String(s) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_event_lists_are_checked_for_shape() {
        assert!(valid_subscription_id("wh_0123456789abcdef0123456789abcdef"));
        assert!(!valid_subscription_id("wh_0123"));
        assert!(!valid_subscription_id("cfg-0123456789abcdef"));
        assert_eq!(
            patterns(&serde_json::json!("AUTH.* TOKEN.DISABLED")).unwrap(),
            ["AUTH.*", "TOKEN.DISABLED"]
        );
        assert_eq!(patterns(&serde_json::json!(["*"])).unwrap(), ["*"]);
        assert_eq!(
            patterns(&serde_json::json!([1])).unwrap_err().code(),
            "invalid_json"
        );
        let e = parse_json::<CreateBody>(br#"{"url":"https://a","events":"*","secret":"x"}"#);
        assert_eq!(
            e.unwrap_err().code(),
            "invalid_json",
            "a secret is never chosen by the caller"
        );
    }
}

//! JSON in and out of the token API: a token as the API shows it, and the request bodies
//! read into a [`ManagedSpec`] or a new name or reason.

use serde::Deserialize;

#[cfg(any(test, feature = "fuzzing"))]
use super::check_name;
use super::spec::refuse;
use super::{ManagedSpec, Refusal};
use crate::problem::{Problem, TokenRefusal};
use crate::scope;
use crate::store::TokenRecord;

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

/// `POST {base}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CreateBody {
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
pub(super) struct RenameBody {
    pub(super) name: String,
}

/// `PUT {base}/{id}/disable` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DisableBody {
    #[serde(default)]
    pub(super) reason: Option<String>,
}

/// `PUT {base}/{id}/enable` (the body is optional, and empty if present).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnableBody {}

pub(super) fn token_problem((refusal, detail): Refusal) -> Problem {
    Problem::TokenRequest { refusal, detail }
}

pub(super) fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Problem> {
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

pub(super) fn spec_of(body: CreateBody, now: i64) -> Result<ManagedSpec, Problem> {
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

//! The events Warden reports, their payloads, and the patterns subscriptions choose them by.
//! The issuer records them with its changes; `webhooks` delivers them.
//!
//! A payload is the Standard Webhooks envelope: `id` (the event's id, also sent as
//! `webhook-id`: the same on every attempt, so receivers deduplicate on it), `type`,
//! `timestamp` (RFC 3339, when the change happened), `account` (whose credential it concerns),
//! and `data`. It names tokens and clients by id; it never holds a token value or a secret.

use serde_json::{Value, json};

use crate::store::{ClientRecord, NewEvent, TokenRecord};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A token was issued: an access token (`/v1/auth`, `/v1/oauth/token`), an API key (new, or
    /// the replacement of a revoked one) or a managed token.
    AuthCreated,
    /// A token stopped existing for good: revoked (`DELETE /v1/auth`, `/v1/oauth/revoke`, an API
    /// key revoked and replaced) or deleted (a managed token). Expiry is not reported.
    AuthDeleted,
    /// A managed token was disabled (with its reason, if one was given).
    TokenDisabled,
    /// A disabled managed token was enabled again.
    TokenEnabled,
    /// A managed token was renamed.
    TokenRenamed,
    /// A client was given a new secret; the old ones keep working until `previousSecretsExpireAt`.
    ClientSecretRotated,
}

impl EventType {
    /// Every type, in the order the README lists them.
    pub const ALL: [EventType; 6] = [
        EventType::AuthCreated,
        EventType::AuthDeleted,
        EventType::TokenDisabled,
        EventType::TokenEnabled,
        EventType::TokenRenamed,
        EventType::ClientSecretRotated,
    ];

    /// The name sent as `type`.
    pub fn name(self) -> &'static str {
        match self {
            EventType::AuthCreated => "AUTH.CREATED",
            EventType::AuthDeleted => "AUTH.DELETED",
            EventType::TokenDisabled => "TOKEN.DISABLED",
            EventType::TokenEnabled => "TOKEN.ENABLED",
            EventType::TokenRenamed => "TOKEN.RENAMED",
            EventType::ClientSecretRotated => "CLIENT.SECRET_ROTATED",
        }
    }
}

/// The part of a type name before the dot (`AUTH` of `AUTH.CREATED`).
pub fn domain(name: &str) -> &str {
    name.split_once('.').map_or(name, |(d, _)| d)
}

/// The most patterns one subscription may hold.
pub const MAX_PATTERNS: usize = 32;

/// Checks a subscription's event pattern: a type name (`AUTH.CREATED`), every type of a
/// domain (`AUTH.*`), or every type (`*`). Unknown names are refused, so that a typo does not
/// make a subscription that never fires.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let known = |p: &str| {
        p == "*"
            || EventType::ALL.iter().any(|t| t.name() == p)
            || p.strip_suffix(".*")
                .is_some_and(|d| EventType::ALL.iter().any(|t| domain(t.name()) == d))
    };
    if known(pattern) {
        return Ok(());
    }
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
    Err(format!(
        "'{}' is not an event pattern: use one of {}, a domain wildcard such as AUTH.*, or *",
        pattern.chars().take(64).collect::<String>(),
        names.join(", ")
    ))
}

/// Checks a whole list of patterns (1 to [`MAX_PATTERNS`]) and removes repeats.
pub fn check_patterns(patterns: &[String]) -> Result<Vec<String>, String> {
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        return Err(format!(
            "events must name 1 to {MAX_PATTERNS} patterns (AUTH.CREATED, AUTH.*, *)"
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(patterns.len());
    for p in patterns {
        check_pattern(p)?;
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Whether `pattern` selects events of type `name`: the rule every store applies when it fans
/// an event out (`Outbox`), written here once for the tests and the CLI.
pub fn matches(pattern: &str, name: &str) -> bool {
    pattern == "*"
        || pattern == name
        || pattern
            .strip_suffix(".*")
            .is_some_and(|d| d == domain(name))
}

/// An RFC 3339 UTC time of unix seconds.
pub fn rfc3339(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn event(kind: EventType, account: &str, data: Value, now: i64) -> NewEvent {
    let id = crate::secret::new_id("evt_");
    let payload = json!({
        "id": id,
        "type": kind.name(),
        "timestamp": rfc3339(now),
        "account": account,
        "data": data,
    });
    NewEvent {
        id,
        event_type: kind.name().to_owned(),
        account: account.to_owned(),
        payload: payload.to_string(),
        created_at: now,
    }
}

/// What every token event says of its token: never its value or hash.
fn token_data(t: &TokenRecord) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("tokenId".into(), t.id.clone().into());
    m.insert("kind".into(), t.kind.as_str().into());
    m.insert("clientId".into(), t.client_id.clone().into());
    m.insert("name".into(), t.name.clone().into());
    m
}

/// `AUTH.CREATED` for a token just issued.
pub fn token_created(t: &TokenRecord, now: i64) -> NewEvent {
    let mut data = token_data(t);
    data.insert("user".into(), t.user.clone().into());
    data.insert("audience".into(), t.audience.clone().into());
    data.insert("scopes".into(), t.scopes.clone().into());
    data.insert("expiresAt".into(), t.expires_at.into());
    data.insert("createdAt".into(), t.created_at.into());
    event(EventType::AuthCreated, &t.account, Value::Object(data), now)
}

/// Why a token is gone, as `AUTH.DELETED` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone<'a> {
    /// Revoked (`DELETE /v1/auth`, `/v1/oauth/revoke`).
    Revoked,
    /// Deleted (a managed token).
    Deleted,
    /// An API key revoked and replaced by the key of this id.
    Replaced(&'a str),
}

/// `AUTH.DELETED` for a token revoked, replaced or deleted.
pub fn token_deleted(t: &TokenRecord, why: Gone<'_>, now: i64) -> NewEvent {
    let mut data = token_data(t);
    let (reason, replaced_by) = match why {
        Gone::Revoked => ("revoked", None),
        Gone::Deleted => ("deleted", None),
        Gone::Replaced(by) => ("replaced", Some(by)),
    };
    data.insert("reason".into(), reason.into());
    if let Some(by) = replaced_by {
        data.insert("replacedBy".into(), by.into());
    }
    event(EventType::AuthDeleted, &t.account, Value::Object(data), now)
}

/// `TOKEN.DISABLED` (with the reason given, if any) or `TOKEN.ENABLED`.
pub fn token_enabled(t: &TokenRecord, enabled: bool, reason: Option<&str>, now: i64) -> NewEvent {
    let mut data = token_data(t);
    let kind = if enabled {
        EventType::TokenEnabled
    } else {
        data.insert("reason".into(), reason.into());
        EventType::TokenDisabled
    };
    event(kind, &t.account, Value::Object(data), now)
}

/// `TOKEN.RENAMED`: `t` as it was, and its new name.
pub fn token_renamed(t: &TokenRecord, name: &str, now: i64) -> NewEvent {
    let mut data = token_data(t);
    data.insert("previousName".into(), t.name.clone().into());
    data.insert("name".into(), name.into());
    event(
        EventType::TokenRenamed,
        &t.account,
        Value::Object(data),
        now,
    )
}

/// `CLIENT.SECRET_ROTATED`: the client's earlier secrets work until `old_expire_at`.
pub fn client_secret_rotated(c: &ClientRecord, old_expire_at: i64, now: i64) -> NewEvent {
    let data = json!({
        "clientId": c.id,
        "previousSecretsExpireAt": old_expire_at,
    });
    event(EventType::ClientSecretRotated, &c.account, data, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenKind;

    fn token() -> TokenRecord {
        TokenRecord {
            id: "at_1".into(),
            hash: [9; 32],
            kind: TokenKind::Access,
            client_id: "c1".into(),
            account: "acme".into(),
            name: None,
            user: None,
            audience: None,
            scopes: vec!["read".into()],
            trusted_ips: vec!["10.0.0.0/8".into()],
            created_at: 1_700_000_000,
            updated_at: 1_700_000_000,
            expires_at: Some(1_700_003_600),
            enabled: true,
            disabled_reason: None,
            revoked_at: None,
            replaced_by: None,
        }
    }

    #[test]
    fn patterns_are_names_domains_or_everything() {
        for p in [
            "AUTH.CREATED",
            "AUTH.*",
            "TOKEN.*",
            "CLIENT.SECRET_ROTATED",
            "*",
        ] {
            check_pattern(p).unwrap();
        }
        for p in [
            "AUTH.CREATE",
            "auth.created",
            "AUTH",
            "AUTH.**",
            "*.CREATED",
            "",
            "BILLING.*",
        ] {
            assert!(check_pattern(p).is_err(), "{p}");
        }
        assert!(matches("AUTH.*", "AUTH.DELETED"));
        assert!(matches("*", "CLIENT.SECRET_ROTATED"));
        assert!(matches("AUTH.CREATED", "AUTH.CREATED"));
        assert!(!matches("AUTH.*", "TOKEN.DISABLED"));
        assert!(!matches("AUTH.CREATED", "AUTH.DELETED"));
        assert_eq!(
            check_patterns(&["AUTH.*".into(), "AUTH.*".into()]).unwrap(),
            ["AUTH.*"]
        );
        assert!(check_patterns(&[]).is_err());
    }

    #[test]
    fn payloads_name_the_token_and_never_its_value() {
        let t = token();
        let e = token_created(&t, 1_700_000_001);
        assert!(e.id.starts_with("evt_") && e.id.len() == 36);
        assert_eq!(
            (e.event_type.as_str(), e.account.as_str()),
            ("AUTH.CREATED", "acme")
        );
        let p: Value = serde_json::from_str(&e.payload).unwrap();
        assert_eq!(p["id"], e.id.as_str());
        assert_eq!(p["type"], "AUTH.CREATED");
        assert_eq!(p["timestamp"], "2023-11-14T22:13:21Z");
        assert_eq!(p["account"], "acme");
        assert_eq!(p["data"]["tokenId"], "at_1");
        assert_eq!(p["data"]["kind"], "access");
        assert_eq!(p["data"]["clientId"], "c1");
        assert_eq!(p["data"]["scopes"], json!(["read"]));
        assert_eq!(p["data"]["expiresAt"], 1_700_003_600);
        assert!(!e.payload.contains("hash") && !e.payload.contains("trusted"));
        let gone = token_deleted(&t, Gone::Replaced("ak_2"), 5);
        let p: Value = serde_json::from_str(&gone.payload).unwrap();
        assert_eq!(
            (
                p["data"]["reason"].as_str(),
                p["data"]["replacedBy"].as_str()
            ),
            (Some("replaced"), Some("ak_2"))
        );
        assert_ne!(gone.id, e.id, "every event has its own id");
        let off = token_enabled(&t, false, Some("leaked"), 5);
        assert_eq!(off.event_type, "TOKEN.DISABLED");
        assert!(off.payload.contains("leaked"));
        let renamed = token_renamed(&t, "ci", 5);
        let p: Value = serde_json::from_str(&renamed.payload).unwrap();
        assert_eq!(
            (p["data"]["name"].as_str(), &p["data"]["previousName"]),
            (Some("ci"), &Value::Null)
        );
    }
}

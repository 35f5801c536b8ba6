//! `[webhook_delivery]` (how deliveries are made) and `[[webhooks]]` (the operator's
//! subscriptions), as written and validated. Operator secrets come from a file or an
//! environment variable, never from the config file itself.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::events;
use super::schedule::{DEFAULT_DELAYS, RetrySchedule};
use super::signing::Secret;
use super::target::{self, Target};
use crate::config::ConfigError;

fn invalid(key: impl Into<String>, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        detail: detail.into(),
    }
}

/// `[webhook_delivery]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhookDelivery {
    pub max_concurrent_deliveries: usize,
    pub max_in_flight_per_subscription: u32,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub retry_schedule: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    pub max_response_bytes: usize,
    pub allow_http: bool,
    pub allow_private_targets: bool,
    pub max_subscriptions_per_account: u32,
    #[serde(with = "humantime_serde")]
    pub secret_rotation_overlap: Duration,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for RawWebhookDelivery {
    fn default() -> Self {
        Self {
            max_concurrent_deliveries: 16,
            max_in_flight_per_subscription: 8,
            timeout: Duration::from_secs(15),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            retry_schedule: DEFAULT_DELAYS.iter().map(|d| (*d).to_owned()).collect(),
            max_retry_after: Duration::from_secs(3600),
            max_response_bytes: 64 * 1024,
            allow_http: false,
            allow_private_targets: false,
            max_subscriptions_per_account: 16,
            secret_rotation_overlap: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// One `[[webhooks]]` entry as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    #[serde(default)]
    pub id: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Refused: named only to say where the secret goes instead.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `[webhook_delivery]`, validated.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `webhook_delivery.max_concurrent_deliveries`, default 16: attempts in flight at once in
    /// this process.
    pub max_concurrent_deliveries: usize,
    /// `webhook_delivery.max_in_flight_per_subscription`, default 8: attempts in flight to one
    /// subscription at once, all Wardens on the store together, so that a slow or hanging
    /// receiver holds at most this many senders and others' events still go out.
    pub max_in_flight_per_subscription: u32,
    /// `webhook_delivery.timeout`, default 15s: one attempt whole (resolve, connect, TLS, send,
    /// the response head and its bounded body).
    pub timeout: Duration,
    /// `webhook_delivery.lease`, default 60s: how long a claimed delivery is this process's;
    /// after a crash, the delivery goes out again once it ends. At least `timeout` + 5s.
    pub lease: Duration,
    /// `webhook_delivery.poll_interval`, default 1s: how often the outbox is looked at.
    pub poll_interval: Duration,
    /// `webhook_delivery.retry_schedule`, default 5s, 5m, 30m, 2h, 5h, then 10h ×7 (about 3.2
    /// days, 13 attempts): the waits after each failed attempt, each jittered ±20%.
    pub schedule: RetrySchedule,
    /// `webhook_delivery.max_retry_after`, default 1h: the longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// `webhook_delivery.max_response_bytes`, default 64 KiB: the most of a response body read
    /// (and discarded); the connection is closed past it.
    pub max_response_bytes: usize,
    /// `webhook_delivery.allow_http`, default false: `http://` URLs (local development).
    pub allow_http: bool,
    /// `webhook_delivery.allow_private_targets`, default false: subscriptions made through the
    /// API or the CLI may reach loopback, private and link-local addresses (local development).
    pub allow_private_targets: bool,
    /// `webhook_delivery.max_subscriptions_per_account`, default 16.
    pub max_subscriptions_per_account: u32,
    /// `webhook_delivery.secret_rotation_overlap`, default 24h: after a rotation, deliveries
    /// carry a signature by the old secret too for this long.
    pub secret_rotation_overlap: Duration,
    /// `webhook_delivery.retention`, default 30d: delivered and dead deliveries (and then their
    /// events) are deleted after this long; `warden webhook replay` reaches back this far.
    pub retention: Duration,
}

/// An operator subscription (`[[webhooks]]`), validated.
#[derive(Debug, Clone)]
pub struct ConfigSubscription {
    /// `id`, default `cfg-` and 16 hex digits of the URL's SHA-256.
    pub id: String,
    pub target: Target,
    pub events: Vec<String>,
    /// The secrets read from `secret_file` or `secret_env`, the signing one first.
    pub secrets: Vec<Secret>,
    pub description: Option<String>,
    pub enabled: bool,
}

/// Webhooks, validated.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub delivery: DeliverySettings,
    pub subscriptions: Vec<ConfigSubscription>,
}

/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// Checks a description: at most 256 characters, no control characters.
pub fn check_description(text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS || text.chars().any(char::is_control) {
        return Err(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters without control \
             characters"
        ));
    }
    Ok(())
}

/// Validates `[webhook_delivery]` and `[[webhooks]]`, reading the operator secrets.
pub fn validate(
    raw: &RawWebhookDelivery,
    hooks: &[RawWebhook],
) -> Result<WebhookSettings, ConfigError> {
    const K: &str = "webhook_delivery";
    if !(1..=1024).contains(&raw.max_concurrent_deliveries) {
        return Err(invalid(
            format!("{K}.max_concurrent_deliveries"),
            "must be between 1 and 1024",
        ));
    }
    if raw.max_in_flight_per_subscription == 0 {
        return Err(invalid(
            format!("{K}.max_in_flight_per_subscription"),
            "must be at least 1",
        ));
    }
    if raw.timeout.is_zero() || raw.timeout > Duration::from_secs(300) {
        return Err(invalid(
            format!("{K}.timeout"),
            "must be between 1ms and 5m",
        ));
    }
    if raw.lease < raw.timeout + Duration::from_secs(5) {
        return Err(invalid(
            format!("{K}.lease"),
            "must be at least webhook_delivery.timeout + 5s (an attempt must end inside its lease)",
        ));
    }
    if raw.poll_interval.is_zero() {
        return Err(invalid(format!("{K}.poll_interval"), "must be more than 0"));
    }
    let mut delays = Vec::with_capacity(raw.retry_schedule.len());
    for (i, d) in raw.retry_schedule.iter().enumerate() {
        let delay = humantime::parse_duration(d).map_err(|_| {
            invalid(
                format!("{K}.retry_schedule[{i}]"),
                format!("'{d}' is not a duration like 5m"),
            )
        })?;
        delays.push(delay);
    }
    let schedule = RetrySchedule::new(delays)
        .map_err(|detail| invalid(format!("{K}.retry_schedule"), detail))?;
    if raw.max_subscriptions_per_account == 0 {
        return Err(invalid(
            format!("{K}.max_subscriptions_per_account"),
            "must be at least 1",
        ));
    }
    if raw.retention < Duration::from_secs(3600) {
        return Err(invalid(format!("{K}.retention"), "must be at least 1h"));
    }
    let delivery = DeliverySettings {
        max_concurrent_deliveries: raw.max_concurrent_deliveries,
        max_in_flight_per_subscription: raw.max_in_flight_per_subscription,
        timeout: raw.timeout,
        lease: raw.lease,
        poll_interval: raw.poll_interval,
        schedule,
        max_retry_after: raw.max_retry_after,
        max_response_bytes: raw.max_response_bytes,
        allow_http: raw.allow_http,
        allow_private_targets: raw.allow_private_targets,
        max_subscriptions_per_account: raw.max_subscriptions_per_account,
        secret_rotation_overlap: raw.secret_rotation_overlap,
        retention: raw.retention,
    };
    let mut subscriptions: Vec<ConfigSubscription> = Vec::with_capacity(hooks.len());
    for (i, h) in hooks.iter().enumerate() {
        let key = format!("webhooks[{i}]");
        let target = target::parse(&h.url, raw.allow_http)
            .map_err(|detail| invalid(format!("{key}.url"), detail))?;
        let id = match &h.id {
            Some(id) => {
                if !crate::scope::valid_id(id) || id.starts_with("wh_") {
                    return Err(invalid(
                        format!("{key}.id"),
                        format!(
                            "'{id}' must be 1-128 of A-Z a-z 0-9 . _ : - and not start with wh_ \
                             (the API's ids)"
                        ),
                    ));
                }
                id.clone()
            }
            None => {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(h.url.as_bytes());
                format!("cfg-{}", hex::encode(&digest[..8]))
            }
        };
        if subscriptions.iter().any(|s| s.id == id) {
            return Err(invalid(
                format!("{key}.id"),
                format!("'{id}' is used twice (two entries with the same url need an id each)"),
            ));
        }
        let events = events::check_patterns(&h.events)
            .map_err(|detail| invalid(format!("{key}.events"), detail))?;
        let secrets = read_secrets(&key, h)?;
        if let Some(d) = &h.description {
            check_description(d).map_err(|detail| invalid(format!("{key}.description"), detail))?;
        }
        subscriptions.push(ConfigSubscription {
            id,
            target,
            events,
            secrets,
            description: h.description.clone(),
            enabled: h.enabled,
        });
    }
    Ok(WebhookSettings {
        delivery,
        subscriptions,
    })
}

/// The secrets of an operator subscription: `secret_file` (one `whsec_…` per line) or
/// `secret_env` (separated by spaces or commas); the first signs, the others sign beside it
/// while receivers move to it (a rotation).
fn read_secrets(key: &str, h: &RawWebhook) -> Result<Vec<Secret>, ConfigError> {
    if h.secret.is_some() {
        return Err(invalid(
            format!("{key}.secret"),
            "a secret in the config file sits in clear wherever the file goes (a repository, a \
             ConfigMap): put it in a file named by secret_file, or an environment variable \
             named by secret_env",
        ));
    }
    let (text, from) = match (&h.secret_file, &h.secret_env) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(invalid(
                format!("{key}.secret_file"),
                "set one of secret_file or secret_env (a whsec_ secret; `warden webhook \
                 new-secret` makes one)",
            ));
        }
        (Some(path), None) => (
            std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    format!("{key}.secret_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
            format!("{key}.secret_file"),
        ),
        (None, Some(var)) => (
            std::env::var(var).map_err(|_| {
                invalid(
                    format!("{key}.secret_env"),
                    format!("environment variable {var} is not set (or not UTF-8)"),
                )
            })?,
            format!("{key}.secret_env"),
        ),
    };
    let secrets = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            Secret::parse(s).map_err(|detail| invalid(&from, format!("secret {}: {detail}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if secrets.is_empty() {
        return Err(invalid(from, "holds no secret"));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> RawWebhook {
        RawWebhook {
            id: None,
            url: url.into(),
            events: vec!["AUTH.*".into()],
            secret_file: None,
            secret_env: None,
            secret: None,
            description: None,
            enabled: true,
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        let s = validate(&RawWebhookDelivery::default(), &[]).unwrap();
        assert_eq!(s.delivery.schedule.attempts(), 13);
        assert_eq!(s.delivery.timeout, Duration::from_secs(15));
        assert!(s.subscriptions.is_empty());
    }

    #[test]
    fn operator_secrets_come_from_a_file_or_the_environment_never_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let (a, b) = (Secret::generate(), Secret::generate());
        std::fs::write(&path, format!("{}\n{}\n", a.expose(), b.expose())).unwrap();
        let mut h = hook("https://hooks.example/in");
        h.secret_file = Some(path.clone());
        let s = validate(&RawWebhookDelivery::default(), &[h.clone()]).unwrap();
        let sub = &s.subscriptions[0];
        assert_eq!(sub.secrets, [a.clone(), b]);
        assert!(sub.id.starts_with("cfg-") && sub.id.len() == 20);
        assert!(!format!("{s:?}").contains(&a.expose()), "never printed");

        let mut clear = h.clone();
        clear.secret = Some(a.expose());
        let e = validate(&RawWebhookDelivery::default(), &[clear])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("webhooks[0].secret:") && e.contains("secret_file"),
            "{e}"
        );
        assert!(!e.contains(&a.expose()));

        let mut both = h.clone();
        both.secret_env = Some("X".into());
        assert!(validate(&RawWebhookDelivery::default(), &[both]).is_err());
        let mut missing = h.clone();
        missing.secret_file = None;
        missing.secret_env = Some("WARDEN_TEST_SURELY_UNSET_SECRET".into());
        let e = validate(&RawWebhookDelivery::default(), &[missing])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("webhooks[0].secret_env:"), "{e}");
        std::fs::write(&path, "whsec_short\n").unwrap();
        let e = validate(&RawWebhookDelivery::default(), &[h.clone()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("webhooks[0].secret_file:"), "{e}");
        assert!(!e.contains("whsec_short"), "{e}");
    }

    #[test]
    fn subscriptions_and_limits_are_checked_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, Secret::generate().expose()).unwrap();
        let with_secret = |url: &str| RawWebhook {
            secret_file: Some(path.clone()),
            ..hook(url)
        };
        let d = RawWebhookDelivery::default();
        let e = validate(&d, &[with_secret("http://127.0.0.1:9/")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("webhooks[0].url:") && e.contains("allow_http"),
            "{e}"
        );
        let http_ok = RawWebhookDelivery {
            allow_http: true,
            ..RawWebhookDelivery::default()
        };
        validate(&http_ok, &[with_secret("http://127.0.0.1:9/")]).unwrap();
        let e = validate(
            &d,
            &[
                with_secret("https://a.example/"),
                with_secret("https://a.example/"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("webhooks[1].id:"), "{e}");
        let mut bad_events = with_secret("https://a.example/");
        bad_events.events = vec!["AUTH.CREATE".into()];
        let e = validate(&d, &[bad_events]).unwrap_err().to_string();
        assert!(e.starts_with("webhooks[0].events:"), "{e}");
        let mut api_id = with_secret("https://a.example/");
        api_id.id = Some("wh_1".into());
        assert!(validate(&d, &[api_id]).is_err());
        let short_lease = RawWebhookDelivery {
            lease: Duration::from_secs(16),
            ..RawWebhookDelivery::default()
        };
        let e = validate(&short_lease, &[]).unwrap_err().to_string();
        assert!(e.starts_with("webhook_delivery.lease:"), "{e}");
        let bad_schedule = RawWebhookDelivery {
            retry_schedule: vec!["5s".into(), "soon".into()],
            ..RawWebhookDelivery::default()
        };
        let e = validate(&bad_schedule, &[]).unwrap_err().to_string();
        assert!(e.starts_with("webhook_delivery.retry_schedule[1]:"), "{e}");
    }
}

//! `[webhook_delivery]` and `[[webhooks]]`, validated into [`WebhookSettings`] (the types are
//! in `webhooks/config.rs`), reading the operator secrets once.

use std::time::Duration;

use super::{ConfigError, invalid};
use crate::events;
use crate::webhooks::config::{
    ConfigSubscription, DeliverySettings, RawWebhook, RawWebhookDelivery, WebhookSettings,
    check_description,
};
use crate::webhooks::schedule::RetrySchedule;
use crate::webhooks::signing::Secret;
use crate::webhooks::target;

/// Validates `[webhook_delivery]` and `[[webhooks]]`, reading the operator secrets.
pub fn validate_webhooks(
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
        let s = validate_webhooks(&RawWebhookDelivery::default(), &[]).unwrap();
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
        let s = validate_webhooks(&RawWebhookDelivery::default(), &[h.clone()]).unwrap();
        let sub = &s.subscriptions[0];
        assert_eq!(sub.secrets, [a.clone(), b]);
        assert!(sub.id.starts_with("cfg-") && sub.id.len() == 20);
        assert!(!format!("{s:?}").contains(&a.expose()), "never printed");

        let mut clear = h.clone();
        clear.secret = Some(a.expose());
        let e = validate_webhooks(&RawWebhookDelivery::default(), &[clear])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("webhooks[0].secret:") && e.contains("secret_file"),
            "{e}"
        );
        assert!(!e.contains(&a.expose()));

        let mut both = h.clone();
        both.secret_env = Some("X".into());
        assert!(validate_webhooks(&RawWebhookDelivery::default(), &[both]).is_err());
        let mut missing = h.clone();
        missing.secret_file = None;
        missing.secret_env = Some("WARDEN_TEST_SURELY_UNSET_SECRET".into());
        let e = validate_webhooks(&RawWebhookDelivery::default(), &[missing])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("webhooks[0].secret_env:"), "{e}");
        std::fs::write(&path, "whsec_short\n").unwrap();
        let e = validate_webhooks(&RawWebhookDelivery::default(), &[h.clone()])
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
        let e = validate_webhooks(&d, &[with_secret("http://127.0.0.1:9/")])
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
        validate_webhooks(&http_ok, &[with_secret("http://127.0.0.1:9/")]).unwrap();
        let e = validate_webhooks(
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
        let e = validate_webhooks(&d, &[bad_events])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("webhooks[0].events:"), "{e}");
        let mut api_id = with_secret("https://a.example/");
        api_id.id = Some("wh_1".into());
        assert!(validate_webhooks(&d, &[api_id]).is_err());
        let short_lease = RawWebhookDelivery {
            lease: Duration::from_secs(16),
            ..RawWebhookDelivery::default()
        };
        let e = validate_webhooks(&short_lease, &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("webhook_delivery.lease:"), "{e}");
        let bad_schedule = RawWebhookDelivery {
            retry_schedule: vec!["5s".into(), "soon".into()],
            ..RawWebhookDelivery::default()
        };
        let e = validate_webhooks(&bad_schedule, &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("webhook_delivery.retry_schedule[1]:"), "{e}");
    }
}

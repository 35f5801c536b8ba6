//! `[webhook_delivery]` (how deliveries are made) and `[[webhooks]]` (the operator's
//! subscriptions), as written and validated (by `config/webhooks.rs`). Operator secrets come
//! from a file or an environment variable, never from the config file itself.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::schedule::{DEFAULT_DELAYS, RetrySchedule};
use super::signing::Secret;
use super::target::Target;

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

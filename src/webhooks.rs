//! Webhooks: events about credentials (`AUTH.CREATED`, `AUTH.DELETED`, …) delivered to the
//! subscribed receivers, signed per Standard Webhooks 1.0, at least once.
//!
//! - [`events`]: the event types, their payloads, and the patterns subscriptions choose them by.
//! - [`signing`]: `whsec_` secrets and `webhook-signature` (`v1`, HMAC-SHA256).
//! - [`seal`]: subscription secrets sealed at rest with the store's seal key.
//! - [`schedule`]: the retry schedule, its jitter, and `Retry-After`.
//! - [`target`]: which URLs and addresses a delivery may reach.
//! - [`config`]: `[webhook_delivery]` and the operator's `[[webhooks]]`.
//! - [`deliver`]: the worker that claims, sends and records deliveries, and its counters.
//! - [`api`]: an account's subscriptions over HTTP (`endpoints.webhooks`).
//!
//! Events are written to the store's outbox in the transaction of the change they report, and
//! fanned out there into one delivery per subscription (`store::Outbox`); nothing is lost to a
//! crash between the change and its event. [`Webhooks`] holds the subscriptions' operations
//! shared by the API and the CLI, and starts the worker.

pub mod api;
pub mod config;
pub mod deliver;
pub mod schedule;
pub mod seal;
pub mod signing;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::events;
use crate::store::{
    ClientSource, Delivery, DeliveryFilter, Store, StoreError, WebhookSubscription,
};
use config::WebhookSettings;
pub use deliver::WebhookStats;
use seal::{SecretSeal, SigningSecret};
use signing::Secret;
use target::Reach;

/// Why a subscription request was refused.
#[derive(Debug)]
pub enum Refusal {
    /// A field the caller can fix (400 `invalid_field`).
    Invalid(String),
    /// A URL that leads where deliveries may not go (422 `webhook_url_refused`).
    UrlRefused(String),
    /// The account holds `webhook_delivery.max_subscriptions_per_account` (409).
    LimitReached(u32),
    /// No such subscription, or not the caller's (404).
    NotFound,
    /// An operator subscription still declared in the config file: changed there only.
    Declared(String),
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(why) | Self::UrlRefused(why) => f.write_str(why),
            Self::LimitReached(n) => write!(
                f,
                "the account already has {n} subscriptions \
                 (webhook_delivery.max_subscriptions_per_account)"
            ),
            Self::NotFound => f.write_str("no such subscription"),
            Self::Declared(id) => write!(
                f,
                "subscription '{id}' is declared in the config file ([[webhooks]]): change it there"
            ),
            Self::Store(e) => write!(f, "store: {e}"),
        }
    }
}

/// A subscription just made, or given a new secret: the secret is shown this once.
pub struct WithSecret {
    pub subscription: WebhookSubscription,
    pub secret: Secret,
}

/// Webhooks: the operator's subscriptions, accounts' subscriptions, and the delivery worker.
pub struct Webhooks {
    store: Arc<dyn Store>,
    clock: Clock,
    settings: WebhookSettings,
    seal: Arc<SecretSeal>,
    stats: Arc<WebhookStats>,
}

/// The delivery worker, running until [`Running::stop`].
pub struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops claiming, and waits for the attempts in flight (at most the grace it started
    /// with).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The most rows one purge transaction deletes (it runs again while it finds that many).
const PURGE_BATCH: u32 = 1000;

impl Webhooks {
    /// Webhooks over `store`, sealing secrets with the store's seal key.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        settings: WebhookSettings,
        seal_key: &[u8],
    ) -> Result<Self, String> {
        let seal = SecretSeal::new(seal_key).ok_or("cannot derive the webhook secrets' key")?;
        Ok(Self {
            store,
            clock,
            settings,
            seal: Arc::new(seal),
            stats: Arc::new(WebhookStats::default()),
        })
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// This process's delivery counters.
    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }

    /// Writes the operator subscriptions (`[[webhooks]]`) into the store, their secrets
    /// sealed; with `retire`, disables those the file declared once and no longer does (`warden
    /// serve` does; a CLI command run with a partial file does not).
    pub async fn apply_config(&self, retire: bool) -> Result<(), StoreError> {
        let now = self.clock.now();
        for c in &self.settings.subscriptions {
            let secrets: Vec<SigningSecret> = c
                .secrets
                .iter()
                .map(|s| SigningSecret {
                    secret: s.clone(),
                    expires_at: None,
                })
                .collect();
            let existing = self.store.get_subscription(&c.id).await?;
            if let Some(e) = &existing {
                let same = e.source == ClientSource::Config
                    && e.account.is_none()
                    && e.url == c.target.url
                    && e.events == c.events
                    && e.description == c.description
                    && e.enabled == c.enabled
                    && self.seal.open(&e.id, &e.sealed_secrets).as_deref() == Some(&secrets[..]);
                if same {
                    continue;
                }
            }
            let record = WebhookSubscription {
                id: c.id.clone(),
                account: None,
                url: c.target.url.clone(),
                events: c.events.clone(),
                description: c.description.clone(),
                sealed_secrets: self.seal.seal(&c.id, &secrets),
                enabled: c.enabled,
                disabled_reason: (!c.enabled).then(|| "enabled = false in the config file".into()),
                source: ClientSource::Config,
                created_at: now,
                updated_at: now,
            };
            if !self.store.put_config_subscription(record).await? {
                tracing::warn!(subscription = %c.id, "webhooks: the id of a [[webhooks]] entry belongs to a subscription made through the API; entry skipped");
            }
            if !c.target.https {
                tracing::warn!(subscription = %c.id, "webhooks: deliveries to this operator subscription go over plain http");
            }
        }
        if retire {
            for s in self.store.list_subscriptions(None).await? {
                if s.source == ClientSource::Config && s.enabled && !self.is_declared(&s.id) {
                    let why = "no longer declared in the config file ([[webhooks]])".to_owned();
                    self.store
                        .set_subscription_enabled(&s.id, false, Some(why), now)
                        .await?;
                    tracing::warn!(subscription = %s.id, "webhooks: operator subscription no longer declared: disabled");
                }
            }
        }
        Ok(())
    }

    fn is_declared(&self, id: &str) -> bool {
        self.settings.subscriptions.iter().any(|c| c.id == id)
    }

    /// Starts the delivery worker; [`Running::stop`] waits at most `grace` for its attempts.
    pub fn start(&self, grace: Duration) -> Result<Running, String> {
        let worker = deliver::Worker {
            store: self.store.clone(),
            clock: self.clock.clone(),
            settings: self.settings.delivery.clone(),
            seal: self.seal.clone(),
            stats: self.stats.clone(),
            owner: format!("{}-{}", std::process::id(), crate::secret::new_id("")),
            tls: deliver::tls_connector()?,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(deliver::run(Arc::new(worker), stopped, grace));
        Ok(Running { stop, task })
    }

    /// Housekeeping: deletes deliveries delivered or dead longer than
    /// `webhook_delivery.retention` ago, then events left with no delivery.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let keep = i64::try_from(self.settings.delivery.retention.as_secs()).unwrap_or(i64::MAX);
        let before = self.clock.now().saturating_sub(keep);
        let mut total = 0;
        for _ in 0..100 {
            let n = self.store.purge_webhooks(before, PURGE_BATCH).await?;
            total += n;
            if n < u64::from(PURGE_BATCH) {
                break;
            }
        }
        Ok(total)
    }

    /// Makes a subscription for `account` (the API and the CLI): the URL is checked, and
    /// every address it resolves to must be public (unless
    /// `webhook_delivery.allow_private_targets`). Returns it with its new secret.
    pub async fn create(
        &self,
        account: &str,
        url: &str,
        events: &[String],
        description: Option<String>,
    ) -> Result<WithSecret, Refusal> {
        let d = &self.settings.delivery;
        if let Some(text) = &description {
            config::check_description(text).map_err(Refusal::Invalid)?;
        }
        let events = events::check_patterns(events).map_err(Refusal::Invalid)?;
        let target = target::parse(url, d.allow_http).map_err(Refusal::UrlRefused)?;
        let reach = if d.allow_private_targets {
            Reach::Any
        } else {
            Reach::Public
        };
        // A name server that does not answer must not hold the request: bounded like an attempt.
        tokio::time::timeout(d.timeout, target::check_registration(&target, reach))
            .await
            .map_err(|_| Refusal::UrlRefused("the URL's host did not resolve in time".into()))?
            .map_err(Refusal::UrlRefused)?;
        let now = self.clock.now();
        let id = crate::secret::new_id("wh_");
        let secret = Secret::generate();
        let sealed = self.seal.seal(
            &id,
            &[SigningSecret {
                secret: secret.clone(),
                expires_at: None,
            }],
        );
        let record = WebhookSubscription {
            id,
            account: Some(account.to_owned()),
            url: target.url,
            events,
            description,
            sealed_secrets: sealed,
            enabled: true,
            disabled_reason: None,
            source: ClientSource::Managed,
            created_at: now,
            updated_at: now,
        };
        let max = d.max_subscriptions_per_account;
        if !self.store.insert_subscription(record.clone(), max).await? {
            return Err(Refusal::LimitReached(max));
        }
        Ok(WithSecret {
            subscription: record,
            secret,
        })
    }

    /// A subscription by id: of `account` only (another account's looks like none), or any
    /// (`None`, the CLI).
    pub async fn get(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<WebhookSubscription, Refusal> {
        self.store
            .get_subscription(id)
            .await?
            .filter(|s| account.is_none_or(|a| s.account.as_deref() == Some(a)))
            .ok_or(Refusal::NotFound)
    }

    /// An account's subscriptions, or every one (`None`).
    pub async fn list(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        self.store.list_subscriptions(account).await
    }

    /// A subscription the caller may change: not an operator one the file still declares.
    async fn changeable(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<WebhookSubscription, Refusal> {
        let s = self.get(id, account).await?;
        if s.source == ClientSource::Config && self.is_declared(&s.id) {
            return Err(Refusal::Declared(s.id));
        }
        Ok(s)
    }

    /// Disables (with a reason) or enables a subscription; a disabled one gets no new
    /// deliveries, and its pending ones wait until it is enabled again.
    pub async fn set_enabled(
        &self,
        id: &str,
        account: Option<&str>,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<WebhookSubscription, Refusal> {
        if let Some(r) = &reason {
            config::check_description(r).map_err(|_| {
                Refusal::Invalid(
                    "reason must be at most 256 characters without control characters".into(),
                )
            })?;
        }
        let s = self.changeable(id, account).await?;
        if !self
            .store
            .set_subscription_enabled(&s.id, enabled, reason, self.clock.now())
            .await?
        {
            return Err(Refusal::NotFound);
        }
        self.get(&s.id, account).await
    }

    /// Deletes a subscription and its deliveries.
    pub async fn delete(&self, id: &str, account: Option<&str>) -> Result<(), Refusal> {
        let s = self.changeable(id, account).await?;
        if !self.store.delete_subscription(&s.id).await? {
            return Err(Refusal::NotFound);
        }
        Ok(())
    }

    /// Gives a subscription a new secret. Deliveries carry a signature by the previous one too
    /// for `overlap` (default `webhook_delivery.secret_rotation_overlap`), so receivers can move
    /// to the new one without losing an event.
    pub async fn rotate(
        &self,
        id: &str,
        account: Option<&str>,
        overlap: Option<Duration>,
    ) -> Result<WithSecret, Refusal> {
        let s = self.changeable(id, account).await?;
        let now = self.clock.now();
        let overlap = overlap.unwrap_or(self.settings.delivery.secret_rotation_overlap);
        let end = now.saturating_add(i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX));
        // Secrets that no longer open (a replaced seal key) sign nothing: they are dropped.
        let old = self.seal.open(&s.id, &s.sealed_secrets).unwrap_or_default();
        let secret = Secret::generate();
        let mut secrets = vec![SigningSecret {
            secret: secret.clone(),
            expires_at: None,
        }];
        for o in old {
            let expires_at = o.expires_at.map_or(end, |e| e.min(end));
            if expires_at > now {
                secrets.push(SigningSecret {
                    secret: o.secret,
                    expires_at: Some(expires_at),
                });
            }
        }
        let sealed = self.seal.seal(&s.id, &secrets);
        if !self
            .store
            .set_subscription_secrets(&s.id, sealed, now)
            .await?
        {
            return Err(Refusal::NotFound);
        }
        Ok(WithSecret {
            subscription: self.get(&s.id, account).await?,
            secret,
        })
    }

    /// Deliveries, newest first.
    pub async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.store.list_deliveries(filter).await
    }

    /// Sends a delivery again (now, its attempts counted afresh, with the same `webhook-id`).
    pub async fn replay(&self, id: i64) -> Result<bool, StoreError> {
        self.store.replay_delivery(id, self.clock.now()).await
    }

    /// Sends again every delivery declared dead at or after `since` (of one subscription, or
    /// all); returns how many.
    pub async fn replay_dead(
        &self,
        since: i64,
        subscription: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.store
            .replay_dead_deliveries(since, subscription, self.clock.now())
            .await
    }
}

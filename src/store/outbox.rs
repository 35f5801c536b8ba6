//! Webhooks: subscriptions ([`SubscriptionStore`]), the events written with the changes they
//! report, and their deliveries ([`Outbox`]).

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ClientSource, StoreError};
#[cfg(doc)]
use super::{ClientStore, TokenStore};

/// A webhook event to write into the outbox in the same transaction as the change it reports.
///
/// The store fans it out in that transaction: one delivery per enabled subscription that wants
/// it (see [`Outbox`]). An event no subscription wants is not kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique (`evt_` and 128 random bits): sent as `webhook-id`, the same on every attempt.
    pub id: String,
    /// E.g. `AUTH.CREATED`: a domain, a dot, a name.
    pub event_type: String,
    /// The account the change concerns.
    pub account: String,
    /// JSON text.
    pub payload: String,
    /// Unix seconds; also when its deliveries are first due.
    pub created_at: i64,
}

impl NewEvent {
    /// The pattern of the event's domain (`AUTH.*` for `AUTH.CREATED`): a subscription that
    /// lists it, the type itself or `*` wants the event.
    pub(crate) fn domain_pattern(&self) -> String {
        let domain = self
            .event_type
            .split_once('.')
            .map_or(self.event_type.as_str(), |(d, _)| d);
        format!("{domain}.*")
    }
}

/// A webhook subscription: where an account's (or, for the operator's, every account's)
/// events go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSubscription {
    /// `wh_` and 128 random bits, or the id an operator gave in the config file.
    pub id: String,
    /// The account whose events it receives; `None`: an operator subscription (config file),
    /// which receives the events of every account.
    pub account: Option<String>,
    pub url: String,
    /// Event patterns, checked by the caller: a type (`AUTH.CREATED`), a domain (`AUTH.*`), `*`.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// The signing secrets, sealed by the caller; opaque to the store.
    pub sealed_secrets: Vec<u8>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub source: ClientSource,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// An event as stored, for delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    pub event_type: String,
    pub account: String,
    /// JSON text, exactly as it is sent.
    pub payload: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Where a delivery stands; stored as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// To be tried (again) at `next_attempt_at`, or being tried under a lease.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed (dead letter); `replay` makes it pending again.
    Dead,
}

impl DeliveryState {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses the stored text form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One event for one subscription: what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Increasing, never reused.
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub account: String,
    pub subscription_id: String,
    pub state: DeliveryState,
    /// Attempts started so far (a claim counts, so an attempt cut short by a crash counts too).
    pub attempts: u32,
    /// Unix seconds: when a pending delivery is due.
    pub next_attempt_at: i64,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Unix seconds: when the event happened.
    pub created_at: i64,
    /// Unix seconds: when it was delivered or declared dead.
    pub finished_at: Option<i64>,
}

/// A delivery claimed for one attempt: [`Outbox::claim_deliveries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    /// This attempt's number (the first is 1).
    pub attempt: u32,
    /// The lease it was claimed under; fences [`Outbox::finish_attempt`].
    pub lease_until: i64,
    pub event: WebhookEvent,
    pub subscription: WebhookSubscription,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// It did not: due again at `retry_at`, or dead (`None`). `disable_subscription` disables
    /// the subscription with that reason (a receiver that answered 410 Gone).
    Failed {
        status: Option<u16>,
        error: String,
        retry_at: Option<i64>,
        disable_subscription: Option<String>,
    },
}

/// What an attempt's outcome writes into its delivery (every backend the same).
pub(crate) struct AttemptColumns {
    pub(crate) state: DeliveryState,
    /// The next due time; `None` keeps the delivery's.
    pub(crate) next_attempt_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
    pub(crate) last_status: Option<u16>,
    pub(crate) last_error: Option<String>,
    /// Disable the delivery's subscription with this reason.
    pub(crate) disable_subscription: Option<String>,
}

impl AttemptOutcome {
    /// The columns [`Outbox::finish_attempt`] writes for this outcome at `now`: delivered and
    /// dead deliveries are finished, a failure with a retry is due again.
    pub(crate) fn columns(self, now: i64) -> AttemptColumns {
        match self {
            AttemptOutcome::Delivered { status } => AttemptColumns {
                state: DeliveryState::Delivered,
                next_attempt_at: None,
                finished_at: Some(now),
                last_status: Some(status),
                last_error: None,
                disable_subscription: None,
            },
            AttemptOutcome::Failed {
                status,
                error,
                retry_at,
                disable_subscription,
            } => AttemptColumns {
                state: if retry_at.is_some() {
                    DeliveryState::Pending
                } else {
                    DeliveryState::Dead
                },
                next_attempt_at: retry_at,
                finished_at: if retry_at.is_some() { None } else { Some(now) },
                last_status: status,
                last_error: Some(error),
                disable_subscription,
            },
        }
    }
}

/// Which deliveries a claim takes: of `candidates` (due, oldest first: id and subscription),
/// at most `limit`, and no more for one subscription than brings its live leases (`busy`,
/// all owners together) to `per_subscription`, so one slow receiver cannot hold every sender.
pub(crate) fn within_share(
    mut busy: HashMap<String, u32>,
    candidates: impl IntoIterator<Item = (i64, String)>,
    limit: u32,
    per_subscription: u32,
) -> Vec<i64> {
    let mut chosen = Vec::new();
    for (id, subscription) in candidates {
        if chosen.len() as u32 >= limit {
            break;
        }
        let held = busy.entry(subscription).or_insert(0);
        if *held >= per_subscription {
            continue;
        }
        *held += 1;
        chosen.push(id);
    }
    chosen
}

/// Which deliveries [`Outbox::list_deliveries`] returns, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub subscription: Option<String>,
    pub state: Option<DeliveryState>,
    /// Only deliveries with a smaller id (the next page).
    pub before: Option<i64>,
    pub limit: u32,
}

/// Webhook subscriptions: where an account's (or every account's) events go. Their deliveries
/// are the [`Outbox`]'s.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Adds a subscription unless its account already has `max_per_account` (`false`, nothing
    /// written). The same id is a [`StoreError::Conflict`].
    async fn insert_subscription(
        &self,
        subscription: WebhookSubscription,
        max_per_account: u32,
    ) -> Result<bool, StoreError>;
    /// Creates or replaces an operator subscription (keeping its `created_at`); changes
    /// nothing (`false`) when the id belongs to a managed one.
    async fn put_config_subscription(
        &self,
        subscription: WebhookSubscription,
    ) -> Result<bool, StoreError>;
    async fn get_subscription(&self, id: &str) -> Result<Option<WebhookSubscription>, StoreError>;
    /// An account's subscriptions (`Some`), or every one (`None`), oldest first.
    async fn list_subscriptions(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<WebhookSubscription>, StoreError>;
    /// Enabling clears `reason`.
    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Replaces the sealed secrets (a rotation).
    async fn set_subscription_secrets(
        &self,
        id: &str,
        sealed_secrets: Vec<u8>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes a subscription and its deliveries.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;
}

/// The outbox: events fanned out into deliveries, one per (event,
/// subscription), claimed under a lease so that two processes never send one at the same time.
///
/// Events come in with the change they report ([`NewEvent`], through [`TokenStore`] and
/// [`ClientStore`]), and in the same transaction the store creates a pending delivery, due at
/// the event's `created_at`, for every subscription that is enabled, whose `account` is the
/// event's or `None`, and one of whose `events` patterns is the event's type, `*`, or the
/// type's domain followed by `.*` (`AUTH.*` for `AUTH.CREATED`). An event no subscription wants
/// is not stored. Deliveries of a disabled subscription are not claimed until it is enabled.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Claims at most `limit` pending deliveries due at `now` (oldest due first) whose
    /// subscription is enabled and that no live lease holds: each gets `owner` and
    /// `lease_until`, and its attempt count goes up by one, atomically, so no other caller
    /// claims it before the lease ends or [`Outbox::finish_attempt`] releases it. No
    /// subscription ends up with more than `per_subscription` live leases (all owners
    /// together), so one slow receiver cannot hold every sender.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
        per_subscription: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records an attempt's outcome and ends its lease; fenced by the claim (`owner`,
    /// `lease_until`): changes nothing (`false`) when the lease was lost.
    async fn finish_attempt(
        &self,
        id: i64,
        owner: &str,
        lease_until: i64,
        outcome: AttemptOutcome,
        now: i64,
    ) -> Result<bool, StoreError>;
    async fn get_delivery(&self, id: i64) -> Result<Option<Delivery>, StoreError>;
    async fn list_deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;
    /// Makes a delivered or dead delivery pending again, due at `now`, its attempts counted
    /// from zero (a pending one is made due at `now` unless a lease holds it). `false` when
    /// unknown or leased.
    async fn replay_delivery(&self, id: i64, now: i64) -> Result<bool, StoreError>;
    /// [`Outbox::replay_delivery`] for every dead delivery declared dead at or after `since`
    /// (of one subscription, or all); returns how many.
    async fn replay_dead_deliveries(
        &self,
        since: i64,
        subscription: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError>;
    /// Deletes at most `limit` deliveries delivered or dead before `before`, then at most
    /// `limit` events older than `before` with no delivery left; returns how many rows.
    async fn purge_webhooks(&self, before: i64, limit: u32) -> Result<u64, StoreError>;
}

//! Webhooks: events about credentials (`AUTH.CREATED`, `AUTH.DELETED`, …) delivered to the
//! subscribed receivers, signed per Standard Webhooks 1.0, at least once.
//!
//! - [`events`]: the event types, their payloads, and the patterns subscriptions choose them by.
//! - [`signing`]: `whsec_` secrets and `webhook-signature` (`v1`, HMAC-SHA256).
//! - [`seal`]: subscription secrets sealed at rest with the store's seal key.
//! - [`schedule`]: the retry schedule, its jitter, and `Retry-After`.
//! - [`target`]: which URLs and addresses a delivery may reach.
//!
//! Events are written to the store's outbox in the transaction of the change they report, and
//! fanned out there into one delivery per subscription (`store::Outbox`); nothing is lost to a
//! crash between the change and its event.

pub mod events;
pub mod schedule;
pub mod seal;
pub mod signing;
pub mod target;

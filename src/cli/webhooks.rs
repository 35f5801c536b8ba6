//! `warden webhook …`: subscriptions, deliveries and replays from the command line, against the
//! store the configuration names (a running Warden picks the changes up at its next look at
//! the outbox).

use std::process::ExitCode;
use std::time::Duration;

use warden::clock::Clock;
use warden::config::Settings;
use warden::store::{DeliveryFilter, DeliveryState};
use warden::webhooks::{Refusal, Webhooks, signing::Secret};

#[derive(clap::Subcommand)]
pub enum WebhookCmd {
    /// List subscriptions (never their secrets); the operator's (`[[webhooks]]`) show account "*".
    List {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
    },
    /// Show one subscription.
    Show { id: String },
    /// Create a subscription for an account; its secret is printed once.
    Create {
        #[arg(long)]
        account: String,
        /// Where deliveries go (https; public addresses only, unless the config allows others).
        #[arg(long)]
        url: String,
        /// An event pattern: AUTH.CREATED, AUTH.*, * (repeat for several).
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Disable a subscription: no new deliveries; pending ones wait until it is enabled.
    Disable {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enable a disabled subscription (its waiting deliveries go out).
    Enable { id: String },
    /// Delete a subscription and its deliveries.
    Delete { id: String },
    /// Give a subscription a new secret (printed once); the old one keeps signing beside it
    /// for the overlap.
    Rotate {
        id: String,
        /// Default: webhook_delivery.secret_rotation_overlap.
        #[arg(long, value_parser = humantime::parse_duration)]
        overlap: Option<Duration>,
    },
    /// List deliveries, newest first.
    Deliveries {
        #[arg(long)]
        subscription: Option<String>,
        /// pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send one delivery again, or every dead one since a time (same webhook-id: receivers
    /// that already have it drop it).
    Replay {
        /// The delivery's id (from `warden webhook deliveries`).
        delivery: Option<i64>,
        /// Every delivery declared dead at or after this time: RFC 3339, unix seconds, or a
        /// duration ago (`24h`).
        #[arg(long, conflicts_with = "delivery")]
        failed_since: Option<String>,
        /// With --failed-since: only this subscription's.
        #[arg(long, requires = "failed_since")]
        subscription: Option<String>,
    },
    /// Print a new secret (whsec_…) for a `[[webhooks]]` `secret_file` or `secret_env`.
    NewSecret,
}

/// Runs a `warden webhook` command.
pub fn run(settings: Settings, cmd: WebhookCmd) -> ExitCode {
    if let WebhookCmd::NewSecret = cmd {
        println!("{}", Secret::generate().expose());
        return ExitCode::SUCCESS;
    }
    super::on_runtime(async move {
        match command(settings, cmd).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("warden: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn command(settings: Settings, cmd: WebhookCmd) -> Result<(), String> {
    let store = warden::store::open(&settings.store.url, settings.store.options.clone())
        .await
        .map_err(|e| format!("store: {e}"))?;
    let key = warden::store::seal_key::load(&settings.store.url, &settings.store.seal_key_file)
        .map_err(|e| format!("store.seal_key_file: {e}"))?;
    let hooks = Webhooks::new(store, Clock::default(), settings.webhooks.clone(), &key)?;
    // Only `serve` retires the operator subscriptions a file no longer declares.
    hooks
        .apply_config(false)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let failed = |e: Refusal| e.to_string();
    let store_failed = |e: warden::store::StoreError| format!("store: {e}");
    match cmd {
        WebhookCmd::NewSecret => {}
        WebhookCmd::List { account } => {
            println!(
                "{:<36} {:<16} {:<8} {:<24} url",
                "id", "account", "enabled", "events"
            );
            for s in hooks.list(account.as_deref()).await.map_err(store_failed)? {
                println!(
                    "{:<36} {:<16} {:<8} {:<24} {}",
                    s.id,
                    s.account.as_deref().unwrap_or("*"),
                    s.enabled,
                    s.events.join(","),
                    s.url
                );
            }
        }
        WebhookCmd::Show { id } => {
            let s = hooks.get(&id, None).await.map_err(failed)?;
            let mut shown = warden::webhooks::api::entity(&s);
            shown["account"] = s.account.clone().unwrap_or_else(|| "*".into()).into();
            shown["source"] = s.source.as_str().into();
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            );
        }
        WebhookCmd::Create {
            account,
            url,
            events,
            description,
        } => {
            let events: Vec<String> = events
                .iter()
                .flat_map(|e| e.split([' ', ',']))
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            let made = hooks
                .create(&account, &url, &events, description)
                .await
                .map_err(failed)?;
            println!("subscription created: {}", made.subscription.id);
            println!(
                "signing secret (shown once, give it to the receiver now): {}",
                made.secret.expose()
            );
        }
        WebhookCmd::Disable { id, reason } => {
            hooks
                .set_enabled(&id, None, false, reason)
                .await
                .map_err(failed)?;
            println!("subscription disabled: {id}");
        }
        WebhookCmd::Enable { id } => {
            hooks
                .set_enabled(&id, None, true, None)
                .await
                .map_err(failed)?;
            println!("subscription enabled: {id}");
        }
        WebhookCmd::Delete { id } => {
            hooks.delete(&id, None).await.map_err(failed)?;
            println!("subscription deleted: {id}");
        }
        WebhookCmd::Rotate { id, overlap } => {
            let overlap = overlap.unwrap_or(settings.webhooks.delivery.secret_rotation_overlap);
            let made = hooks
                .rotate(&id, None, Some(overlap))
                .await
                .map_err(failed)?;
            println!(
                "new signing secret (shown once, give it to the receiver now): {}",
                made.secret.expose()
            );
            println!(
                "deliveries carry a signature by the previous secret too for {}",
                humantime::format_duration(overlap)
            );
        }
        WebhookCmd::Deliveries {
            subscription,
            state,
            limit,
        } => {
            let state = state
                .map(|s| {
                    DeliveryState::parse(&s)
                        .ok_or_else(|| format!("--state '{s}': use pending, delivered or dead"))
                })
                .transpose()?;
            let filter = DeliveryFilter {
                subscription,
                state,
                before: None,
                limit: limit.clamp(1, 10_000),
            };
            println!(
                "{:<8} {:<36} {:<22} {:<36} {:<9} {:<8} {:<20} last",
                "id", "event", "type", "subscription", "state", "attempts", "next_attempt"
            );
            for d in hooks.deliveries(filter).await.map_err(store_failed)? {
                let next = if d.state == DeliveryState::Pending {
                    warden::events::rfc3339(d.next_attempt_at)
                } else {
                    "-".into()
                };
                let last = match (d.last_status, d.last_error.as_deref()) {
                    (_, Some(e)) => e.to_owned(),
                    (Some(s), None) => format!("HTTP {s}"),
                    (None, None) => "-".into(),
                };
                println!(
                    "{:<8} {:<36} {:<22} {:<36} {:<9} {:<8} {:<20} {}",
                    d.id,
                    d.event_id,
                    d.event_type,
                    d.subscription_id,
                    d.state.as_str(),
                    d.attempts,
                    next,
                    last
                );
            }
        }
        WebhookCmd::Replay {
            delivery,
            failed_since,
            subscription,
        } => match (delivery, failed_since) {
            (Some(id), _) => {
                if !hooks.replay(id).await.map_err(store_failed)? {
                    return Err(format!(
                        "no delivery {id} to replay (unknown, or being sent right now)"
                    ));
                }
                println!("delivery {id} will be sent again");
            }
            (None, Some(since)) => {
                let at = parse_since(&since, Clock::default().now())?;
                let n = hooks
                    .replay_dead(at, subscription.as_deref())
                    .await
                    .map_err(store_failed)?;
                println!("{n} dead deliveries will be sent again");
            }
            (None, None) => {
                return Err("name a delivery id, or --failed-since TIME".into());
            }
        },
    }
    Ok(())
}

/// `--failed-since`: RFC 3339, unix seconds, or a duration before `now`.
fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    if let Ok(unix) = text.parse::<i64>() {
        return Ok(unix);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now.saturating_sub(i64::try_from(ago.as_secs()).unwrap_or(i64::MAX)));
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!("--failed-since '{text}': use RFC 3339 (2026-01-31T12:00:00Z), unix seconds, or a duration ago (24h)")
    })?;
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .map_err(|_| format!("--failed-since '{text}' lies before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_dates_seconds_and_durations_ago() {
        assert_eq!(parse_since("1700000000", 0).unwrap(), 1_700_000_000);
        assert_eq!(parse_since("2h", 10_000).unwrap(), 10_000 - 7200);
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", 0).unwrap(),
            1_700_000_000
        );
        assert!(parse_since("yesterday", 0).is_err());
    }
}

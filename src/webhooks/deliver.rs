//! The delivery worker: claims due deliveries under a lease, sends each as a signed POST, and
//! records the outcome. At most `webhook_delivery.max_concurrent_deliveries` attempts at once;
//! each bounded by `webhook_delivery.timeout` whole; one connection per attempt, made to an
//! address checked just before (`target`), redirects not followed, the response body read up to
//! `webhook_delivery.max_response_bytes` and discarded.
//!
//! At least once: a delivery is recorded delivered only after a 2xx; a process killed in the
//! middle of an attempt leaves the delivery leased, and it goes out again, with the same
//! `webhook-id`, once the lease ends. Two processes never hold the same lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

use super::config::DeliverySettings;
use super::schedule;
use super::seal::{self, SecretSeal};
use super::signing;
use super::target::{self, Reach, Target, Unreachable};
use crate::clock::Clock;
use crate::metrics::Delivery;
use crate::store::{AttemptOutcome, ClaimedDelivery, ClientSource, Store};

/// Counters of this process's deliveries, for metrics.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Attempts started.
    pub attempts: AtomicU64,
    /// Attempts answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed and will be tried again.
    pub retried: AtomicU64,
    /// Deliveries declared dead after their last attempt.
    pub dead: AtomicU64,
    /// Attempts not made because the URL led only to refused addresses.
    pub refused_addresses: AtomicU64,
    /// Subscriptions disabled by a 410 Gone.
    pub disabled_by_gone: AtomicU64,
    /// Attempts whose outcome could not be recorded (lease lost, store error).
    pub unrecorded: AtomicU64,
    /// Attempts in flight now.
    pub in_flight: AtomicU64,
    /// `warden_webhook_deliveries_total` and the attempts' latency, once metrics attach them.
    pub deliveries: crate::metrics::Deliveries,
}

impl WebhookStats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the worker needs, shared by its attempts.
pub(super) struct Worker {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Clock,
    pub(super) settings: DeliverySettings,
    pub(super) seal: Arc<SecretSeal>,
    pub(super) stats: Arc<WebhookStats>,
    /// This process's claims: `pid-<random>`.
    pub(super) owner: String,
    pub(super) tls: tokio_rustls::TlsConnector,
}

/// The TLS client of deliveries: the Mozilla roots (webpki-roots), TLS 1.2 and 1.3.
pub(super) fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_webpki_roots()
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Runs the worker until `stop` turns true, then waits (at most `grace`) for the attempts in
/// flight; those it leaves go out again when their lease ends.
pub(super) async fn run(worker: Arc<Worker>, mut stop: watch::Receiver<bool>, grace: Duration) {
    let max = worker.settings.max_concurrent_deliveries;
    let permits = Arc::new(Semaphore::new(max));
    // An attempt that ends frees a slot: look again at once rather than at the next poll, so a
    // backlog drains at the receivers' pace, not max_concurrent_deliveries a poll interval.
    let freed = Arc::new(tokio::sync::Notify::new());
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        let free = permits.available_permits();
        let mut full = false;
        if free > 0 {
            let now = worker.clock.now();
            let lease_until = now.saturating_add(schedule::ceil_secs(worker.settings.lease));
            match worker
                .store
                .claim_deliveries(
                    &worker.owner,
                    now,
                    lease_until,
                    free as u32,
                    worker.settings.max_in_flight_per_subscription,
                )
                .await
            {
                Ok(claimed) => {
                    failures = 0;
                    full = claimed.len() == free;
                    for c in claimed {
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            // Cannot happen (the claim took only the free permits); the lease
                            // brings the delivery back.
                            break;
                        };
                        let w = worker.clone();
                        let freed = freed.clone();
                        tokio::spawn(async move {
                            w.attempt(c).await;
                            drop(permit);
                            freed.notify_one();
                        });
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "webhook deliveries could not be claimed");
                }
            }
        }
        // More may be due at once; else wait for the next look (longer after store errors).
        let wait = if full && free > 0 {
            Duration::ZERO
        } else {
            worker.settings.poll_interval * failures.clamp(1, 30)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = freed.notified() => {}
            // Stopped, or its handle gone (the server's future dropped): either way, stop.
            changed = stop.changed() => if changed.is_err() { break; },
        }
    }
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(grace, permits.acquire_many(all)).await;
}

/// How an attempt went, before it is recorded.
enum Sent {
    Answered {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// No usable answer: why.
    Failed(String),
    /// The URL led only to refused addresses.
    Refused(String),
}

impl Worker {
    async fn attempt(&self, c: ClaimedDelivery) {
        WebhookStats::add(&self.stats.attempts);
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let sent = self.send(&c).await;
        let elapsed = started.elapsed();
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        let now = self.clock.now();
        let (outcome, what) = self.outcome(&c, sent, now);
        let recorded = self
            .store
            .finish_attempt(c.id, &self.owner, c.lease_until, outcome.clone(), now)
            .await;
        let sub = c.subscription.id.as_str();
        match &recorded {
            Ok(true) => {}
            Ok(false) => {
                WebhookStats::add(&self.stats.unrecorded);
                tracing::warn!(
                    delivery = c.id,
                    subscription = sub,
                    "webhook attempt outlived its lease (webhook_delivery.lease): another process may send it again"
                );
            }
            Err(e) => {
                WebhookStats::add(&self.stats.unrecorded);
                tracing::warn!(delivery = c.id, subscription = sub, error = %e, "webhook attempt could not be recorded; it is sent again when its lease ends");
            }
        }
        match outcome {
            AttemptOutcome::Delivered { status } => {
                WebhookStats::add(&self.stats.delivered);
                self.stats.deliveries.record(Delivery::Delivered, elapsed);
                tracing::debug!(delivery = c.id, subscription = sub, event = %c.event.id, attempt = c.attempt, status, "webhook delivered");
            }
            AttemptOutcome::Failed {
                retry_at: Some(at),
                disable_subscription,
                ..
            } => {
                WebhookStats::add(&self.stats.retried);
                self.stats.deliveries.record(Delivery::Retry, elapsed);
                if disable_subscription.is_some() {
                    WebhookStats::add(&self.stats.disabled_by_gone);
                    tracing::warn!(
                        subscription = sub,
                        "webhook receiver answered 410 Gone: subscription disabled"
                    );
                }
                tracing::info!(delivery = c.id, subscription = sub, event = %c.event.id, attempt = c.attempt, error = %what, retry_in = at - now, "webhook attempt failed; will retry");
            }
            AttemptOutcome::Failed { retry_at: None, .. } => {
                WebhookStats::add(&self.stats.dead);
                self.stats.deliveries.record(Delivery::Dead, elapsed);
                tracing::warn!(delivery = c.id, subscription = sub, event = %c.event.id, attempts = c.attempt, error = %what, "webhook delivery dead after its last attempt (warden webhook replay sends it again)");
            }
        }
    }

    /// Classifies an attempt and schedules the next one.
    fn outcome(&self, c: &ClaimedDelivery, sent: Sent, now: i64) -> (AttemptOutcome, String) {
        let (status, error, asked, gone) = match sent {
            Sent::Answered { status, .. } if status.is_success() => {
                return (
                    AttemptOutcome::Delivered {
                        status: status.as_u16(),
                    },
                    String::new(),
                );
            }
            Sent::Answered {
                status,
                retry_after,
            } => {
                let error = if status.is_redirection() {
                    format!("HTTP {}: redirects are not followed", status.as_u16())
                } else {
                    format!("HTTP {}", status.as_u16())
                };
                (
                    Some(status.as_u16()),
                    error,
                    retry_after,
                    status == StatusCode::GONE,
                )
            }
            Sent::Failed(error) => (None, error, None, false),
            Sent::Refused(error) => {
                WebhookStats::add(&self.stats.refused_addresses);
                (None, error, None, false)
            }
        };
        let unit: f64 = rand::random();
        let retry_at = self.settings.schedule.after(c.attempt, unit).map(|delay| {
            schedule::next_attempt_at(now, delay, asked, self.settings.max_retry_after)
        });
        let disable = gone.then(|| {
            format!(
                "the receiver answered 410 Gone at {}; enable the subscription to resume",
                super::events::rfc3339(now)
            )
        });
        (
            AttemptOutcome::Failed {
                status,
                error: error.clone(),
                retry_at,
                disable_subscription: disable,
            },
            error,
        )
    }

    /// One signed POST, bounded by `webhook_delivery.timeout` whole.
    async fn send(&self, c: &ClaimedDelivery) -> Sent {
        let sub = &c.subscription;
        let Some(secrets) = self.seal.open(&sub.id, &sub.sealed_secrets) else {
            return Sent::Failed(
                "the subscription's secret does not open with this store's seal key (was \
                 store.seal_key_file replaced?): rotate its secret"
                    .into(),
            );
        };
        let now = self.clock.now();
        let signing_secrets = seal::signing(&secrets, now);
        if signing_secrets.is_empty() {
            return Sent::Failed("the subscription has no live secret: rotate it".into());
        }
        let operator = sub.source == ClientSource::Config;
        let target = match target::parse(&sub.url, self.settings.allow_http) {
            Ok(t) => t,
            Err(e) => return Sent::Failed(format!("url: {e}")),
        };
        let reach = if operator || self.settings.allow_private_targets {
            Reach::Any
        } else {
            Reach::Public
        };
        let body = Bytes::from(c.event.payload.clone());
        let signature = signing::signature_header(&signing_secrets, &c.event.id, now, &body);
        let request = async {
            let addrs = match target::addresses(&target, reach).await {
                Ok(a) => a,
                Err(Unreachable::Refused(e)) => return Sent::Refused(e),
                Err(Unreachable::Unresolved(e)) => return Sent::Failed(e),
            };
            self.post(&target, &addrs, &c.event.id, now, &signature, body)
                .await
        };
        match tokio::time::timeout(self.settings.timeout, request).await {
            Ok(sent) => sent,
            Err(_) => Sent::Failed(format!(
                "no answer within {} (webhook_delivery.timeout)",
                humantime::format_duration(self.settings.timeout)
            )),
        }
    }

    async fn post(
        &self,
        target: &Target,
        addrs: &[std::net::SocketAddr],
        id: &str,
        timestamp: i64,
        signature: &str,
        body: Bytes,
    ) -> Sent {
        // Connect to an address just checked: never to what a second lookup would say.
        let mut last = String::from("no address");
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connect to {addr}: {e}"),
            }
        }
        let Some(tcp) = tcp else {
            return Sent::Failed(last);
        };
        let _ = tcp.set_nodelay(true);
        let request = match build_request(target, id, timestamp, signature, body) {
            Ok(r) => r,
            Err(e) => return Sent::Failed(e),
        };
        if target.https {
            let name = match rustls_pki_types::ServerName::try_from(target.host.clone()) {
                Ok(n) => n,
                Err(_) => return Sent::Failed("the host is not a TLS server name".into()),
            };
            match self.tls.connect(name, tcp).await {
                Ok(tls) => self.exchange(tls, request).await,
                Err(e) => Sent::Failed(format!("tls: {e}")),
            }
        } else {
            self.exchange(tcp, request).await
        }
    }

    async fn exchange<S>(&self, io: S, request: Request<Full<Bytes>>) -> Sent
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await
        {
            Ok(pair) => pair,
            Err(e) => return Sent::Failed(format!("http: {e}")),
        };
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let sent = match sender.send_request(request).await {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| schedule::retry_after(v.as_bytes(), self.clock.now()));
                // Read (and drop) at most max_response_bytes; then the connection goes.
                let mut body = resp.into_body();
                let mut read = 0usize;
                while read < self.settings.max_response_bytes {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            read += frame.data_ref().map_or(0, Bytes::len);
                        }
                        _ => break,
                    }
                }
                Sent::Answered {
                    status,
                    retry_after,
                }
            }
            Err(e) => Sent::Failed(format!("http: {e}")),
        };
        driver.abort();
        sent
    }
}

fn build_request(
    target: &Target,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let value =
        |s: &str| HeaderValue::from_str(s).map_err(|_| "a header value is not valid".to_owned());
    let mut req = Request::post(target.path_and_query.as_str())
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let h = req.headers_mut();
    h.insert(header::HOST, value(&target.authority)?);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("Warden-Webhooks/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert("webhook-id", value(id)?);
    h.insert("webhook-timestamp", value(&timestamp.to_string())?);
    h.insert("webhook-signature", value(signature)?);
    Ok(req)
}

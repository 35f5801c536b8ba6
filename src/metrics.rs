//! Prometheus metrics (`endpoints.metrics`): the families, registered once at start, and the
//! per-route handles resolved once, so a request formats no label and looks nothing up for
//! what it always records. It decides nothing: the service and the checks report to it.
//! No label ever holds a client id, token id or anything else a caller chooses.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::cache::Lookups;
use crate::checks::Check;
use crate::router::Route;
use crate::store::{StoreTiming, TimingFamily};

/// The `Content-Type` of the exposition (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds: 2 µs doubling to ~17 s, fine enough for a check that takes
/// microseconds and wide enough for a slow upstream.
fn buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(2e-6, 2.0, 24)
}

fn histogram() -> Histogram {
    Histogram::new(buckets())
}

/// A route label: one of Warden's own endpoints, or a configured route's name (shared, so a
/// request clones a pointer, not the text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteLabel {
    Own(&'static str),
    Route(Arc<str>),
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            RouteLabel::Own(name) => encoder.write_str(name),
            RouteLabel::Route(name) => encoder.write_str(name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: RouteLabel,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteOnly {
    route: RouteLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    route: RouteLabel,
    check: &'static str,
    result: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// How a webhook delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed and will be tried again.
    Retry,
    /// It failed and was the last attempt.
    Dead,
}

/// The webhook delivery counters and latency, recording once [`Metrics::count_deliveries`]
/// has attached them (nothing before, or without metrics).
#[derive(Debug, Default)]
pub struct Deliveries(OnceLock<DeliveryHandles>);

#[derive(Debug)]
struct DeliveryHandles {
    /// By [`Delivery`] in declaration order.
    results: [Counter; 3],
    seconds: Histogram,
}

impl Deliveries {
    /// Records an attempt that ended as `result` after `elapsed` (the request to the receiver).
    pub fn record(&self, result: Delivery, elapsed: Duration) {
        if let Some(h) = self.0.get() {
            h.results[result as usize].inc();
            h.seconds.observe(elapsed.as_secs_f64());
        }
    }
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Allow,
    /// It failed and the request was refused.
    Deny,
    /// It failed on a route where it only reports: the request went on.
    WouldDeny,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::WouldDeny => "would_deny",
        }
    }
}

/// What a route records on every request, resolved at start.
struct RouteHandles {
    label: RouteLabel,
    seconds: Histogram,
    /// `result="allow"` of each check, by [`Check::index`].
    allowed: [Counter; Check::ALL.len()],
}

/// A route of a request as the metrics know it.
#[derive(Debug, Clone, Copy)]
pub enum RouteRef {
    /// One of Warden's own endpoints, or `-` for a request no route took.
    Own(&'static str),
    /// A configured route, by its position in `[[routes]]`.
    Route(usize),
}

/// An open client connection, counted in `warden_client_connections` while it lives.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The registry and every family Warden records into.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteOnly, Histogram, fn() -> Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    upstream_seconds: Histogram,
    signature_seconds: Histogram,
    connections: Gauge,
    upstream_idle: Gauge,
    routes: Vec<RouteHandles>,
    cache_lookups: Family<CacheLabels, Counter>,
    store_seconds: StoreTiming,
    deliveries: Family<ResultLabels, Counter>,
    delivery_seconds: Histogram,
}

impl Metrics {
    /// Registers the families and resolves the handles of `routes`.
    pub fn new(routes: &[Route]) -> Self {
        let mut registry = Registry::with_prefix("warden");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status (own endpoints by name, - for none)",
            requests.clone(),
        );
        let request_seconds =
            Family::<RouteOnly, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's head to its response's head, by route",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "auth_decisions",
            "Decisions of the checks of proxied routes: result allow, deny or would_deny \
             (a check in report mode), reason the problem code",
            decisions.clone(),
        );
        let upstream_seconds = histogram();
        registry.register_with_unit(
            "upstream_duration",
            "Time from sending a request upstream to its response's head",
            Unit::Seconds,
            upstream_seconds.clone(),
        );
        let signature_seconds = histogram();
        registry.register_with_unit(
            "signature_verify_duration",
            "Time to check a request's RFC 9421 signature (key lookup, batch verify, nonce)",
            Unit::Seconds,
            signature_seconds.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "client_connections",
            "Client connections open now",
            connections.clone(),
        );
        let upstream_idle = Gauge::default();
        registry.register(
            "upstream_idle_connections",
            "Idle keep-alive connections to the upstream in the pool (at scrape time)",
            upstream_idle.clone(),
        );
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Lookups in Warden's caches: cache token (credentials, negative answers included) \
             or signature_key (clients' signing keys), result hit or miss (a store read)",
            cache_lookups.clone(),
        );
        let store_seconds = TimingFamily::new_with_constructor(histogram);
        registry.register_with_unit(
            "store_write_duration",
            "Time of a store write transaction from its start to its commit, by operation \
             (SQLite: every write, and op batch for each group commit of the idempotency \
             writes; PostgreSQL: insert_token and revoke_token)",
            Unit::Seconds,
            store_seconds.clone(),
        );
        let deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by result: delivered (2xx), retry (failed, tried again \
             later) or dead (failed, the last attempt)",
            deliveries.clone(),
        );
        let delivery_seconds = histogram();
        registry.register_with_unit(
            "webhook_delivery_duration",
            "Time of a webhook delivery attempt: connecting, sending and the receiver's answer",
            Unit::Seconds,
            delivery_seconds.clone(),
        );
        let routes = routes
            .iter()
            .map(|route| {
                let label = RouteLabel::Route(Arc::from(route.name.as_str()));
                let seconds = request_seconds
                    .get_or_create(&RouteOnly {
                        route: label.clone(),
                    })
                    .clone();
                let allowed = Check::ALL.map(|check| {
                    decisions
                        .get_or_create(&DecisionLabels {
                            route: label.clone(),
                            check: check.name(),
                            result: Outcome::Allow.label(),
                            reason: "ok",
                        })
                        .clone()
                });
                RouteHandles {
                    label,
                    seconds,
                    allowed,
                }
            })
            .collect();
        Self {
            registry,
            requests,
            request_seconds,
            decisions,
            upstream_seconds,
            signature_seconds,
            connections,
            upstream_idle,
            routes,
            cache_lookups,
            store_seconds: StoreTiming::new(store_seconds),
            deliveries,
            delivery_seconds,
        }
    }

    /// Makes `lookups` count into `warden_cache_lookups_total{cache}`.
    pub fn count_lookups(&self, cache: &'static str, lookups: &Lookups) {
        let counter = |result| {
            self.cache_lookups
                .get_or_create(&CacheLabels { cache, result })
                .clone()
        };
        lookups.attach(counter("hit"), counter("miss"));
    }

    /// Makes `deliveries` count into `warden_webhook_deliveries_total` and its histogram.
    pub fn count_deliveries(&self, deliveries: &Deliveries) {
        let counter = |result| {
            self.deliveries
                .get_or_create(&ResultLabels { result })
                .clone()
        };
        let _ = deliveries.0.set(DeliveryHandles {
            results: [counter("delivered"), counter("retry"), counter("dead")],
            seconds: self.delivery_seconds.clone(),
        });
    }

    /// The store's write timing, for [`crate::store::StoreOptions::timing`].
    pub fn store_timing(&self) -> StoreTiming {
        self.store_seconds.clone()
    }

    fn label(&self, route: RouteRef) -> RouteLabel {
        match route {
            RouteRef::Own(name) => RouteLabel::Own(name),
            RouteRef::Route(i) => self
                .routes
                .get(i)
                .map_or(RouteLabel::Own("-"), |r| r.label.clone()),
        }
    }

    /// Records an answered request.
    pub fn request(&self, route: RouteRef, status: u16, elapsed: Duration) {
        let label = self.label(route);
        match route {
            RouteRef::Route(i) if i < self.routes.len() => {
                self.routes[i].seconds.observe(elapsed.as_secs_f64());
            }
            _ => {
                self.request_seconds
                    .get_or_create(&RouteOnly {
                        route: label.clone(),
                    })
                    .observe(elapsed.as_secs_f64());
            }
        }
        self.requests
            .get_or_create(&RequestLabels {
                route: label,
                status,
            })
            .inc();
    }

    /// Records a check's decision on route `route` (a position in `[[routes]]`); `reason`:
    /// the problem code of a refusal.
    pub fn decision(&self, route: usize, check: Check, outcome: Outcome, reason: &'static str) {
        let Some(handles) = self.routes.get(route) else {
            return;
        };
        if outcome == Outcome::Allow {
            handles.allowed[check.index()].inc();
            return;
        }
        self.decisions
            .get_or_create(&DecisionLabels {
                route: handles.label.clone(),
                check: check.name(),
                result: outcome.label(),
                reason,
            })
            .inc();
    }

    /// Records the time to an upstream response's head.
    pub fn upstream(&self, elapsed: Duration) {
        self.upstream_seconds.observe(elapsed.as_secs_f64());
    }

    /// Records the time of a signature check.
    pub fn signature(&self, elapsed: Duration) {
        self.signature_seconds.observe(elapsed.as_secs_f64());
    }

    /// Counts a client connection as open until the guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    /// The exposition, with the gauges read at scrape time set from `idle_upstream`.
    pub fn encode(&self, idle_upstream: usize) -> String {
        self.upstream_idle
            .set(i64::try_from(idle_upstream).unwrap_or(i64::MAX));
        let mut text = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            // Writing to a String cannot fail; an encoder error would be a bug in a label.
            let _ = writeln!(text, "# EOF");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str) -> Route {
        Route {
            name: name.into(),
            index: 0,
            pattern: crate::router::PathPattern::parse("/**").unwrap(),
            methods: Vec::new(),
            policy: crate::policy::Policy::new(crate::policy::AuthMode::Bearer),
        }
    }

    #[test]
    fn decisions_are_counted_under_the_route_check_result_and_code() {
        let m = Metrics::new(&[route("orders")]);
        m.decision(0, Check::Bearer, Outcome::Allow, "ok");
        m.decision(0, Check::Scope, Outcome::WouldDeny, "insufficient_scope");
        m.decision(0, Check::Scope, Outcome::WouldDeny, "insufficient_scope");
        m.decision(7, Check::Scope, Outcome::Deny, "ignored");
        m.request(RouteRef::Route(0), 200, Duration::from_micros(30));
        m.request(RouteRef::Own("healthz"), 200, Duration::from_micros(3));
        let text = m.encode(2);
        for line in [
            r#"warden_auth_decisions_total{route="orders",check="bearer",result="allow",reason="ok"} 1"#,
            r#"warden_auth_decisions_total{route="orders",check="scope",result="would_deny",reason="insufficient_scope"} 2"#,
            r#"warden_requests_total{route="orders",status="200"} 1"#,
            r#"warden_requests_total{route="healthz",status="200"} 1"#,
            r#"warden_request_duration_seconds_bucket{le="0.000016",route="orders"} 0"#,
            r#"warden_request_duration_seconds_bucket{le="0.000032",route="orders"} 1"#,
            "warden_upstream_idle_connections 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("ignored"));
    }
}

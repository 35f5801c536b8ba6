//! Prometheus metrics end to end: `endpoints.metrics` scraped over a real socket and read with
//! an independent parser of the text format; requests by route and status, the checks'
//! decisions, latency histograms and gauges; no label naming a client or a token.

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use prometheus_parse::{HistogramCount, Scrape, Value};

use crate::harness::{Client, Config, Proxy, Upstream};

const ROUTES: &str = r#"
[[routes]]
name = "api"
path = "/api/**"
auth = "bearer"
signature = "off"
[[routes]]
name = "public"
path = "/public/**"
auth = "none"
"#;

pub const METRICS_ON: &str = "[endpoints]\nmetrics = \"/metrics\"\n";

const CLIENT: (&str, &str) = ("metered-client", "metered-secret-7Hk");

fn client_toml((id, secret): (&str, &str)) -> String {
    format!(
        "[[clients]]\nid = {id:?}\nsecret_sha256 = \"{}\"\nscopes = [\"read\"]\n",
        hex::encode(warden::secret::hash(secret))
    )
}

/// Reads `/metrics` from `proxy` and parses it.
pub async fn scrape(proxy: &Proxy) -> Scrape {
    scrape_url(&proxy.url("/metrics")).await
}

/// Reads the exposition at `url` and parses it.
pub async fn scrape_url(url: &str) -> Scrape {
    let reply = Client::http1().get(url).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        reply.header("content-type")
    );
    let text = reply.text();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("unparsable exposition ({e}):\n{text}"))
}

/// The value of the sample of `metric` whose labels include all of `labels` (0 when none is
/// there: Prometheus reads an absent series as no events).
pub fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a single value: {other:?}"),
        })
        .sum()
}

/// The buckets of histogram `metric` with `labels`.
pub fn buckets(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<HistogramCount> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            Value::Histogram(b) => b.clone(),
            other => panic!("{metric} is not a histogram: {other:?}"),
        })
        .unwrap_or_else(|| panic!("no histogram {metric} {labels:?}"))
}

/// An access token for `(id, secret)` from the OAuth endpoint.
pub async fn token(proxy: &Proxy, (id, secret): (&str, &str)) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let req = Request::post(proxy.url("/v1/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let reply = Client::http1().send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

fn bearer_get(url: &str, token: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn a_scrape_counts_requests_decisions_and_latencies_without_naming_clients() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(
        Config::new(&up.url())
            .routes(ROUTES)
            .append(&client_toml(CLIENT))
            .append(METRICS_ON),
    )
    .await;
    let http = Client::http1();
    let token = token(&proxy, CLIENT).await;
    for _ in 0..3 {
        let echo = http
            .send(bearer_get(&proxy.url("/api/x"), &token))
            .await
            .echo();
        assert_eq!(echo.header("x-warden-client-id").as_deref(), Some(CLIENT.0));
    }
    http.get(&proxy.url("/api/x"))
        .await
        .problem(401, "token_missing");
    http.send(bearer_get(&proxy.url("/api/x"), "wdn_at_not-a-token"))
        .await
        .problem(401, "invalid_token");
    assert_eq!(http.get(&proxy.url("/public/p")).await.status, 200);
    assert_eq!(http.get(&proxy.url("/healthz")).await.status, 200);

    let s = scrape(&proxy).await;
    let requests = "warden_requests_total";
    assert_eq!(
        value(&s, requests, &[("route", "api"), ("status", "200")]),
        3.0
    );
    assert_eq!(
        value(&s, requests, &[("route", "api"), ("status", "401")]),
        2.0
    );
    assert_eq!(
        value(&s, requests, &[("route", "public"), ("status", "200")]),
        1.0
    );
    assert_eq!(
        value(&s, requests, &[("route", "healthz"), ("status", "200")]),
        1.0
    );
    assert_eq!(
        value(&s, requests, &[("route", "oauth_token"), ("status", "200")]),
        1.0
    );

    let decisions = "warden_auth_decisions_total";
    let decided = |check: &str, result: &str, reason: &str| {
        value(
            &s,
            decisions,
            &[
                ("route", "api"),
                ("check", check),
                ("result", result),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(decided("bearer", "allow", "ok"), 3.0);
    assert_eq!(decided("ip", "allow", "ok"), 3.0);
    assert_eq!(decided("scope", "allow", "ok"), 3.0);
    assert_eq!(decided("bearer", "deny", "token_missing"), 1.0);
    assert_eq!(decided("bearer", "deny", "invalid_token"), 1.0);
    // Signatures are off on this route: no decision is claimed for them.
    assert_eq!(decided("signature", "allow", "ok"), 0.0);

    // Histograms in seconds, with buckets down to microseconds.
    let whole = buckets(&s, "warden_request_duration_seconds", &[("route", "api")]);
    assert!(
        whole.first().is_some_and(|b| b.less_than <= 0.000_01),
        "{whole:?}"
    );
    assert_eq!(whole.last().map(|b| b.count), Some(5.0), "{whole:?}");
    let upstream = buckets(&s, "warden_upstream_duration_seconds", &[]);
    assert_eq!(upstream.last().map(|b| b.count), Some(4.0), "{upstream:?}");

    // The scrape's own connection is open while it is answered; the pool keeps the upstream's.
    assert!(value(&s, "warden_client_connections", &[]) >= 1.0);
    assert!(value(&s, "warden_upstream_idle_connections", &[]) >= 1.0);

    // No label names the client or its token.
    for sample in &s.samples {
        for (_, v) in sample.labels.iter() {
            assert!(
                !v.contains(CLIENT.0) && !v.contains("wdn_") && !v.contains(&token),
                "{sample:?}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_are_off_unless_configured_and_the_path_is_then_an_ordinary_one() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(Config::new(&up.url())).await;
    let echo = Client::http1().get(&proxy.url("/metrics")).await.echo();
    assert_eq!(echo.path, "/metrics");

    let e = warden::Settings::from_toml("[endpoints]\nmetrics = \"metrics\"\n").unwrap_err();
    assert!(e.to_string().starts_with("endpoints.metrics"), "{e}");
    let e = warden::Settings::from_toml("[endpoints]\nmetrics = \"/healthz\"\n").unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
}

/// The number of observations of histogram `metric` with `labels` (0 when it has none yet).
pub fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let present = scrape
        .samples
        .iter()
        .any(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)));
    if !present {
        return 0.0;
    }
    buckets(scrape, metric, labels)
        .last()
        .map_or(0.0, |b| b.count)
}

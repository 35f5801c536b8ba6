//! The admin listener (`[admin]`): metrics and health probes on a socket of their own, the
//! public listener then serving no metrics; nothing on it reaches the upstream; it stops with
//! Warden.

use http::{Method, Request};
use http_body_util::Full;

use crate::harness::{Client, Config, PATIENCE, Proxy, RawConn, Spawned, Upstream, within};
use crate::metrics::{scrape_url, token, value};

const ROUTES: &str = r#"
[[routes]]
name = "api"
path = "/api/**"
auth = "bearer"
signature = "off"
[[routes]]
name = "rest"
path = "/**"
auth = "none"
"#;

const ADMIN_ON: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

const CLIENT: (&str, &str) = ("admin-scraped", "admin-scraped-secret-9Qw");

fn config(up: &Upstream) -> Config {
    let (id, secret) = CLIENT;
    Config::new(&up.url()).routes(ROUTES).append(&format!(
        "[[clients]]\nid = {id:?}\nsecret_sha256 = \"{}\"\nscopes = [\"read\"]\n{ADMIN_ON}",
        hex::encode(warden::secret::hash(secret))
    ))
}

#[tokio::test]
async fn the_admin_listener_serves_the_metrics_and_the_public_listener_does_not() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(config(&up)).await;
    let admin = proxy.admin_addr().expect("an admin listener");
    assert_ne!(admin, proxy.addr());
    let http = Client::http1();
    let token = token(&proxy, CLIENT).await;
    for _ in 0..2 {
        let req = Request::get(proxy.url("/api/x"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        assert_eq!(http.send(req).await.status, 200);
    }

    let s = scrape_url(&proxy.admin_url("/metrics")).await;
    let requests = "warden_requests_total";
    assert_eq!(
        value(&s, requests, &[("route", "api"), ("status", "200")]),
        2.0
    );
    assert_eq!(
        value(&s, requests, &[("route", "oauth_token"), ("status", "200")]),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "warden_auth_decisions_total",
            &[("route", "api"), ("check", "bearer"), ("result", "allow")]
        ),
        2.0
    );

    // On the public listener /metrics is an ordinary path: here the catch-all route forwards
    // it, and the upstream (not Warden) answers.
    let calls = up.calls();
    let public = http.get(&proxy.url("/metrics")).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.echo().path, "/metrics");
    assert_eq!(up.calls(), calls + 1);
    assert!(!public.text().contains("warden_requests_total"));
    // The admin scrape is not counted as a request of the public listener.
    let s = scrape_url(&proxy.admin_url("/metrics")).await;
    assert_eq!(
        value(&s, requests, &[("route", "metrics")]),
        0.0,
        "admin scrapes are not public requests"
    );
    assert_eq!(
        value(&s, requests, &[("route", "rest"), ("status", "200")]),
        1.0
    );
}

#[tokio::test]
async fn the_admin_listener_answers_its_probes_and_forwards_nothing() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(config(&up)).await;
    let http = Client::http1();

    let health = http.get(&proxy.admin_url("/healthz")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let ready = http.get(&proxy.admin_url("/readyz")).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");

    // Paths the public listener would forward (the catch-all route) are not the admin
    // listener's: 404, and the upstream never sees them.
    for path in [
        "/api/x",
        "/",
        "/metrics/",
        "/METRICS",
        "/%6detrics",
        "/anything?x=1",
    ] {
        http.get(&proxy.admin_url(path))
            .await
            .problem(404, "route_not_found");
    }
    let post = Request::builder()
        .method(Method::POST)
        .uri(proxy.admin_url("/metrics"))
        .body(Full::from("x"))
        .unwrap();
    let refused = http.send(post).await;
    refused.problem(405, "method_not_allowed");
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
    let head = Request::builder()
        .method(Method::HEAD)
        .uri(proxy.admin_url("/metrics"))
        .body(Full::default())
        .unwrap();
    assert_eq!(http.send(head).await.status, 200);
    assert_eq!(up.calls(), 0, "nothing on the admin listener is forwarded");
}

#[tokio::test]
async fn the_admin_listener_closes_its_connections_and_stops_with_warden() {
    let up = Upstream::start().await;
    let mut proxy = Proxy::start(config(&up)).await;
    let admin = proxy.admin_addr().unwrap();
    // A keep-alive connection, idle after one answered request.
    let mut raw = RawConn::connect(admin).await;
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await;
    assert_eq!(raw.read_response().await.status, 200);

    proxy.trigger_shutdown();
    assert!(
        raw.closed_within(PATIENCE).await,
        "the idle admin connection was not closed"
    );
    proxy.stopped(PATIENCE).await;
    let refused = within(
        PATIENCE,
        "connecting",
        tokio::net::TcpStream::connect(admin),
    )
    .await;
    assert!(refused.is_err(), "the admin listener still accepts");
}

#[tokio::test]
async fn warden_serve_binds_the_admin_listener_and_closes_it_on_sigterm() {
    let up = Upstream::start().await;
    let warden = Spawned::start(&config(&up).write_file()).await;
    let marker = "admin listener on http://";
    warden.wait_for_log(marker).await;
    let log = warden.log();
    let addr: std::net::SocketAddr = log
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in the log:\n{log}"));
    let s = scrape_url(&format!("http://{addr}/metrics")).await;
    assert!(
        s.samples
            .iter()
            .any(|x| x.metric == "warden_client_connections"),
        "the exposition has Warden's families"
    );
    warden.signal("TERM");
    warden.wait_for_log("warden stopped").await;
    let refused = within(PATIENCE, "connecting", tokio::net::TcpStream::connect(addr)).await;
    assert!(refused.is_err(), "the admin listener outlived warden");
}

//! `warden dev-proxy` end to end: a plain HTTP client (standing in for curl) → the dev proxy →
//! a Warden that requires signatures on the route and on `/v1/auth` → the test upstream. GET
//! and POST (body, digest, idempotency key), a token refreshed ahead of its expiry, a token
//! refused by Warden replaced and the request sent again, and the proxy's own refusals.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::Request;
use http_body_util::Full;
use warden::clock::Clock;
use warden::devproxy::{DevProxy, DevProxyFile, DevProxySettings};

use crate::harness::{Client, Config, Proxy, Upstream};

const CLIENT: (&str, &str) = ("dev", "dev-secret-9Xv");

fn key() -> SigningKey {
    SigningKey::from_bytes(&[41; 32])
}

struct Setup {
    up: Upstream,
    _warden: Proxy,
    dev: Arc<DevProxy>,
    base: String,
}

/// Warden (with `warden_clock`, access tokens of 60 s) and a dev proxy (with `dev_clock`).
async fn start(warden_clock: &Clock, dev_clock: &Clock, extra: DevProxyFile) -> Setup {
    let up = Upstream::start().await;
    let config = Config::new(&up.url())
        .clock(warden_clock)
        .tokens("access_ttl = \"60s\"")
        .routes(
            "[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\nsignature = \"required\"\n",
        )
        .append(&format!(
            "[signatures]\nauth_endpoint = \"required\"\n\
             [[clients]]\nid = {:?}\nsecret_sha256 = \"{}\"\nscopes = [\"read\"]\n\
             [[clients.keys]]\nid = \"dev-1\"\npublic_key = \"{}\"\n",
            CLIENT.0,
            hex::encode(warden::secret::hash(CLIENT.1)),
            base64::engine::general_purpose::STANDARD.encode(key().verifying_key().to_bytes()),
        ));
    let warden = Proxy::start(config).await;
    let file = DevProxyFile {
        listen: Some("127.0.0.1:0".into()),
        api_url: Some(warden.url("")),
        client_id: Some(CLIENT.0.into()),
        client_secret_env: Some("TEST_DEV_SECRET".into()),
        key_env: Some("TEST_DEV_KEY".into()),
        key_id: Some("dev-1".into()),
        ..DevProxyFile::default()
    }
    .merge(extra);
    let seed = base64::engine::general_purpose::STANDARD.encode(key().to_bytes());
    let env = move |name: &str| match name {
        "TEST_DEV_SECRET" => Some(CLIENT.1.to_owned()),
        "TEST_DEV_KEY" => Some(seed.clone()),
        _ => None,
    };
    let settings = DevProxySettings::resolve(file, &env).unwrap();
    let dev = DevProxy::new(settings, dev_clock.clone());
    let (addr, _task) = dev.start().await.unwrap();
    Setup {
        up,
        _warden: warden,
        dev,
        base: format!("http://{addr}"),
    }
}

/// What curl would send: no credentials, no signature.
fn plain(method: &str, url: &str, body: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn curl_through_the_dev_proxy_reaches_an_api_that_requires_signatures() {
    let clock = Clock::default();
    let s = start(&clock, &clock, DevProxyFile::default()).await;
    let client = Client::http1();

    let reply = client
        .send(plain(
            "GET",
            &format!("{}/api/orders?status=open", s.base),
            "",
            &[],
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(
        (echo.method.as_str(), echo.path.as_str()),
        ("GET", "/api/orders")
    );
    assert_eq!(echo.query.as_deref(), Some("status=open"));
    assert_eq!(echo.header("x-client-id").as_deref(), Some("dev"));
    assert_eq!(echo.header("idempotency-key"), None, "only POSTs get one");

    let body = r#"{"amount":100,"currency":"EUR"}"#;
    let reply = client
        .send(plain(
            "POST",
            &format!("{}/api/orders", s.base),
            body,
            &[("content-type", "application/json")],
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.body, body);
    let key = echo.header("idempotency-key").unwrap();
    assert!(key.len() == 38 && key.starts_with('"'), "{key}");
    assert!(
        echo.header("content-digest")
            .unwrap()
            .starts_with("sha-512=:"),
        "{:?}",
        echo.headers
    );

    // The caller's own idempotency key is kept (a retry is then replayed by Warden).
    let send = || {
        client.send(plain(
            "POST",
            &format!("{}/api/orders", s.base),
            body,
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "\"mine-1\""),
            ],
        ))
    };
    let first = send().await;
    assert_eq!(
        first.echo().header("idempotency-key").as_deref(),
        Some("\"mine-1\"")
    );
    let again = send().await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(s.up.calls(), 3, "the retry was replayed, not sent again");
    assert_eq!(s.dev.tokens_fetched(), 1, "one token for all of them");
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    let clock = Clock::default();
    clock.freeze();
    let s = start(&clock, &clock, DevProxyFile::default()).await;
    let client = Client::http1();
    let url = format!("{}/api/x", s.base);
    assert_eq!(client.send(plain("GET", &url, "", &[])).await.status, 200);
    clock.advance(40);
    assert_eq!(client.send(plain("GET", &url, "", &[])).await.status, 200);
    assert_eq!(
        s.dev.tokens_fetched(),
        1,
        "before 80% of 60 s: the same token"
    );
    clock.advance(9);
    // Concurrent requests at the refresh point share one new token.
    let calls = (0..4).map(|_| client.send(plain("GET", &url, "", &[])));
    for reply in futures_util::future::join_all(calls).await {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(s.dev.tokens_fetched(), 2);
}

#[tokio::test]
async fn a_token_warden_refuses_is_replaced_and_the_request_sent_again() {
    // Warden's clock runs ahead of the dev proxy's: the token expires at Warden while the dev
    // proxy still thinks it fresh, as after a revocation or a server restart.
    let warden_clock = Clock::default();
    let dev_clock = Clock::default();
    let s = start(&warden_clock, &dev_clock, DevProxyFile::default()).await;
    let client = Client::http1();
    let body = r#"{"n":1}"#;
    let post = || {
        plain(
            "POST",
            &format!("{}/api/orders", s.base),
            body,
            &[("content-type", "application/json")],
        )
    };
    assert_eq!(client.send(post()).await.status, 200);
    warden_clock.advance(120);
    let reply = client.send(post()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.echo().body, body, "the buffered body was sent again");
    assert_eq!(s.dev.tokens_fetched(), 2);
    assert_eq!(s.up.calls(), 2);
}

#[tokio::test]
async fn the_dev_proxy_refuses_what_it_should_not_sign() {
    let clock = Clock::default();
    let cap = DevProxyFile {
        max_body_bytes: Some(64),
        ..DevProxyFile::default()
    };
    let s = start(&clock, &clock, cap).await;
    let client = Client::http1();
    let url = format!("{}/api/orders", s.base);
    let reply = client.send(plain("POST", &url, &"x".repeat(65), &[])).await;
    reply.problem(413, "devproxy_body_too_large");
    // A page of another origin, and a DNS name that resolves here (rebinding).
    let reply = client
        .send(plain(
            "POST",
            &url,
            "{}",
            &[("origin", "https://evil.example")],
        ))
        .await;
    reply.problem(403, "devproxy_origin_refused");
    let reply = client
        .send(plain("GET", &url, "", &[("host", "evil.example:8787")]))
        .await;
    reply.problem(403, "devproxy_host_refused");
    let reply = client
        .send(plain(
            "GET",
            &url,
            "",
            &[("origin", "http://localhost:3000")],
        ))
        .await;
    assert_eq!(
        reply.status,
        200,
        "a local page may use it: {}",
        reply.text()
    );
    assert_eq!(s.up.calls(), 1);
}

#[tokio::test]
async fn secrets_on_the_command_line_are_refused() {
    for args in [
        &["dev-proxy", "--secret", "s3cret"][..],
        &["dev-proxy", "--client-secret=s3cret"],
        &["dev-proxy", "--key", "seed"],
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .env_remove("WARDEN_CONFIG")
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("never taken from the command line"), "{err}");
        assert!(!err.contains("s3cret"), "the secret is not echoed: {err}");
    }
    // And a listener beyond loopback needs --allow-remote.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "dev-proxy",
            "--listen",
            "0.0.0.0:0",
            "--api-url",
            "http://127.0.0.1:9",
            "--client-id",
            "dev",
            "--key-id",
            "k",
        ])
        .env("WARDEN_DEV_CLIENT_SECRET", "x")
        .env(
            "WARDEN_DEV_KEY",
            base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
        )
        .env_remove("WARDEN_CONFIG")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

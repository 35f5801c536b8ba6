//! Shadow mode (`[routes.checks]`): for each check, a route where it only reports forwards a
//! request that fails it, tells the upstream in `X-Warden-Would-Deny`, and counts
//! `result="would_deny"`; the same request on a route where it enforces is refused, counted as
//! `deny`, and never reaches the upstream. A failed credential never forwards an identity.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::harness::{Client, Config, Proxy, Reply, Upstream};
use crate::metrics::{METRICS_ON, scrape, value};

const CLIENT: (&str, &str) = ("shadowed", "shadowed-secret-3Kp");
const INSIDE: &str = "10.1.2.3";
const OUTSIDE: &str = "203.0.113.9";

/// Every check twice: `/{check}-report/**` reports it, `/{check}-enforce/**` enforces it.
fn routes() -> String {
    let policy = |check: &str| match check {
        "scope" => "signature = \"off\"\nscopes = [\"admin\"]\n",
        "signature" => "signature = \"required\"\n",
        "digest" => "signature = \"off\"\nidempotency = \"off\"\n",
        "idempotency" => "signature = \"off\"\nidempotency = \"required\"\n",
        _ => "signature = \"off\"\n",
    };
    let mut t = String::new();
    for check in [
        "ip",
        "bearer",
        "scope",
        "signature",
        "digest",
        "idempotency",
    ] {
        for mode in ["report", "enforce"] {
            t.push_str(&format!(
                "[[routes]]\nname = \"{check}-{mode}\"\npath = \"/{check}-{mode}/**\"\n\
                 auth = \"bearer\"\n{}[routes.checks]\n{check} = \"{mode}\"\n",
                policy(check)
            ));
        }
    }
    t
}

fn client_toml() -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&[21; 32]);
    use base64::Engine as _;
    format!(
        "[[clients]]\nid = {:?}\nsecret_sha256 = \"{}\"\nscopes = [\"read\"]\n\
         trusted_ips = [\"10.0.0.0/8\"]\n[[clients.keys]]\nid = \"k1\"\nalg = \"ed25519\"\n\
         public_key = \"{}\"\n",
        CLIENT.0,
        hex::encode(warden::secret::hash(CLIENT.1)),
        base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes())
    )
}

struct Setup {
    up: Upstream,
    proxy: Proxy,
    token: String,
}

async fn setup() -> Setup {
    let up = Upstream::start().await;
    let proxy = Proxy::start(
        Config::new(&up.url())
            .server("trusted_proxies = [\"127.0.0.1/32\"]")
            .routes(&routes())
            .append(&client_toml())
            .append(METRICS_ON),
    )
    .await;
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", CLIENT.0, CLIENT.1));
    let req = Request::post(proxy.url("/v1/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", INSIDE)
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let reply = Client::http1().send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    Setup { up, proxy, token }
}

/// A request that fails `check` (and only it) on `/{check}-{mode}/x`.
fn failing(s: &Setup, check: &str, mode: &str) -> Request<Full<Bytes>> {
    let url = s.proxy.url(&format!("/{check}-{mode}/x"));
    let token = if check == "bearer" {
        "wdn_at_forged-or-expired"
    } else {
        &s.token
    };
    let from = if check == "ip" { OUTSIDE } else { INSIDE };
    let method = if matches!(check, "digest" | "idempotency") {
        "POST"
    } else {
        "GET"
    };
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-forwarded-for", from)
        // Spoofed identity: never believed, whatever the mode.
        .header("x-warden-client-id", "admin")
        .header("x-client-id", CLIENT.0);
    if check == "digest" {
        // The sha-256 of "other", not of the body sent.
        req = req.header(
            "content-digest",
            "sha-256=:2b8yKDCZ8YqSlSo+hGeCBUyExSW6FgSLZs5w4lcCYoo=:",
        );
    }
    let body = if method == "POST" { "{\"a\":1}" } else { "" };
    req.body(Full::from(body)).unwrap()
}

/// The refusal each check answers in enforce mode.
fn refusal(check: &str) -> (u16, &'static str) {
    match check {
        "ip" => (403, "ip_not_allowed"),
        "bearer" => (401, "invalid_token"),
        "scope" => (403, "insufficient_scope"),
        "signature" => (401, "signature_missing"),
        "digest" => (400, "digest_mismatch"),
        "idempotency" => (400, "idempotency_key_missing"),
        other => panic!("no check {other}"),
    }
}

async fn shadow_and_enforce(check: &str) {
    let s = setup().await;
    let http = Client::http1();
    let (status, code) = refusal(check);

    // Report: forwarded, told, counted.
    let reply: Reply = http.send(failing(&s, check, "report")).await;
    let echo = reply.echo();
    assert_eq!(echo.header("x-warden-would-deny").as_deref(), Some(code));
    assert_ne!(echo.header("x-warden-client-id").as_deref(), Some("admin"));
    if check == "bearer" {
        // No credential proved: nothing of an identity goes upstream, not even the claims
        // the client made, nor the credential itself.
        for name in [
            "x-warden-client-id",
            "x-warden-token-id",
            "x-warden-scopes",
            "x-client-id",
            "authorization",
        ] {
            assert_eq!(echo.header(name), None, "{name} forwarded: {echo:?}");
        }
    } else {
        // The credential was proved: its own identity, with the failure beside it.
        assert_eq!(echo.header("x-warden-client-id").as_deref(), Some(CLIENT.0));
    }
    if check == "signature" {
        assert_eq!(echo.header("x-client-id"), None, "unverified X-Client-Id");
    }
    if check == "digest" {
        assert_eq!(echo.body, "{\"a\":1}");
    }
    assert_eq!(s.up.calls(), 1);

    // Enforce: refused before the upstream.
    http.send(failing(&s, check, "enforce"))
        .await
        .problem(status, code);
    assert_eq!(s.up.calls(), 1, "a refused request reached the upstream");

    let m = scrape(&s.proxy).await;
    let counted = |route: &str, result: &str| {
        value(
            &m,
            "warden_auth_decisions_total",
            &[
                ("route", route),
                ("check", check),
                ("result", result),
                ("reason", code),
            ],
        )
    };
    let report = format!("{check}-report");
    let enforce = format!("{check}-enforce");
    assert_eq!(counted(&report, "would_deny"), 1.0);
    assert_eq!(counted(&report, "deny"), 0.0);
    assert_eq!(counted(&enforce, "deny"), 1.0);
    assert_eq!(counted(&enforce, "would_deny"), 0.0);
}

#[tokio::test]
async fn ip_in_report_mode_forwards_and_counts_would_deny_and_in_enforce_refuses() {
    shadow_and_enforce("ip").await;
}

#[tokio::test]
async fn bearer_in_report_mode_forwards_anonymously_and_in_enforce_refuses() {
    shadow_and_enforce("bearer").await;
}

#[tokio::test]
async fn scope_in_report_mode_forwards_and_counts_would_deny_and_in_enforce_refuses() {
    shadow_and_enforce("scope").await;
}

#[tokio::test]
async fn signature_in_report_mode_forwards_and_counts_would_deny_and_in_enforce_refuses() {
    shadow_and_enforce("signature").await;
}

#[tokio::test]
async fn digest_in_report_mode_forwards_and_counts_would_deny_and_in_enforce_refuses() {
    shadow_and_enforce("digest").await;
}

#[tokio::test]
async fn idempotency_in_report_mode_forwards_and_counts_would_deny_and_in_enforce_refuses() {
    shadow_and_enforce("idempotency").await;
}

#[test]
fn a_public_route_cannot_report_checks_it_does_not_run() {
    let e = warden::Settings::from_toml(
        "[[routes]]\npath = \"/p/**\"\nauth = \"none\"\n[routes.checks]\nbearer = \"report\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("routes[0].checks"), "{e}");
}

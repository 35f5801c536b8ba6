//! RFC 9421 signatures and RFC 9530 digests end to end: signed requests through Warden to a
//! real upstream, every tamper refused before the upstream sees a complete request, the
//! policy (modes, coverage, time, nonces, `X-Client-Id`), the public URL behind a proxy, the
//! signed token endpoint, the global address lists, and `warden keygen` / `warden sign`.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::Full;
use warden::clock::Clock;
use warden::httpsig::{self, SignOptions};

use crate::harness::{
    Client, Config, PATIENCE, Proxy, RawConn, Reply, StoreDir, Upstream, printed_after, run_cli,
};

const ROUTES: &str = r#"
[[routes]]
name = "api"
path = "/api/**"
auth = "bearer"
[[routes]]
name = "open"
path = "/open/**"
auth = "bearer"
signature = "off"
[[routes]]
name = "strict"
path = "/strict/**"
auth = "bearer"
signature = "required"
[[routes]]
name = "public"
path = "/public/**"
auth = "none"
"#;

/// `signer` registered key `k1`; `plain` has no key; `other` registered `other-key`.
const SIGNER: (&str, &str) = ("signer", "signer-secret-4Rt");
const PLAIN: (&str, &str) = ("plain", "plain-secret-8Jm");
const OTHER: (&str, &str) = ("other", "other-secret-1Zq");
const KEY_ID: &str = "k1";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[12; 32])
}

fn public_key(key: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes())
}

fn client_toml(id: &str, secret: &str, key: Option<(&str, &SigningKey)>) -> String {
    let mut t = format!(
        "[[clients]]\nid = {id:?}\nsecret_sha256 = \"{}\"\nscopes = [\"read\", \"write\"]\n",
        hex::encode(warden::secret::hash(secret))
    );
    if let Some((key_id, key)) = key {
        t.push_str(&format!(
            "[[clients.keys]]\nid = {key_id:?}\nalg = \"ed25519\"\npublic_key = \"{}\"\n",
            public_key(key)
        ));
    }
    t
}

fn clients() -> String {
    [
        client_toml(SIGNER.0, SIGNER.1, Some((KEY_ID, &key()))),
        client_toml(PLAIN.0, PLAIN.1, None),
        client_toml(OTHER.0, OTHER.1, Some(("other-key", &other_key()))),
    ]
    .concat()
}

/// The signature tests' configuration; `extra` is appended (a `[signatures]` table, …).
fn config(up: &Upstream, extra: &str) -> Config {
    Config::new(&up.url())
        .routes(ROUTES)
        .append(&clients())
        .append(extra)
}

async fn start(extra: &str) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy = Proxy::start(config(&up, extra)).await;
    (up, proxy)
}

/// An access token from the OAuth endpoint (client credentials, HTTP Basic).
async fn token(proxy: &Proxy, (id, secret): (&str, &str)) -> String {
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

fn now() -> i64 {
    Clock::default().now()
}

/// A request under construction: signed as it is, then possibly tampered with, then sent.
#[derive(Clone)]
struct Call {
    method: String,
    url: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Call {
    fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn json(self, body: &str) -> Self {
        let mut call = self.header("content-type", "application/json");
        call.body = body.as_bytes().to_vec();
        call
    }

    /// Signs as `warden sign` would, for the URL in `self.url` (or `signed_url`).
    fn sign_as(
        mut self,
        key: &SigningKey,
        key_id: &str,
        signed_url: Option<&str>,
        tweak: impl FnOnce(&mut SignOptions<'_>),
    ) -> Self {
        let url = signed_url.unwrap_or(&self.url).parse().unwrap();
        let mut opts = SignOptions::new(key_id, now());
        tweak(&mut opts);
        httpsig::sign_request(
            &self.method,
            &url,
            &mut self.headers,
            &self.body,
            &opts,
            key,
        )
        .unwrap();
        self
    }

    fn signed(self) -> Self {
        self.sign_as(&key(), KEY_ID, None, |_| {})
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(self.method.as_str())
            .uri(self.url.as_str())
            .body(Full::from(self.body.clone()))
            .unwrap();
        *req.headers_mut() = self.headers.clone();
        req
    }

    async fn send(&self) -> Reply {
        Client::http1().send(self.request()).await
    }
}

fn order_call(proxy: &Proxy, token: &str) -> Call {
    Call::new("POST", &proxy.url("/api/orders?account=7"))
        .bearer(token)
        .header("x-idempotency-key", "idem-1")
        .json(r#"{"amount":100,"currency":"EUR"}"#)
}

// ------------------------------------------------------------------ the happy path

#[tokio::test]
async fn a_signed_post_with_a_digest_reaches_the_upstream_with_its_identity() {
    let (up, proxy) = start("").await;
    let token = token(&proxy, SIGNER).await;
    let reply = order_call(&proxy, &token).signed().send().await;
    let echo = reply.echo();
    assert_eq!(echo.body, r#"{"amount":100,"currency":"EUR"}"#);
    assert_eq!(echo.query.as_deref(), Some("account=7"));
    assert_eq!(echo.header("x-warden-client-id").as_deref(), Some("signer"));
    assert!(echo.header("content-digest").is_some());
    assert_eq!((up.calls(), up.complete_bodies()), (1, 1));
}

#[tokio::test]
async fn concurrent_signed_requests_are_verified_together_and_each_gets_its_own_answer() {
    let (up, proxy) = start("").await;
    let token = token(&proxy, SIGNER).await;
    // Sent at once, so several reach the signature check in the same turn of the event loop
    // and are verified as one batch; every third has its body's digest re-signed by another
    // key, so the batch fails and each signature is judged alone.
    let mut calls = Vec::new();
    for i in 0..24 {
        let call = Call::new("POST", &proxy.url(&format!("/api/orders?n={i}")))
            .bearer(&token)
            .header("x-idempotency-key", &format!("batch-{i}"))
            .json(&format!(r#"{{"amount":{i}}}"#));
        let call = if i % 3 == 0 {
            call.sign_as(&other_key(), KEY_ID, None, |_| {})
        } else {
            call.signed()
        };
        calls.push(tokio::spawn(async move { (i, call.send().await) }));
    }
    let mut accepted = 0;
    for c in calls {
        let (i, reply) = c.await.unwrap();
        if i % 3 == 0 {
            reply.problem(401, "signature_invalid");
        } else {
            assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
            assert_eq!(reply.echo().query, Some(format!("n={i}")));
            accepted += 1;
        }
    }
    assert_eq!(accepted, 16);
    assert_eq!(up.calls(), 16, "no refused request reached the upstream");
}

#[tokio::test]
async fn a_signed_get_over_h2c_verifies_against_its_authority() {
    let (up, proxy) = start("").await;
    let token = token(&proxy, SIGNER).await;
    let call = Call::new("GET", &proxy.url("/api/orders/42"))
        .bearer(&token)
        .signed();
    let reply = Client::h2c().send(call.request()).await;
    assert_eq!(reply.echo().path, "/api/orders/42");
    assert_eq!(up.calls(), 1);
}

// ------------------------------------------------------------------ tampering

#[tokio::test]
async fn every_tamper_is_refused_and_never_reaches_the_upstream() {
    let clock = Clock::default();
    let up = Upstream::start().await;
    let proxy = Proxy::start(config(&up, "").clock(&clock)).await;
    let token = token(&proxy, SIGNER).await;
    let good = order_call(&proxy, &token).signed();

    let mut cases: Vec<(&str, Call, u16, &str)> = Vec::new();
    let mut c = good.clone();
    c.body = br#"{"amount":900,"currency":"EUR"}"#.to_vec();
    cases.push(("body", c, 400, "digest_mismatch"));
    let mut c = good.clone();
    c.headers.insert(
        "content-digest",
        HeaderValue::from_static("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
    );
    cases.push(("digest header", c, 401, "signature_invalid"));
    let mut c = good.clone();
    c.headers
        .insert("x-idempotency-key", HeaderValue::from_static("idem-2"));
    cases.push(("covered header", c, 401, "signature_invalid"));
    let mut c = good.clone();
    c.headers
        .insert("content-type", HeaderValue::from_static("text/plain"));
    cases.push(("content type", c, 401, "signature_invalid"));
    let mut c = good.clone();
    c.url = proxy.url("/api/refunds?account=7");
    cases.push(("path", c, 401, "signature_invalid"));
    let mut c = good.clone();
    c.url = proxy.url("/api/orders?account=8");
    cases.push(("query", c, 401, "signature_invalid"));
    let mut c = good.clone();
    c.method = "PUT".into();
    cases.push(("method", c, 401, "signature_invalid"));
    let c = order_call(&proxy, &token).sign_as(&other_key(), KEY_ID, None, |_| {});
    cases.push(("key", c, 401, "signature_invalid"));
    let c = order_call(&proxy, &token).sign_as(&key(), "k9", None, |_| {});
    cases.push(("unknown keyid", c, 401, "unknown_key"));
    let c = order_call(&proxy, &token).sign_as(&other_key(), "other-key", None, |_| {});
    cases.push(("another client's key", c, 401, "unknown_key"));
    let c = order_call(&proxy, &token).sign_as(&key(), KEY_ID, None, |o| o.created = now() - 301);
    cases.push(("created too old", c, 401, "signature_expired"));
    let c = order_call(&proxy, &token).sign_as(&key(), KEY_ID, None, |o| o.created = now() + 120);
    cases.push(("created in the future", c, 401, "signature_not_yet_valid"));
    let c =
        order_call(&proxy, &token).sign_as(&key(), KEY_ID, None, |o| o.expires = Some(now() - 60));
    cases.push(("expired", c, 401, "signature_expired"));

    for (what, call, status, code) in &cases {
        let reply = call.send().await;
        assert_eq!(reply.status.as_u16(), *status, "{what}: {}", reply.text());
        reply.problem(*status, code);
        if *status == 401 {
            assert!(reply.header("www-authenticate").is_some(), "{what}");
            assert!(
                reply
                    .header("accept-signature")
                    .unwrap()
                    .contains("keyid=\"k1\""),
                "{what}"
            );
        }
    }
    assert_eq!(up.calls(), 0, "no tampered request may reach the upstream");

    // The untouched request still passes; once Warden's clock has moved past max_age it does not.
    assert_eq!(good.send().await.status, 200);
    clock.advance(301);
    good.send().await.problem(401, "signature_expired");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn a_streamed_body_that_does_not_match_is_cut_off_before_the_upstream_has_it_all() {
    let (up, proxy) = start("").await;
    let token = token(&proxy, SIGNER).await;
    // Signed over the body the client claims; the second chunk is then sent altered.
    let claimed = b"first-chunk;second-chunk";
    for (i, (second, complete)) in [(&b"second-chunk"[..], true), (&b"SECOND-chunk"[..], false)]
        .into_iter()
        .enumerate()
    {
        let mut signed = Call::new("POST", &proxy.url("/api/upload"))
            .bearer(&token)
            .header("content-type", "text/plain")
            .header("x-idempotency-key", &format!("stream-{i}"));
        signed.body = claimed.to_vec();
        let signed = signed.signed();
        let mut head = String::from("POST /api/upload HTTP/1.1\r\nHost: ");
        head.push_str(&proxy.addr().to_string());
        head.push_str("\r\nTransfer-Encoding: chunked\r\n");
        for (name, value) in &signed.headers {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
        head.push_str("\r\n");
        let calls_before = up.calls();
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(head.as_bytes()).await;
        raw.send_chunk(b"first-chunk;").await;
        // The upstream has the head (and the first chunk) before the rest is even sent.
        up.wait_for_calls(calls_before + 1).await;
        raw.send_chunk(second).await;
        raw.send(b"0\r\n\r\n").await;
        let resp = raw.read_response().await;
        if complete {
            assert_eq!(resp.status, 200);
            assert_eq!(up.complete_bodies(), 1);
        } else {
            assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(&resp.body));
            crate::harness::assert_problem(&resp.headers, &resp.body, "digest_mismatch");
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                up.complete_bodies(),
                1,
                "the upstream must never receive the whole altered body"
            );
        }
    }
}

// ------------------------------------------------------------------ policy

#[tokio::test]
async fn a_keyed_client_must_sign_and_a_keyless_one_need_not() {
    let (up, proxy) = start("").await;
    let signer = token(&proxy, SIGNER).await;
    let plain = token(&proxy, PLAIN).await;

    let reply = order_call(&proxy, &signer).send().await;
    reply.problem(401, "signature_missing");
    assert_eq!(
        reply.header("accept-signature"),
        Some(
            r#"sig1=("@method" "@target-uri" "content-digest" "authorization" "x-idempotency-key");created;keyid="k1""#
        )
    );
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"warden\"")
    );
    assert_eq!(up.calls(), 0);

    assert_eq!(order_call(&proxy, &plain).send().await.status, 200);
    // A signature a keyless client sends is still checked.
    let forged = order_call(&proxy, &plain).signed().send().await;
    forged.problem(401, "unknown_key");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn coverage_and_digest_rules_are_enforced() {
    let (up, proxy) = start("").await;
    let token = token(&proxy, SIGNER).await;

    let mut no_digest = order_call(&proxy, &token).signed();
    no_digest.headers.remove("content-digest");
    let reply = no_digest.send().await;
    reply.problem(400, "digest_missing");
    assert_eq!(
        reply.header("want-content-digest"),
        Some("sha-512=10, sha-256=5")
    );

    let thin = order_call(&proxy, &token).sign_as(&key(), KEY_ID, None, |o| {
        o.components = Some(
            ["@method", "@target-uri", "content-digest"]
                .map(String::from)
                .to_vec(),
        );
    });
    let v = thin.send().await.problem(401, "component_not_covered");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("authorization") && detail.contains("x-idempotency-key"),
        "{detail}"
    );

    // A digest is checked even when no signature covers it (digest.verify_unsigned).
    let plain = self::token(&proxy, PLAIN).await;
    let bad_digest = order_call(&proxy, &plain).header("content-digest", "sha-512=abc");
    bad_digest.send().await.problem(400, "digest_malformed");
    let md5 = order_call(&proxy, &plain).header("content-digest", "md5=:AAAAAAAAAAAAAAAAAAAAAA==:");
    md5.send().await.problem(400, "digest_unsupported");
    let wrong = order_call(&proxy, &plain).header(
        "content-digest",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
    );
    wrong.send().await.problem(400, "digest_mismatch");
    let public = Call::new("POST", &proxy.url("/public/x"))
        .json("{}")
        .header(
            "content-digest",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        );
    public.send().await.problem(400, "digest_mismatch");

    let mut malformed = order_call(&proxy, &token).signed();
    malformed.headers.insert(
        "signature-input",
        HeaderValue::from_static("sig1=(\"@method\""),
    );
    malformed.send().await.problem(400, "signature_malformed");

    let alg = order_call(&proxy, &token).sign_as(&key(), KEY_ID, None, |o| {
        o.components = None;
        o.nonce = None;
    });
    let mut alg = alg;
    let input = alg.headers["signature-input"]
        .to_str()
        .unwrap()
        .replace("ed25519", "rsa-pss-sha512");
    alg.headers
        .insert("signature-input", HeaderValue::from_str(&input).unwrap());
    alg.send().await.problem(401, "algorithm_mismatch");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn a_nonce_is_accepted_once_and_can_be_required() {
    let (up, proxy) = start("[signatures]\nnonce = \"required\"\n").await;
    let token = token(&proxy, SIGNER).await;
    order_call(&proxy, &token)
        .signed()
        .send()
        .await
        .problem(401, "nonce_missing");
    let call =
        order_call(&proxy, &token).sign_as(&key(), KEY_ID, None, |o| o.nonce = Some("n-0001"));
    assert_eq!(call.send().await.status, 200);
    call.send().await.problem(401, "signature_replayed");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn another_clients_flood_of_nonces_never_makes_a_captured_request_replayable() {
    // Review finding 11, as reproduced: a small cache, the victim's signed request, then
    // 300 fresh nonces from another client. The flood gets its share (a quarter) and 429s.
    let (up, proxy) =
        start("[signatures]\nnonce = \"required\"\nnonce_cache_capacity = 100\n").await;
    let victim = token(&proxy, SIGNER).await;
    let flood = token(&proxy, OTHER).await;
    let call =
        order_call(&proxy, &victim).sign_as(&key(), KEY_ID, None, |o| o.nonce = Some("n-victim"));
    assert_eq!(call.send().await.status, 200);
    call.send().await.problem(401, "signature_replayed");
    let (mut accepted, mut quota) = (0, 0);
    for i in 0..300 {
        // `SignOptions` borrows its nonce for any lifetime the signer picks.
        let nonce: &'static str = Box::leak(format!("n-flood-{i}").into_boxed_str());
        let reply = Call::new("GET", &proxy.url(&format!("/api/x?i={i}")))
            .bearer(&flood)
            .sign_as(&other_key(), "other-key", None, |o| o.nonce = Some(nonce))
            .send()
            .await;
        if reply.status == 200 {
            accepted += 1;
        } else {
            reply.problem(429, "nonce_quota_exceeded");
            assert!(reply.header("retry-after").is_some());
            quota += 1;
        }
    }
    call.send().await.problem(401, "signature_replayed");
    assert_eq!((accepted, quota), (25, 275));
    let next = Call::new("GET", &proxy.url("/api/orders"))
        .bearer(&victim)
        .sign_as(&key(), KEY_ID, None, |o| o.nonce = Some("n-2"));
    assert_eq!(next.send().await.status, 200, "the victim keeps its share");
    assert_eq!(up.calls(), 1 + 25 + 1);
}

/// Nonces live in memory with the embedded store, so a restart forgets them: a request
/// captured before it must not be accepted again after it.
#[tokio::test]
async fn a_request_captured_before_a_restart_cannot_be_replayed_after_it() {
    let up = Upstream::start().await;
    let store = StoreDir::new();
    let cfg = || {
        config(
            &up,
            "[signatures]\nnonce = \"optional\"\npublic_url = \"https://api.example.com\"\n",
        )
        .store(&store)
    };
    let public = "https://api.example.com/api/orders";
    let first = Proxy::start(cfg()).await;
    let token = token(&first, SIGNER).await;
    let captured = Call::new("GET", &first.url("/api/orders"))
        .bearer(&token)
        .sign_as(&key(), KEY_ID, Some(public), |o| {
            o.nonce = Some("n-captured")
        });
    assert_eq!(captured.send().await.status, 200);
    captured.send().await.problem(401, "signature_replayed");
    first.stopped(PATIENCE).await;
    // Signatures carry whole seconds: the restart happens in a later one.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let second = Proxy::start(cfg()).await;
    let replay = Call {
        url: second.url("/api/orders"),
        ..captured.clone()
    };
    let refused = replay.send().await;
    assert!(
        refused.text().contains("before Warden last started"),
        "{}",
        refused.text()
    );
    refused.problem(401, "signature_replayed");
    let fresh = Call::new("GET", &second.url("/api/orders"))
        .bearer(&token)
        .sign_as(&key(), KEY_ID, Some(public), |o| o.nonce = Some("n-fresh"));
    assert_eq!(fresh.send().await.status, 200);
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn x_client_id_must_name_the_tokens_client() {
    let (up, proxy) = start("").await;
    let token = token(&proxy, PLAIN).await;
    let reply = Call::new("GET", &proxy.url("/api/orders"))
        .bearer(&token)
        .header("x-client-id", "signer")
        .send()
        .await;
    reply.problem(401, "client_id_mismatch");
    let same = Call::new("GET", &proxy.url("/api/orders"))
        .bearer(&token)
        .header("x-client-id", "plain")
        .send()
        .await;
    assert_eq!(same.status, 200);
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn connection_cannot_strip_a_header_the_signature_covers() {
    let (up, proxy) = start("").await;
    let token = token(&proxy, SIGNER).await;
    let components = ["@method", "@target-uri", "authorization", "x-dry-run"];
    let signed = Call::new("GET", &proxy.url("/api/orders"))
        .bearer(&token)
        .header("x-dry-run", "true")
        .header("x-hop", "1")
        .sign_as(&key(), KEY_ID, None, |o| {
            o.components = Some(components.iter().map(|c| c.to_string()).collect());
        });
    // Anyone holding the request can add Connection: it is not covered.
    let reply = signed.header("connection", "x-dry-run, x-hop").send().await;
    let echo = reply.echo();
    assert_eq!(echo.header("x-dry-run").as_deref(), Some("true"));
    assert_eq!(
        echo.header("x-hop"),
        None,
        "an unsigned field named in Connection still goes"
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn routes_can_turn_signatures_off_or_require_them() {
    let (up, proxy) = start("").await;
    let signer = token(&proxy, SIGNER).await;
    let plain = token(&proxy, PLAIN).await;
    let open = Call::new("GET", &proxy.url("/open/x"))
        .bearer(&signer)
        .send()
        .await;
    assert_eq!(open.status, 200);
    let strict = Call::new("GET", &proxy.url("/strict/x"))
        .bearer(&plain)
        .send()
        .await;
    strict.problem(401, "signature_missing");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn client_policy_optional_lets_a_keyed_client_migrate() {
    let up = Upstream::start().await;
    let toml = client_toml(SIGNER.0, SIGNER.1, Some((KEY_ID, &key()))).replace(
        "[[clients.keys]]",
        "signature = \"optional\"\n[[clients.keys]]",
    );
    let proxy = Proxy::start(Config::new(&up.url()).routes(ROUTES).append(&toml)).await;
    let token = token(&proxy, SIGNER).await;
    assert_eq!(order_call(&proxy, &token).send().await.status, 200);
    let mut bad = order_call(&proxy, &token).signed();
    bad.method = "PATCH".into();
    bad.send().await.problem(401, "signature_invalid");
    assert_eq!(up.calls(), 1);
}

// ------------------------------------------------------------------ the URL clients sign

#[tokio::test]
async fn behind_a_load_balancer_clients_sign_the_public_url() {
    let (up, proxy) =
        start("[signatures]\npublic_url = \"https://api.example.com/payments\"\n").await;
    let token = token(&proxy, SIGNER).await;
    let public = "https://api.example.com/payments/api/orders?account=7";
    let ok = order_call(&proxy, &token).sign_as(&key(), KEY_ID, Some(public), |_| {});
    assert_eq!(ok.send().await.status, 200);
    // Signed for the address Warden itself listens on: not what clients call.
    order_call(&proxy, &token)
        .signed()
        .send()
        .await
        .problem(401, "signature_invalid");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn forwarded_proto_and_host_count_only_from_trusted_proxies() {
    let front = "https://front.example/api/orders?account=7";
    for (trusted, status) in [(true, 200), (false, 401)] {
        let up = Upstream::start().await;
        let mut cfg = config(&up, "");
        if trusted {
            cfg = cfg.server("trusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]");
        }
        let proxy = Proxy::start(cfg).await;
        let token = token(&proxy, SIGNER).await;
        let call = order_call(&proxy, &token)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "front.example")
            .sign_as(&key(), KEY_ID, Some(front), |_| {});
        assert_eq!(
            call.send().await.status.as_u16(),
            status,
            "trusted: {trusted}"
        );
    }
}

// ------------------------------------------------------------------ the token endpoint

fn auth_call(proxy: &Proxy, (id, secret): (&str, &str)) -> Call {
    let mut call = Call::new("POST", &proxy.url("/v1/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-idempotency-key", "auth-1");
    call.body = format!("clientId={id}&clientSecret={secret}").into_bytes();
    call
}

#[tokio::test]
async fn the_token_endpoint_is_signed_when_the_client_has_a_key() {
    let (_up, proxy) = start("").await;
    // The secret is checked first: without it, nobody learns whether the client has a key.
    auth_call(&proxy, (SIGNER.0, "wrong"))
        .send()
        .await
        .problem(401, "invalid_client");
    let reply = auth_call(&proxy, SIGNER).send().await;
    reply.problem(401, "signature_missing");
    let accept = reply.header("accept-signature").unwrap();
    assert!(
        accept.contains("\"content-digest\"") && accept.contains("\"content-type\""),
        "{accept}"
    );

    let reply = auth_call(&proxy, SIGNER).signed().send().await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let token = reply.json()["accessToken"].as_str().unwrap().to_owned();
    let token_id = reply.json()["accessTokenId"].as_str().unwrap().to_owned();

    // The body is checked against its digest before the form is read.
    let mut tampered = auth_call(&proxy, SIGNER).signed();
    tampered.body = format!(
        "clientId={}&clientSecret={}&scope=write",
        SIGNER.0, SIGNER.1
    )
    .into_bytes();
    tampered.send().await.problem(400, "digest_mismatch");
    let thin = auth_call(&proxy, SIGNER).sign_as(&key(), KEY_ID, None, |o| {
        o.components = Some(
            [
                "@method",
                "@target-uri",
                "content-digest",
                "x-idempotency-key",
            ]
            .map(String::from)
            .to_vec(),
        );
    });
    thin.send().await.problem(401, "component_not_covered");
    let mut claimed = auth_call(&proxy, SIGNER).signed();
    claimed
        .headers
        .insert("x-client-id", HeaderValue::from_static("other"));
    claimed.send().await.problem(401, "client_id_mismatch");

    // A keyless client keeps the plain form.
    assert_eq!(auth_call(&proxy, PLAIN).send().await.status, 201);

    // Revocation is signed too.
    let revoke = |signed: bool| {
        let call = Call::new(
            "DELETE",
            &proxy.url(&format!("/v1/auth?accessTokenId={token_id}")),
        )
        .bearer(&token);
        if signed { call.signed() } else { call }
    };
    revoke(false).send().await.problem(401, "signature_missing");
    assert_eq!(revoke(true).send().await.status, 204);
}

// ------------------------------------------------------------------ address lists

#[tokio::test]
async fn the_global_deny_list_applies_everywhere_but_health_probes() {
    let up = Upstream::start().await;
    let cfg = config(&up, "").server("deny_ips = [\"127.0.0.0/8\", \"::1/128\"]");
    let proxy = Proxy::start(cfg).await;
    let client = Client::http1();
    client
        .get(&proxy.url("/api/orders"))
        .await
        .problem(403, "ip_not_allowed");
    client
        .get(&proxy.url("/public/x"))
        .await
        .problem(403, "ip_not_allowed");
    auth_call(&proxy, PLAIN)
        .send()
        .await
        .problem(403, "ip_not_allowed");
    let oauth = Request::post(proxy.url("/v1/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(
            "grant_type=client_credentials&client_id=plain&client_secret=x",
        ))
        .unwrap();
    let reply = client.send(oauth).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"], "access_denied");
    assert_eq!(client.get(&proxy.url("/healthz")).await.status, 200);
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn the_global_allow_list_admits_only_its_networks() {
    for (allow, status) in [("10.0.0.0/8", 403), ("127.0.0.0/8", 200)] {
        let up = Upstream::start().await;
        let line = format!("allow_ips = [{allow:?}, \"2001:db8::/32\"]");
        let proxy = Proxy::start(config(&up, "").server(&line)).await;
        let reply = Client::http1().get(&proxy.url("/public/x")).await;
        assert_eq!(reply.status.as_u16(), status, "allow {allow}");
    }
}

// ------------------------------------------------------------------ robustness

#[tokio::test]
async fn garbage_in_signature_fields_is_never_a_server_error() {
    let (up, proxy) = start("").await;
    let token = token(&proxy, SIGNER).await;
    let garbage = [
        ("sig1=()", "sig1=:AAAA:"),
        ("sig1=(\"@method\");created=-1;keyid=\"k1\"", "sig1=:AAAA:"),
        ("sig1=(\"@method\" \"@method\");keyid=\"k1\"", "sig1=:AAAA:"),
        (
            "sig1=(\"@query-param\");keyid=\"k1\";created=1",
            "sig1=:AAAA:",
        ),
        ("sig1=(\"x\";sf);keyid=\"k1\"", "sig1=:AAAA:"),
        (
            "sig1=(\"@target-uri\");created=99999999999999;keyid=\"k1\"",
            "sig1=:AAAA:",
        ),
        (
            "sig1=(\"@method\");created=1;keyid=\"k1\", sig1=(\"@path\")",
            "sig1=:AAAA:",
        ),
        ("sig1=(\"@method\");keyid=\"k1\";created=1", "sig1=:!!:"),
        ("sig1=(\"@method\");keyid=k1", "sig1=:AAAA:"),
        ("\u{7f}", "\u{1}"),
        ("sig1=(\"@status\");keyid=\"k1\"", "sig1=?1"),
    ];
    for (input, sig) in garbage {
        let mut call = Call::new("GET", &proxy.url("/api/orders")).bearer(&token);
        if let (Ok(i), Ok(s)) = (HeaderValue::from_str(input), HeaderValue::from_str(sig)) {
            call.headers.insert("signature-input", i);
            call.headers.insert("signature", s);
        } else {
            continue;
        }
        let status = call.send().await.status.as_u16();
        assert!(status == 400 || status == 401, "{input:?}: {status}");
    }
    assert_eq!(up.calls(), 0);
}

// ------------------------------------------------------------------ the CLI

fn header_line<'a>(output: &'a str, name: &str) -> &'a str {
    printed_after(output, &format!("{name}: "))
}

#[tokio::test]
async fn keygen_and_sign_produce_requests_warden_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("dev.pem");
    let unused = Path::new("unused.toml");
    let out = run_cli(
        unused,
        &[
            "keygen",
            "--out",
            key_path.to_str().unwrap(),
            "--keyid",
            "dev-1",
        ],
    )
    .await;
    let public = printed_after(&out, "public_key = ")
        .trim_matches('"')
        .to_owned();
    let pem = std::fs::read_to_string(&key_path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    // PKCS#8 v1 (RFC 8410 §7): version 0, no embedded public key, 48 bytes of DER. The v2 form
    // is refused by OpenSSL 3.0 and pyca/cryptography, so other tools could not use the key.
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap();
    assert_eq!(der.len(), 48, "{der:02x?}");
    assert_eq!(&der[..5], &[0x30, 0x2e, 0x02, 0x01, 0x00]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key must be readable by its owner only"
        );
    }

    let up = Upstream::start().await;
    let client = format!(
        "[[clients]]\nid = \"dev\"\nsecret_sha256 = \"{}\"\n[[clients.keys]]\nid = \"dev-1\"\npublic_key = \"{public}\"\n",
        hex::encode(warden::secret::hash("dev-secret"))
    );
    let proxy = Proxy::start(Config::new(&up.url()).routes(ROUTES).append(&client)).await;
    let token = token(&proxy, ("dev", "dev-secret")).await;
    let url = proxy.url("/api/orders?x=1");
    let body = r#"{"amount":5}"#;
    let auth = format!("authorization: Bearer {token}");
    let out = run_cli(
        unused,
        &[
            "sign",
            "--key",
            key_path.to_str().unwrap(),
            "--keyid",
            "dev-1",
            "--url",
            &url,
            "-H",
            &auth,
            "-H",
            "content-type: application/json",
            "-H",
            "x-idempotency-key: cli-1",
            "--data",
            body,
            "--nonce",
            "--expires",
            "+5m",
        ],
    )
    .await;
    let mut call = Call::new("POST", &url)
        .bearer(&token)
        .json(body)
        .header("x-idempotency-key", "cli-1");
    for name in ["content-digest", "signature-input", "signature"] {
        let shown = match name {
            "content-digest" => "Content-Digest",
            "signature-input" => "Signature-Input",
            _ => "Signature",
        };
        call = call.header(name, header_line(&out, shown));
    }
    assert!(
        header_line(&out, "Signature-Input").contains(";nonce="),
        "{out}"
    );
    let reply = call.send().await;
    assert_eq!(reply.echo().body, body);
    assert_eq!(up.calls(), 1);

    let curl = run_cli(
        unused,
        &[
            "sign",
            "--key",
            key_path.to_str().unwrap(),
            "--keyid",
            "dev-1",
            "--url",
            &url,
            "--curl",
        ],
    )
    .await;
    assert!(curl.starts_with("curl -X GET "), "{curl}");
    assert!(curl.contains("-H 'signature-input: sig1=("), "{curl}");
}

/// The key and token caches count their hits and misses, and the store its write
/// transactions (issuance, and the group commits of the idempotency reservations).
#[tokio::test]
async fn signed_requests_count_cache_lookups_and_store_writes_in_the_metrics() {
    use crate::metrics::{METRICS_ON, observations, scrape, value};
    let (_up, proxy) = start(METRICS_ON).await;
    let token = token(&proxy, SIGNER).await;
    let before = scrape(&proxy).await;
    for i in 0..3 {
        let call = Call::new("POST", &proxy.url("/api/orders"))
            .bearer(&token)
            .header("x-idempotency-key", &format!("metered-{i}"))
            .json(r#"{"amount":1}"#);
        assert_eq!(call.signed().send().await.status, 200);
    }
    let after = scrape(&proxy).await;
    let moved = |cache: &str, result: &str| {
        let labels = [("cache", cache), ("result", result)];
        value(&after, "warden_cache_lookups_total", &labels)
            - value(&before, "warden_cache_lookups_total", &labels)
    };
    for cache in ["token", "signature_key"] {
        assert_eq!(
            moved(cache, "hit") + moved(cache, "miss"),
            3.0,
            "one {cache} lookup a request"
        );
        assert!(moved(cache, "hit") >= 2.0, "{cache}: later requests hit");
    }
    let writes = "warden_store_write_duration_seconds";
    assert!(observations(&before, writes, &[("op", "insert_token")]) >= 1.0);
    assert!(
        observations(&after, writes, &[("op", "batch")])
            > observations(&before, writes, &[("op", "batch")]),
        "the reservations' group commits are timed"
    );
    // The labels name caches and operations, never a client or its key.
    for sample in &after.samples {
        for (_, v) in sample.labels.iter() {
            assert!(!v.contains(SIGNER.0) && !v.contains(KEY_ID), "{sample:?}");
        }
    }
}

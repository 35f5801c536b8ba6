//! The forward-auth decision endpoint (`endpoints.forward_auth`) on real sockets: decisions for
//! every credential kind, the original request believed only from a trusted proxy, no spelling
//! of the original path reaching a weaker route, revocation through the decision cache, bodies
//! Warden cannot see, and nginx `auth_request` end to end with a real nginx.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use warden::clock::Clock;
use warden::httpsig::{self, SignOptions};

use crate::harness::{Client, PATIENCE, Reply, StoreDir, Upstream, crate_path, run_cli, within};

const FA: &str = "/v1/forward-auth";
const ISS: &str = "https://idp.test/";
const AUD: &str = "api://orders";

const ROUTES: &str = r#"
[[routes]]
name = "admin"
path = "/api/admin/**"
auth = "bearer"
scopes = ["level://admin"]
[[routes]]
name = "keyed"
path = "/keyed/**"
auth = "bearer"
idempotency = "required"
[[routes]]
name = "strict"
path = "/strict/**"
auth = "bearer"
signature = "required"
idempotency = "off"
[[routes]]
name = "api"
path = "/api/**"
auth = "bearer"
[[routes]]
name = "public"
path = "/**"
auth = "none"
"#;

fn client(id: &str, secret: &str, scopes: &str, key: Option<&SigningKey>) -> String {
    let mut t = format!(
        "[[clients]]\nid = {id:?}\naccount = \"acme\"\nsecret_sha256 = \"{}\"\nscopes = {scopes}\n",
        hex::encode(warden::secret::hash(secret))
    );
    if let Some(key) = key {
        t.push_str(&format!(
            "[[clients.keys]]\nid = \"k1\"\nalg = \"ed25519\"\npublic_key = \"{}\"\n",
            STANDARD.encode(key.verifying_key().to_bytes())
        ));
    }
    t
}

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[21; 32])
}

fn idp_key() -> SigningKey {
    SigningKey::from_bytes(&[22; 32])
}

/// An `[[issuers]]` whose keys are given inline (a JWKS with one Ed25519 key).
fn issuer() -> String {
    let jwks = json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "idp-1",
        "x": URL_SAFE_NO_PAD.encode(idp_key().verifying_key().as_bytes()),
    }]});
    format!(
        "[[issuers]]\nname = \"corp\"\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\nkeys = '{jwks}'\n"
    )
}

/// A JWT access token of the configured issuer with `scope`.
fn jwt(clock: &Clock, scope: &str) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = idp_key().to_pkcs8_der().unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("idp-1".into());
    header.typ = Some("at+jwt".into());
    let now = clock.now();
    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "svc", "client_id": "svc", "scope": scope,
        "iat": now, "exp": now + 600, "jti": "j1",
    });
    let key = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// A Warden with the forward-auth endpoint whose state the test can read.
struct Fa {
    warden: Arc<warden::Warden>,
    addr: SocketAddr,
    clock: Clock,
    /// The configuration, for the CLI.
    toml: String,
    _store: StoreDir,
    _stop: oneshot::Sender<()>,
    http: Client,
}

fn config(upstream: &str, store: &StoreDir, trusted: &str, extra: &str) -> String {
    let signer = signing_key();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [{trusted:?}]\n\
         [upstream]\nurl = {upstream:?}\n[store]\nurl = {:?}\n\
         [endpoints]\nforward_auth = \"{FA}\"\n[router]\ncase_insensitive = true\n{extra}\n{ROUTES}{}{}{}{}",
        store.url(),
        client("reader", "reader-secret-1Aa", "[\"read\"]", None),
        client(
            "boss",
            "boss-secret-2Bb",
            "[\"read\", \"level://admin\"]",
            None
        ),
        client("signer", "signer-secret-3Cc", "[\"read\"]", Some(&signer)),
        issuer(),
    )
}

impl Fa {
    async fn start(trusted: &str, extra: &str) -> Self {
        let store = StoreDir::new();
        let toml = config("http://127.0.0.1:9", &store, trusted, extra);
        let settings = warden::Settings::from_toml(&toml)
            .unwrap_or_else(|e| panic!("test config refused: {e}\n{toml}"));
        let clock = Clock::default();
        clock.freeze();
        let warden = warden::Warden::with_clock(settings, clock.clone())
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(warden::run(listener, warden.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            warden,
            addr,
            clock,
            toml,
            _store: store,
            _stop: stop,
            http: Client::http1(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> u64 {
        self.warden.forward_auth().unwrap().cache_hits()
    }

    async fn token(&self, id: &str, secret: &str) -> String {
        let basic = STANDARD.encode(format!("{id}:{secret}"));
        let req = Request::post(self.url("/v1/oauth/token"))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::from("grant_type=client_credentials"))
            .unwrap();
        let reply = self.http.send(req).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// nginx's way: `X-Original-Method` and `X-Original-URI`, plus `headers`.
    async fn ask(&self, method: &str, uri: &str, token: Option<&str>) -> Reply {
        self.ask_with(method, uri, token, &[]).await
    }

    async fn ask_with(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut all = vec![("x-original-method", method), ("x-original-uri", uri)];
        all.extend_from_slice(headers);
        self.send("GET", FA, token, &all, Bytes::new()).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(self.url(path))
            .body(Full::from(body))
            .unwrap();
        for (k, v) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        self.http.send(req).await
    }
}

fn allowed_as(reply: &Reply, client: &str, scopes: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-warden-client-id"), Some(client));
    assert_eq!(reply.header("x-warden-scopes"), Some(scopes));
    assert!(reply.header("x-warden-token-id").is_some());
}

// ------------------------------------------------------------------ decisions

#[tokio::test]
async fn every_credential_kind_is_allowed_with_its_identity_or_refused() {
    let fa = Fa::start("127.0.0.1/32", "").await;
    // An access token of the OAuth endpoint.
    let reader = fa.token("reader", "reader-secret-1Aa").await;
    allowed_as(
        &fa.ask("GET", "/api/orders?x=1", Some(&reader)).await,
        "reader",
        "read",
    );
    let refused = fa.ask("GET", "/api/admin/users", Some(&reader)).await;
    refused.problem(403, "insufficient_scope");
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .contains("level://admin")
    );
    // An API key.
    let issuer = fa.warden.issuer();
    let record = issuer.store().get_client("reader").await.unwrap().unwrap();
    let key = issuer.issue_api_key(&record, None).await.unwrap().value;
    allowed_as(
        &fa.ask("POST", "/api/orders", Some(&key)).await,
        "reader",
        "read",
    );
    fa.ask("GET", "/api/admin/x", Some(&key))
        .await
        .problem(403, "insufficient_scope");
    // A managed token from the tokens API.
    let boss = fa.token("boss", "boss-secret-2Bb").await;
    let created = fa
        .send(
            "POST",
            "/ws/accounts/acme/credentials/tokens",
            Some(&boss),
            &[("content-type", "application/json")],
            Bytes::from(json!({"name": "t", "scopes": "read"}).to_string()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let managed = created.json()["token"].as_str().unwrap().to_owned();
    allowed_as(
        &fa.ask("GET", "/api/x", Some(&managed)).await,
        "boss",
        "read",
    );
    fa.ask("GET", "/api/admin/x", Some(&managed))
        .await
        .problem(403, "insufficient_scope");
    allowed_as(
        &fa.ask("GET", "/api/admin/x", Some(&boss)).await,
        "boss",
        "read level://admin",
    );
    // A JWT of another issuer.
    let remote = jwt(&fa.clock, "read");
    let reply = fa.ask("GET", "/api/x", Some(&remote)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-warden-scopes"), Some("read"));
    assert_eq!(reply.header("x-warden-audience"), Some(AUD));
    fa.ask("GET", "/api/admin/x", Some(&remote))
        .await
        .problem(403, "insufficient_scope");
    // No credential, an unknown one, a forged JWT.
    let missing = fa.ask("GET", "/api/x", None).await;
    missing.problem(401, "token_missing");
    assert!(
        missing
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    fa.ask("GET", "/api/x", Some("wdn_at_unknown"))
        .await
        .problem(401, "invalid_token");
    let forged = format!("{}x", &remote[..remote.len() - 1]);
    fa.ask("GET", "/api/x", Some(&forged))
        .await
        .problem(401, "invalid_token");
    // A public route: allowed, and no identity even when the client claims one.
    let public = fa
        .ask_with("GET", "/about", None, &[("x-warden-client-id", "boss")])
        .await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.header("x-warden-client-id"), None);
    // Unknown paths of no route, and methods a route does not take, as the proxy answers them.
    fa.ask("GET", "/v1/auth", Some(&reader))
        .await
        .problem(404, "route_not_found");
}

#[tokio::test]
async fn envoy_sends_the_original_as_the_path_under_the_endpoint() {
    let fa = Fa::start("127.0.0.1/32", "").await;
    let reader = fa.token("reader", "reader-secret-1Aa").await;
    let ok = fa
        .send(
            "DELETE",
            &format!("{FA}/api/orders/7?x=1"),
            Some(&reader),
            &[],
            Bytes::new(),
        )
        .await;
    allowed_as(&ok, "reader", "read");
    let admin = fa
        .send(
            "GET",
            &format!("{FA}/api/admin/users"),
            Some(&reader),
            &[],
            Bytes::new(),
        )
        .await;
    admin.problem(403, "insufficient_scope");
    // In this mode the client's own X-Original-* headers (which Envoy passes on) are not read.
    let spoof = fa
        .send(
            "GET",
            &format!("{FA}/api/admin/users"),
            Some(&reader),
            &[("x-original-uri", "/api/x"), ("x-original-method", "GET")],
            Bytes::new(),
        )
        .await;
    spoof.problem(403, "insufficient_scope");
    // Envoy is told to remove the client's claims Warden does not overwrite, and the
    // credential (tokens.forward_authorization is off), as Warden's own proxy does.
    let claims = [
        ("x-warden-audience", "api://spoofed"),
        ("x_warden_client_id", "boss"),
        ("x-original-url", "/api/admin"),
        ("x-warden-client-id", "boss"),
    ];
    let ok = fa
        .send(
            "GET",
            &format!("{FA}/api/x"),
            Some(&reader),
            &claims,
            Bytes::new(),
        )
        .await;
    allowed_as(&ok, "reader", "read");
    let removed = ok.header("x-envoy-auth-headers-to-remove").unwrap();
    let mut removed: Vec<&str> = removed.split(", ").collect();
    removed.sort_unstable();
    assert_eq!(
        removed,
        [
            "authorization",
            "x-original-url",
            "x-warden-audience",
            "x_warden_client_id"
        ]
    );
    let public = fa
        .send(
            "GET",
            &format!("{FA}/about"),
            Some(&reader),
            &claims,
            Bytes::new(),
        )
        .await;
    assert_eq!(public.status, StatusCode::OK);
    let removed = public.header("x-envoy-auth-headers-to-remove").unwrap();
    assert!(removed.contains("x-warden-client-id") && !removed.contains("authorization"));
}

#[tokio::test]
async fn the_original_request_is_believed_only_from_a_trusted_proxy() {
    // 127.0.0.1 (the test) is not in 10.0.0.0/8.
    let fa = Fa::start("10.0.0.0/8", "").await;
    let reply = fa.ask("GET", "/about", None).await;
    reply.problem(403, "forward_auth_untrusted_peer");
    let envoy = fa
        .send("GET", &format!("{FA}/about"), None, &[], Bytes::new())
        .await;
    envoy.problem(403, "forward_auth_untrusted_peer");

    let fa = Fa::start("127.0.0.1/32", "").await;
    let reader = fa.token("reader", "reader-secret-1Aa").await;
    // A client that adds the other family of headers is refused, not believed.
    fa.ask_with(
        "GET",
        "/api/x",
        Some(&reader),
        &[("x-forwarded-uri", "/api/x"), ("x-forwarded-method", "GET")],
    )
    .await
    .problem(400, "forward_auth_original_ambiguous");
    fa.send("GET", FA, Some(&reader), &[], Bytes::new())
        .await
        .problem(400, "forward_auth_original_missing");
    fa.ask("GET", "http://elsewhere/api/x", Some(&reader))
        .await
        .problem(400, "forward_auth_original_invalid");
    // Traefik's and Caddy's headers.
    let traefik = fa
        .send(
            "GET",
            FA,
            Some(&reader),
            &[
                ("x-forwarded-method", "PUT"),
                ("x-forwarded-uri", "/api/admin/x"),
            ],
            Bytes::new(),
        )
        .await;
    traefik.problem(403, "insufficient_scope");

    // Without trusted proxies the endpoint cannot be turned on.
    let store = StoreDir::new();
    let toml =
        config("http://127.0.0.1:9", &store, "", "").replace("trusted_proxies = [\"\"]\n", "");
    let err = warden::Settings::from_toml(&toml).unwrap_err().to_string();
    assert!(err.starts_with("endpoints.forward_auth"), "{err}");
}

#[tokio::test]
async fn no_spelling_of_the_original_path_reaches_a_weaker_route() {
    let fa = Fa::start("127.0.0.1/32", "").await;
    let reader = fa.token("reader", "reader-secret-1Aa").await;
    // Routed by the policy of the path the upstream will read.
    for spelling in [
        "/api/%61dmin/users",
        "/api/ADMIN/users",
        "/API/Admin/users",
        "/api/admin.json",
        "/api/admin/users/",
        "/%61pi/%61dmin/users",
    ] {
        fa.ask("GET", spelling, Some(&reader))
            .await
            .problem(403, "insufficient_scope");
        let envoy = fa
            .send(
                "GET",
                &format!("{FA}{spelling}"),
                Some(&reader),
                &[],
                Bytes::new(),
            )
            .await;
        envoy.problem(403, "insufficient_scope");
    }
    fa.ask("HEAD", "/api/admin/users", Some(&reader))
        .await
        .problem(403, "insufficient_scope");
    // A public-looking spelling of a protected path is not public.
    fa.ask("GET", "/%61pi/x", None)
        .await
        .problem(401, "token_missing");
    // Spellings upstreams read differently are refused outright.
    for spelling in [
        "/public/..;/api/admin/users",
        "/api/admin;x=1/users",
        "/api/x/../admin/users",
        "/api/%2e%2e/admin",
        "/api//admin/users",
        "/api/%2fadmin",
        "/api/%252e%252e/admin",
        "/api/admin%00/users",
    ] {
        let reply = fa.ask("GET", spelling, Some(&reader)).await;
        reply.problem(400, "invalid_path");
    }
    // The method is the original's, in upper case, and no override may change it.
    fa.ask("get", "/api/x", Some(&reader))
        .await
        .problem(400, "invalid_method");
    fa.ask_with(
        "POST",
        "/api/x",
        Some(&reader),
        &[("x-http-method-override", "DELETE")],
    )
    .await
    .problem(400, "method_override_refused");
    fa.ask("POST", "/api/x?_method=DELETE", Some(&reader))
        .await
        .problem(400, "method_override_refused");
}

#[tokio::test]
async fn a_revocation_takes_effect_on_the_next_decision_despite_the_cache() {
    let fa = Fa::start("127.0.0.1/32", "").await;
    let reader = fa.token("reader", "reader-secret-1Aa").await;
    allowed_as(
        &fa.ask("GET", "/api/x", Some(&reader)).await,
        "reader",
        "read",
    );
    let before = fa.hits();
    allowed_as(
        &fa.ask("GET", "/api/y", Some(&reader)).await,
        "reader",
        "read",
    );
    assert_eq!(
        fa.hits(),
        before + 1,
        "the second decision came from the cache"
    );
    // Another spelling of the same route is the same decision; another route is not.
    fa.ask("GET", "/api/admin/x", Some(&reader))
        .await
        .problem(403, "insufficient_scope");

    let basic = STANDARD.encode("reader:reader-secret-1Aa");
    let revoke = Request::post(fa.url("/v1/oauth/revoke"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(format!("token={reader}")))
        .unwrap();
    assert_eq!(fa.http.send(revoke).await.status, StatusCode::OK);
    fa.ask("GET", "/api/x", Some(&reader))
        .await
        .problem(401, "invalid_token");

    // A revocation by another process (the CLI on the same store) is seen too.
    let issuer = fa.warden.issuer();
    let record = issuer.store().get_client("reader").await.unwrap().unwrap();
    let key = issuer.issue_api_key(&record, None).await.unwrap();
    allowed_as(
        &fa.ask("GET", "/api/x", Some(&key.value)).await,
        "reader",
        "read",
    );
    allowed_as(
        &fa.ask("GET", "/api/x", Some(&key.value)).await,
        "reader",
        "read",
    );
    let file = fa._store.dir().join("warden.toml");
    std::fs::write(&file, &fa.toml).unwrap();
    run_cli(&file, &["api-key", "revoke", &key.record.id]).await;
    fa.ask("GET", "/api/x", Some(&key.value))
        .await
        .problem(401, "invalid_token");

    // An expired token is refused although its decision was cached.
    let boss = fa.token("boss", "boss-secret-2Bb").await;
    allowed_as(
        &fa.ask("GET", "/api/x", Some(&boss)).await,
        "boss",
        "read level://admin",
    );
    fa.clock.advance(3601);
    fa.ask("GET", "/api/x", Some(&boss))
        .await
        .problem(401, "invalid_token");
}

// ------------------------------------------------------------------ signatures and bodies

fn signed(method: &str, url: &str, body: &[u8], token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let opts = SignOptions::new("k1", Clock::default().now());
    httpsig::sign_request(
        method,
        &url.parse().unwrap(),
        &mut headers,
        body,
        &opts,
        &signing_key(),
    )
    .unwrap();
    headers
}

fn pairs(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .iter()
        .filter(|(k, _)| *k != "authorization")
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn signatures_are_checked_over_the_original_request() {
    let fa = Fa::start("127.0.0.1/32", "").await;
    let token = fa.token("signer", "signer-secret-3Cc").await;
    let host = [
        ("x-forwarded-host", "app.test"),
        ("x-forwarded-proto", "https"),
    ];
    fa.ask_with("GET", "/strict/x", Some(&token), &host)
        .await
        .problem(401, "signature_missing");
    let h = signed("GET", "https://app.test/strict/x?a=1", b"", &token);
    let mut with = pairs(&h);
    with.extend_from_slice(&host);
    allowed_as(
        &fa.ask_with("GET", "/strict/x?a=1", Some(&token), &with)
            .await,
        "signer",
        "read",
    );
    // The same signature for another original path, method or host does not verify.
    for (method, uri, host) in [
        ("GET", "/strict/y?a=1", "app.test"),
        ("DELETE", "/strict/x?a=1", "app.test"),
        ("GET", "/strict/x?a=1", "other.test"),
    ] {
        let mut with = pairs(&h);
        with.extend_from_slice(&[("x-forwarded-host", host), ("x-forwarded-proto", "https")]);
        let reply = fa.ask_with(method, uri, Some(&token), &with).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} {host}"
        );
    }
}

#[tokio::test]
async fn a_digest_warden_cannot_check_is_refused_and_one_it_can_is_checked() {
    let fa = Fa::start("127.0.0.1/32", "").await;
    let token = fa.token("signer", "signer-secret-3Cc").await;
    let body = br#"{"amount":100}"#;
    let h = signed("POST", "https://app.test/strict/orders", body, &token);
    let mut with = pairs(&h);
    with.extend_from_slice(&[
        ("x-forwarded-host", "app.test"),
        ("x-forwarded-proto", "https"),
    ]);
    // nginx: no body, its length announced. The digest cannot be checked: refused.
    let len = body.len().to_string();
    let mut nginx = with.clone();
    nginx.push(("x-original-content-length", &len));
    fa.ask_with("POST", "/strict/orders", Some(&token), &nginx)
        .await
        .problem(403, "digest_unverifiable");
    // A proxy that says nothing about the body: the digest still cannot be checked.
    fa.ask_with("POST", "/strict/orders", Some(&token), &with)
        .await
        .problem(403, "digest_unverifiable");
    // Envoy with_request_body: the body is there and checked.
    let path = format!("{FA}/strict/orders");
    let ok = fa
        .send("POST", &path, Some(&token), &with, Bytes::from_static(body))
        .await;
    allowed_as(&ok, "signer", "read");
    fa.send(
        "POST",
        &path,
        Some(&token),
        &with,
        Bytes::from_static(br#"{"amount":999}"#),
    )
    .await
    .problem(400, "digest_mismatch");
    let mut partial = with.clone();
    partial.push(("x-envoy-auth-partial-body", "true"));
    fa.send(
        "POST",
        &path,
        Some(&token),
        &partial,
        Bytes::from_static(body),
    )
    .await
    .problem(403, "digest_unverifiable");
    // A signed POST on a route whose policy (auto) wants an idempotency key: only Warden's
    // own proxy can hold a request to its key, so the decision is a refusal.
    let api = signed("POST", "https://app.test/api/orders", body, &token);
    let mut api_with = pairs(&api);
    api_with.extend_from_slice(&[
        ("x-forwarded-host", "app.test"),
        ("x-forwarded-proto", "https"),
    ]);
    fa.send(
        "POST",
        &format!("{FA}/api/orders"),
        Some(&token),
        &api_with,
        Bytes::from_static(body),
    )
    .await
    .problem(403, "idempotency_unenforceable");
    // A body announced but left out of the signature is refused, as on the proxy.
    let bare = signed("POST", "https://app.test/strict/orders", b"", &token);
    let mut bare_with = pairs(&bare);
    bare_with.extend_from_slice(&[
        ("x-forwarded-host", "app.test"),
        ("x-forwarded-proto", "https"),
        ("x-original-content-length", &len),
    ]);
    fa.ask_with("POST", "/strict/orders", Some(&token), &bare_with)
        .await
        .problem(400, "digest_missing");
    // A chunked original has no length, and its body is announced all the same.
    let mut chunked = pairs(&bare);
    chunked.extend_from_slice(&[
        ("x-forwarded-host", "app.test"),
        ("x-forwarded-proto", "https"),
        ("x-original-transfer-encoding", "chunked"),
    ]);
    fa.ask_with("POST", "/strict/orders", Some(&token), &chunked)
        .await
        .problem(400, "digest_missing");
    // Without a body, the same unsigned-body signature is fine.
    let mut empty = pairs(&bare);
    empty.extend_from_slice(&[
        ("x-forwarded-host", "app.test"),
        ("x-forwarded-proto", "https"),
        ("x-original-content-length", "0"),
    ]);
    allowed_as(
        &fa.ask_with("POST", "/strict/orders", Some(&token), &empty)
            .await,
        "signer",
        "read",
    );
}

#[tokio::test]
async fn a_route_that_requires_idempotency_keys_is_refused_for_unsafe_methods() {
    let fa = Fa::start("127.0.0.1/32", "").await;
    let reader = fa.token("reader", "reader-secret-1Aa").await;
    fa.ask_with(
        "POST",
        "/keyed/orders",
        Some(&reader),
        &[("idempotency-key", "\"k1\"")],
    )
    .await
    .problem(403, "idempotency_unenforceable");
    allowed_as(
        &fa.ask("GET", "/keyed/orders", Some(&reader)).await,
        "reader",
        "read",
    );
}

// ------------------------------------------------------------------ nginx

/// The nginx binary: `TEST_NGINX_BIN`, else `nginx` on the PATH or in /usr/sbin.
fn nginx_binary() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("TEST_NGINX_BIN") {
        return Some(p.into());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// nginx running `examples/forward-auth/nginx.conf` with the test's ports, killed on drop.
struct Nginx {
    child: tokio::process::Child,
    port: u16,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    async fn start(binary: &std::path::Path, warden: SocketAddr, upstream: SocketAddr) -> Self {
        let prefix = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let example =
            std::fs::read_to_string(crate_path("examples/forward-auth/nginx.conf")).unwrap();
        let site = example
            .replace("127.0.0.1:8080", &warden.to_string())
            .replace("127.0.0.1:9000", &upstream.to_string())
            .replace("listen 127.0.0.1:8000", &format!("listen 127.0.0.1:{port}"));
        assert_ne!(site, example, "the example's addresses were replaced");
        let p = prefix.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n\
             client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
             {site}\n}}\n"
        );
        let conf_path = prefix.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = tokio::process::Command::new(binary)
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let nginx = Self {
            child,
            port,
            _prefix: prefix,
        };
        within(PATIENCE, "nginx listening", async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn nginx_auth_request_lets_through_only_what_warden_allows() {
    let Some(binary) = nginx_binary() else {
        eprintln!(
            "SKIPPED nginx_auth_request_lets_through_only_what_warden_allows: no nginx binary (set TEST_NGINX_BIN or install nginx-light)"
        );
        return;
    };
    let up = Upstream::start().await;
    let store = StoreDir::new();
    let toml = config(&up.url(), &store, "127.0.0.1/32", "");
    let settings = warden::Settings::from_toml(&toml).unwrap();
    let warden = warden::Warden::new(settings).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let warden_addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(warden::run(listener, warden, async move {
        let _ = stopped.await;
    }));
    let up_addr: SocketAddr = up.url().trim_start_matches("http://").parse().unwrap();
    let nginx = Nginx::start(&binary, warden_addr, up_addr).await;
    let http = Client::http1();
    let basic = STANDARD.encode("reader:reader-secret-1Aa");
    let req = Request::post(format!("http://{warden_addr}/v1/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let reader = http.send(req).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |path: &str, token: Option<&str>, extra: &[(&str, &str)]| {
        let mut req = Request::get(nginx.url(path)).body(Full::default()).unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        for (k, v) in extra {
            req.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        http.send(req)
    };

    // Allowed: the upstream gets the request with Warden's identity, not the client's claim.
    let ok = get(
        "/api/orders?x=1",
        Some(&reader),
        &[("x-warden-client-id", "boss")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let echo = ok.echo();
    assert_eq!(echo.path, "/api/orders");
    assert_eq!(echo.header("x-warden-client-id").as_deref(), Some("reader"));
    assert_eq!(echo.header("x-warden-scopes").as_deref(), Some("read"));
    // A public route: the client's identity claim is removed.
    let public = get("/about", None, &[("x-warden-client-id", "boss")]).await;
    assert_eq!(public.status, StatusCode::OK, "{}", public.text());
    assert_eq!(public.echo().header("x-warden-client-id"), None);

    let calls = up.calls();
    let missing = get("/api/orders", None, &[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(
        missing
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let scope = get("/api/admin/users", Some(&reader), &[]).await;
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    assert!(
        scope
            .header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    let spelled = get("/api/%61dmin/users", Some(&reader), &[]).await;
    assert_eq!(spelled.status, StatusCode::FORBIDDEN);
    // Refusals other than 401/403 are errors to nginx (500): still nothing passes.
    let dots = get("/public/..;/api/admin/users", None, &[]).await;
    assert!(!dots.status.is_success(), "{}", dots.status);
    // A client naming another original request in Traefik's headers is refused.
    let spoof = get(
        "/api/admin/users",
        Some(&reader),
        &[("x-forwarded-uri", "/api/x"), ("x-forwarded-method", "GET")],
    )
    .await;
    assert_eq!(spoof.status, StatusCode::FORBIDDEN);
    // A signed body nginx does not show Warden is refused, not passed unchecked.
    let basic = STANDARD.encode("signer:signer-secret-3Cc");
    let req = Request::post(format!("http://{warden_addr}/v1/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let signer = http.send(req).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = br#"{"amount":100}"#;
    let url = nginx.url("/strict/orders");
    let mut post = Request::post(&url).body(Full::from(&body[..])).unwrap();
    *post.headers_mut() = signed("POST", &url, body, &signer);
    let refused = http.send(post).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert_eq!(up.calls(), calls, "no refused request reached the upstream");

    // A signed GET through nginx: the signature over nginx's address verifies (X-Forwarded-Host
    // and -Proto from the example), and the upstream gets the signer's identity.
    let url = nginx.url("/strict/x?a=1");
    let mut get_signed = Request::get(&url).body(Full::default()).unwrap();
    *get_signed.headers_mut() = signed("GET", &url, b"", &signer);
    let ok = http.send(get_signed).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        ok.echo().header("x-warden-client-id").as_deref(),
        Some("signer")
    );
    let url = nginx.url("/strict/x?a=2");
    let mut tampered = Request::get(&url).body(Full::default()).unwrap();
    *tampered.headers_mut() = signed("GET", &nginx.url("/strict/x?a=1"), b"", &signer);
    let refused = http.send(tampered).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

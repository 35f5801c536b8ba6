//! Tokens of another issuer (`[[issuers]]`) end to end: JWTs minted by an independent library
//! (jsonwebtoken, signing with RustCrypto) against a JWKS server on 127.0.0.1:0 that rotates its
//! keys and fails on demand, and opaque tokens against an RFC 7662 introspection server that
//! checks Warden's client authentication and counts its calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warden::clock::Clock;

use crate::harness::{Client, Config, Proxy, Reply, Upstream, crate_path};

const ISS: &str = "https://idp.test/";
const AUD: &str = "api://orders";
const ROUTES: &str = "\
[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\n\
[[routes]]\nname = \"write\"\npath = \"/write/**\"\nauth = \"bearer\"\nscopes = [\"orders:write\"]\n\
[[routes]]\nname = \"pay\"\npath = \"/pay/**\"\nauth = \"bearer\"\naudience = \"payments\"\n\
[[routes]]\nname = \"signed\"\npath = \"/signed/**\"\nauth = \"bearer\"\nsignature = \"required\"\n";
const INTROSPECTION_ID: &str = "warden-at-idp";
const INTROSPECTION_SECRET: &str = "introspection s3cret/with:odd&chars";
/// A Warden client the issuer maps its `billing-svc` to.
const BILLING_SECRET: &str = "billing-secret-4Tq";

// ------------------------------------------------------------------ the identity provider

/// A JWKS and introspection server: serves `/jwks` (the document set by the test, or an error
/// status) and `/introspect` (RFC 7662, answering from a table, after checking Warden's Basic or
/// form credentials). Counts calls and records every token it is asked about.
struct Idp {
    addr: SocketAddr,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct IdpState {
    jwks: Mutex<String>,
    jwks_status: AtomicU16,
    jwks_calls: AtomicUsize,
    /// Milliseconds `/jwks` waits before it answers.
    jwks_delay_ms: AtomicU16,
    answers: Mutex<HashMap<String, Value>>,
    introspections: AtomicUsize,
    seen: Mutex<Vec<String>>,
}

impl Idp {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IdpState::default());
        state.jwks_status.store(200, Ordering::SeqCst);
        *state.jwks.lock().unwrap() = r#"{"keys":[]}"#.into();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(idp_answer(req, &st).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn publish(&self, signers: &[&Signer]) {
        let keys: Vec<Value> = signers.iter().map(|s| s.jwk.clone()).collect();
        *self.state.jwks.lock().unwrap() = json!({ "keys": keys }).to_string();
    }

    fn fail_jwks(&self, status: u16) {
        self.state.jwks_status.store(status, Ordering::SeqCst);
    }

    fn jwks_calls(&self) -> usize {
        self.state.jwks_calls.load(Ordering::SeqCst)
    }

    fn answer(&self, token: &str, answer: Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::from(body))
        .unwrap()
}

async fn idp_answer(req: Request<Incoming>, st: &IdpState) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/jwks" => {
            st.jwks_calls.fetch_add(1, Ordering::SeqCst);
            let delay = st.jwks_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay.into())).await;
            let status = st.jwks_status.load(Ordering::SeqCst);
            reply(status, st.jwks.lock().unwrap().clone())
        }
        "/introspect" => {
            st.introspections.fetch_add(1, Ordering::SeqCst);
            let basic = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            let form_type = req
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/x-www-form-urlencoded");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            // RFC 6749 §2.3.1: Basic of the form-encoded id and secret, or both in the body.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!(
                    "{}:{}",
                    enc(INTROSPECTION_ID),
                    enc(INTROSPECTION_SECRET)
                ))
            );
            let by_basic = basic.as_deref() == Some(expected.as_str());
            let by_post = basic.is_none()
                && form.get("client_id").map(String::as_str) == Some(INTROSPECTION_ID)
                && form.get("client_secret").map(String::as_str) == Some(INTROSPECTION_SECRET);
            if !form_type || !(by_basic || by_post) {
                return reply(401, r#"{"error":"invalid_client"}"#.into());
            }
            let token = form.get("token").cloned().unwrap_or_default();
            assert_eq!(
                form.get("token_type_hint").map(String::as_str),
                Some("access_token")
            );
            st.seen.lock().unwrap().push(token.clone());
            let answer = st
                .answers
                .lock()
                .unwrap()
                .get(&token)
                .cloned()
                .unwrap_or(json!({"active": false}));
            reply(200, answer.to_string())
        }
        _ => reply(404, "{}".into()),
    }
}

// ------------------------------------------------------------------ signing keys

/// A signing key of the identity provider, with its public JWK (made by jsonwebtoken for RSA
/// and EC keys, from the raw public key for Ed25519).
struct Signer {
    alg: Algorithm,
    key: EncodingKey,
    kid: String,
    jwk: Value,
}

impl Signer {
    fn new(alg: Algorithm, key: EncodingKey, kid: &str, jwk: Option<Value>) -> Self {
        let mut jwk = jwk.unwrap_or_else(|| {
            serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).unwrap())
                .unwrap()
        });
        jwk["kid"] = json!(kid);
        Self {
            alg,
            key,
            kid: kid.to_owned(),
            jwk,
        }
    }

    fn rsa(alg: Algorithm, file: &str, kid: &str) -> Self {
        let pem = std::fs::read(crate_path(&format!("tests/data/idp/{file}"))).unwrap();
        Self::new(alg, EncodingKey::from_rsa_pem(&pem).unwrap(), kid, None)
    }

    fn ec(alg: Algorithm, kid: &str) -> Self {
        let curve = match alg {
            Algorithm::ES256 => &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            _ => &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        };
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(curve, &rng).unwrap();
        Self::new(alg, EncodingKey::from_ec_der(pkcs8.as_ref()), kid, None)
    }

    fn ed(kid: &str) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = key.to_pkcs8_der().unwrap();
        let jwk = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        });
        Self::new(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(der.as_bytes()),
            kid,
            Some(jwk),
        )
    }

    /// A token with these claims, `typ: at+jwt` and this key's `kid`.
    fn mint(&self, claims: &Value) -> String {
        self.mint_with(claims, |_| {})
    }

    fn mint_with(&self, claims: &Value, edit: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        edit(&mut header);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// RFC 9068 claims of a client-credentials token of `client`, issued now, valid for an hour.
fn claims(clock: &Clock, client: &str, scope: &str) -> Value {
    let now = clock.now();
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": client,
        "client_id": client,
        "scope": scope,
        "iat": now,
        "exp": now + 3600,
        "jti": format!("jti-{}", rand::random::<u64>()),
    })
}

// ------------------------------------------------------------------ set-up

struct Setup {
    up: Upstream,
    idp: Idp,
    proxy: Proxy,
    clock: Clock,
    http: Client,
}

/// `[[issuers]]` for the test server's JWKS, with extra lines.
fn jwt_issuer(idp: &Idp, extra: &str) -> String {
    format!(
        "[[issuers]]\nname = \"corp\"\nissuer = \"{ISS}\"\naudience = [\"{AUD}\", \"payments\"]\n\
         jwks_uri = \"{}\"\nallow_http = true\nclients = {{ \"billing-svc\" = \"billing\" }}\n{extra}\n",
        idp.url("/jwks")
    )
}

fn billing_client() -> String {
    format!(
        "[[clients]]\nid = \"billing\"\nsecret_sha256 = \"{}\"\nscopes = [\"orders:read\"]\n",
        hex::encode(warden::secret::hash(BILLING_SECRET))
    )
}

async fn setup(issuers: impl FnOnce(&Idp) -> String) -> Setup {
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    let clock = Clock::default();
    clock.freeze();
    let config = Config::new(&up.url())
        .routes(ROUTES)
        .append(&billing_client())
        .append(&issuers(&idp))
        .clock(&clock);
    let proxy = Proxy::start(config).await;
    Setup {
        up,
        idp,
        proxy,
        clock,
        http: Client::http1(),
    }
}

impl Setup {
    async fn get(&self, path: &str, token: &str) -> Reply {
        let req = Request::get(self.proxy.url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        self.http.send(req).await
    }

    /// Asserts a 401 `invalid_token` whose detail and challenge contain `why`, and that the
    /// token is not echoed.
    async fn refused(&self, path: &str, token: &str, why: &str) {
        let reply = self.get(path, token).await;
        let problem = reply.problem(401, "invalid_token");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{why:?} not in {detail:?}");
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"warden\", error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(challenge.contains(why), "{challenge}");
        assert!(!reply.text().contains(token) && !challenge.contains(token));
    }
}

/// A `/v1/oauth/token` token of the Warden client `billing`.
async fn warden_token(s: &Setup) -> String {
    let req = Request::post(s.proxy.url("/v1/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(format!(
            "grant_type=client_credentials&client_id=billing&client_secret={BILLING_SECRET}"
        )))
        .unwrap();
    let reply = s.http.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

// ------------------------------------------------------------------ JWTs

#[tokio::test]
async fn tokens_of_every_algorithm_from_an_independent_library_are_accepted() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let signers = [
        Signer::rsa(Algorithm::RS256, "rsa-a.pem", "rs"),
        Signer::rsa(Algorithm::PS256, "rsa-b.pem", "ps"),
        Signer::ec(Algorithm::ES256, "es256"),
        Signer::ec(Algorithm::ES384, "es384"),
        Signer::ed("ed"),
    ];
    s.idp.publish(&signers.iter().collect::<Vec<_>>());
    for signer in &signers {
        let token = signer.mint(&claims(&s.clock, "reporting", "orders:read orders:write"));
        let echo = s.get("/api/orders", &token).await.echo();
        assert_eq!(
            echo.header("x-warden-client-id").as_deref(),
            Some("reporting@corp"),
            "{:?}",
            signer.alg
        );
        assert_eq!(
            echo.header("x-warden-scopes").as_deref(),
            Some("orders:read orders:write")
        );
        assert!(echo.header("x-warden-token-id").unwrap().ends_with("@corp"));
        // The token itself is not forwarded (tokens.forward_authorization = false).
        assert!(echo.header("authorization").is_none());
    }
    assert_eq!(s.idp.jwks_calls(), 1, "one fetch serves every key");
    assert_eq!(s.up.calls(), signers.len());
}

#[tokio::test]
async fn a_rotated_in_key_is_fetched_once_and_then_accepted() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let old = Signer::ec(Algorithm::ES256, "2024");
    let new = Signer::ec(Algorithm::ES256, "2025");
    s.idp.publish(&[&old]);
    let before = old.mint(&claims(&s.clock, "svc", ""));
    assert_eq!(s.get("/api/x", &before).await.status, 200);
    assert_eq!(s.idp.jwks_calls(), 1);

    // The issuer adds a key and starts signing with it right away. Within the refetch interval
    // of the first fetch, its kid is unknown and stays so: no second fetch.
    s.idp.publish(&[&old, &new]);
    let after = new.mint(&claims(&s.clock, "svc", ""));
    s.refused("/api/x", &after, "signing key (kid) is unknown")
        .await;
    assert_eq!(s.idp.jwks_calls(), 1);
    // Past the interval: one fetch, and the new key verifies; the old one still does.
    s.clock.advance(31);
    assert_eq!(s.get("/api/x", &after).await.status, 200);
    assert_eq!(s.idp.jwks_calls(), 2);
    assert_eq!(s.get("/api/x", &before).await.status, 200);
    // The old key withdrawn: tokens not yet verified with it fail once the set is refetched.
    s.idp.publish(&[&new]);
    s.clock.advance(601);
    let late = old.mint(&claims(&s.clock, "svc", ""));
    s.refused("/api/x", &late, "unknown").await;
    assert_eq!(s.idp.jwks_calls(), 3);
}

#[tokio::test]
async fn a_burst_of_unknown_kids_makes_one_fetch() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let known = Signer::ec(Algorithm::ES256, "known");
    s.idp.publish(&[&known]);
    let ok = known.mint(&claims(&s.clock, "svc", ""));
    assert_eq!(s.get("/api/x", &ok).await.status, 200);
    s.clock.advance(31);
    let fetches = s.idp.jwks_calls();
    let requests = (0..40).map(|i| {
        let stranger = Signer::ec(Algorithm::ES256, &format!("unknown-{i}"));
        let token = stranger.mint(&claims(&s.clock, "svc", ""));
        let s = &s;
        async move { s.get("/api/x", &token).await.status }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|&st| st == 401), "{statuses:?}");
    assert_eq!(
        s.idp.jwks_calls(),
        fetches + 1,
        "one fetch for the whole burst"
    );
    // And none for the next unknown kid within the interval.
    let stranger = Signer::ec(Algorithm::ES256, "one-more");
    s.refused(
        "/api/x",
        &stranger.mint(&claims(&s.clock, "svc", "")),
        "unknown",
    )
    .await;
    assert_eq!(s.idp.jwks_calls(), fetches + 1);
    assert_eq!(s.get("/api/x", &ok).await.status, 200);
}

#[tokio::test]
async fn requests_arriving_during_a_fetch_wait_for_it_and_share_it() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let old = Signer::ec(Algorithm::ES256, "old");
    let new = Signer::ed("new");
    s.idp.publish(&[&old]);
    assert_eq!(
        s.get("/api/x", &old.mint(&claims(&s.clock, "svc", "")))
            .await
            .status,
        200
    );
    s.idp.publish(&[&old, &new]);
    s.idp.state.jwks_delay_ms.store(400, Ordering::SeqCst);
    s.clock.advance(31);
    // Every request with the new kid comes while the one fetch is under way: all wait for it.
    let requests = (0..20).map(|i| {
        let token = new.mint(&claims(&s.clock, &format!("svc-{i}"), ""));
        let s = &s;
        async move { s.get("/api/x", &token).await.status }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|&st| st == 200), "{statuses:?}");
    assert_eq!(s.idp.jwks_calls(), 2);
}

#[tokio::test]
async fn the_last_keys_are_served_while_the_jwks_server_fails() {
    let s = setup(|idp| jwt_issuer(idp, "jwks_cache_ttl = \"1m\"")).await;
    let signer = Signer::rsa(Algorithm::RS256, "rsa-a.pem", "a");
    s.idp.publish(&[&signer]);
    assert_eq!(
        s.get("/api/x", &signer.mint(&claims(&s.clock, "svc", "")))
            .await
            .status,
        200
    );
    s.idp.fail_jwks(500);
    s.clock.advance(61);
    // The set is out of date and the fetch fails: the keys fetched before still verify.
    let token = signer.mint(&claims(&s.clock, "svc", ""));
    assert_eq!(s.get("/api/x", &token).await.status, 200);
    assert_eq!(s.idp.jwks_calls(), 2);
    // Failed fetches are retried no more often than the refetch interval.
    let again = signer.mint(&claims(&s.clock, "other", ""));
    assert_eq!(s.get("/api/x", &again).await.status, 200);
    assert_eq!(s.idp.jwks_calls(), 2);
}

#[tokio::test]
async fn an_issuer_that_cannot_be_reached_and_has_no_keys_yet_is_503() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    s.idp.fail_jwks(503);
    let signer = Signer::ec(Algorithm::ES256, "k");
    let token = signer.mint(&claims(&s.clock, "svc", ""));
    let reply = s.get("/api/x", &token).await;
    reply.problem(503, "issuer_unavailable");
    assert_eq!(reply.header("retry-after"), Some("30"));
    assert_eq!(s.up.calls(), 0);
    // The issuer back, and the interval past: accepted.
    s.idp.fail_jwks(200);
    s.idp.publish(&[&signer]);
    s.clock.advance(31);
    assert_eq!(s.get("/api/x", &token).await.status, 200);
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let rsa = Signer::rsa(Algorithm::RS256, "rsa-a.pem", "rsa");
    let ec = Signer::ec(Algorithm::ES256, "ec");
    s.idp.publish(&[&rsa, &ec]);
    let c = claims(&s.clock, "svc", "orders:write");

    // alg none, unsigned.
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "kid": "rsa", "typ": "at+jwt"})),
            b64(&c)
        );
        s.refused("/api/x", &unsigned, "algorithm (alg) is not accepted")
            .await;
    }
    // HS256 "signed" with the RSA public key as the HMAC secret, in its usual spellings.
    let public_pem = std::fs::read(crate_path("tests/data/idp/rsa-a.pub.pem")).unwrap();
    let n = URL_SAFE_NO_PAD
        .decode(rsa.jwk["n"].as_str().unwrap())
        .unwrap();
    for secret in [&public_pem[..], &n[..], rsa.jwk.to_string().as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa".into());
        header.typ = Some("at+jwt".into());
        let forged = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(secret)).unwrap();
        s.refused("/api/x", &forged, "algorithm (alg) is not accepted")
            .await;
    }
    // An algorithm that does not fit the key its kid names: RS256 over the EC key's kid, ES256
    // over the RSA key's, and PS256 by the RSA key whose JWK says RS256.
    let rs_as_ec = rsa.mint_with(&c, |h| h.kid = Some("ec".into()));
    s.refused("/api/x", &rs_as_ec, "unknown").await;
    let es_as_rsa = ec.mint_with(&c, |h| h.kid = Some("rsa".into()));
    s.refused("/api/x", &es_as_rsa, "unknown").await;
    let ps = Signer::rsa(Algorithm::PS256, "rsa-a.pem", "rsa");
    s.refused("/api/x", &ps.mint(&c), "unknown").await;
    // A valid signature, tampered claims.
    let good = ec.mint(&c);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut more = c.clone();
    more["scope"] = json!("orders:write admin");
    parts[1] = b64(&more);
    s.refused("/api/x", &parts.join("."), "signature does not verify")
        .await;
    // Header keys are never followed: a jwk in the header changes nothing.
    let attacker = Signer::ec(Algorithm::ES256, "ec");
    let embedded = attacker.mint_with(&c, |h| {
        h.jwk = Some(serde_json::from_value(attacker.jwk.clone()).unwrap());
        h.jku = Some(s.idp.url("/jwks"));
    });
    s.refused("/api/x", &embedded, "signature does not verify")
        .await;
    assert_eq!(s.up.calls(), 0);
    assert_eq!(s.get("/api/x", &good).await.status, 200);
}

#[tokio::test]
async fn a_1024_bit_rsa_key_is_never_used() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let short = Signer::rsa(Algorithm::RS256, "rsa-1024.pem", "short");
    s.idp.publish(&[&short]);
    s.refused(
        "/api/x",
        &short.mint(&claims(&s.clock, "svc", "")),
        "unknown",
    )
    .await;
}

#[tokio::test]
async fn issuer_audience_and_times_are_checked() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let signer = Signer::ed("k");
    s.idp.publish(&[&signer]);
    let now = s.clock.now();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(&s.clock, "svc", "");
        edit(&mut c);
        signer.mint(&c)
    };
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: [(&str, Edit); 9] = [
        ("issuer (iss)", &|c| c["iss"] = json!("https://evil.test/")),
        ("issuer (iss)", &|c| {
            c.as_object_mut().unwrap().remove("iss");
        }),
        ("audience (aud)", &|c| c["aud"] = json!("api://other")),
        ("audience (aud)", &|c| c["aud"] = json!(["a", "b"])),
        ("expired", &|c| c["exp"] = json!(now - 61)),
        ("no expiry", &|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        ("not valid yet", &|c| c["nbf"] = json!(now + 61)),
        ("issued in the future", &|c| c["iat"] = json!(now + 61)),
        ("names no client", &|c| {
            c.as_object_mut().unwrap().remove("client_id");
        }),
    ];
    for (why, edit) in cases {
        s.refused("/api/x", &with(edit), why).await;
    }
    // Within the leeway (60s), and with the audience among several: accepted.
    for edit in [
        &(|c: &mut Value| c["exp"] = json!(now - 59)) as &dyn Fn(&mut Value),
        &|c| c["nbf"] = json!(now + 59),
        &|c| c["iat"] = json!(now + 59),
        &|c| c["aud"] = json!(["api://other", AUD]),
    ] {
        assert_eq!(s.get("/api/x", &with(edit)).await.status, 200);
    }
    // A token cached as valid still expires on time.
    let short = with(&|c| c["exp"] = json!(now + 10));
    assert_eq!(s.get("/api/x", &short).await.status, 200);
    s.clock.advance(71);
    s.refused("/api/x", &short, "expired").await;
}

#[tokio::test]
async fn typ_must_be_at_jwt_unless_the_issuer_allows_plain_jwt() {
    let strict = setup(|idp| jwt_issuer(idp, "")).await;
    let signer = Signer::ec(Algorithm::ES384, "k");
    strict.idp.publish(&[&signer]);
    let c = claims(&strict.clock, "svc", "");
    for typ in [Some("JWT"), None, Some("id_token+jwt")] {
        let t = signer.mint_with(&c, |h| h.typ = typ.map(String::from));
        strict.refused("/api/x", &t, "typ at+jwt").await;
    }
    assert_eq!(
        strict
            .get(
                "/api/x",
                &signer.mint_with(&c, |h| h.typ = Some("application/at+jwt".into()))
            )
            .await
            .status,
        200
    );

    let lenient = setup(|idp| jwt_issuer(idp, "allow_typ_jwt = true")).await;
    lenient.idp.publish(&[&signer]);
    for typ in [Some("JWT"), None] {
        let t = signer.mint_with(&c, |h| h.typ = typ.map(String::from));
        assert_eq!(lenient.get("/api/x", &t).await.status, 200);
    }
    let id_token = signer.mint_with(&c, |h| h.typ = Some("id_token+jwt".into()));
    lenient.refused("/api/x", &id_token, "typ").await;
}

#[tokio::test]
async fn the_tokens_scopes_and_audiences_meet_the_routes_requirements() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let signer = Signer::ec(Algorithm::ES256, "k");
    s.idp.publish(&[&signer]);
    let read = signer.mint(&claims(&s.clock, "svc", "orders:read"));
    let reply = s.get("/write/orders", &read).await;
    reply.problem(403, "insufficient_scope");
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("scope=\"orders:write\"")
    );
    let write = signer.mint(&claims(&s.clock, "svc", "orders:read orders:write"));
    assert_eq!(s.get("/write/orders", &write).await.status, 200);
    // `scp` as an array (Azure AD, Okta) counts as well.
    let mut scp = claims(&s.clock, "svc", "");
    scp.as_object_mut().unwrap().remove("scope");
    scp["scp"] = json!(["orders:write"]);
    assert_eq!(s.get("/write/orders", &signer.mint(&scp)).await.status, 200);

    // The route's audience must be one of the token's.
    s.get("/pay/x", &write)
        .await
        .problem(403, "invalid_audience");
    let mut both = claims(&s.clock, "svc", "");
    both["aud"] = json!([AUD, "payments"]);
    let echo = s.get("/pay/x", &signer.mint(&both)).await.echo();
    assert_eq!(
        echo.header("x-warden-audience").as_deref(),
        Some("api://orders payments")
    );
}

#[tokio::test]
async fn a_mapped_client_acts_as_the_warden_client_within_its_scopes() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let signer = Signer::ec(Algorithm::ES256, "k");
    s.idp.publish(&[&signer]);
    // billing-svc maps to the Warden client `billing`, which holds orders:read only.
    let token = signer.mint(&claims(&s.clock, "billing-svc", "orders:read orders:write"));
    let echo = s.get("/api/x", &token).await.echo();
    assert_eq!(
        echo.header("x-warden-client-id").as_deref(),
        Some("billing")
    );
    assert_eq!(
        echo.header("x-warden-scopes").as_deref(),
        Some("orders:read")
    );
    s.get("/write/x", &token)
        .await
        .problem(403, "insufficient_scope");
    // An unmapped client never becomes a Warden client, even with a Warden client's id.
    let lookalike = signer.mint(&claims(&s.clock, "billing", "orders:write"));
    let echo = s.get("/api/x", &lookalike).await.echo();
    assert_eq!(
        echo.header("x-warden-client-id").as_deref(),
        Some("billing@corp")
    );
    // No registered key, no signature: a route that requires one refuses.
    s.get("/signed/x", &lookalike)
        .await
        .problem(401, "signature_missing");
}

#[tokio::test]
async fn tokens_of_other_issuers_never_reach_wardens_own_endpoints() {
    let s = setup(|idp| jwt_issuer(idp, "")).await;
    let signer = Signer::ec(Algorithm::ES256, "k");
    s.idp.publish(&[&signer]);
    let mut c = claims(&s.clock, "billing-svc", "level://admin");
    c["scope"] = json!("level://admin");
    let token = signer.mint(&c);
    let req = Request::delete(s.proxy.url("/v1/auth?accessTokenId=at_x"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    s.http.send(req).await.problem(401, "invalid_token");
    let tokens = s
        .get("/ws/accounts/billing/credentials/tokens", &token)
        .await;
    tokens.problem(401, "invalid_token");
    // Warden's own tokens keep working beside them.
    let own = warden_token(&s).await;
    let echo = s.get("/api/x", &own).await.echo();
    assert_eq!(
        echo.header("x-warden-client-id").as_deref(),
        Some("billing")
    );
}

// ------------------------------------------------------------------ introspection

fn opaque_issuer(idp: &Idp, dir: &std::path::Path, extra: &str) -> String {
    let secret = dir.join("introspection-secret");
    std::fs::write(&secret, format!("{INTROSPECTION_SECRET}\n")).unwrap();
    format!(
        "[[issuers]]\nname = \"as\"\nissuer = \"https://as.test/\"\naudience = \"{AUD}\"\n\
         introspection_endpoint = \"{}\"\nintrospection_client_id = \"{INTROSPECTION_ID}\"\n\
         introspection_client_secret_file = {:?}\nallow_http = true\n\
         negative_cache_ttl = \"1s\"\n{extra}\n",
        idp.url("/introspect"),
        secret.display().to_string()
    )
}

fn active(clock: &Clock, scope: &str) -> Value {
    json!({
        "active": true,
        "client_id": "mobile",
        "sub": "user-42",
        "scope": scope,
        "aud": AUD,
        "iss": "https://as.test/",
        "exp": clock.now() + 3600,
        "token_type": "Bearer",
    })
}

async fn opaque_setup(extra: &str) -> (Setup, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let extra = extra.to_owned();
    let s = setup(move |idp| opaque_issuer(idp, &path, &extra)).await;
    (s, dir)
}

#[tokio::test]
async fn an_introspected_token_is_cached_then_asked_about_again() {
    let (s, _dir) = opaque_setup("introspection_cache_ttl = \"1s\"").await;
    s.idp.answer("opaque-1", active(&s.clock, "orders:read"));
    let echo = s.get("/api/x", "opaque-1").await.echo();
    assert_eq!(
        echo.header("x-warden-client-id").as_deref(),
        Some("mobile@as")
    );
    assert_eq!(
        echo.header("x-warden-scopes").as_deref(),
        Some("orders:read")
    );
    assert_eq!(s.idp.introspections(), 1);
    assert_eq!(s.get("/api/x", "opaque-1").await.status, 200);
    assert_eq!(
        s.idp.introspections(),
        1,
        "the second request is answered from the cache"
    );
    // Revoked at the issuer: seen once the answer ages out (introspection_cache_ttl, 1s).
    s.idp.answer("opaque-1", json!({"active": false}));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    s.refused("/api/x", "opaque-1", "not active").await;
    assert_eq!(s.idp.introspections(), 2);
}

#[tokio::test]
async fn an_introspected_answer_is_never_used_past_the_tokens_exp() {
    let (s, _dir) = opaque_setup("introspection_cache_ttl = \"10m\"").await;
    let mut answer = active(&s.clock, "");
    answer["exp"] = json!(s.clock.now() + 5);
    s.idp.answer("opaque-2", answer);
    assert_eq!(s.get("/api/x", "opaque-2").await.status, 200);
    s.clock.advance(5);
    s.refused("/api/x", "opaque-2", "expired").await;
    // Already expired when asked about: refused, and not cached as valid.
    let mut stale = active(&s.clock, "");
    stale["exp"] = json!(s.clock.now());
    s.idp.answer("opaque-3", stale);
    s.refused("/api/x", "opaque-3", "expired").await;
}

#[tokio::test]
async fn inactive_answers_are_remembered_briefly() {
    let (s, _dir) = opaque_setup("").await;
    s.refused("/api/x", "unknown-token", "not active").await;
    s.refused("/api/x", "unknown-token", "not active").await;
    assert_eq!(s.idp.introspections(), 1);
    s.idp.answer("unknown-token", active(&s.clock, ""));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(s.get("/api/x", "unknown-token").await.status, 200);
    assert_eq!(s.idp.introspections(), 2);
}

#[tokio::test]
async fn scope_and_audience_of_a_cached_answer_are_checked_on_every_request() {
    let (s, _dir) = opaque_setup("introspection_cache_ttl = \"10m\"").await;
    s.idp.answer("opaque-r", active(&s.clock, "orders:read"));
    // Cached while calling a route that needs nothing more.
    assert_eq!(s.get("/api/x", "opaque-r").await.status, 200);
    // Then a route needing a scope the token lacks, and one for another audience.
    s.get("/write/x", "opaque-r")
        .await
        .problem(403, "insufficient_scope");
    s.get("/pay/x", "opaque-r")
        .await
        .problem(403, "invalid_audience");
    assert_eq!(s.idp.introspections(), 1);
    // An active token for another audience, a refresh token, another issuer's: refused.
    let mut other = active(&s.clock, "");
    other["aud"] = json!("api://elsewhere");
    s.idp.answer("opaque-aud", other);
    s.refused("/api/x", "opaque-aud", "audience").await;
    let mut refresh = active(&s.clock, "");
    refresh["token_type"] = json!("refresh_token");
    s.idp.answer("opaque-refresh", refresh);
    s.refused("/api/x", "opaque-refresh", "not an access token")
        .await;
    let mut foreign = active(&s.clock, "");
    foreign["iss"] = json!("https://idp.test/");
    s.idp.answer("opaque-iss", foreign);
    s.refused("/api/x", "opaque-iss", "another issuer").await;
}

#[tokio::test]
async fn warden_tokens_and_other_issuers_jwts_are_never_sent_to_the_endpoint() {
    let (s, _dir) = opaque_setup("").await;
    let own = warden_token(&s).await;
    assert_eq!(s.get("/api/x", &own).await.status, 200);
    // Unknown or mistyped Warden-looking tokens stay on Warden's path too.
    let reply = s.get("/api/x", "wdn_at_not-a-real-token").await;
    reply.problem(401, "invalid_token");
    // A JWT of an issuer not configured here is refused without asking anyone.
    let stranger = Signer::ec(Algorithm::ES256, "k");
    let jwt = stranger.mint(&claims(&s.clock, "svc", ""));
    s.refused("/api/x", &jwt, "issuer (iss)").await;
    assert_eq!(s.idp.introspections(), 0, "{:?}", s.idp.seen());
    // The one opaque token sent is the one meant for it.
    s.refused("/api/x", "opaque-x", "not active").await;
    assert_eq!(s.idp.seen(), ["opaque-x"]);
}

#[tokio::test]
async fn token_prefixes_route_opaque_tokens_to_their_issuer_only() {
    let (s, _dir) = opaque_setup("token_prefix = \"as_\"").await;
    s.idp.answer("as_token", active(&s.clock, ""));
    assert_eq!(s.get("/api/x", "as_token").await.status, 200);
    // No issuer takes unprefixed opaque tokens: refused, never sent.
    s.refused("/api/x", "other_token", "neither Warden").await;
    assert_eq!(s.idp.seen(), ["as_token"]);
}

#[tokio::test]
async fn client_authentication_reaches_the_endpoint_basic_or_post() {
    let (s, _dir) = opaque_setup("introspection_auth = \"client_secret_post\"").await;
    s.idp.answer("opaque-p", active(&s.clock, ""));
    assert_eq!(s.get("/api/x", "opaque-p").await.status, 200);

    // A wrong secret: the endpoint refuses Warden, and Warden says the issuer is unavailable
    // (nothing was learned about the token), without caching that.
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let issuer = opaque_issuer(&idp, dir.path(), "");
    std::fs::write(dir.path().join("introspection-secret"), "wrong").unwrap();
    let warden = Proxy::start(Config::new(&up.url()).routes(ROUTES).append(&issuer)).await;
    idp.answer("opaque-w", active(&Clock::default(), ""));
    let req = |t: &str| {
        Request::get(warden.url("/api/x"))
            .header("authorization", format!("Bearer {t}"))
            .body(Full::default())
            .unwrap()
    };
    let http = Client::http1();
    let reply = http.send(req("opaque-w")).await;
    reply.problem(503, "issuer_unavailable");
    assert_eq!(reply.header("retry-after"), Some("1"));
    http.send(req("opaque-w"))
        .await
        .problem(503, "issuer_unavailable");
    assert_eq!(idp.introspections(), 2);
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn an_unreachable_introspection_endpoint_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let idp = Idp::start().await;
    let issuer = opaque_issuer(&idp, dir.path(), "fetch_timeout = \"2s\"").replace(
        &idp.url("/introspect"),
        &(crate::harness::closed_port_url().await + "/introspect"),
    );
    drop(idp);
    let warden = Proxy::start(Config::new(&up.url()).routes(ROUTES).append(&issuer)).await;
    let req = Request::get(warden.url("/api/x"))
        .header("authorization", "Bearer opaque")
        .body(Full::default())
        .unwrap();
    Client::http1()
        .send(req)
        .await
        .problem(503, "issuer_unavailable");
}

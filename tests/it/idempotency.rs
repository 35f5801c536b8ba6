//! Idempotency keys end to end: a real Warden in front of a real upstream that numbers its
//! calls (so a second execution would show in the bytes), replays, 409 and 422, per-client
//! keys, two Wardens on one store, `kill -9` with lease takeover, expiry and sweeping, the 5xx
//! policy, responses too large or streamed to keep, and `POST /v1/auth`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use warden::clock::Clock;

use crate::harness::{Client, Config, PATIENCE, Proxy, Reply, Spawned, StoreDir, within};

const ALPHA: (&str, &str) = ("alpha", "alpha-secret-4Rt");
const BETA: (&str, &str) = ("beta", "beta-secret-8Wm");

const ROUTES: &str = "\
[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\n\
[[routes]]\nname = \"strict\"\npath = \"/strict/**\"\nauth = \"bearer\"\nidempotency = \"required\"\n\
[[routes]]\nname = \"public\"\npath = \"/public/**\"\nauth = \"none\"\n";

/// A 1 KiB JSON body.
fn order(n: usize) -> String {
    let pad = "x".repeat(1000);
    format!("{{\"order\":{n},\"pad\":\"{pad}\"}}")
}

// ------------------------------------------------------------------ the upstream

type UpBody = BoxBody<Bytes, Infallible>;

/// An upstream that numbers every call, so each execution answers different bytes:
/// - `…/status/CODE`: that status;
/// - `…/big?bytes=N`: N bytes with a Content-Length; `…/chunked?bytes=N`: the same in 1 KiB
///   chunks without one;
/// - `…/sse`: `data: one`, 400 ms later `data: two`, then the end;
/// - `…/slow?ms=N`: answers after N ms; `…/once-slow`: the first call ever takes 1.5 s;
/// - `…/halves?bytes=N&ms=M`: N bytes with a Content-Length, the second half M ms after the
///   first; `…/short?bytes=N`: a Content-Length of N, then half of that and the end (cut);
/// - anything else: 201 with `{"call":N,…}` echoing method, path, query and body.
struct Api {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Api {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let counter = counter.clone();
                        async move { Ok::<_, Infallible>(answer(req, &counter).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, calls, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn wait_for_calls(&self, n: usize) {
        within(PATIENCE, "the upstream receiving the request", async {
            while self.calls() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn param(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn full(b: impl Into<Bytes>) -> UpBody {
    Full::new(b.into()).boxed()
}

async fn answer(req: Request<Incoming>, counter: &AtomicUsize) -> Response<UpBody> {
    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
    let path = req.uri().path().to_owned();
    let last = path.rsplit('/').next().unwrap_or("").to_owned();
    if let Some(code) = path.split("/status/").nth(1) {
        return Response::builder()
            .status(code.parse::<u16>().unwrap())
            .header("x-call", n)
            .body(full(format!("failed on call {n}")))
            .unwrap();
    }
    match last.as_str() {
        "big" => {
            let bytes = param(&req, "bytes").unwrap_or(0) as usize;
            return Response::builder()
                .header("x-call", n)
                .body(full(vec![b'b'; bytes]))
                .unwrap();
        }
        "chunked" => {
            let bytes = param(&req, "bytes").unwrap_or(0) as usize;
            let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..bytes.div_ceil(1024))
                .map(|i| {
                    let len = 1024.min(bytes - i * 1024);
                    Ok(Frame::data(Bytes::from(vec![b'c'; len])))
                })
                .collect();
            return Response::builder()
                .header("x-call", n)
                .body(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
                .unwrap();
        }
        "halves" => {
            let bytes = param(&req, "bytes").unwrap_or(2) as usize;
            let ms = param(&req, "ms").unwrap_or(0);
            let (first, second) = (bytes / 2, bytes - bytes / 2);
            let stream = futures_util::stream::unfold(0, move |i| async move {
                let len = match i {
                    0 => first,
                    1 => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        second
                    }
                    _ => return None,
                };
                Some((Ok(Frame::data(Bytes::from(vec![b'h'; len]))), i + 1))
            });
            return Response::builder()
                .header("x-call", n)
                .header("content-length", bytes)
                .body(StreamBody::new(stream).boxed())
                .unwrap();
        }
        "short" => {
            let bytes = param(&req, "bytes").unwrap_or(2) as usize;
            // A stream (hyper cannot know its length, so it keeps the header) that pauses after
            // the first half, so that half goes out, then ends.
            let stream = futures_util::stream::unfold(0, move |i| async move {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return None;
                }
                Some((Ok(Frame::data(Bytes::from(vec![b's'; bytes / 2]))), 1))
            });
            return Response::builder()
                .header("x-call", n)
                .header("content-length", bytes)
                .body(StreamBody::new(stream).boxed())
                .unwrap();
        }
        "sse" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"data: one\n\n")).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
                let _ = tx.send(Bytes::from_static(b"data: two\n\n")).await;
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                let chunk = rx.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
            });
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(stream).boxed())
                .unwrap();
        }
        "slow" => {
            let ms = param(&req, "ms").unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        "once-slow" if n == 1 => tokio::time::sleep(Duration::from_millis(1500)).await,
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "call": n,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/json")
        .header("x-call", n)
        .header("set-cookie", format!("call={n}"))
        .body(full(serde_json::to_vec(&json).unwrap()))
        .unwrap()
}

// ------------------------------------------------------------------ Warden and requests

fn client_toml((id, secret): (&str, &str)) -> String {
    format!(
        "[[clients]]\nid = {id:?}\nsecret_sha256 = \"{}\"\nscopes = [\"read\", \"write\"]\n",
        hex::encode(warden::secret::hash(secret))
    )
}

/// Bearer `/api/**` (keys optional), bearer `/strict/**` (keys required), public `/public/**`,
/// clients alpha and beta, `[idempotency]` with `idem` added.
fn config(api: &Api, idem: &str) -> Config {
    Config::new(&api.url())
        .routes(ROUTES)
        .append(&format!("[idempotency]\n{idem}\n"))
        .append(&client_toml(ALPHA))
        .append(&client_toml(BETA))
}

fn form_body((id, secret): (&str, &str)) -> String {
    format!("clientId={id}&clientSecret={secret}")
}

fn auth_request(url: &str, body: &str, key: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::post(url).header("content-type", "application/x-www-form-urlencoded");
    if let Some(key) = key {
        req = req.header("idempotency-key", format!("\"{key}\""));
    }
    req.body(Full::from(body.to_owned())).unwrap()
}

/// An access token from `POST /v1/auth`.
async fn token(http: &Client, base: &dyn Fn(&str) -> String, who: (&str, &str)) -> String {
    let reply = http
        .send(auth_request(&base("/v1/auth"), &form_body(who), None))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply.json()["accessToken"].as_str().unwrap().to_owned()
}

/// A POST with a bearer token and, if given, `Idempotency-Key: "key"`.
fn post(url: &str, token: &str, key: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut req = Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("idempotency-key", format!("\"{key}\""));
    }
    req.body(Full::from(body.to_owned())).unwrap()
}

struct Setup {
    api: Api,
    proxy: Proxy,
    http: Client,
    alpha: String,
    store: StoreDir,
}

impl Setup {
    async fn start(idem: &str) -> Self {
        Self::start_with(idem, |c| c).await
    }

    async fn start_with(idem: &str, tweak: impl FnOnce(Config) -> Config) -> Self {
        let api = Api::start().await;
        let store = StoreDir::new();
        let proxy = Proxy::start(tweak(config(&api, idem).store(&store))).await;
        let http = Client::http1();
        let alpha = token(&http, &|p| proxy.url(p), ALPHA).await;
        Self {
            api,
            proxy,
            http,
            alpha,
            store,
        }
    }

    fn url(&self, path: &str) -> String {
        self.proxy.url(path)
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &str) -> Reply {
        self.http
            .send(post(&self.url(path), &self.alpha, key, body))
            .await
    }
}

fn replayed(reply: &Reply) -> bool {
    reply.header("idempotent-replayed") == Some("true")
}

/// Sends until the answer is no longer 409 (a record written just after the response ended).
async fn settled(http: &Client, req: impl Fn() -> Request<Full<Bytes>>) -> Reply {
    within(PATIENCE, "the record being written", async {
        loop {
            let reply = http.send(req()).await;
            if reply.status != StatusCode::CONFLICT {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

// ------------------------------------------------------------------ replay, 409, 422

#[tokio::test]
async fn a_retry_replays_the_stored_response_byte_for_byte_without_calling_the_upstream() {
    let s = Setup::start("").await;
    let body = order(1);
    let first = s.post("/api/orders?region=eu", Some("k-1"), &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    assert!(!replayed(&first));
    assert_eq!(first.json()["call"], 1);

    let again = s.post("/api/orders?region=eu", Some("k-1"), &body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert!(replayed(&again));
    assert_eq!(again.body, first.body, "the same bytes");
    for name in ["content-type", "x-call", "set-cookie", "content-length"] {
        assert_eq!(again.headers.get(name), first.headers.get(name), "{name}");
    }
    assert_eq!(s.api.calls(), 1, "the upstream ran it once");

    // The same key in Pipevest's header, as a plain value, is the same key.
    let pipevest = {
        let mut req = post(&s.url("/api/orders?region=eu"), &s.alpha, None, &body);
        req.headers_mut()
            .insert("x-idempotency-key", "k-1".parse().unwrap());
        s.http.send(req).await
    };
    assert!(replayed(&pipevest));
    assert_eq!(pipevest.body, first.body);
    assert_eq!(s.api.calls(), 1);

    // Without a key, nothing is remembered.
    s.post("/api/orders?region=eu", None, &body).await;
    s.post("/api/orders?region=eu", None, &body).await;
    assert_eq!(s.api.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_reach_the_upstream_exactly_once() {
    let s = Arc::new(Setup::start("").await);
    let body = order(2);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let s = s.clone();
            let body = body.clone();
            tokio::spawn(async move { s.post("/api/slow?ms=300", Some("k-many"), &body).await })
        })
        .collect();
    let (mut ran, mut replays, mut in_use) = (0, 0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED if replayed(&reply) => replays += 1,
            StatusCode::CREATED => ran += 1,
            StatusCode::CONFLICT => {
                reply.problem(409, "idempotency_key_in_use");
                assert!(reply.header("retry-after").is_some());
                in_use += 1;
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert_eq!(ran, 1, "one execution ({replays} replays, {in_use} in use)");
    assert_eq!(ran + replays + in_use, 24);
    assert_eq!(s.api.calls(), 1);
}

#[tokio::test]
async fn the_same_key_for_another_request_is_refused_with_422() {
    let s = Setup::start("").await;
    s.post("/api/orders", Some("k-3"), &order(3)).await;
    for (path, body) in [
        ("/api/orders", order(4)),
        ("/api/orders?x=1", order(3)),
        ("/api/other", order(3)),
    ] {
        let reply = s.post(path, Some("k-3"), &body).await;
        reply.problem(422, "idempotency_key_reused");
    }
    assert_eq!(s.api.calls(), 1);
}

#[tokio::test]
async fn keys_are_validated_required_where_the_route_says_so_and_ignored_on_public_routes() {
    let s = Setup::start("").await;
    let missing = s.post("/strict/orders", None, &order(5)).await;
    let v = missing.problem(400, "idempotency_key_missing");
    assert!(v["detail"].as_str().unwrap().contains("idempotency-key"));
    for bad in ["\"has space\"", "\"\"", "caf\u{e9}"] {
        let mut req = post(&s.url("/api/orders"), &s.alpha, None, "{}");
        req.headers_mut().insert(
            "idempotency-key",
            http::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        );
        s.http
            .send(req)
            .await
            .problem(400, "idempotency_key_invalid");
    }
    let long = "k".repeat(256);
    s.post("/api/orders", Some(&long), "{}")
        .await
        .problem(400, "idempotency_key_invalid");
    assert_eq!(s.api.calls(), 0, "nothing invalid was forwarded");

    let ok = s.post("/strict/orders", Some("k-5"), &order(5)).await;
    assert_eq!(ok.status, StatusCode::CREATED);

    // Public routes have no client to keep records under: keys pass through, unused.
    for body in ["a", "b"] {
        let req = Request::post(s.url("/public/x"))
            .header("idempotency-key", "\"k-pub\"")
            .body(Full::from(body))
            .unwrap();
        let reply = s.http.send(req).await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert!(!replayed(&reply));
    }
    assert_eq!(s.api.calls(), 3);
}

#[tokio::test]
async fn keys_are_kept_per_client() {
    let s = Setup::start("").await;
    let beta = token(&s.http, &|p| s.url(p), BETA).await;
    let a = s.post("/api/orders", Some("shared"), &order(6)).await;
    let b = s
        .http
        .send(post(
            &s.url("/api/orders"),
            &beta,
            Some("shared"),
            &order(7),
        ))
        .await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(!replayed(&b), "beta's key is not alpha's");
    assert_eq!(s.api.calls(), 2);
    let b_again = s
        .http
        .send(post(
            &s.url("/api/orders"),
            &beta,
            Some("shared"),
            &order(7),
        ))
        .await;
    assert!(replayed(&b_again));
    assert_eq!(b_again.body, b.body);
    let a_again = s.post("/api/orders", Some("shared"), &order(6)).await;
    assert_eq!(a_again.body, a.body);
    assert_eq!(s.api.calls(), 2);
}

/// Client `acme-admin` of account `acme`, allowed to manage the account's tokens.
const ADMIN: (&str, &str) = ("acme-admin", "acme-admin-secret-2Qx");

/// A managed token of `admin`'s client for `user`: (id, value).
async fn managed(s: &Setup, admin: &str, user: &str) -> (String, String) {
    let body = serde_json::json!({"name": user, "user": user, "scopes": "read write"});
    let req = Request::post(s.url("/ws/accounts/acme/credentials/tokens"))
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Full::from(body.to_string()))
        .unwrap();
    let reply = s.http.send(req).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let v = reply.json();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn keys_are_kept_per_credential_so_users_of_one_client_never_see_each_others_records() {
    // Review finding 12: managed tokens alice and bob of one client, the same key.
    let s = Setup::start_with("", |c| {
        c.append(&format!(
            "[[clients]]\nid = {:?}\naccount = \"acme\"\nsecret_sha256 = \"{}\"\n\
             scopes = [\"level://admin\", \"read\", \"write\"]\n",
            ADMIN.0,
            hex::encode(warden::secret::hash(ADMIN.1))
        ))
    })
    .await;
    let admin = token(&s.http, &|p| s.url(p), ADMIN).await;
    let (_, alice) = managed(&s, &admin, "alice").await;
    let (_, bob) = managed(&s, &admin, "bob").await;
    let send = async |who: &str, key: &str, body: &str| {
        s.http
            .send(post(&s.url("/api/orders"), who, Some(key), body))
            .await
    };
    let a = send(&alice, "order-2024-0001", "{}").await;
    assert_eq!(
        (a.status, a.json()["call"].as_u64()),
        (StatusCode::CREATED, Some(1))
    );
    // The same request: bob's own, run for him, not alice's response.
    let b = send(&bob, "order-2024-0001", "{}").await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.text());
    assert!(!replayed(&b), "bob got alice's stored response");
    assert_eq!(b.json()["call"], 2);
    // Another request: no 422 telling bob the key is in use.
    let other = send(&bob, "order-2024-0002", "{}").await;
    assert_eq!(other.json()["call"], 3);
    let a2 = send(&alice, "order-2024-0002", "{\"x\":1}").await;
    assert_eq!(a2.status, StatusCode::CREATED, "{}", a2.text());
    assert_eq!(a2.json()["call"], 4);
    // Nor a 409 while alice's request with the key is still running.
    let slow = {
        let req = post(&s.url("/api/slow?ms=600"), &alice, Some("order-slow"), "{}");
        let http = Client::http1();
        tokio::spawn(async move { http.send(req).await })
    };
    s.api.wait_for_calls(5).await;
    let b_slow = s
        .http
        .send(post(
            &s.url("/api/slow?ms=0"),
            &bob,
            Some("order-slow"),
            "{}",
        ))
        .await;
    assert_eq!(b_slow.status, StatusCode::CREATED, "{}", b_slow.text());
    assert!(!replayed(&b_slow));
    assert_eq!(slow.await.unwrap().status, StatusCode::CREATED);
    // Each still gets their own replay.
    let a_again = send(&alice, "order-2024-0001", "{}").await;
    assert!(replayed(&a_again));
    assert_eq!(a_again.body, a.body);
    let b_again = send(&bob, "order-2024-0001", "{}").await;
    assert!(replayed(&b_again));
    assert_eq!(b_again.body, b.body);
    assert_eq!(s.api.calls(), 6);
}

#[tokio::test]
async fn a_retry_with_a_refreshed_access_token_finds_its_record() {
    // Access tokens are the client itself (minted with its secret, an hour each): a retry
    // after the token was refreshed must not run the request again.
    let s = Setup::start("").await;
    let first = s.post("/api/orders", Some("k-refresh"), &order(9)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let refreshed = token(&s.http, &|p| s.url(p), ALPHA).await;
    assert_ne!(refreshed, s.alpha);
    let retry = s
        .http
        .send(post(
            &s.url("/api/orders"),
            &refreshed,
            Some("k-refresh"),
            &order(9),
        ))
        .await;
    assert!(replayed(&retry));
    assert_eq!(retry.body, first.body);
    assert_eq!(s.api.calls(), 1);
}

// ------------------------------------------------------------------ failures and the 5xx policy

#[tokio::test]
async fn a_request_that_did_not_run_frees_its_key() {
    // Timed out: the client gets 504 and may retry at once; the retry runs again.
    let s = Setup::start_with("", |c| c.upstream("timeout = \"300ms\"")).await;
    let first = s.post("/api/slow?ms=1500", Some("k-8"), "{}").await;
    first.problem(504, "upstream_timeout");
    let retry = s.post("/api/slow?ms=1500", Some("k-8"), "{}").await;
    retry.problem(504, "upstream_timeout");
    assert_eq!(s.api.calls(), 2);

    // Unreachable: nothing is stored either.
    let dead = crate::harness::closed_port_url().await;
    let http = Client::http1();
    let proxy = Proxy::start(
        Config::new(&dead)
            .routes(ROUTES)
            .append(&client_toml(ALPHA)),
    )
    .await;
    let alpha = token(&http, &|p| proxy.url(p), ALPHA).await;
    for _ in 0..2 {
        let reply = http
            .send(post(&proxy.url("/api/orders"), &alpha, Some("k-9"), "{}"))
            .await;
        reply.problem(502, "upstream_unavailable");
    }
}

#[tokio::test]
async fn server_errors_free_the_key_by_default_and_are_replayed_when_configured() {
    let s = Setup::start("").await;
    for call in 1..=2 {
        let reply = s.post("/api/status/500", Some("k-10"), "{}").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.text(), format!("failed on call {call}"));
        assert!(!replayed(&reply));
    }
    let busy = s.post("/api/status/429", Some("k-11"), "{}").await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    s.post("/api/status/429", Some("k-11"), "{}").await;
    assert_eq!(s.api.calls(), 4, "5xx and 429 ran again");

    // A 4xx is an answer like any other: kept.
    s.post("/api/status/404", Some("k-12"), "{}").await;
    let again = s.post("/api/status/404", Some("k-12"), "{}").await;
    assert!(replayed(&again));
    assert_eq!(s.api.calls(), 5);

    let stored = Setup::start("store_server_errors = true").await;
    let first = stored.post("/api/status/500", Some("k-13"), "{}").await;
    let again = stored.post("/api/status/500", Some("k-13"), "{}").await;
    assert_eq!(again.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    assert_eq!(stored.api.calls(), 1);
}

// ------------------------------------------------------------------ bounds

#[tokio::test]
async fn a_response_too_large_to_keep_streams_whole_and_is_not_run_again() {
    let s = Setup::start("max_response_bytes = 4096").await;
    // Declared too large by its Content-Length.
    let big = s.post("/api/big?bytes=20000", Some("k-14"), "{}").await;
    assert_eq!(big.status, StatusCode::OK);
    assert_eq!(big.body.len(), 20000);
    let retry = s.post("/api/big?bytes=20000", Some("k-14"), "{}").await;
    let v = retry.problem(422, "idempotency_response_not_replayable");
    assert!(v["detail"].as_str().unwrap().contains("max_response_bytes"));

    // Growing past the cap while it streams, without a Content-Length.
    let chunked = s.post("/api/chunked?bytes=10000", Some("k-15"), "{}").await;
    assert_eq!(chunked.body.len(), 10000);
    let retry = settled(&s.http, || {
        post(
            &s.url("/api/chunked?bytes=10000"),
            &s.alpha,
            Some("k-15"),
            "{}",
        )
    })
    .await;
    retry.problem(422, "idempotency_response_not_replayable");

    // Within the cap, a streamed body is kept.
    let small = s.post("/api/chunked?bytes=3000", Some("k-16"), "{}").await;
    let again = settled(&s.http, || {
        post(
            &s.url("/api/chunked?bytes=3000"),
            &s.alpha,
            Some("k-16"),
            "{}",
        )
    })
    .await;
    assert!(replayed(&again));
    assert_eq!(again.body, small.body);
    assert_eq!(s.api.calls(), 3);
}

/// A response of known length is recorded before its head goes out: a client that has seen only
/// the head can retry at once and is answered from the record (not 409 while the rest arrives).
#[tokio::test]
async fn a_keyed_response_is_recorded_before_its_head_goes_out() {
    let s = Setup::start("").await;
    let path = "/api/halves?bytes=2000&ms=500";
    let mut conn = tokio::net::TcpStream::connect(s.proxy.addr())
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: warden\r\nauthorization: Bearer {}\r\n\
         idempotency-key: \"k-30\"\r\ncontent-length: 2\r\n\r\n{{}}",
        s.alpha
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    within(PATIENCE, "the response head", async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the head");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let retry = s.post(path, Some("k-30"), "{}").await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    assert!(replayed(&retry));
    assert_eq!(retry.body.len(), 2000);
    assert_eq!(s.api.calls(), 1);
}

/// An upstream that breaks off a body Warden was gathering: nothing has gone out, so the client
/// gets a plain 502, and the request is not run again on a retry (it did run).
#[tokio::test]
async fn a_body_the_upstream_breaks_off_is_a_502_and_not_run_again() {
    let s = Setup::start("").await;
    let path = "/api/short?bytes=2000";
    let first = s.post(path, Some("k-32"), "{}").await;
    first.problem(502, "upstream_unavailable");
    let retry = settled(&s.http, || post(&s.url(path), &s.alpha, Some("k-32"), "{}")).await;
    let v = retry.problem(422, "idempotency_response_not_replayable");
    assert!(v["detail"].as_str().unwrap().contains("broke off"), "{v}");
    assert_eq!(s.api.calls(), 1);
}

/// A response whose body is still coming when the record must be written goes out as it comes,
/// whole, and is not run again: its retry is refused as not replayable.
#[tokio::test]
async fn a_body_slower_than_the_lease_streams_whole_and_is_not_run_again() {
    // The record is due `upstream.timeout` + half of `idempotency.lease_margin` (4 s) = 2.3 s.
    let s = Setup::start_with("lease_margin = \"4s\"", |c| {
        c.upstream("timeout = \"300ms\"")
    })
    .await;
    let path = "/api/halves?bytes=3000&ms=4000";
    let started = Instant::now();
    let resp = s
        .http
        .stream(post(&s.url(path), &s.alpha, Some("k-31"), "{}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The head and first half went out at the record's deadline, before the second half came:
    // Warden stopped gathering the body then, rather than holding the response for it.
    let head_at = started.elapsed();
    let body = within(PATIENCE, "the body", resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body.len(), 3000);
    let end_at = started.elapsed();
    assert!(
        head_at + Duration::from_millis(500) < end_at,
        "head at {head_at:?}, body ended at {end_at:?}"
    );
    let retry = s.post(path, Some("k-31"), "{}").await;
    let v = retry.problem(422, "idempotency_response_not_replayable");
    assert!(
        v["detail"].as_str().unwrap().contains("still streaming"),
        "{v}"
    );
    assert_eq!(s.api.calls(), 1);
}

#[tokio::test]
async fn an_event_stream_flows_unbuffered_and_its_retry_is_refused() {
    let s = Setup::start("").await;
    let started = Instant::now();
    let resp = s
        .http
        .stream(post(&s.url("/api/sse"), &s.alpha, Some("k-17"), "{}"))
        .await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let first = within(PATIENCE, "the first event", body.frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "data: one\n\n");
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "the first event came before the stream ended"
    );
    let rest = within(PATIENCE, "the rest", body.collect()).await.unwrap();
    assert_eq!(rest.to_bytes(), "data: two\n\n");

    let retry = s.post("/api/sse", Some("k-17"), "{}").await;
    let v = retry.problem(422, "idempotency_response_not_replayable");
    assert!(v["detail"].as_str().unwrap().contains("event stream"));
    assert_eq!(s.api.calls(), 1);
}

// ------------------------------------------------------------------ durability

#[tokio::test]
async fn a_second_warden_on_the_same_store_sees_in_flight_keys_and_replays_completed_ones() {
    let api = Api::start().await;
    let dir = StoreDir::new();
    let http = Arc::new(Client::http1());
    let one = Proxy::start(config(&api, "").store(&dir)).await;
    let two = Proxy::start(config(&api, "").store(&dir)).await;
    let alpha = token(&http, &|p| one.url(p), ALPHA).await;

    let url = one.url("/api/slow?ms=800");
    let (h, t) = (http.clone(), alpha.clone());
    let first = tokio::spawn(async move { h.send(post(&url, &t, Some("k-18"), "{}")).await });
    api.wait_for_calls(1).await;
    let meanwhile = http
        .send(post(
            &two.url("/api/slow?ms=800"),
            &alpha,
            Some("k-18"),
            "{}",
        ))
        .await;
    meanwhile.problem(409, "idempotency_key_in_use");
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED);

    // The first Warden stops; a third starts on the same file and still replays.
    one.stopped(PATIENCE).await;
    drop(two);
    let three = Proxy::start(config(&api, "").store(&dir)).await;
    let later = http
        .send(post(
            &three.url("/api/slow?ms=800"),
            &alpha,
            Some("k-18"),
            "{}",
        ))
        .await;
    assert!(replayed(&later));
    assert_eq!(later.body, first.body);
    assert_eq!(api.calls(), 1);
}

#[tokio::test]
async fn stored_responses_are_sealed_at_rest_and_another_seal_key_refuses_rather_than_reruns() {
    // Review finding 17: the store held upstream bodies and Set-Cookie in plaintext.
    let Setup {
        api,
        proxy,
        http,
        alpha,
        store,
    } = Setup::start("").await;
    let body = order(11);
    let send = |proxy: &Proxy| post(&proxy.url("/api/orders"), &alpha, Some("k-seal"), &body);
    let first = http.send(send(&proxy)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("set-cookie"), Some("call=1"));
    let again = http.send(send(&proxy)).await;
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    assert_eq!(
        again.header("set-cookie"),
        Some("call=1"),
        "replayed with the response"
    );

    let db = rusqlite::Connection::open(store.db_path()).unwrap();
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = db
        .prepare("SELECT status, headers, body FROM idempotency_responses")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 1);
    let (status, headers, sealed) = &rows[0];
    assert_eq!(*status, 201);
    for blob in [headers, sealed] {
        for plain in [
            &b"call=1"[..],
            b"\"order\":11",
            b"xxxxxxxx",
            b"application/json",
        ] {
            assert!(!blob.windows(plain.len()).any(|w| w == plain));
        }
    }
    drop(db);
    let key_file = store.dir().join("warden.seal-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Another key (replaced, or lost): the record cannot be opened, so the retry is refused as
    // not replayable; it is never run again.
    proxy.stopped(PATIENCE).await;
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let proxy = Proxy::start(config(&api, "").store(&store)).await;
    let after = http.send(send(&proxy)).await;
    after.problem(422, "idempotency_response_not_replayable");
    assert_eq!(api.calls(), 1);
}

#[tokio::test]
async fn a_reservation_orphaned_by_kill_9_is_taken_over_when_its_lease_ends() {
    let api = Api::start().await;
    let dir = StoreDir::new();
    // Lease = upstream.timeout 3s + lease_margin 4s, rounded up, + 1s = 8s.
    let cfg = || {
        config(&api, "lease_margin = \"4s\"")
            .upstream("timeout = \"3s\"")
            .store(&dir)
    };
    let spawned = Spawned::start(&cfg().write_file()).await;
    let http = Arc::new(Client::http1());
    let alpha = token(&http, &|p| spawned.url(p), ALPHA).await;

    let (h, t, url) = (http.clone(), alpha.clone(), spawned.url("/api/once-slow"));
    let doomed = tokio::spawn(async move { h.try_send(post(&url, &t, Some("k-19"), "{}")).await });
    api.wait_for_calls(1).await;
    spawned.kill().await;
    assert!(
        doomed.await.unwrap().is_err(),
        "the first request died with its Warden"
    );

    let clock = Clock::default();
    let proxy = Proxy::start(cfg().clock(&clock)).await;
    let retry = || post(&proxy.url("/api/once-slow"), &alpha, Some("k-19"), "{}");
    // The first run may still be going upstream: not before the lease ends.
    let early = http.send(retry()).await;
    early.problem(409, "idempotency_key_in_use");
    clock.advance(4);
    http.send(retry())
        .await
        .problem(409, "idempotency_key_in_use");
    assert_eq!(api.calls(), 1);

    clock.advance(10);
    let taken_over = http.send(retry()).await;
    assert_eq!(
        taken_over.status,
        StatusCode::CREATED,
        "{}",
        taken_over.text()
    );
    assert!(!replayed(&taken_over));
    assert_eq!(taken_over.json()["call"], 2);
    let replay = http.send(retry()).await;
    assert!(replayed(&replay));
    assert_eq!(replay.body, taken_over.body);
    assert_eq!(api.calls(), 2);
}

#[tokio::test]
async fn records_expire_after_their_ttl_and_are_swept() {
    let api = Api::start().await;
    let dir = StoreDir::new();
    let clock = Clock::default();
    let cfg = || config(&api, "ttl = \"10m\"").store(&dir).clock(&clock);
    let proxy = Proxy::start(cfg()).await;
    let http = Client::http1();
    let alpha = token(&http, &|p| proxy.url(p), ALPHA).await;
    let send = |body: &str| http.send(post(&proxy.url("/api/orders"), &alpha, Some("k-20"), body));

    send(&order(20)).await;
    clock.advance(590);
    assert!(replayed(&send(&order(20)).await), "still within the ttl");
    clock.advance(20);
    // Expired: the key is free, even for another request.
    let fresh = send(&order(21)).await;
    assert_eq!(fresh.status, StatusCode::CREATED);
    assert!(!replayed(&fresh));
    assert_eq!(api.calls(), 2);

    // The sweeper deletes expired records, in batches, without a request.
    let settings = warden::Settings::from_toml(&cfg().to_toml()).unwrap();
    let warden = warden::Warden::with_clock(settings, clock.clone())
        .await
        .unwrap();
    assert_eq!(warden.idempotency().sweep().await.unwrap(), 0);
    clock.advance(601);
    // The newest record stays until a newer one exists (its id must never come back).
    assert_eq!(warden.idempotency().sweep().await.unwrap(), 0);
    let other = http.send(post(
        &proxy.url("/api/orders"),
        &alpha,
        Some("k-22"),
        &order(22),
    ));
    assert_eq!(other.await.status, StatusCode::CREATED);
    assert_eq!(warden.idempotency().sweep().await.unwrap(), 1);
    assert_eq!(warden.idempotency().sweep().await.unwrap(), 0);
}

// ------------------------------------------------------------------ POST /v1/auth

#[tokio::test]
async fn a_token_request_retried_with_its_key_returns_the_same_token() {
    let clock = Clock::default();
    let s = Setup::start_with("", |c| c.clock(&clock)).await;
    let auth = |body: &str, key: &str| auth_request(&s.url("/v1/auth"), body, Some(key));
    let first = s.http.send(auth(&form_body(ALPHA), "tok-1")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    let again = s.http.send(auth(&form_body(ALPHA), "tok-1")).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert!(replayed(&again));
    assert_eq!(again.body, first.body, "the same entity, the same token");
    assert_eq!(again.header("cache-control"), Some("no-store"));
    let value = first.json()["accessToken"].as_str().unwrap().to_owned();
    let used = s
        .http
        .send(post(&s.url("/api/orders"), &value, None, "{}"))
        .await;
    assert_eq!(used.status, StatusCode::CREATED);

    // The token is not in the store in clear: its record is sealed with the client's secret.
    let dir = &s.store;
    for file in ["warden.db", "warden.db-wal"] {
        let bytes = std::fs::read(dir.dir().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
            "{file} holds the token"
        );
    }

    // Another request under the same key, and a wrong secret, are refused.
    let narrower = format!("{}&scope=read", form_body(ALPHA));
    s.http
        .send(auth(&narrower, "tok-1"))
        .await
        .problem(422, "idempotency_key_reused");
    s.http
        .send(auth(&form_body((ALPHA.0, "wrong")), "tok-1"))
        .await
        .problem(401, "invalid_client");

    // After idempotency.token_ttl (10 min) the key issues a new token.
    clock.advance(601);
    let later = s.http.send(auth(&form_body(ALPHA), "tok-1")).await;
    assert_eq!(later.status, StatusCode::CREATED);
    assert!(!replayed(&later));
    assert_ne!(later.json()["accessToken"], first.json()["accessToken"]);
}

// ------------------------------------------------------------------ signed requests

#[tokio::test]
async fn a_signed_post_needs_a_key_and_its_checked_digest_stands_in_for_the_body() {
    use base64::Engine as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[21; 32]);
    let signer = ("signer", "signer-secret-3Vb");
    let keyed = format!(
        "{}[[clients.keys]]\nid = \"k1\"\nalg = \"ed25519\"\npublic_key = \"{}\"\n",
        client_toml(signer),
        base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes())
    );
    let s = Setup::start_with("", |c| c.append(&keyed)).await;
    // A keyed client must sign /v1/auth too; the OAuth token endpoint is not signature-checked.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", signer.0, signer.1));
    let oauth = Request::post(s.url("/v1/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let signer_token = s.http.send(oauth).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed = |idem: Option<&str>| {
        let url = s.url("/api/orders");
        let body = order(30);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {signer_token}").parse().unwrap(),
        );
        headers.insert("content-type", "application/json".parse().unwrap());
        if let Some(idem) = idem {
            headers.insert("idempotency-key", format!("\"{idem}\"").parse().unwrap());
        }
        let opts = warden::httpsig::SignOptions::new("k1", Clock::default().now());
        warden::httpsig::sign_request(
            "POST",
            &url.parse().unwrap(),
            &mut headers,
            body.as_bytes(),
            &opts,
            &key,
        )
        .unwrap();
        let mut req = Request::post(url).body(Full::from(body)).unwrap();
        *req.headers_mut() = headers;
        req
    };

    // Under `auto`, a signed POST must carry a key.
    let missing = s.http.send(signed(None)).await;
    missing.problem(400, "idempotency_key_missing");
    assert_eq!(s.api.calls(), 0);

    let first = s.http.send(signed(Some("s-1"))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    let again = s.http.send(signed(Some("s-1"))).await;
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    assert_eq!(s.api.calls(), 1);

    // A retry is still held to its digest: another body under the same signed headers is refused.
    let mut tampered = signed(Some("s-1"));
    *tampered.body_mut() = Full::from(order(32));
    s.http.send(tampered).await.problem(400, "digest_mismatch");
    assert_eq!(s.api.calls(), 1);

    // An unsigned POST (a client without a key) may go without one.
    let unsigned = s.post("/api/orders", None, &order(31)).await;
    assert_eq!(unsigned.status, StatusCode::CREATED);
}

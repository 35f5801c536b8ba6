//! Webhooks end to end: a real receiver on 127.0.0.1:0 that keeps what it is sent, Warden (in
//! process, or the binary) delivering to it. Every delivery is checked for its Standard
//! Webhooks signature (here, and by the independent `standardwebhooks` Python package when it
//! is installed), its payload, and its fate: retries, Retry-After, redirects, 410, dead letter,
//! replay, the address checks, two processes on one store, and `kill -9` at the moments that
//! matter.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warden::store::{Delivery, DeliveryFilter, DeliveryState, StoreOptions};
use warden::webhooks::signing::{self, Secret};

use crate::harness::{
    Client, Config, PATIENCE, Proxy, Reply, Spawned, StoreDir, Upstream, crate_path, printed_after,
    run_cli, within,
};

// ------------------------------------------------------------------ the receiver

/// How the receiver answers one request.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    /// A status with `Retry-After`.
    RetryAfter(u16, &'static str),
    /// A redirect to a path that would answer 200.
    Redirect,
    /// Holds the request this long before answering 200.
    Hold(Duration),
    /// 200 with a body that never ends.
    Endless,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: i64,
    signature: String,
    path: String,
    body: Bytes,
    at: Instant,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON payload")
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Vec<Got>,
    /// Answers for the next requests, in order; then `default`.
    plan: VecDeque<Answer>,
    default: Option<Answer>,
    /// Requests being held now, and the most ever held at once.
    held: usize,
    most_held: usize,
}

/// A webhook receiver on 127.0.0.1:0: keeps every request and answers as planned (200 unless
/// told otherwise).
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
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
                        async move { Ok::<_, Infallible>(receive(req, st).await) }
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

    fn plan(&self, answers: &[Answer]) {
        self.state
            .lock()
            .unwrap()
            .plan
            .extend(answers.iter().cloned());
    }

    fn answer_always(&self, answer: Answer) {
        self.state.lock().unwrap().default = Some(answer);
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    /// Waits (at most `limit`) until `n` requests arrived; returns them.
    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Got> {
        within(limit, &format!("{n} webhook requests"), async {
            loop {
                let got = self.got();
                if got.len() >= n {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    /// Waits (at most `limit`) until what came satisfies `done`; returns it.
    async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&[Got]) -> bool,
    ) -> Vec<Got> {
        within(limit, what, async {
            loop {
                let got = self.got();
                if done(&got) {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    /// Waits until requests stop coming for `quiet`, and returns what came.
    async fn settle(&self, quiet: Duration) -> Vec<Got> {
        let mut seen = self.got().len();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.got().len();
            if now == seen {
                return self.got();
            }
            seen = now;
        }
    }
}

type ReplyBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn receive(
    req: Request<hyper::body::Incoming>,
    st: Arc<Mutex<ReceiverState>>,
) -> Response<ReplyBody> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp").parse().unwrap_or(0),
        header("webhook-signature"),
    );
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let answer = {
        let mut s = st.lock().unwrap();
        s.got.push(Got {
            id,
            timestamp,
            signature,
            path: path.clone(),
            body,
            at: Instant::now(),
        });
        s.plan
            .pop_front()
            .or_else(|| s.default.clone())
            .unwrap_or(Answer::Status(200))
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(b"thanks")).boxed());
    match answer {
        Answer::Status(code) => *resp.status_mut() = StatusCode::from_u16(code).unwrap(),
        Answer::RetryAfter(code, after) => {
            *resp.status_mut() = StatusCode::from_u16(code).unwrap();
            resp.headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        Answer::Redirect => {
            *resp.status_mut() = StatusCode::FOUND;
            resp.headers_mut()
                .insert("location", "/elsewhere".parse().unwrap());
        }
        Answer::Hold(d) => {
            {
                let mut s = st.lock().unwrap();
                s.held += 1;
                s.most_held = s.most_held.max(s.held);
            }
            tokio::time::sleep(d).await;
            st.lock().unwrap().held -= 1;
        }
        Answer::Endless => {
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(&[b'x'; 16384])))
            });
            *resp.body_mut() = http_body_util::StreamBody::new(chunks).boxed();
        }
    }
    resp
}

/// Every request must carry a valid signature by `secret` over its id, timestamp and body,
/// and its payload's id must be its `webhook-id`.
fn assert_signed(secret: &Secret, got: &[Got]) {
    let now = warden::clock::Clock::default().now();
    for g in got {
        assert!(
            signing::verify(secret, &g.id, g.timestamp, &g.signature, &g.body, now, 300),
            "bad signature on {g:?}"
        );
        assert_eq!(
            g.json()["id"],
            g.id.as_str(),
            "payload id is the webhook-id"
        );
        assert!(g.id.starts_with("evt_"), "{}", g.id);
    }
}

/// Verifies the deliveries with the `standardwebhooks` Python package (the spec's reference
/// library), or says plainly that this check was skipped and why.
async fn python_verifies(secret: &Secret, got: &[Got]) {
    let python = std::env::var("WEBHOOK_INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());
    let cases: Vec<Value> = got
        .iter()
        .map(|g| {
            json!({
                "secret": secret.expose(),
                "headers": {
                    "webhook-id": g.id,
                    "webhook-timestamp": g.timestamp.to_string(),
                    "webhook-signature": g.signature,
                },
                "body": String::from_utf8(g.body.to_vec()).unwrap(),
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deliveries.json");
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = crate_path("tests/interop/standard_webhooks_verify.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&file)
        .output()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: Standard Webhooks interop check: cannot run {python}: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        eprintln!(
            "skipped: Standard Webhooks interop check: {} (set WEBHOOK_INTEROP_PYTHON to a \
             python with `pip install standardwebhooks`)",
            stdout.trim()
        );
        return;
    }
    assert!(
        out.status.success(),
        "standardwebhooks refused Warden's deliveries: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("verified {}", got.len()));
    eprintln!("standardwebhooks verified {} deliveries", got.len());
}

// ------------------------------------------------------------------ Warden

const ROUTES: &str = "[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\n";

/// (id, secret, account, scopes)
type ClientDef = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const ADMIN: ClientDef = (
    "acme-admin",
    "acme-admin-secret-1",
    "acme",
    &["level://admin", "read"],
);
const READER: ClientDef = ("acme-reader", "acme-reader-secret-2", "acme", &["read"]);
const OTHER: ClientDef = (
    "globex-admin",
    "globex-admin-secret-3",
    "globex",
    &["level://admin", "read"],
);

const HOOKS: &str = "/ws/accounts/acme/webhooks";

fn client_toml((id, secret, account, scopes): ClientDef) -> String {
    format!(
        "[[clients]]\nid = {id:?}\naccount = {account:?}\nsecret_sha256 = \"{}\"\nscopes = {scopes:?}\n",
        hex::encode(warden::secret::hash(secret))
    )
}

/// Deliveries to 127.0.0.1 over http (local development), quick polls, a short schedule.
const LOCAL_DELIVERY: &str = "[webhook_delivery]\nallow_http = true\nallow_private_targets = true\n\
poll_interval = \"100ms\"\nretry_schedule = [\"1s\", \"1s\", \"1s\"]\n";

fn config(up: &Upstream, delivery: &str) -> Config {
    Config::new(&up.url())
        .routes(ROUTES)
        .append(&[ADMIN, READER, OTHER].map(client_toml).concat())
        .append(delivery)
}

struct Setup {
    _up: Upstream,
    proxy: Proxy,
    http: Client,
    store: StoreDir,
    config_file: std::path::PathBuf,
}

async fn setup(delivery: &str) -> Setup {
    let up = Upstream::start().await;
    let cfg = config(&up, delivery);
    let store = cfg.store_dir();
    let config_file = cfg.write_file();
    let proxy = Proxy::start(cfg).await;
    Setup {
        _up: up,
        proxy,
        http: Client::http1(),
        store,
        config_file,
    }
}

fn request(method: Method, url: &str, token: &str, body: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::from(body.unwrap_or("").to_owned())).unwrap()
}

/// An access token for `client` from `POST /v1/oauth/token`.
async fn oauth_token(http: &Client, base: &str, (id, secret, ..): ClientDef) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let req = Request::post(format!("{base}/v1/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let reply = http.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

impl Setup {
    fn url(&self, path: &str) -> String {
        self.proxy.url(path)
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<&str>) -> Reply {
        self.http
            .send(request(method, &self.url(path), token, body))
            .await
    }

    /// `POST {HOOKS}` for `url` and `events`, which must succeed: (id, secret).
    async fn subscribe(&self, admin: &str, url: &str, events: Value) -> (String, Secret) {
        let body = json!({"url": url, "events": events, "description": "test receiver"});
        let reply = self
            .call(Method::POST, HOOKS, admin, Some(&body.to_string()))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let v = reply.json();
        let id = v["id"].as_str().unwrap().to_owned();
        assert_eq!(
            reply.header("location"),
            Some(format!("{HOOKS}/{id}").as_str())
        );
        let secret = Secret::parse(v["secret"].as_str().unwrap()).unwrap();
        (id, secret)
    }

    async fn deliveries(&self) -> Vec<Delivery> {
        all_deliveries(open_store(&self.store).await.as_ref()).await
    }
}

async fn open_store(store: &StoreDir) -> std::sync::Arc<dyn warden::store::Store> {
    warden::store::open(&store.url(), StoreOptions::default())
        .await
        .unwrap()
}

/// Every delivery in the store, oldest first.
async fn all_deliveries(s: &dyn warden::store::Store) -> Vec<Delivery> {
    let mut all = s
        .list_deliveries(DeliveryFilter {
            limit: 10_000,
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    all.reverse();
    all
}

/// Waits until the store's deliveries satisfy `done`.
async fn wait_deliveries(
    store: &StoreDir,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let s = open_store(store).await;
    within(limit, what, async {
        loop {
            let all = all_deliveries(s.as_ref()).await;
            if done(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

fn types(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| g.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ------------------------------------------------------------------ the lifecycle

/// A subscription made through the API receives every event of its account, for every kind
/// of token, signed with its secret, each once, with the right payload and never a secret.
#[tokio::test]
async fn every_event_of_the_account_arrives_signed_with_its_payload() {
    let rx = Receiver::start().await;
    let s = setup(LOCAL_DELIVERY).await;
    let base = s.url("");
    let admin = oauth_token(&s.http, &base, ADMIN).await;
    let (hook, secret) = s.subscribe(&admin, &rx.url("/hook"), json!(["*"])).await;
    // Another account's subscription sees none of acme's events.
    let other_rx = Receiver::start().await;
    let globex = oauth_token(&s.http, &base, OTHER).await;
    let body = json!({"url": other_rx.url("/globex"), "events": "AUTH.*"}).to_string();
    let reply = s
        .http
        .send(request(
            Method::POST,
            &s.url("/ws/accounts/globex/webhooks"),
            &globex,
            Some(&body),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());

    // Access tokens: /v1/oauth/token, then /v1/auth, revoked with DELETE /v1/auth.
    let access = oauth_token(&s.http, &base, ADMIN).await;
    let issued = s
        .http
        .send(
            Request::post(s.url("/v1/auth"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::from(format!(
                    "clientId={}&clientSecret={}",
                    ADMIN.0, ADMIN.1
                )))
                .unwrap(),
        )
        .await;
    assert!(issued.status.is_success(), "{}", issued.text());
    let auth_id = issued.json()["accessTokenId"].as_str().unwrap().to_owned();
    let revoked = s
        .call(
            Method::DELETE,
            &format!("/v1/auth?accessTokenId={auth_id}"),
            &access,
            None,
        )
        .await;
    assert!(revoked.status.is_success(), "{}", revoked.text());

    // A managed token through its whole life.
    let tokens = "/ws/accounts/acme/credentials/tokens";
    let made = s
        .call(
            Method::POST,
            tokens,
            &admin,
            Some(r#"{"name":"etl","scopes":"read"}"#),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let mt = made.json()["id"].as_str().unwrap().to_owned();
    let mt_value = made.json()["token"].as_str().unwrap().to_owned();
    for (op, body) in [
        ("disable", Some(r#"{"reason":"rotating"}"#)),
        ("disable", None),
        ("enable", None),
        ("rename", Some(r#"{"name":"etl nightly"}"#)),
    ] {
        let r = s
            .call(Method::PUT, &format!("{tokens}/{mt}/{op}"), &admin, body)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{op}: {}", r.text());
    }
    let gone = s
        .call(Method::DELETE, &format!("{tokens}/{mt}"), &admin, None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);

    // An API key, revoked (and so replaced), and a client's secret rotated: from the CLI.
    let created = run_cli(
        &s.config_file,
        &[
            "client",
            "create",
            "acme-batch",
            "--account",
            "acme",
            "--scope",
            "read",
        ],
    )
    .await;
    assert!(created.contains("acme-batch"));
    let key = run_cli(
        &s.config_file,
        &[
            "api-key",
            "create",
            "--client",
            "acme-batch",
            "--name",
            "nightly",
        ],
    )
    .await;
    let key_id = printed_after(&key, "api key created:").to_owned();
    run_cli(&s.config_file, &["api-key", "revoke", &key_id]).await;
    run_cli(&s.config_file, &["client", "rotate-secret", "acme-batch"]).await;

    let want = [
        "AUTH.CREATED",   // oauth token
        "AUTH.CREATED",   // /v1/auth
        "AUTH.DELETED",   // DELETE /v1/auth
        "AUTH.CREATED",   // managed
        "TOKEN.DISABLED", // the second disable changes nothing: no event
        "TOKEN.ENABLED",
        "TOKEN.RENAMED",
        "AUTH.DELETED", // managed deleted
        "AUTH.CREATED", // api key
        "AUTH.DELETED", // api key revoked…
        "AUTH.CREATED", // …and replaced
        "CLIENT.SECRET_ROTATED",
    ];
    rx.wait_for(want.len(), PATIENCE).await;
    let got = rx.settle(Duration::from_millis(700)).await;
    assert_eq!(got.len(), want.len(), "each event once: {:?}", types(&got));
    let mut seen = types(&got);
    seen.sort();
    let mut expected: Vec<String> = want.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_signed(&secret, &got);
    assert!(got.iter().all(|g| g.path == "/hook"));
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "one webhook-id per event");
    for g in &got {
        let text = String::from_utf8_lossy(&g.body);
        assert!(!text.contains("wdn_"), "a token value or secret in {text}");
        assert!(!text.contains(&mt_value));
        let p = g.json();
        assert_eq!(p["account"], "acme", "{p}");
        assert!(p["timestamp"].as_str().unwrap().ends_with('Z'), "{p}");
    }
    let by_type = |t: &str| -> Vec<Value> {
        got.iter()
            .map(Got::json)
            .filter(|p| p["type"] == t)
            .collect()
    };
    let kinds: BTreeMap<String, usize> =
        by_type("AUTH.CREATED")
            .iter()
            .fold(BTreeMap::new(), |mut m, p| {
                *m.entry(p["data"]["kind"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                m
            });
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("access".to_owned(), 2),
            ("api_key".to_owned(), 2),
            ("managed".to_owned(), 1)
        ])
    );
    let deleted = by_type("AUTH.DELETED");
    let reasons: Vec<(&str, &str)> = deleted
        .iter()
        .map(|p| {
            (
                p["data"]["kind"].as_str().unwrap(),
                p["data"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(reasons.contains(&("access", "revoked")), "{reasons:?}");
    assert!(reasons.contains(&("managed", "deleted")), "{reasons:?}");
    assert!(reasons.contains(&("api_key", "replaced")), "{reasons:?}");
    let revoked_auth = deleted
        .iter()
        .find(|p| p["data"]["reason"] == "revoked")
        .unwrap();
    assert_eq!(revoked_auth["data"]["tokenId"], auth_id.as_str());
    assert_eq!(revoked_auth["data"]["clientId"], ADMIN.0);
    let disabled = &by_type("TOKEN.DISABLED")[0];
    assert_eq!(
        (&disabled["data"]["tokenId"], &disabled["data"]["reason"]),
        (&json!(mt), &json!("rotating"))
    );
    let renamed = &by_type("TOKEN.RENAMED")[0];
    assert_eq!(
        (&renamed["data"]["name"], &renamed["data"]["previousName"]),
        (&json!("etl nightly"), &json!("etl"))
    );
    let rotated = &by_type("CLIENT.SECRET_ROTATED")[0];
    assert_eq!(rotated["data"]["clientId"], "acme-batch");
    assert!(rotated["data"]["previousSecretsExpireAt"].is_i64());

    // Only the globex admin's own token event reached globex's receiver.
    assert!(
        other_rx
            .got()
            .iter()
            .all(|g| g.json()["account"] == "globex"),
        "another account's events leaked"
    );
    let delivered = s.deliveries().await;
    assert!(
        delivered
            .iter()
            .filter(|d| d.subscription_id == hook)
            .all(|d| d.state == DeliveryState::Delivered && d.attempts == 1),
        "{delivered:?}"
    );
    python_verifies(&secret, &got).await;
}

// ------------------------------------------------------------------ the subscription API

#[tokio::test]
async fn subscriptions_are_listed_disabled_rotated_and_deleted_by_their_account_only() {
    let rx = Receiver::start().await;
    let s = setup(&format!(
        "{LOCAL_DELIVERY}max_subscriptions_per_account = 2\n"
    ))
    .await;
    let base = s.url("");
    let admin = oauth_token(&s.http, &base, ADMIN).await;
    let (id, secret) = s
        .subscribe(&admin, &rx.url("/a"), json!("AUTH.* TOKEN.DISABLED"))
        .await;
    assert!(id.starts_with("wh_") && id.len() == 35, "{id}");

    let list = s.call(Method::GET, HOOKS, &admin, None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        !list.text().contains(&secret.expose()),
        "a secret is shown once"
    );
    let items = list.json()["webhooks"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["events"], json!(["AUTH.*", "TOKEN.DISABLED"]));
    assert_eq!(items[0]["description"], "test receiver");
    let one = s
        .call(Method::GET, &format!("{HOOKS}/{id}"), &admin, None)
        .await;
    assert_eq!(one.json()["url"], rx.url("/a").as_str());
    assert!(one.json().get("secret").is_none());

    // Other accounts, and callers without the admin scope, see nothing.
    let globex = oauth_token(&s.http, &base, OTHER).await;
    s.call(Method::GET, &format!("{HOOKS}/{id}"), &globex, None)
        .await
        .problem(404, "not_found");
    s.call(
        Method::GET,
        &format!("/ws/accounts/globex/webhooks/{id}"),
        &globex,
        None,
    )
    .await
    .problem(404, "not_found");
    let reader = oauth_token(&s.http, &base, READER).await;
    // Its event (acme's) reaches /a before anything below changes the subscription.
    rx.wait_until(PATIENCE, "the reader's token event at /a", |got| {
        got.iter().any(|g| g.path == "/a")
    })
    .await;
    s.call(Method::GET, HOOKS, &reader, None)
        .await
        .problem(403, "insufficient_scope");
    s.call(Method::GET, HOOKS, "wdn_at_nonsense", None)
        .await
        .problem(401, "invalid_token");
    s.call(Method::GET, &format!("{HOOKS}/nope"), &admin, None)
        .await
        .problem(400, "malformed_webhook_id");
    s.call(Method::PATCH, HOOKS, &admin, None)
        .await
        .problem(405, "method_not_allowed");

    // Bad requests.
    for (body, code) in [
        (
            json!({"url": rx.url("/b"), "events": ["AUTH.CREATE"]}),
            "invalid_field",
        ),
        (json!({"url": rx.url("/b"), "events": []}), "invalid_field"),
        (
            json!({"url": rx.url("/b"), "events": "*", "secret": "whsec_x"}),
            "invalid_json",
        ),
        (
            json!({"url": "ftp://a.example/", "events": "*"}),
            "webhook_url_refused",
        ),
    ] {
        let reply = s
            .call(Method::POST, HOOKS, &admin, Some(&body.to_string()))
            .await;
        let status = if code == "webhook_url_refused" {
            422
        } else {
            400
        };
        reply.problem(status, code);
    }
    // The per-account limit.
    s.subscribe(&admin, &rx.url("/c"), json!("*")).await;
    let third = json!({"url": rx.url("/d"), "events": "*"}).to_string();
    s.call(Method::POST, HOOKS, &admin, Some(&third))
        .await
        .problem(409, "webhook_limit_reached");

    // Disabled: shown with its reason, and no delivery while it is.
    let off = s
        .call(
            Method::PUT,
            &format!("{HOOKS}/{id}/disable"),
            &admin,
            Some(r#"{"reason":"maintenance"}"#),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text());
    assert_eq!(
        (&off.json()["enabled"], &off.json()["disabledReason"]),
        (&json!(false), &json!("maintenance"))
    );
    oauth_token(&s.http, &base, ADMIN).await;
    let on = s
        .call(Method::PUT, &format!("{HOOKS}/{id}/enable"), &admin, None)
        .await;
    assert_eq!(on.json()["enabled"], true);

    // Rotation: a new secret, and for the overlap the old one signs too.
    let rotated = s
        .call(
            Method::POST,
            &format!("{HOOKS}/{id}/rotate-secret"),
            &admin,
            None,
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let new_secret = Secret::parse(rotated.json()["secret"].as_str().unwrap()).unwrap();
    assert_ne!(new_secret, secret);
    oauth_token(&s.http, &base, ADMIN).await;
    rx.wait_until(PATIENCE, "two deliveries to /a and to /c", |got| {
        let at = |p: &str| got.iter().filter(|g| g.path == p).count();
        at("/a") >= 2 && at("/c") >= 2
    })
    .await;
    let got = rx.settle(Duration::from_millis(700)).await;
    // /a got the reader's token (before it was disabled) and the last one (after the
    // rotation), never the one of its disabled time, which /c got.
    let at_a: Vec<Got> = got.iter().filter(|g| g.path == "/a").cloned().collect();
    let at_c: Vec<Got> = got.iter().filter(|g| g.path == "/c").cloned().collect();
    assert_eq!((at_a.len(), at_c.len()), (2, 2), "{:?}", types(&got));
    assert!(
        at_a.iter().all(|g| g.id != at_c[0].id),
        "sent while disabled"
    );
    assert_eq!(at_a[1].id, at_c[1].id);
    assert_eq!(at_a[0].signature.split(' ').count(), 1);
    assert_eq!(at_a[1].signature.split(' ').count(), 2, "both secrets sign");
    assert_signed(&secret, &at_a);
    assert_signed(&new_secret, &at_a[1..]);
    assert!(!signing::verify(
        &new_secret,
        &at_a[0].id,
        at_a[0].timestamp,
        &at_a[0].signature,
        &at_a[0].body,
        at_a[0].timestamp,
        300
    ));

    let del = s
        .call(Method::DELETE, &format!("{HOOKS}/{id}"), &admin, None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    s.call(Method::GET, &format!("{HOOKS}/{id}"), &admin, None)
        .await
        .problem(404, "not_found");
}

/// Without `allow_private_targets`, a URL that leads inside Warden's network is refused when
/// registered (after DNS resolution), in every spelling.
#[tokio::test]
async fn urls_that_lead_inside_the_network_are_refused() {
    let s = setup("[webhook_delivery]\nallow_http = true\n").await;
    let admin = oauth_token(&s.http, &s.url(""), ADMIN).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0:9/",
        "http://[64:ff9b::7f00:1]/",
    ] {
        let body = json!({"url": url, "events": "*"}).to_string();
        let reply = s.call(Method::POST, HOOKS, &admin, Some(&body)).await;
        let p = reply.problem(422, "webhook_url_refused");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("public addresses only"),
            "{url}: {p}"
        );
    }
    let https_only = setup("").await;
    let admin = oauth_token(&https_only.http, &https_only.url(""), ADMIN).await;
    let body = json!({"url": "http://hooks.example/", "events": "*"}).to_string();
    let p = https_only
        .call(Method::POST, HOOKS, &admin, Some(&body))
        .await
        .problem(422, "webhook_url_refused");
    assert!(p["detail"].as_str().unwrap().contains("https"), "{p}");
}

/// The check is made again at every attempt: a subscription registered while private targets
/// were allowed gets nothing once they are not (as if its name now resolved inside).
#[tokio::test]
async fn the_address_is_checked_again_at_every_attempt() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let store = StoreDir::new();
    let (hook, _) = {
        let cfg = config(&up, LOCAL_DELIVERY).store(&store);
        let file = cfg.write_file();
        let created = run_cli(
            &file,
            &[
                "webhook",
                "create",
                "--account",
                "acme",
                "--url",
                &rx.url("/in"),
                "--event",
                "AUTH.*",
            ],
        )
        .await;
        (
            printed_after(&created, "subscription created:").to_owned(),
            file,
        )
    };
    let strict = config(
        &up,
        "[webhook_delivery]\nallow_http = true\npoll_interval = \"100ms\"\n",
    )
    .store(&store);
    let proxy = Proxy::start(strict).await;
    let http = Client::http1();
    oauth_token(&http, &proxy.url(""), ADMIN).await;
    let all = wait_deliveries(&store, PATIENCE, "an attempt", |d| {
        d.iter().any(|d| d.attempts >= 1 && d.last_error.is_some())
    })
    .await;
    let d = all.iter().find(|d| d.subscription_id == hook).unwrap();
    assert_eq!(d.state, DeliveryState::Pending);
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("public addresses only"),
        "{d:?}"
    );
    assert!(rx.got().is_empty(), "nothing reached the receiver");
}

// ------------------------------------------------------------------ failures and retries

/// A receiver that fails, redirects and asks for time gets the same event again, with the same
/// id, until it answers 2xx; its Retry-After is honoured.
#[tokio::test]
async fn a_failing_receiver_gets_the_event_again_until_it_takes_it() {
    let rx = Receiver::start().await;
    rx.plan(&[
        Answer::Status(500),
        Answer::Redirect,
        Answer::RetryAfter(503, "3"),
    ]);
    let s = setup(LOCAL_DELIVERY).await;
    let admin = oauth_token(&s.http, &s.url(""), ADMIN).await;
    let (hook, secret) = s
        .subscribe(&admin, &rx.url("/hook"), json!("AUTH.CREATED"))
        .await;
    oauth_token(&s.http, &s.url(""), ADMIN).await;
    let got = rx.wait_for(4, Duration::from_secs(30)).await;
    assert!(
        got.iter().all(|g| g.id == got[0].id),
        "one event, one webhook-id"
    );
    assert!(
        got.iter().all(|g| g.path == "/hook"),
        "the redirect was not followed"
    );
    assert!(
        got[3].at.duration_since(got[2].at) >= Duration::from_secs(2),
        "Retry-After: 3 was honoured over the 1s schedule"
    );
    assert_signed(&secret, &got);
    let all = wait_deliveries(&s.store, PATIENCE, "delivered", |d| {
        d.iter().any(|d| d.state == DeliveryState::Delivered)
    })
    .await;
    let d = all.iter().find(|d| d.subscription_id == hook).unwrap();
    assert_eq!((d.attempts, d.last_status), (4, Some(200)));
    assert_eq!(rx.settle(Duration::from_millis(1500)).await.len(), 4);
    python_verifies(&secret, &got).await;
}

/// A receiver slower than `webhook_delivery.timeout` has failed that attempt and gets the event
/// again; one whose body never ends is read up to `max_response_bytes`, and its 200 counts.
#[tokio::test]
async fn a_slow_receiver_times_out_and_an_endless_body_is_cut_short() {
    let slow = Receiver::start().await;
    slow.plan(&[Answer::Hold(Duration::from_secs(4))]);
    let endless = Receiver::start().await;
    endless.answer_always(Answer::Endless);
    let s = setup(&format!(
        "{LOCAL_DELIVERY}timeout = \"1s\"\nlease = \"6s\"\nmax_response_bytes = 65536\n"
    ))
    .await;
    let admin = oauth_token(&s.http, &s.url(""), ADMIN).await;
    let (slow_hook, _) = s.subscribe(&admin, &slow.url("/slow"), json!("*")).await;
    let (endless_hook, _) = s
        .subscribe(&admin, &endless.url("/endless"), json!("*"))
        .await;
    oauth_token(&s.http, &s.url(""), ADMIN).await;
    let first = wait_deliveries(&s.store, PATIENCE, "the slow attempt failed", |d| {
        d.iter()
            .any(|d| d.subscription_id == slow_hook && d.last_error.is_some())
    })
    .await;
    let d = first
        .iter()
        .find(|d| d.subscription_id == slow_hook)
        .unwrap();
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("no answer within 1s"),
        "{d:?}"
    );
    let all = wait_deliveries(&s.store, PATIENCE, "both delivered", |d| {
        d.iter().all(|d| d.state == DeliveryState::Delivered)
    })
    .await;
    let by = |hook: &str| {
        all.iter()
            .find(|d| d.subscription_id == hook)
            .unwrap()
            .attempts
    };
    assert_eq!(
        by(&slow_hook),
        2,
        "the timed-out attempt, then the one that got through"
    );
    assert_eq!(
        by(&endless_hook),
        1,
        "the endless body did not hold the attempt"
    );
    let got = slow.wait_for(2, PATIENCE).await;
    assert_eq!(got[0].id, got[1].id);
}

/// One process has at most `webhook_delivery.max_concurrent_deliveries` attempts in flight.
#[tokio::test]
async fn at_most_max_concurrent_deliveries_are_in_flight() {
    let rx = Receiver::start().await;
    rx.answer_always(Answer::Hold(Duration::from_millis(400)));
    let s = setup(&format!("{LOCAL_DELIVERY}max_concurrent_deliveries = 2\n")).await;
    let admin = oauth_token(&s.http, &s.url(""), ADMIN).await;
    s.subscribe(&admin, &rx.url("/hook"), json!("*")).await;
    for _ in 0..6 {
        oauth_token(&s.http, &s.url(""), ADMIN).await;
    }
    rx.wait_for(6, PATIENCE).await;
    wait_deliveries(&s.store, PATIENCE, "all delivered", |d| {
        d.len() == 6 && d.iter().all(|d| d.state == DeliveryState::Delivered)
    })
    .await;
    let most = rx.state.lock().unwrap().most_held;
    assert!((1..=2).contains(&most), "{most} requests in flight at once");
}

/// A backlog drains at the receiver's pace: a finished attempt frees its slot for the next due
/// delivery at once, not at the next poll.
#[tokio::test]
async fn a_backlog_drains_without_waiting_for_the_next_poll() {
    let rx = Receiver::start().await;
    let s = setup(
        "[webhook_delivery]\nallow_http = true\nallow_private_targets = true\n\
         poll_interval = \"4s\"\nmax_concurrent_deliveries = 1\n",
    )
    .await;
    let admin = oauth_token(&s.http, &s.url(""), ADMIN).await;
    s.subscribe(&admin, &rx.url("/hook"), json!("*")).await;
    for _ in 0..5 {
        oauth_token(&s.http, &s.url(""), ADMIN).await;
    }
    let got = rx.wait_for(5, Duration::from_secs(20)).await;
    let spread = got[4].at.duration_since(got[0].at);
    assert!(
        spread < Duration::from_secs(3),
        "one delivery a poll interval: {spread:?}"
    );
}

/// After the last attempt a delivery is dead; `warden webhook replay` sends it again, by id
/// or all failed since a time, and the receiver that recovered takes it.
#[tokio::test]
async fn a_dead_delivery_is_replayed() {
    let rx = Receiver::start().await;
    rx.answer_always(Answer::Status(500));
    let s = setup(
        "[webhook_delivery]\nallow_http = true\nallow_private_targets = true\n\
         poll_interval = \"100ms\"\nretry_schedule = [\"1s\"]\n",
    )
    .await;
    let admin = oauth_token(&s.http, &s.url(""), ADMIN).await;
    let (hook, secret) = s.subscribe(&admin, &rx.url("/hook"), json!("*")).await;
    oauth_token(&s.http, &s.url(""), ADMIN).await;
    oauth_token(&s.http, &s.url(""), ADMIN).await;
    let dead = wait_deliveries(&s.store, Duration::from_secs(20), "two dead", |d| {
        d.iter().filter(|d| d.state == DeliveryState::Dead).count() == 2
    })
    .await;
    assert!(
        dead.iter()
            .all(|d| d.attempts == 2 && d.last_status == Some(500))
    );
    assert_eq!(rx.settle(Duration::from_millis(1500)).await.len(), 4);
    let listed = run_cli(
        &s.config_file,
        &[
            "webhook",
            "deliveries",
            "--state",
            "dead",
            "--subscription",
            &hook,
        ],
    )
    .await;
    assert_eq!(
        listed.lines().filter(|l| l.contains(" dead ")).count(),
        2,
        "{listed}"
    );

    rx.answer_always(Answer::Status(204));
    let first = dead[0].id.to_string();
    let out = run_cli(&s.config_file, &["webhook", "replay", &first]).await;
    assert!(out.contains("sent again"), "{out}");
    let after = wait_deliveries(&s.store, PATIENCE, "one replayed", |d| {
        d.iter().any(|d| d.state == DeliveryState::Delivered)
    })
    .await;
    assert_eq!(after[0].state, DeliveryState::Delivered);
    assert_eq!(after[0].attempts, 1, "a replay counts its attempts afresh");
    let out = run_cli(
        &s.config_file,
        &[
            "webhook",
            "replay",
            "--failed-since",
            "1h",
            "--subscription",
            &hook,
        ],
    )
    .await;
    assert!(out.starts_with("1 dead"), "{out}");
    wait_deliveries(&s.store, PATIENCE, "all replayed", |d| {
        d.iter().all(|d| d.state == DeliveryState::Delivered)
    })
    .await;
    let got = rx.settle(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 6);
    assert_eq!(
        got[4].id, dead[0].event_id,
        "the same webhook-id when replayed"
    );
    assert_signed(&secret, &got);
}

/// 410 Gone disables the subscription; its deliveries wait, and go out once it is enabled.
#[tokio::test]
async fn gone_disables_the_subscription_until_it_is_enabled() {
    let rx = Receiver::start().await;
    rx.plan(&[Answer::Status(410)]);
    let s = setup(LOCAL_DELIVERY).await;
    let admin = oauth_token(&s.http, &s.url(""), ADMIN).await;
    let (hook, _) = s.subscribe(&admin, &rx.url("/hook"), json!("*")).await;
    oauth_token(&s.http, &s.url(""), ADMIN).await;
    rx.wait_for(1, PATIENCE).await;
    let shown = within(PATIENCE, "the subscription disabled", async {
        loop {
            let v = s
                .call(Method::GET, &format!("{HOOKS}/{hook}"), &admin, None)
                .await
                .json();
            if v["enabled"] == false {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        shown["disabledReason"].as_str().unwrap().contains("410"),
        "{shown}"
    );
    oauth_token(&s.http, &s.url(""), ADMIN).await;
    assert_eq!(rx.settle(Duration::from_millis(2500)).await.len(), 1);
    let on = s
        .call(Method::PUT, &format!("{HOOKS}/{hook}/enable"), &admin, None)
        .await;
    assert_eq!(on.status, StatusCode::OK);
    let got = rx.wait_for(2, PATIENCE).await;
    assert_eq!(
        got[1].id, got[0].id,
        "the waiting delivery, not the event of the disabled time"
    );
    assert_eq!(rx.settle(Duration::from_millis(1500)).await.len(), 2);
}

// ------------------------------------------------------------------ processes

/// A config file for the binary with an operator subscription to `rx`, its secret in a file.
fn binary_config(
    store: &StoreDir,
    up: &Upstream,
    rx: &Receiver,
    delivery: &str,
) -> (std::path::PathBuf, Secret) {
    let secret = Secret::generate();
    let secret_file = store.dir().join("hook.secret");
    std::fs::write(&secret_file, format!("{}\n", secret.expose())).unwrap();
    let cfg = config(up, delivery).store(store).append(&format!(
        "[[webhooks]]\nid = \"audit\"\nurl = {:?}\nevents = [\"AUTH.*\"]\nsecret_file = {:?}\n",
        rx.url("/audit"),
        secret_file.display().to_string()
    ));
    (cfg.write_file(), secret)
}

/// Two Wardens on one store share the deliveries: each event reaches the receiver once.
#[tokio::test]
async fn two_processes_on_one_store_send_each_delivery_once() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let store = StoreDir::new();
    let (file, secret) = binary_config(
        &store,
        &up,
        &rx,
        "[webhook_delivery]\nallow_http = true\npoll_interval = \"50ms\"\n\
         max_concurrent_deliveries = 4\n",
    );
    let a = Spawned::start(&file).await;
    let b = Spawned::start(&file).await;
    let http = Client::http1();
    const N: usize = 30;
    for i in 0..N {
        let w = if i % 2 == 0 { &a } else { &b };
        oauth_token(&http, &w.url(""), ADMIN).await;
    }
    rx.wait_for(N, Duration::from_secs(30)).await;
    let got = rx.settle(Duration::from_millis(1500)).await;
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for g in &got {
        *per_id.entry(g.id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), N, "every event arrived");
    assert!(
        per_id.values().all(|&n| n == 1),
        "an event was sent twice: {per_id:?}"
    );
    assert_signed(&secret, &got);
    python_verifies(&secret, &got).await;
    a.kill().await;
    b.kill().await;
}

/// `kill -9` right after a change: its event was committed with it, and the next Warden on
/// the store delivers it.
#[tokio::test]
async fn an_event_committed_before_a_kill_is_delivered_after_the_restart() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let store = StoreDir::new();
    // The first process looks at the outbox only when it starts: the event waits in the store.
    let (file, _) = binary_config(
        &store,
        &up,
        &rx,
        "[webhook_delivery]\nallow_http = true\npoll_interval = \"1h\"\n",
    );
    let a = Spawned::start(&file).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = Client::http1();
    oauth_token(&http, &a.url(""), ADMIN).await;
    a.kill().await;
    assert!(rx.got().is_empty());
    let (file, secret) = binary_config(
        &store,
        &up,
        &rx,
        "[webhook_delivery]\nallow_http = true\npoll_interval = \"100ms\"\n",
    );
    // The operator secret changed with the file: deliveries are signed by the one now declared.
    let b = Spawned::start(&file).await;
    let got = rx.wait_for(1, PATIENCE).await;
    assert_eq!(types(&got), ["AUTH.CREATED"]);
    assert_signed(&secret, &got);
    b.kill().await;
}

/// `kill -9` in the middle of an attempt: the delivery stays leased, and once the lease ends
/// the restarted Warden sends it again, with the same webhook-id (at least once: the receiver
/// deduplicates on it).
#[tokio::test]
async fn a_delivery_cut_by_kill_9_goes_out_again_after_the_restart() {
    let rx = Receiver::start().await;
    rx.plan(&[Answer::Hold(Duration::from_secs(60))]);
    let up = Upstream::start().await;
    let store = StoreDir::new();
    let delivery = "[webhook_delivery]\nallow_http = true\npoll_interval = \"100ms\"\n\
                    timeout = \"2s\"\nlease = \"7s\"\n";
    let (file, secret) = binary_config(&store, &up, &rx, delivery);
    let a = Spawned::start(&file).await;
    let http = Client::http1();
    oauth_token(&http, &a.url(""), ADMIN).await;
    let first = rx.wait_for(1, PATIENCE).await;
    a.kill().await;
    let b = Spawned::start(&file).await;
    let got = rx.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(got[1].id, first[0].id, "the same event, again");
    let all = wait_deliveries(&store, PATIENCE, "delivered", |d| {
        d.iter().all(|d| d.state == DeliveryState::Delivered)
    })
    .await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].attempts, 2, "the cut attempt counts");
    assert_signed(&secret, &got);
    b.kill().await;
}

/// Operator subscriptions come from the config file, their secret from a file, and the CLI
/// lists them without it.
#[tokio::test]
async fn operator_subscriptions_are_listed_without_their_secret() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let store = StoreDir::new();
    let (file, secret) = binary_config(&store, &up, &rx, LOCAL_DELIVERY);
    let listed = run_cli(&file, &["webhook", "list"]).await;
    assert!(
        listed.contains("audit") && listed.contains(" * "),
        "{listed}"
    );
    let shown = run_cli(&file, &["webhook", "show", "audit"]).await;
    assert!(
        !shown.contains(&secret.expose()) && !shown.contains("whsec_"),
        "{shown}"
    );
    let needle = secret.expose();
    for file in ["warden.db", "warden.db-wal"] {
        let bytes = std::fs::read(store.dir().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the secret is sealed at rest ({file})"
        );
    }
    let new = run_cli(Path::new(&file), &["webhook", "new-secret"]).await;
    Secret::parse(new.trim()).unwrap();
}

/// The CLI manages an account's subscription beside a running Warden: a rotation made by the
/// command signs the running Warden's next delivery with both secrets; disable, enable and
/// delete take effect in the store the server reads.
#[tokio::test]
async fn the_cli_disables_enables_rotates_and_deletes_a_subscription() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let store = StoreDir::new();
    let cfg = config(&up, LOCAL_DELIVERY).store(&store);
    let file = cfg.write_file();
    let created = run_cli(
        &file,
        &[
            "webhook",
            "create",
            "--account",
            "acme",
            "--url",
            &rx.url("/in"),
            "--event",
            "AUTH.CREATED",
        ],
    )
    .await;
    let id = printed_after(&created, "subscription created:").to_owned();
    let first = Secret::parse(printed_after(
        &created,
        "(shown once, give it to the receiver now):",
    ))
    .unwrap();

    let proxy = Proxy::start(config(&up, LOCAL_DELIVERY).store(&store)).await;
    let http = Client::http1();
    oauth_token(&http, &proxy.url(""), ADMIN).await;
    let got = rx.wait_for(1, PATIENCE).await;
    assert_signed(&first, &got);

    let rotated = run_cli(&file, &["webhook", "rotate", &id, "--overlap", "1h"]).await;
    let second = Secret::parse(printed_after(
        &rotated,
        "(shown once, give it to the receiver now):",
    ))
    .unwrap();
    assert_ne!(second.expose(), first.expose());
    oauth_token(&http, &proxy.url(""), ADMIN).await;
    let got = rx.wait_for(2, PATIENCE).await;
    let after = &got[1..];
    assert_signed(&second, after);
    assert_signed(&first, after);

    let shown = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
    run_cli(
        &file,
        &["webhook", "disable", &id, "--reason", "maintenance"],
    )
    .await;
    let off = shown(&run_cli(&file, &["webhook", "show", &id]).await);
    assert_eq!(
        (&off["enabled"], &off["disabledReason"]),
        (&json!(false), &json!("maintenance")),
        "{off}"
    );
    run_cli(&file, &["webhook", "enable", &id]).await;
    let on = shown(&run_cli(&file, &["webhook", "show", &id]).await);
    assert_eq!(on["enabled"], true, "{on}");

    run_cli(&file, &["webhook", "delete", &id]).await;
    let listed = run_cli(&file, &["webhook", "list"]).await;
    assert!(!listed.contains(&id), "{listed}");
}

/// `kill -9` at moments the test does not choose, three times over, while tokens are issued
/// and deliveries are in flight: every issuance that was answered has its event delivered in
/// the end (at least once: the receiver counts distinct webhook-ids).
#[tokio::test]
async fn no_answered_change_loses_its_event_across_repeated_kill_9() {
    let rx = Receiver::start().await;
    // Slow answers keep deliveries in flight when the kills land.
    rx.answer_always(Answer::Hold(Duration::from_millis(150)));
    let up = Upstream::start().await;
    let store = StoreDir::new();
    let delivery = "[webhook_delivery]\nallow_http = true\npoll_interval = \"100ms\"\n\
                    timeout = \"2s\"\nlease = \"7s\"\nretry_schedule = [\"1s\", \"1s\", \"1s\", \"1s\"]\n";
    let (file, secret) = binary_config(&store, &up, &rx, delivery);
    let mut answered = 0usize;
    for round in 0..3u64 {
        let w = Spawned::start(&file).await;
        let base = w.url("");
        // Issue tokens until the kill; count those answered.
        let issuing = {
            let http = Client::http1();
            tokio::spawn(async move {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", ADMIN.0, ADMIN.1));
                let mut ok = 0usize;
                for _ in 0..200 {
                    let req = Request::post(format!("{base}/v1/oauth/token"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("authorization", format!("Basic {basic}"))
                        .body(Full::from("grant_type=client_credentials"))
                        .unwrap();
                    match http.try_send(req).await {
                        Ok(r) if r.status == StatusCode::OK => ok += 1,
                        _ => break,
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ok
            })
        };
        // A moment the test does not pick: somewhere in the first 1.5 s of each run.
        let at = Duration::from_millis(300 + (rand::random::<u64>() ^ round) % 1200);
        tokio::time::sleep(at).await;
        w.kill().await;
        answered += issuing.await.unwrap();
    }
    assert!(answered > 0, "nothing was issued");
    // A last Warden, left alone: the leases of the killed ones run out and it sends the rest.
    let last = Spawned::start(&file).await;
    let got = rx
        .wait_until(
            Duration::from_secs(60),
            "every answered change's event",
            |got| {
                let ids: std::collections::BTreeSet<&str> =
                    got.iter().map(|g| g.id.as_str()).collect();
                ids.len() >= answered
            },
        )
        .await;
    assert_signed(&secret, &got);
    // And the store agrees: every delivery ends delivered, those cut by a kill included (sent
    // again once their lease ran out).
    let all = wait_deliveries(&store, Duration::from_secs(60), "all delivered", |d| {
        d.len() >= answered && d.iter().all(|d| d.state == DeliveryState::Delivered)
    })
    .await;
    let resent = all.iter().filter(|d| d.attempts > 1).count();
    eprintln!(
        "{answered} answered issuances, {} deliveries, {resent} sent more than once, {} requests",
        all.len(),
        rx.got().len()
    );
    last.kill().await;
}

/// `warden_webhook_deliveries_total` counts each attempt by how it ended, and the attempts'
/// latency is a histogram.
#[tokio::test]
async fn delivery_attempts_are_counted_by_result_in_the_metrics() {
    use crate::metrics::{METRICS_ON, observations, scrape, value};
    let rx = Receiver::start().await;
    rx.plan(&[Answer::Status(500)]);
    let s = setup(&format!(
        "[webhook_delivery]\nallow_http = true\nallow_private_targets = true\n\
         poll_interval = \"100ms\"\nretry_schedule = [\"1s\"]\n{METRICS_ON}"
    ))
    .await;
    let admin = oauth_token(&s.http, &s.url(""), ADMIN).await;
    s.subscribe(&admin, &rx.url("/hook"), json!("AUTH.CREATED"))
        .await;
    oauth_token(&s.http, &s.url(""), ADMIN).await;
    rx.wait_for(2, Duration::from_secs(20)).await;
    let deliveries = "warden_webhook_deliveries_total";
    let m = within(PATIENCE, "the second attempt counted", async {
        loop {
            let m = scrape(&s.proxy).await;
            if value(&m, deliveries, &[("result", "delivered")]) >= 1.0 {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(value(&m, deliveries, &[("result", "delivered")]), 1.0);
    assert_eq!(value(&m, deliveries, &[("result", "retry")]), 1.0);
    assert_eq!(value(&m, deliveries, &[("result", "dead")]), 0.0);
    assert_eq!(
        observations(&m, "warden_webhook_delivery_duration_seconds", &[]),
        2.0
    );
}

//! The shared harness: a real upstream and a real Warden on ephemeral ports, clients for
//! HTTP/1.1, h2c and TLS, and a raw socket for requests no well-behaved client would send.
//! Every wait is bounded, so a broken Warden fails a test instead of hanging it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The bound on every wait in the harness: far above anything a passing test needs.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

// ------------------------------------------------------------------ upstream

type UpBody = BoxBody<Bytes, Infallible>;

/// What the upstream has seen, shared with the test.
#[derive(Default)]
struct UpstreamState {
    /// Requests (or, for raw upstreams, request heads) received.
    calls: AtomicUsize,
    /// Server-Sent Events written so far by `/sse`.
    sse_sent: AtomicUsize,
    /// Requests whose body the echo handler read to its end.
    bodies: AtomicUsize,
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// Raw upstreams: connections that ended in the middle of a request body.
    cut_bodies: AtomicUsize,
}

/// A real upstream on `127.0.0.1:0`. The HTTP one dispatches on the path:
/// - `/sse?gap_ms=N`: `data: one`, then N ms (default 2000) later `data: two`, then the end;
/// - `/slow?ms=N`: answers `slow` after N ms (default 1000);
/// - `/hop`: answers with hop-by-hop headers, and `x-kept: yes`;
/// - `/stream-in`: hands each request body frame to the test as it arrives, then echoes the body;
/// - anything else: [`Echo`] as JSON.
///
/// Every request counts as a call.
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<UpstreamState>,
    chunks: tokio::sync::Mutex<mpsc::UnboundedReceiver<Bytes>>,
    task: JoinHandle<()>,
}

/// How a raw (byte-level) upstream behaves once it has read a request head.
#[derive(Debug, Clone, Copy)]
pub enum RawBehaviour {
    /// Writes half a response head, then resets the connection (RST, not FIN).
    ResetMidHead,
    /// Answers `101 Switching Protocols` and echoes every byte it receives after that.
    UpgradeAndEcho,
    /// Answers `200 ok` as if the connection could be kept, then closes it (FIN) after
    /// `close_after_ms` without reading anything more, the way an upstream ends a keep-alive
    /// connection it has held long enough.
    AnswerThenClose { close_after_ms: u64 },
    /// Keeps connections alive and answers every request `200 ok`: on paths starting with
    /// `/early` as soon as the head is in, before reading the body (then reads and discards
    /// the body, as Node's `http` does), on others after reading it.
    AnswerEarly,
}

impl Upstream {
    /// Starts the HTTP upstream.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState::default());
        let (chunk_tx, chunk_rx) = mpsc::unbounded_channel();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let chunk_tx = chunk_tx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        let chunk_tx = chunk_tx.clone();
                        async move { Ok::<_, Infallible>(respond(req, st, chunk_tx).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            chunks: tokio::sync::Mutex::new(chunk_rx),
            task,
        }
    }

    /// Starts an upstream that speaks raw bytes, for behaviour no HTTP library would produce.
    pub async fn start_raw(behaviour: RawBehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState::default());
        let (_, chunk_rx) = mpsc::unbounded_channel();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let mut raw = RawConn::from_stream(stream);
                    if let RawBehaviour::AnswerEarly = behaviour {
                        raw.answer_early(&st).await;
                        return;
                    }
                    if raw.read_head_bytes().await.is_none() {
                        return; // a readiness probe, or a client that gave up
                    }
                    st.calls.fetch_add(1, Ordering::SeqCst);
                    match behaviour {
                        RawBehaviour::ResetMidHead => {
                            raw.send(b"HTTP/1.1 200 OK\r\nContent-Ty").await;
                            let _ = raw.stream.set_zero_linger();
                            drop(raw);
                        }
                        RawBehaviour::UpgradeAndEcho => {
                            raw.send(
                                b"HTTP/1.1 101 Switching Protocols\r\n\
                                  Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                            )
                            .await;
                            let mut stream = raw.stream;
                            let (mut r, mut w) = stream.split();
                            // Bytes that came with the head belong to the new protocol too.
                            if !raw.buf.is_empty() && w.write_all(&raw.buf).await.is_err() {
                                return;
                            }
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                        RawBehaviour::AnswerThenClose { close_after_ms } => {
                            raw.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                .await;
                            tokio::time::sleep(Duration::from_millis(close_after_ms)).await;
                            drop(raw);
                        }
                        RawBehaviour::AnswerEarly => {}
                    }
                });
            }
        });
        Self {
            addr,
            state,
            chunks: tokio::sync::Mutex::new(chunk_rx),
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, for `upstream.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// TCP connections accepted so far (readiness probes included).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Raw upstreams: connections that ended in the middle of a request body.
    #[allow(dead_code)]
    pub fn cut_bodies(&self) -> usize {
        self.state.cut_bodies.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Requests whose whole body the echo handler received (a cut-off body does not count).
    #[allow(dead_code)]
    pub fn complete_bodies(&self) -> usize {
        self.state.bodies.load(Ordering::SeqCst)
    }

    /// Server-Sent Events `/sse` has written so far.
    pub fn sse_sent(&self) -> usize {
        self.state.sse_sent.load(Ordering::SeqCst)
    }

    /// The next request body frame `/stream-in` received.
    pub async fn next_chunk(&self) -> Bytes {
        let mut rx = self.chunks.lock().await;
        within(PATIENCE, "the upstream receiving a body chunk", rx.recv())
            .await
            .expect("upstream stopped")
    }

    /// Waits until the upstream has received `n` requests.
    pub async fn wait_for_calls(&self, n: usize) {
        within(PATIENCE, "the upstream receiving the request", async {
            while self.calls() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL where nothing listens: the port was just bound and released.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn full(body: impl Into<Bytes>) -> UpBody {
    Full::new(body.into()).boxed()
}

async fn respond(
    req: Request<Incoming>,
    state: Arc<UpstreamState>,
    chunk_tx: mpsc::UnboundedSender<Bytes>,
) -> Response<UpBody> {
    state.calls.fetch_add(1, Ordering::SeqCst);
    match req.uri().path() {
        "/sse" => {
            let gap = Duration::from_millis(query_param(&req, "gap_ms").unwrap_or(2000));
            let (tx, rx) = mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                for (i, event) in ["data: one\n\n", "data: two\n\n"].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(gap).await;
                    }
                    state.sse_sent.fetch_add(1, Ordering::SeqCst);
                    if tx.send(Bytes::from_static(event.as_bytes())).await.is_err() {
                        return;
                    }
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                let chunk = rx.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
        "/slow" => {
            let ms = query_param(&req, "ms").unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full("slow"))
        }
        "/hop" => Response::builder()
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic realm=\"up\"")
            .header("trailer", "x-checksum")
            .header("x-kept", "yes")
            .body(full("hop"))
            .unwrap(),
        "/stream-in" => {
            let mut body = req.into_body();
            let mut all = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Response::builder()
                        .status(StatusCode::BAD_REQUEST)
                        .body(full("body failed"))
                        .unwrap();
                };
                if let Ok(data) = frame.into_data() {
                    all.extend_from_slice(&data);
                    let _ = chunk_tx.send(data);
                }
            }
            Response::new(full(all))
        }
        _ => {
            let resp = echo(req).await;
            if resp.status() == StatusCode::OK {
                state.bodies.fetch_add(1, Ordering::SeqCst);
            }
            resp
        }
    }
}

/// What the echo handler saw, as it returns it.
#[derive(Debug, Deserialize)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub version: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Echo {
    /// All values of header `name`, joined with ", " as a list-valued header would be.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.join(", "))
    }
}

async fn echo(req: Request<Incoming>) -> Response<UpBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(full("body failed"))
                .unwrap();
        }
    };
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", "echo")
        .body(full(serde_json::to_vec(&json).unwrap()))
        .unwrap()
}

// ------------------------------------------------------------------ warden

/// A temporary directory holding a Warden store (`warden.db`) and, if written, a config file.
/// Clones share the directory, which is removed when the last clone is dropped: a test keeps one
/// to run two Wardens (or Warden and the CLI) on the same store.
#[derive(Clone)]
pub struct StoreDir {
    dir: Arc<tempfile::TempDir>,
}

impl StoreDir {
    pub fn new() -> Self {
        Self {
            dir: Arc::new(tempfile::tempdir().unwrap()),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir().join("warden.db")
    }

    /// `sqlite://<dir>/warden.db`, for `store.url`.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }
}

/// A Warden configuration, written as TOML: one catch-all public route unless told otherwise,
/// and a fresh temporary store unless [`Config::store`] names one.
pub struct Config {
    upstream_url: String,
    server: Vec<String>,
    upstream: Vec<String>,
    tls: Option<(PathBuf, PathBuf)>,
    routes: String,
    store: StoreDir,
    tokens: Vec<String>,
    extra: String,
    clock: Option<warden::clock::Clock>,
}

impl Config {
    pub fn new(upstream_url: &str) -> Self {
        Self {
            upstream_url: upstream_url.to_owned(),
            server: Vec::new(),
            upstream: Vec::new(),
            tls: None,
            routes: "[[routes]]\nname = \"all\"\npath = \"/**\"\nauth = \"none\"\n".into(),
            store: StoreDir::new(),
            tokens: Vec::new(),
            extra: String::new(),
            clock: None,
        }
    }

    /// Uses `store` instead of a fresh one (restarts, the CLI against a running Warden).
    pub fn store(mut self, store: &StoreDir) -> Self {
        self.store = store.clone();
        self
    }

    /// The store this configuration names.
    pub fn store_dir(&self) -> StoreDir {
        self.store.clone()
    }

    /// Adds a `key = value` line to `[tokens]`.
    pub fn tokens(mut self, line: &str) -> Self {
        self.tokens.push(line.to_owned());
        self
    }

    /// Appends TOML after the routes (`[[clients]]` tables, …).
    pub fn append(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// Starts the in-process Warden with this clock (tests move it forward).
    pub fn clock(mut self, clock: &warden::clock::Clock) -> Self {
        self.clock = Some(clock.clone());
        self
    }

    /// Writes the TOML to `warden.toml` in the store directory, for the binary.
    pub fn write_file(&self) -> PathBuf {
        let path = self.store.dir().join("warden.toml");
        std::fs::write(&path, self.to_toml()).unwrap();
        path
    }

    /// Adds a `key = value` line to `[server]`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_owned());
        self
    }

    /// Adds a `key = value` line to `[upstream]`.
    pub fn upstream(mut self, line: &str) -> Self {
        self.upstream.push(line.to_owned());
        self
    }

    /// Serves TLS with this certificate.
    pub fn tls(mut self, cert: &TlsCert) -> Self {
        self.tls = Some((cert.cert_path.clone(), cert.key_path.clone()));
        self
    }

    /// Replaces the routes with `toml` (`[[routes]]` tables).
    pub fn routes(mut self, toml: &str) -> Self {
        self.routes = toml.to_owned();
        self
    }

    pub fn to_toml(&self) -> String {
        let mut t = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
        for line in &self.server {
            t.push_str(line);
            t.push('\n');
        }
        if let Some((cert, key)) = &self.tls {
            t.push_str(&format!(
                "[server.tls]\ncert = {:?}\nkey = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ));
        }
        t.push_str(&format!("[upstream]\nurl = {:?}\n", self.upstream_url));
        for line in &self.upstream {
            t.push_str(line);
            t.push('\n');
        }
        t.push_str(&format!("[store]\nurl = {:?}\n", self.store.url()));
        t.push_str("[tokens]\n");
        for line in &self.tokens {
            t.push_str(line);
            t.push('\n');
        }
        t.push_str(&self.routes);
        t.push_str(&self.extra);
        t
    }
}

/// A Warden serving on `127.0.0.1:0` until stopped or dropped.
pub struct Proxy {
    addr: SocketAddr,
    /// The admin listener's address, when the config sets `admin.listen`.
    admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<()>>,
    /// Keeps the temporary store alive while Warden runs.
    _store: StoreDir,
}

impl Proxy {
    pub async fn start(config: Config) -> Self {
        let clock = config.clock.clone().unwrap_or_default();
        Self::start_with(&config.to_toml(), config.store_dir(), clock).await
    }

    /// Starts Warden from TOML text, as `Settings::from_toml` reads it. Without a `[store]`
    /// table, the store is a fresh temporary one (never the repository's `data/`).
    #[allow(dead_code)]
    pub async fn start_toml(toml: &str) -> Self {
        Self::start_with(toml, StoreDir::new(), warden::clock::Clock::default()).await
    }

    async fn start_with(toml: &str, store: StoreDir, clock: warden::clock::Clock) -> Self {
        let mut settings = warden::Settings::from_toml(toml)
            .unwrap_or_else(|e| panic!("test config refused: {e}\n{toml}"));
        if settings.store.url == warden::config::RawStore::default().url {
            settings.store.url = store.url();
        }
        let warden = warden::Warden::with_clock(settings, clock)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Bound where `admin.listen` says (127.0.0.1:0 in tests), as `warden serve` does.
        let admin_listener = match warden.settings().admin.listen {
            Some(at) => Some(TcpListener::bind(at).await.unwrap()),
            None => None,
        };
        let admin = admin_listener.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(warden::run_with_admin(
            listener,
            admin_listener,
            warden,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            admin,
            stop: Some(stop),
            done: Some(done),
            _store: store,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://ADMIN{path}` on the admin listener; panics when `admin.listen` is not set.
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.admin.expect("the config sets admin.listen");
        format!("http://{admin}{path}")
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Completes the shutdown future `run` was given.
    pub fn trigger_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits (at most `limit`) for `run` to return; triggers the shutdown first if need be.
    pub async fn stopped(mut self, limit: Duration) {
        self.trigger_shutdown();
        let done = self.done.take().unwrap();
        within(limit, "warden::run returning", done).await.unwrap();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

// ------------------------------------------------------------------ clients

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub async fn read(resp: Response<Incoming>) -> Self {
        let (parts, body) = resp.into_parts();
        let body = within(PATIENCE, "the response body", body.collect())
            .await
            .expect("response body failed")
            .to_bytes();
        Self {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The upstream's echo of the request.
    pub fn echo(&self) -> Echo {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts this is Warden's problem response with `status` and `code`, safe to show a client,
    /// and returns its JSON.
    pub fn problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_problem(&self.headers, &self.body, code)
    }
}

/// Asserts a problem response: `application/problem+json`, `Cache-Control: no-store`, the stable
/// `code`, and a `detail` that names no internals (libraries, OS errors, addresses).
pub fn assert_problem(headers: &HeaderMap, body: &[u8], code: &str) -> serde_json::Value {
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );
    assert_eq!(
        headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let v: serde_json::Value = serde_json::from_slice(body).expect("problem body is JSON");
    assert_eq!(v["code"], code, "{v}");
    let detail = v["detail"]
        .as_str()
        .expect("problem has a detail")
        .to_lowercase();
    for leak in [
        "hyper",
        "os error",
        "error trying",
        "connection refused",
        "reset by peer",
        "127.0.0.1",
        "localhost",
        "tcp",
    ] {
        assert!(!detail.contains(leak), "detail leaks {leak:?}: {detail}");
    }
    v
}

/// A pooled hyper-util client, HTTP/1.1 or HTTP/2 with prior knowledge.
pub struct Client {
    inner: LegacyClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn http1() -> Self {
        Self {
            inner: LegacyClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// HTTP/2 over cleartext by prior knowledge (h2c).
    pub fn h2c() -> Self {
        Self {
            inner: LegacyClient::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// Sends `req` and returns the response head with its body still streaming.
    pub async fn stream(&self, req: Request<Full<Bytes>>) -> Response<Incoming> {
        within(PATIENCE, "the response head", self.inner.request(req))
            .await
            .expect("request failed")
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        Reply::read(self.stream(req).await).await
    }

    /// Like [`Client::send`], but a failed exchange (refused, reset, cut short) is an `Err`
    /// instead of a failed test: for servers that may die mid-request.
    pub async fn try_send(&self, req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let resp = tokio::time::timeout(PATIENCE, self.inner.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(PATIENCE, body.collect())
            .await
            .map_err(|_| "body timed out".to_string())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send(get(url)).await
    }
}

/// A `GET url` request with an empty body.
pub fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

// ------------------------------------------------------------------ TLS

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files.
pub struct TlsCert {
    _dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    der: CertificateDer<'static>,
}

impl TlsCert {
    pub fn self_signed() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, ck.cert.pem()).unwrap();
        std::fs::write(&key_path, ck.key_pair.serialize_pem()).unwrap();
        Self {
            _dir: dir,
            cert_path,
            key_path,
            der: ck.cert.der().clone(),
        }
    }

    /// Opens a TLS connection to `addr` that trusts only this certificate and offers `alpn`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        self.try_connect(addr, alpn)
            .await
            .expect("TLS handshake failed")
    }

    /// [`TlsCert::connect`], with a failed handshake (the server presented another
    /// certificate) as an `Err`.
    pub async fn try_connect(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        within(PATIENCE, "the TLS handshake", connector.connect(name, tcp)).await
    }

    /// The certificate and key as PEM text, to write over another pair's files.
    pub fn pem(&self) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(&self.cert_path).unwrap(),
            std::fs::read(&self.key_path).unwrap(),
        )
    }

    /// Sends one request over a new TLS connection to `addr` offering `alpn`, and returns the
    /// response and the protocol the server chose.
    pub async fn send(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
        req: Request<Full<Bytes>>,
    ) -> (Reply, Option<Vec<u8>>) {
        let tls = self.connect(addr, alpn).await;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let resp = if negotiated.as_deref() == Some(b"h2") {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            within(PATIENCE, "the h2 response", sender.send_request(req)).await
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            within(PATIENCE, "the h1 response", sender.send_request(req)).await
        };
        (Reply::read(resp.expect("request failed")).await, negotiated)
    }
}

// ------------------------------------------------------------------ raw sockets

/// A response head and body as bytes on the wire (body only when `Content-Length` says).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A plain TCP connection for hostile or hand-written requests.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read past the last head.
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.unwrap())
    }

    fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends `data` as one chunk of a chunked body.
    pub async fn send_chunk(&mut self, data: &[u8]) {
        let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(b"\r\n");
        self.send(&chunk).await;
    }

    /// Reads up to the end of a head; `None` if the peer closed first.
    async fn read_head_bytes(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = self.buf.split_off(end + 4);
                return Some(std::mem::replace(&mut self.buf, rest));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// [`RawBehaviour::AnswerEarly`]'s side of one connection, until it closes.
    async fn answer_early(&mut self, st: &UpstreamState) {
        const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        while let Some(head) = self.read_head_bytes().await {
            st.calls.fetch_add(1, Ordering::SeqCst);
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let early = head
                .split(' ')
                .nth(1)
                .is_some_and(|path| path.starts_with("/early"));
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if early && self.stream.write_all(OK).await.is_err() {
                return;
            }
            // The body, read and thrown away.
            while self.buf.len() < len {
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        st.cut_bodies.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
            self.buf.drain(..len);
            if !early && self.stream.write_all(OK).await.is_err() {
                return;
            }
        }
    }

    /// Reads one response: its head and, if it has a `Content-Length`, its body.
    pub async fn read_response(&mut self) -> RawResponse {
        let head = within(PATIENCE, "a response head", self.read_head_bytes())
            .await
            .expect("connection closed before a response head");
        let head = String::from_utf8(head).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = HeaderMap::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').unwrap();
            headers.append(
                http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                value.trim().parse().unwrap(),
            );
        }
        let len: usize = headers
            .get("content-length")
            .map(|v| v.to_str().unwrap().parse().unwrap())
            .unwrap_or(0);
        let body = self.read_exact(len).await;
        RawResponse {
            status,
            headers,
            body,
        }
    }

    /// Reads exactly `n` bytes.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        within(PATIENCE, "bytes from the peer", async {
            while self.buf.len() < n {
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => panic!("connection closed after {} bytes", self.buf.len()),
                    Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                }
            }
        })
        .await;
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Whether the peer closes the connection (EOF or reset) within `limit` without sending
    /// anything; `false` if it sends a byte or stays open.
    #[allow(dead_code)]
    pub async fn closed_without_a_byte(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 1];
        match tokio::time::timeout(limit, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => self.buf.is_empty(),
            Ok(Ok(_)) | Err(_) => false,
        }
    }

    /// Whether the peer closes the connection (EOF or reset) within `limit`; whatever it sends
    /// first is discarded.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

// ------------------------------------------------------------------ the binary

/// Runs the `warden` binary with `args` and extra environment, and returns its exit code and
/// stderr. Fails the test if it is still running after [`PATIENCE`] (it should not bind).
pub async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(args)
        .env_remove("WARDEN_CONFIG")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = within(PATIENCE, "the warden binary exiting", cmd.output())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` to a `warden.toml` in a new temporary directory.
pub fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A path inside the crate.
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Reads body frames until `until` appears in what was read; returns what was read.
pub async fn read_until(body: &mut Incoming, until: &str) -> String {
    let mut seen = String::new();
    within(PATIENCE, "streamed body data", async {
        while !seen.contains(until) {
            let frame = body
                .frame()
                .await
                .expect("body ended early")
                .expect("body failed");
            if let Ok(data) = frame.into_data() {
                seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await;
    seen
}

// ------------------------------------------------------------------ the binary, serving

/// Runs a `warden` administrative command (`client …`, `api-key …`) with `--config config`,
/// asserts it succeeded, and returns what it printed on stdout.
pub async fn run_cli(config: &Path, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("WARDEN_CONFIG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = within(PATIENCE, "the warden command exiting", cmd.output())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "warden {args:?} failed ({:?}): {}{stdout}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The text after `label` on the line of `output` that contains it.
pub fn printed_after<'a>(output: &'a str, label: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.split_once(label).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("{label:?} not printed in: {output}"))
}

/// The real `warden` binary serving with a config file (`listen` should be `127.0.0.1:0`); it
/// is killed when dropped. Everything it writes (its log) is kept for the test to read.
pub struct Spawned {
    child: tokio::process::Child,
    addr: SocketAddr,
    log: Arc<std::sync::Mutex<String>>,
}

impl Spawned {
    /// Starts `warden serve --config config` and waits until it logs the address it listens on.
    pub async fn start(config: &Path) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env_remove("WARDEN_CONFIG")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let mut addr_tx = Some(addr_tx);
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let keep = log.clone();
        // Drained until the process dies, so a chatty log never blocks it on a full pipe.
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(tx) = addr_tx.take_if(|_| line.contains("listening on http")) {
                    let rest = line.split("listening on http").nth(1).unwrap_or("");
                    let rest = rest.trim_start_matches('s').trim_start_matches("://");
                    let addr = rest.split([',', ' ']).next().unwrap_or("");
                    let _ = tx.send(addr.parse().expect("listen address in the log"));
                }
                let mut l = keep.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let keep = log.clone();
        tokio::spawn(async move {
            let mut all = String::new();
            let mut stderr = stderr;
            let _ = stderr.read_to_string(&mut all).await;
            keep.lock().unwrap().push_str(&all);
        });
        let addr = match tokio::time::timeout(PATIENCE, addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!("warden did not start listening:\n{}", log.lock().unwrap());
            }
        };
        Self { child, addr, log }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends the process a signal (`kill -s NAME`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("warden has exited").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} {pid}");
    }

    /// Waits until the log contains `text`.
    pub async fn wait_for_log(&self, text: &str) {
        within(PATIENCE, text, async {
            while !self.log().contains(text) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Everything the process wrote so far (stdout, then stderr once it has exited).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills the process with SIGKILL (`kill -9`: no shutdown, no flush) and reaps it.
    pub async fn kill(mut self) {
        within(PATIENCE, "warden dying", self.child.kill())
            .await
            .unwrap();
    }
}

//! Connections and their limits under hostile clients: stalled uploads and the upstream pool,
//! idle HTTP/2 connections, connections per address, and keyed bodies buffered for their
//! fingerprint.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::harness::{
    Client, Config, PATIENCE, Proxy, RawBehaviour, RawConn, Reply, Upstream, within,
};

/// Well above what a request needs, well below `upstream.timeout` in these tests (30 s): a
/// request that waits for a poisoned connection runs into it.
const PROMPT: Duration = Duration::from_secs(5);

/// A POST announcing 100 000 bytes that sends 10 and stalls.
const STALLED_UPLOAD: &[u8] =
    b"POST /early/upload HTTP/1.1\r\nHost: warden.test\r\nContent-Length: 100000\r\n\r\nAAAAAAAAAA";

#[tokio::test]
async fn a_stalled_upload_answered_early_never_holds_up_another_clients_request() {
    let up = Upstream::start_raw(RawBehaviour::AnswerEarly).await;
    // The stall guard far off: the pool alone must keep the connection from other requests.
    let config = Config::new(&up.url())
        .upstream("timeout = \"30s\"")
        .server("body_read_timeout = \"120s\"");
    let proxy = Proxy::start(config).await;
    let before = up.connections();

    let mut uploader = RawConn::connect(proxy.addr()).await;
    uploader.send(STALLED_UPLOAD).await;
    let early = uploader.read_response().await;
    assert_eq!(early.status, 200);
    assert_eq!(early.body, b"ok");

    // The upload's connection is still busy sending a body that is not coming: another
    // request must not be queued behind it.
    let client = Client::http1();
    for i in 0..3 {
        let url = proxy.url(&format!("/victim?i={i}"));
        let reply = tokio::time::timeout(PROMPT, client.try_send(crate::harness::get(&url)))
            .await
            .unwrap_or_else(|_| panic!("request {i} waited for the stalled upload's connection"))
            .expect("request failed");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(
        up.connections() - before,
        2,
        "the upload's connection was not reused; the others share one"
    );
    drop(uploader);
}

#[tokio::test]
async fn a_stalled_upload_the_upstream_waits_for_is_408_after_body_read_timeout() {
    let up = Upstream::start().await;
    let config = Config::new(&up.url())
        .upstream("timeout = \"30s\"")
        .server("body_read_timeout = \"1s\"");
    let proxy = Proxy::start(config).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(b"POST /echo HTTP/1.1\r\nHost: warden.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await;
    up.wait_for_calls(1).await;
    // Answered long before upstream.timeout (30 s; read_response gives up after 10 s).
    let resp = raw.read_response().await;
    assert_eq!(resp.status, 408);
    crate::harness::assert_problem(&resp.headers, &resp.body, "body_timeout");
    assert_eq!(
        up.complete_bodies(),
        0,
        "the upstream never had a whole request"
    );
}

#[tokio::test]
async fn a_stalled_upload_answered_early_has_its_upstream_connection_cut_after_body_read_timeout() {
    let up = Upstream::start_raw(RawBehaviour::AnswerEarly).await;
    let config = Config::new(&up.url())
        .upstream("timeout = \"30s\"")
        .server("body_read_timeout = \"1s\"");
    let proxy = Proxy::start(config).await;
    let mut uploader = RawConn::connect(proxy.addr()).await;
    uploader.send(STALLED_UPLOAD).await;
    assert_eq!(uploader.read_response().await.status, 200);
    // The client keeps its socket open and sends nothing more.
    within(PATIENCE, "the upstream connection being cut", async {
        while up.cut_bodies() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(uploader);
}

// ------------------------------------------------------------------ HTTP/2 idle connections

/// An h2c connection by prior knowledge, its driver running on a task of its own: the task
/// ends when the server closes the connection.
async fn h2c(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(conn))
}

fn h2_get(proxy: &Proxy, path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(proxy.url(path))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn an_http2_connection_that_only_answers_pings_is_closed_after_the_idle_timeout() {
    let up = Upstream::start().await;
    let config = Config::new(&up.url())
        .server("http2_idle_timeout = \"1s\"")
        .server("http2_keep_alive_interval = \"200ms\"");
    let proxy = Proxy::start(config).await;
    let (mut sender, conn) = h2c(proxy.addr()).await;
    let resp = within(
        PATIENCE,
        "a response",
        sender.send_request(h2_get(&proxy, "/echo")),
    )
    .await
    .unwrap();
    assert_eq!(Reply::read(resp).await.status, 200);
    // From now on the client only acknowledges Warden's PINGs (hyper's client does that on its
    // own), which keep a connection alive but are not activity.
    let ended = within(PATIENCE, "the idle connection being closed", conn).await;
    assert!(
        ended.unwrap().is_ok(),
        "closed gracefully (GOAWAY), not cut"
    );
    assert!(sender.is_closed());
}

#[tokio::test]
async fn an_http2_connection_that_never_opens_a_stream_is_closed_after_the_idle_timeout() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(Config::new(&up.url()).server("http2_idle_timeout = \"1s\"")).await;
    let (_sender, conn) = h2c(proxy.addr()).await;
    let ended = within(PATIENCE, "the idle connection being closed", conn).await;
    assert!(ended.unwrap().is_ok());
}

#[tokio::test]
async fn an_http2_stream_longer_than_the_idle_timeout_keeps_its_connection() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(Config::new(&up.url()).server("http2_idle_timeout = \"1s\"")).await;
    let (mut sender, conn) = h2c(proxy.addr()).await;
    // Waiting for the upstream, then streaming a body: the stream is open throughout.
    let resp = within(
        PATIENCE,
        "a slow response",
        sender.send_request(h2_get(&proxy, "/slow?ms=1500")),
    )
    .await
    .unwrap();
    assert_eq!(Reply::read(resp).await.text(), "slow");
    let resp = within(
        PATIENCE,
        "an event stream",
        sender.send_request(h2_get(&proxy, "/sse?gap_ms=1500")),
    )
    .await
    .unwrap();
    let mut body = resp.into_body();
    crate::harness::read_until(&mut body, "data: two").await;
    drop(body);
    // No GOAWAY came while the streams were open: the same connection takes another request.
    assert!(!conn.is_finished());
    let resp = within(
        PATIENCE,
        "a response",
        sender.send_request(h2_get(&proxy, "/echo")),
    )
    .await
    .expect("the connection was still open");
    assert_eq!(Reply::read(resp).await.status, 200);
}

// ------------------------------------------------------------------ connections per address

/// A kept-alive HTTP/1.1 connection that has been served once.
async fn served_connection(proxy: &Proxy) -> RawConn {
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(b"GET /echo HTTP/1.1\r\nHost: warden.test\r\n\r\n")
        .await;
    assert_eq!(raw.read_response().await.status, 200);
    raw
}

#[tokio::test]
async fn connections_past_max_connections_per_ip_are_refused_until_one_closes() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(Config::new(&up.url()).server("max_connections_per_ip = 2")).await;
    let first = served_connection(&proxy).await;
    let _second = served_connection(&proxy).await;
    let mut third = RawConn::connect(proxy.addr()).await;
    third
        .send(b"GET /echo HTTP/1.1\r\nHost: warden.test\r\n\r\n")
        .await;
    assert!(
        third.closed_without_a_byte(PATIENCE).await,
        "a third connection from the same address was served"
    );
    // Once one of the two closes, the address may connect again.
    drop(first);
    within(PATIENCE, "a new connection being served", async {
        loop {
            let mut again = RawConn::connect(proxy.addr()).await;
            again
                .send(b"GET /echo HTTP/1.1\r\nHost: warden.test\r\n\r\n")
                .await;
            if !again
                .closed_without_a_byte(Duration::from_millis(500))
                .await
            {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn trusted_proxies_are_not_held_to_max_connections_per_ip() {
    let up = Upstream::start().await;
    let config = Config::new(&up.url())
        .server("max_connections_per_ip = 1")
        .server("trusted_proxies = [\"127.0.0.1/32\"]");
    let proxy = Proxy::start(config).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(served_connection(&proxy).await);
    }
}

#[tokio::test]
async fn an_idle_http2_client_that_ignores_goaway_is_dropped_after_header_read_timeout() {
    let up = Upstream::start().await;
    let config = Config::new(&up.url())
        .server("http2_idle_timeout = \"1s\"")
        .server("header_read_timeout = \"1s\"")
        // No PINGs of Warden's own, whose unanswered timeout would close it anyway.
        .server("http2_keep_alive_interval = \"0s\"");
    let proxy = Proxy::start(config).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    // The preface and an empty SETTINGS frame; then nothing is read or acknowledged, not even
    // the GOAWAY's PING, so the graceful close can never complete.
    raw.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await;
    assert!(
        raw.closed_within(PATIENCE).await,
        "the connection stayed open"
    );
}

// ------------------------------------------------------------------ keyed bodies held in memory

const SECRET: &str = "conn-secret-7Qx";

/// A bearer route `/api/**` (idempotency keys honoured), one client, and `[idempotency]` with
/// `idem` added.
fn keyed_config(up: &Upstream, idem: &str) -> Config {
    Config::new(&up.url())
        .routes("[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\n")
        .append(&format!("[idempotency]\n{idem}\n"))
        .append(&format!(
            "[[clients]]\nid = \"conn\"\nsecret_sha256 = \"{}\"\nscopes = [\"write\"]\n",
            hex::encode(warden::secret::hash(SECRET))
        ))
}

async fn access_token(proxy: &Proxy) -> String {
    let req = http::Request::post(proxy.url("/v1/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(format!("clientId=conn&clientSecret={SECRET}")))
        .unwrap();
    let reply = Client::http1().send(req).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["accessToken"].as_str().unwrap().to_owned()
}

/// The head of a keyed POST announcing `len` bytes.
fn keyed_head(token: &str, key: &str, len: usize) -> String {
    format!(
        "POST /api/orders HTTP/1.1\r\nHost: warden.test\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: \"{key}\"\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// A whole keyed POST of `len` bytes on a new connection.
async fn keyed_post(
    proxy: &Proxy,
    token: &str,
    key: &str,
    len: usize,
) -> crate::harness::RawResponse {
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(keyed_head(token, key, len).as_bytes()).await;
    raw.send(&vec![b'x'; len]).await;
    raw.read_response().await
}

#[tokio::test]
async fn keyed_bodies_past_the_buffer_budget_get_503_at_once_until_memory_is_free() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(keyed_config(
        &up,
        "max_request_bytes = 1000\nbuffer_budget_bytes = 1500",
    ))
    .await;
    let token = access_token(&proxy).await;
    // 1000 bytes announced, 500 sent: the whole 1000 are held while it stalls. Another 1000
    // do not fit beside it. (If the other body is read first, the holder is the one refused:
    // then both go and it starts over.)
    let mut attempt = 0;
    let (holder, busy) = within(PATIENCE, "a keyed body refused for the budget", async {
        loop {
            attempt += 1;
            let mut holder = RawConn::connect(proxy.addr()).await;
            let head = keyed_head(&token, &format!("holder-{attempt}"), 1000);
            holder.send(head.as_bytes()).await;
            holder.send(&[b'x'; 500]).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let resp = keyed_post(&proxy, &token, &format!("other-{attempt}"), 1000).await;
            if resp.status == 503 {
                return (holder, resp);
            }
            assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        }
    })
    .await;
    crate::harness::assert_problem(&busy.headers, &busy.body, "server_busy");
    assert_eq!(busy.headers["retry-after"], "1");
    // Smaller bodies still fit in what is left.
    assert_eq!(keyed_post(&proxy, &token, "small", 400).await.status, 200);
    // The holder goes away: its bytes are free again.
    drop(holder);
    within(PATIENCE, "the budget being given back", async {
        loop {
            attempt += 1;
            let resp = keyed_post(&proxy, &token, &format!("other-{attempt}"), 1000).await;
            if resp.status == 200 {
                return;
            }
            assert_eq!(resp.status, 503);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_keyed_body_trickling_in_is_408_after_request_read_timeout_and_its_key_stays_free() {
    let up = Upstream::start().await;
    // Each byte comes well within the stall limit; the body as a whole does not come in time.
    let config =
        keyed_config(&up, "request_read_timeout = \"1s\"").server("body_read_timeout = \"2s\"");
    let proxy = Proxy::start(config).await;
    let token = access_token(&proxy).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    write
        .write_all(keyed_head(&token, "trickle", 100).as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if write.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut seen = Vec::new();
    within(PATIENCE, "the answer to a trickling body", async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = read.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without an answer");
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let head = String::from_utf8_lossy(&seen).into_owned();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("body_timeout"), "{head}");
    trickle.abort();
    // Nothing was reserved: the same key runs the request when it comes whole.
    let resp = keyed_post(&proxy, &token, "trickle", 100).await;
    assert_eq!(resp.status, 200);
    assert!(resp.headers.get("idempotent-replayed").is_none());
    assert_eq!(
        up.complete_bodies(),
        1,
        "only the whole request reached the upstream"
    );
}

// ------------------------------------------------------------------ Warden's own endpoints

/// A body to `/v1/auth`, `/v1/oauth/token` or the tokens API that trickles in is answered
/// 408 at `tokens.request_read_timeout`: an anonymous client cannot hold a buffer and a
/// connection for as long as it likes.
#[tokio::test]
async fn a_body_to_wardens_own_endpoints_that_never_completes_is_408() {
    let up = Upstream::start().await;
    let config = Config::new(&up.url()).tokens("request_read_timeout = \"1s\"");
    let proxy = Proxy::start(config).await;
    for (path, ctype, code) in [
        (
            "/v1/auth",
            "application/x-www-form-urlencoded",
            "body_timeout",
        ),
        (
            "/v1/oauth/token",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
    ] {
        let mut raw = RawConn::connect(proxy.addr()).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: warden.test\r\nContent-Type: {ctype}\r\n\
             Content-Length: 1000\r\n\r\nclientId=a"
        );
        raw.send(head.as_bytes()).await;
        let resp = raw.read_response().await;
        assert_eq!(resp.status, 408, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        let got = body.get("code").or_else(|| body.get("error"));
        assert_eq!(got.and_then(|v| v.as_str()), Some(code), "{path}: {body}");
    }
}

//! The foundation: forwarding, streaming, header hygiene, limits, upstream failures, own
//! endpoints, protocols (h2c, TLS, upgrades), slow clients, shutdown, and configuration.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::harness::{
    Client, Config, Echo, PATIENCE, Proxy, RawBehaviour, RawConn, TlsCert, Upstream,
    assert_problem, closed_port_url, config_file, crate_path, get, read_until, run_binary, within,
};

const TRUST_LOCALHOST: &str = "trusted_proxies = [\"127.0.0.1/32\"]";

async fn upstream_and_proxy(config: impl FnOnce(Config) -> Config) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy = Proxy::start(config(Config::new(&up.url()))).await;
    (up, proxy)
}

// ------------------------------------------------------------------ forwarding

#[tokio::test]
async fn method_path_query_headers_and_body_reach_the_upstream() {
    let (up, proxy) = upstream_and_proxy(|c| c).await;
    let req = Request::put(proxy.url("/v1/items/42?a=1&b=two%20words"))
        .header("x-custom", "yes")
        .header("content-type", "text/plain")
        .body(Full::from("hello upstream"))
        .unwrap();
    let reply = Client::http1().send(req).await;
    assert_eq!(
        reply.header("x-upstream"),
        Some("echo"),
        "response headers come back"
    );
    let echo = reply.echo();
    assert_eq!(echo.method, "PUT");
    assert_eq!(echo.path, "/v1/items/42");
    assert_eq!(echo.query.as_deref(), Some("a=1&b=two%20words"));
    assert_eq!(echo.header("x-custom").as_deref(), Some("yes"));
    assert_eq!(echo.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(echo.body, "hello upstream");
    assert_eq!(
        echo.header("host"),
        Some(format!("127.0.0.1:{}", up.port()))
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn server_sent_events_reach_the_client_while_the_upstream_is_still_sending() {
    let (up, proxy) = upstream_and_proxy(|c| c).await;
    let resp = Client::http1()
        .stream(get(&proxy.url("/sse?gap_ms=2000")))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let first = read_until(&mut body, "\n\n").await;
    assert_eq!(first, "data: one\n\n");
    assert_eq!(
        up.sse_sent(),
        1,
        "the first event must arrive while the upstream still waits to send the second"
    );
    let rest = read_until(&mut body, "data: two\n\n").await;
    assert_eq!(rest, "data: two\n\n");
    assert!(body.frame().await.is_none_or(|f| f.is_ok()));
}

#[tokio::test]
async fn chunked_request_body_reaches_the_upstream_before_the_client_finishes_sending() {
    let (up, proxy) = upstream_and_proxy(|c| c).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(
        b"POST /stream-in HTTP/1.1\r\nHost: warden.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    raw.send_chunk(b"first").await;
    assert_eq!(up.next_chunk().await, "first");
    raw.send_chunk(b"second").await;
    raw.send(b"0\r\n\r\n").await;
    let resp = raw.read_response().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"firstsecond");
}

// ------------------------------------------------------------------ header hygiene

#[tokio::test]
async fn hop_by_hop_request_headers_and_those_named_in_connection_are_removed() {
    let (_up, proxy) = upstream_and_proxy(|c| c).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(
        b"GET /echo HTTP/1.1\r\n\
          Host: warden.test\r\n\
          Connection: keep-alive, X-Secret-Hop\r\n\
          X-Secret-Hop: 1\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
          Proxy-Connection: keep-alive\r\n\
          TE: trailers\r\n\
          Trailer: x-checksum\r\n\
          Upgrade: h2c\r\n\
          X-Kept: yes\r\n\r\n",
    )
    .await;
    let resp = raw.read_response().await;
    assert_eq!(resp.status, 200);
    let echo: Echo = serde_json::from_slice(&resp.body).unwrap();
    for gone in [
        "connection",
        "x-secret-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(echo.header(gone).is_none(), "{gone} reached the upstream");
    }
    assert_eq!(echo.header("x-kept").as_deref(), Some("yes"));
}

#[tokio::test]
async fn hop_by_hop_response_headers_and_those_named_in_connection_are_removed() {
    let (_up, proxy) = upstream_and_proxy(|c| c).await;
    let reply = Client::http1().get(&proxy.url("/hop")).await;
    assert_eq!(reply.status, StatusCode::OK);
    for gone in [
        "x-upstream-hop",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
    ] {
        assert!(reply.header(gone).is_none(), "{gone} reached the client");
    }
    assert!(
        !reply
            .header("connection")
            .unwrap_or("")
            .contains("x-upstream-hop")
    );
    assert_eq!(reply.header("x-kept"), Some("yes"));
    assert_eq!(reply.text(), "hop");
}

#[tokio::test]
async fn forwarded_headers_describe_the_client_connection() {
    let (_up, proxy) = upstream_and_proxy(|c| c).await;
    let req = Request::get(proxy.url("/echo"))
        .header("host", "api.example:8443")
        .body(Full::default())
        .unwrap();
    let echo = Client::http1().send(req).await.echo();
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        echo.header("x-forwarded-host").as_deref(),
        Some("api.example:8443")
    );
}

fn spoofing_request(url: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=203.0.113.9;proto=https")
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn spoofed_forwarded_for_from_untrusted_peer_is_not_believed() {
    let (_up, proxy) = upstream_and_proxy(|c| c).await;
    let echo = Client::http1()
        .send(spoofing_request(&proxy.url("/echo")))
        .await
        .echo();
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        echo.header("x-forwarded-host"),
        Some(proxy.addr().to_string())
    );
    assert!(echo.header("forwarded").is_none());
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_is_appended_to() {
    let (_up, proxy) = upstream_and_proxy(|c| c.server(TRUST_LOCALHOST)).await;
    let echo = Client::http1()
        .send(spoofing_request(&proxy.url("/echo")))
        .await
        .echo();
    assert_eq!(
        echo.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        echo.header("x-forwarded-host").as_deref(),
        Some("evil.example")
    );
}

#[tokio::test]
async fn client_sent_warden_identity_headers_never_reach_the_upstream() {
    for trust in ["", TRUST_LOCALHOST] {
        let (_up, proxy) = upstream_and_proxy(|c| c.server(trust)).await;
        let req = Request::get(proxy.url("/echo"))
            .header("x-warden-client-id", "admin")
            .header("X-Warden-Scopes", "everything")
            .header("x-wardenish", "kept")
            .body(Full::default())
            .unwrap();
        let echo = Client::http1().send(req).await.echo();
        let spoofed: Vec<&String> = echo
            .headers
            .keys()
            .filter(|k| k.starts_with("x-warden-"))
            .collect();
        assert!(spoofed.is_empty(), "{spoofed:?} reached the upstream");
        assert_eq!(echo.header("x-wardenish").as_deref(), Some("kept"));
    }
}

// ------------------------------------------------------------------ limits

#[tokio::test]
async fn declared_content_length_over_max_body_bytes_is_413_and_never_forwarded() {
    let (up, proxy) = upstream_and_proxy(|c| c.server("max_body_bytes = 1024")).await;
    let req = Request::put(proxy.url("/echo"))
        .body(Full::from(vec![b'x'; 2048]))
        .unwrap();
    let reply = Client::http1().send(req).await;
    reply.problem(413, "payload_too_large");
    assert_eq!(up.calls(), 0);

    let at_limit = Request::put(proxy.url("/echo"))
        .body(Full::from(vec![b'x'; 1024]))
        .unwrap();
    assert_eq!(Client::http1().send(at_limit).await.echo().body.len(), 1024);
}

#[tokio::test]
async fn chunked_body_growing_past_max_body_bytes_is_413() {
    let (_up, proxy) = upstream_and_proxy(|c| c.server("max_body_bytes = 1024")).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(b"POST /echo HTTP/1.1\r\nHost: warden.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    raw.send_chunk(&[b'a'; 800]).await;
    raw.send_chunk(&[b'b'; 800]).await;
    raw.send(b"0\r\n\r\n").await;
    let resp = raw.read_response().await;
    assert_eq!(resp.status, 413);
    crate::harness::assert_problem(&resp.headers, &resp.body, "payload_too_large");
}

#[tokio::test]
async fn oversized_request_headers_are_refused_with_431() {
    let (up, proxy) = upstream_and_proxy(|c| c.server("max_header_bytes = 8192")).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    let mut req = b"GET /echo HTTP/1.1\r\nHost: warden.test\r\nX-Big: ".to_vec();
    req.extend_from_slice(&[b'a'; 9000]);
    req.extend_from_slice(b"\r\n\r\n");
    raw.send(&req).await;
    let resp = raw.read_response().await;
    assert_eq!(resp.status, 431);
    crate::harness::assert_problem(&resp.headers, &resp.body, "headers_too_large");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn oversized_http2_request_headers_get_a_problem_431_too() {
    let (up, proxy) = upstream_and_proxy(|c| c.server("max_header_bytes = 8192")).await;
    let req = Request::get(proxy.url("/echo"))
        .header("x-big", "a".repeat(9000))
        .body(Full::default())
        .unwrap();
    let reply = Client::h2c().send(req).await;
    assert_eq!(reply.status, 431);
    reply.problem(431, "headers_too_large");
    assert_eq!(up.calls(), 0);
    // Just under the limit passes.
    let req = Request::get(proxy.url("/echo"))
        .header("x-big", "a".repeat(7000))
        .body(Full::default())
        .unwrap();
    assert_eq!(Client::h2c().send(req).await.status, 200);
}

#[tokio::test]
async fn paths_an_upstream_could_read_differently_are_refused_and_never_forwarded() {
    let (up, proxy) = upstream_and_proxy(|c| c).await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/./x",
        "/public//x",
        "/public/a%2Fb",
        "/public/a%5cb",
    ] {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(format!("GET {path} HTTP/1.1\r\nHost: warden.test\r\n\r\n").as_bytes())
            .await;
        let resp = raw.read_response().await;
        assert_eq!(resp.status, 400, "{path}");
        assert_problem(&resp.headers, &resp.body, "invalid_path");
    }
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn content_length_beside_transfer_encoding_never_reaches_the_upstream() {
    // RFC 9112 §6.1: Transfer-Encoding wins and an intermediary must drop Content-Length
    // (hyper does), so the upstream cannot be made to read the body differently.
    let (up, proxy) = upstream_and_proxy(|c| c).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(
        b"POST /echo HTTP/1.1\r\nHost: warden.test\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nhello",
    )
    .await;
    let resp = raw.read_response().await;
    assert_eq!(resp.status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(echo["body"], "");
    assert!(
        echo["headers"]
            .get("content-length")
            .is_none_or(|v| v == "0"),
        "{echo}"
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn malformed_chunked_body_is_the_clients_fault_not_the_upstreams() {
    let (_up, proxy) = upstream_and_proxy(|c| c).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(
        b"POST /echo HTTP/1.1\r\nHost: warden.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          zz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let resp = raw.read_response().await;
    assert_eq!(resp.status, 400);
    assert_problem(&resp.headers, &resp.body, "bad_request");
}

// ------------------------------------------------------------------ upstream failures

#[tokio::test]
async fn upstream_refusing_connections_is_502_without_internals() {
    let url = closed_port_url().await;
    let port = url.rsplit(':').next().unwrap().to_owned();
    let proxy = Proxy::start(Config::new(&url)).await;
    let reply = Client::http1().get(&proxy.url("/echo")).await;
    let problem = reply.problem(502, "upstream_unavailable");
    assert!(!problem["detail"].as_str().unwrap().contains(&port));
}

#[tokio::test]
async fn upstream_resetting_mid_response_head_is_502() {
    let up = Upstream::start_raw(RawBehaviour::ResetMidHead).await;
    let proxy = Proxy::start(Config::new(&up.url())).await;
    let reply = Client::http1().get(&proxy.url("/echo")).await;
    reply.problem(502, "upstream_unavailable");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let (up, proxy) = upstream_and_proxy(|c| c).await;
    let client = Client::http1();
    let before = up.connections();
    for i in 0..5 {
        let reply = client.get(&proxy.url(&format!("/echo?i={i}"))).await;
        assert_eq!(reply.status, 200);
    }
    // Bodies nobody reads (HEAD) free their connection too.
    for _ in 0..2 {
        let req = Request::head(proxy.url("/echo"))
            .body(Full::default())
            .unwrap();
        assert_eq!(client.send(req).await.status, 200);
    }
    assert_eq!(up.calls(), 7);
    assert_eq!(
        up.connections() - before,
        1,
        "one upstream connection serves them all"
    );
}

#[tokio::test]
async fn a_response_abandoned_half_read_never_returns_its_connection_to_the_pool() {
    let (up, proxy) = upstream_and_proxy(|c| c).await;
    let client = Client::http1();
    let before = up.connections();
    let mut resp = client.stream(get(&proxy.url("/sse?gap_ms=5000"))).await;
    let first = within(
        Duration::from_secs(5),
        "first event",
        resp.body_mut().frame(),
    )
    .await;
    assert!(first.is_some());
    drop(resp);
    // The SSE connection still has its second event on the wire: reusing it would hand this
    // request the rest of the stream. It gets a connection of its own.
    let reply = client.get(&proxy.url("/echo?after=sse")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().query.as_deref(), Some("after=sse"));
    assert_eq!(up.connections() - before, 2);
}

#[tokio::test]
async fn an_upstream_closing_its_idle_connections_costs_the_client_nothing() {
    let up = Upstream::start_raw(RawBehaviour::AnswerThenClose {
        close_after_ms: 200,
    })
    .await;
    let proxy = Proxy::start(Config::new(&up.url())).await;
    let client = Client::http1();
    // 185 ms: the GET goes out on the idle connection just before the upstream closes it
    // without answering, and is sent again on a new one. 300 ms: the pool has seen the close
    // and opens a new connection at once.
    for pause_ms in [0, 185, 300, 185] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let reply = client.get(&proxy.url("/echo")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "ok");
    }
    assert_eq!(up.calls(), 4);
}

#[tokio::test]
async fn a_post_that_may_have_reached_the_upstream_is_never_sent_twice() {
    let up = Upstream::start_raw(RawBehaviour::AnswerThenClose {
        close_after_ms: 500,
    })
    .await;
    let proxy = Proxy::start(Config::new(&up.url())).await;
    let client = Client::http1();
    let post = || {
        Request::post(proxy.url("/orders"))
            .body(Full::new(Bytes::from_static(b"{\"amount\":1}")))
            .unwrap()
    };
    assert_eq!(client.send(post()).await.status, 200);
    let before = up.connections();
    // Written to the kept connection, which the upstream closes without answering: Warden
    // cannot know whether it was acted on, so it answers 502 rather than sending it again.
    client
        .send(post())
        .await
        .problem(502, "upstream_unavailable");
    assert_eq!(
        up.connections(),
        before,
        "the POST was not sent on a new connection"
    );
}

#[tokio::test]
async fn upstream_slower_than_its_timeout_is_504() {
    let (_up, proxy) = upstream_and_proxy(|c| c.upstream("timeout = \"300ms\"")).await;
    let start = Instant::now();
    let reply = Client::http1().get(&proxy.url("/slow?ms=5000")).await;
    reply.problem(504, "upstream_timeout");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "the answer must not wait for the upstream"
    );
}

// ------------------------------------------------------------------ routing and own endpoints

#[tokio::test]
async fn unrouted_path_is_denied_with_404_and_never_forwarded() {
    let routes = "[[routes]]\npath = \"/public/**\"\nauth = \"none\"\n";
    let (up, proxy) = upstream_and_proxy(|c| c.routes(routes)).await;
    let client = Client::http1();
    client
        .get(&proxy.url("/private/data"))
        .await
        .problem(404, "route_not_found");
    assert_eq!(up.calls(), 0);
    assert_eq!(
        client.get(&proxy.url("/public/a")).await.echo().path,
        "/public/a"
    );
}

#[tokio::test]
async fn wrong_method_on_a_route_is_405_with_allow() {
    let routes = "[[routes]]\npath = \"/events\"\nmethods = [\"GET\"]\nauth = \"none\"\n";
    let (up, proxy) = upstream_and_proxy(|c| c.routes(routes)).await;
    let req = Request::post(proxy.url("/events"))
        .body(Full::from("x"))
        .unwrap();
    let reply = Client::http1().send(req).await;
    reply.problem(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("GET"));
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn health_and_readiness_are_answered_by_warden_and_never_forwarded() {
    let (up, proxy) = upstream_and_proxy(|c| c).await;
    let client = Client::http1();
    let health = client.get(&proxy.url("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
    let ready = client.get(&proxy.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn readiness_is_503_while_the_upstream_is_down() {
    let proxy = Proxy::start(Config::new(&closed_port_url().await)).await;
    let client = Client::http1();
    client
        .get(&proxy.url("/readyz"))
        .await
        .problem(503, "not_ready");
    assert_eq!(
        client.get(&proxy.url("/healthz")).await.status,
        StatusCode::OK
    );
}

// ------------------------------------------------------------------ protocols

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let (_up, proxy) = upstream_and_proxy(|c| c).await;
    let req = Request::post(proxy.url("/echo?h2=c"))
        .body(Full::from("over h2c"))
        .unwrap();
    let reply = Client::h2c().send(req).await;
    assert_eq!(reply.version, Version::HTTP_2);
    let echo = reply.echo();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.query.as_deref(), Some("h2=c"));
    assert_eq!(echo.body, "over h2c");
    assert_eq!(echo.version, "HTTP/1.1", "the upstream hop is HTTP/1.1");
}

#[tokio::test]
async fn tls_serves_http1_and_h2_chosen_by_alpn() {
    let cert = TlsCert::self_signed();
    let (_up, proxy) = upstream_and_proxy(|c| c.tls(&cert)).await;
    let port = proxy.addr().port();

    let h1 = Request::get("/echo")
        .header("host", format!("localhost:{port}"))
        .body(Full::default())
        .unwrap();
    let (reply, alpn) = cert.send(proxy.addr(), &[b"http/1.1"], h1).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(reply.version, Version::HTTP_11);
    let echo = reply.echo();
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));

    let h2 = Request::get(format!("https://localhost:{port}/echo"))
        .body(Full::default())
        .unwrap();
    let (reply, alpn) = cert.send(proxy.addr(), &[b"h2", b"http/1.1"], h2).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(reply.version, Version::HTTP_2);
    let echo = reply.echo();
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        echo.header("x-forwarded-host"),
        Some(format!("localhost:{port}"))
    );
}

#[tokio::test]
async fn websocket_upgrade_passes_through_in_both_directions() {
    let up = Upstream::start_raw(RawBehaviour::UpgradeAndEcho).await;
    let proxy = Proxy::start(Config::new(&up.url())).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(
        b"GET /ws HTTP/1.1\r\n\
          Host: warden.test\r\n\
          Connection: Upgrade\r\n\
          Upgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    let resp = raw.read_response().await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.headers["upgrade"], "websocket");
    for message in [&b"ping over the tunnel"[..], b"and another"] {
        raw.send(message).await;
        assert_eq!(raw.read_exact(message.len()).await, message);
    }
}

// ------------------------------------------------------------------ slow clients and shutdown

#[tokio::test]
async fn client_stalling_mid_headers_is_disconnected_after_header_read_timeout() {
    let (up, proxy) = upstream_and_proxy(|c| c.server("header_read_timeout = \"1s\"")).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(b"GET /echo HTTP/1.1\r\nHost: warden.test\r\nX-Half")
        .await;
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "the connection stayed open"
    );
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn client_stalling_before_the_protocol_is_known_is_disconnected_after_header_read_timeout() {
    let (_up, proxy) = upstream_and_proxy(|c| c.server("header_read_timeout = \"1s\"")).await;
    // Nothing at all, and the first bytes of the HTTP/2 preface: neither settles the protocol.
    for opening in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(opening).await;
        assert!(
            raw.closed_within(Duration::from_secs(5)).await,
            "the connection stayed open after {:?}",
            String::from_utf8_lossy(opening)
        );
    }
}

#[tokio::test]
async fn tls_client_silent_after_the_handshake_is_disconnected_after_header_read_timeout() {
    let cert = TlsCert::self_signed();
    let (_up, proxy) =
        upstream_and_proxy(|c| c.tls(&cert).server("header_read_timeout = \"1s\"")).await;
    let mut tls = cert.connect(proxy.addr(), &[b"h2", b"http/1.1"]).await;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open");
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_and_refuses_new_connections() {
    let (up, mut proxy) = upstream_and_proxy(|c| c.server("shutdown_grace = \"20s\"")).await;
    let addr = proxy.addr();
    let url = proxy.url("/slow?ms=1000");
    let in_flight = tokio::spawn(async move { Client::http1().get(&url).await });
    up.wait_for_calls(1).await;

    proxy.trigger_shutdown();
    within(PATIENCE, "new connections being refused", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "slow");
    // Well inside the grace period: run() returns because the connections drained.
    proxy.stopped(Duration::from_secs(5)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

// ------------------------------------------------------------------ configuration

#[test]
fn the_example_config_loads() {
    warden::Settings::load(&crate_path("config/warden.toml")).unwrap();
}

#[test]
fn the_reference_config_loads() {
    warden::Settings::load(&crate_path("config/reference.toml")).unwrap();
}

async fn binary_refuses(config: &str, env: &[(&str, &str)], names: &str) {
    let (_dir, path) = config_file(config);
    let (code, stderr) = run_binary(&["--config", path.to_str().unwrap()], env).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(names), "{names:?} not named in: {stderr}");
}

#[tokio::test]
async fn binary_refuses_an_unknown_key_and_names_it() {
    binary_refuses(
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 8080\n",
        &[],
        "listen_port",
    )
    .await;
}

#[tokio::test]
async fn binary_refuses_a_bad_listen_address_and_names_the_key() {
    binary_refuses("[server]\nlisten = \"nope\"\n", &[], "server.listen").await;
}

#[tokio::test]
async fn binary_refuses_a_bad_trusted_proxy_cidr_and_names_the_key() {
    binary_refuses(
        "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n",
        &[],
        "server.trusted_proxies[1]",
    )
    .await;
}

#[tokio::test]
async fn binary_refuses_a_bad_environment_override_and_names_the_key() {
    binary_refuses(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        &[("WARDEN_SERVER__LISTEN", "nope")],
        "server.listen",
    )
    .await;
}

#[tokio::test]
async fn environment_variables_that_name_no_key_are_left_alone() {
    // What Kubernetes sets for a Service named `warden` (service links), and the dev proxy's own
    // variables: no `__`, so none of them is a key, and the sidecar starts.
    let (_dir, path) = config_file("[server]\nlisten = \"127.0.0.1:0\"\n");
    let foreign = [
        ("WARDEN_PORT", "tcp://10.96.0.12:8080"),
        ("WARDEN_SERVICE_HOST", "10.96.0.12"),
        ("WARDEN_SERVICE_PORT", "8080"),
        ("WARDEN_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
        ("WARDEN_PORT_8080_TCP_PROTO", "tcp"),
        ("WARDEN_DEV_KEY", "not-a-key"),
    ];
    let (code, stderr) = run_binary(
        &["--config", path.to_str().unwrap(), "check-config"],
        &foreign,
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");

    // A name with `__` is still a key, beside them.
    let mut keyed = foreign.to_vec();
    keyed.push(("WARDEN_SERVER__LISTEN", "nope"));
    let (code, stderr) = run_binary(
        &["--config", path.to_str().unwrap(), "check-config"],
        &keyed,
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("server.listen"), "{stderr}");
}

#[tokio::test]
async fn binary_refuses_a_missing_config_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let missing = missing.to_str().unwrap();
    let (code, stderr) = run_binary(&["--config", missing], &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(missing), "{stderr}");
}

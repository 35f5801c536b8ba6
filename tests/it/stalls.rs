//! Upstream response bodies that stall after their head: `upstream.body_idle_timeout`.

use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::harness::{Client, Config, PATIENCE, Proxy, Upstream, get, read_until, within};

/// The upstream's `/sse` sends its first event at once and its second a minute later: a body
/// that stalls after its head, as an event stream whose heartbeats stopped does.
const STALLING: &str = "/sse?gap_ms=60000";

async fn stalling_setup() -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy =
        Proxy::start(Config::new(&up.url()).upstream("body_idle_timeout = \"300ms\"")).await;
    (up, proxy)
}

/// Reads `body` to its end; `Err` if it ended with an error rather than cleanly.
async fn body_end(body: &mut Incoming) -> Result<(), String> {
    within(PATIENCE, "the body's end", async {
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_upstream_body_that_stalls_after_its_head_is_cut_and_its_connection_not_reused() {
    let (up, proxy) = stalling_setup().await;
    let client = Client::http1();
    let before = up.connections();
    let resp = client.stream(get(&proxy.url(STALLING))).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    assert_eq!(read_until(&mut body, "\n\n").await, "data: one\n\n");
    let end = body_end(&mut body).await;
    assert!(end.is_err(), "a cut body must not look complete: {end:?}");
    assert_eq!(up.sse_sent(), 1, "the second event was never sent");
    // The stalled connection still owes its second event: the next request needs another.
    let reply = client.get(&proxy.url("/echo?after=stall")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().query.as_deref(), Some("after=stall"));
    assert_eq!(up.connections() - before, 2);
}

#[tokio::test]
async fn an_http2_client_sees_a_stalled_upstream_body_end_with_an_error() {
    let (_up, proxy) = stalling_setup().await;
    let client = Client::h2c();
    let resp = client.stream(get(&proxy.url(STALLING))).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    assert_eq!(read_until(&mut body, "\n\n").await, "data: one\n\n");
    assert!(body_end(&mut body).await.is_err());
    // The connection itself is fine: only the stream was reset.
    let reply = client.get(&proxy.url("/echo")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_body_whose_frames_come_within_the_idle_timeout_is_streamed_whole() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(Config::new(&up.url()).upstream("body_idle_timeout = \"5s\"")).await;
    let resp = Client::http1()
        .stream(get(&proxy.url("/sse?gap_ms=50")))
        .await;
    let mut body = resp.into_body();
    assert_eq!(
        read_until(&mut body, "data: two\n\n").await,
        "data: one\n\ndata: two\n\n"
    );
    assert_eq!(body_end(&mut body).await, Ok(()));
}

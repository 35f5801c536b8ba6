//! Connections and their limits under hostile clients: stalled uploads and the upstream pool,
//! idle HTTP/2 connections, connections per address, and keyed bodies buffered for their
//! fingerprint.

use std::time::Duration;

use crate::harness::{Client, Config, PATIENCE, Proxy, RawBehaviour, RawConn, Upstream, within};

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

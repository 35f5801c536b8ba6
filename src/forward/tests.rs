use std::net::IpAddr;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http_body_util::BodyExt;

use super::headers::ip_header;
use super::*;
use crate::body::{BodyStalled, BoxError};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn ip_header_writes_addresses_as_display_does() {
    for ip in [
        "0.0.0.0",
        "127.0.0.1",
        "10.20.30.40",
        "192.168.100.255",
        "255.255.255.255",
        "9.99.100.199",
        "::1",
        "2001:db8::8a2e:370:7334",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(ip_header(ip).unwrap(), ip.to_string().as_str());
    }
}

#[test]
fn messages_without_hop_by_hop_headers_are_left_alone() {
    let mut h = headers(&[("content-type", "text/plain"), ("x-request-id", "abc")]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 2);
    let mut h = headers(&[("upgrade", "websocket"), ("x-a", "1")]);
    strip_hop_by_hop(&mut h, false);
    assert!(
        !h.contains_key("upgrade"),
        "an Upgrade not asked for is dropped"
    );
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_removed() {
    let mut h = headers(&[
        ("connection", "keep-alive, x-secret-hop"),
        ("keep-alive", "timeout=5"),
        ("x-secret-hop", "1"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("proxy-authorization", "Basic Zm9v"),
        ("upgrade", "websocket"),
        ("x-kept", "yes"),
    ]);
    strip_hop_by_hop(&mut h, false);
    let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-kept"]);
}

#[test]
fn upgrade_survives_when_switching_protocols() {
    let mut h = headers(&[
        ("connection", "Upgrade, keep-alive"),
        ("upgrade", "websocket"),
    ]);
    assert!(is_upgrade(&h));
    strip_hop_by_hop(&mut h, true);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
}

#[test]
fn identity_headers_from_clients_are_dropped() {
    let mut h = headers(&[
        ("x-warden-client-id", "admin"),
        ("X-Warden-Scopes", "all"),
        ("x-other", "1"),
    ]);
    strip_identity(&mut h);
    assert_eq!(h.len(), 1);
}

#[test]
fn connection_cannot_remove_signed_or_checked_fields() {
    let mut h = headers(&[
        (
            "connection",
            "x-dry-run, x-unsigned, authorization, content-digest, x-warden-scopes, x-forwarded-for",
        ),
        (
            "signature-input",
            "sig1=(\"@method\" \"x-dry-run\");created=1;keyid=\"k\"",
        ),
        ("signature", "sig1=:AAAA:"),
        ("x-dry-run", "true"),
        ("x-unsigned", "1"),
        ("authorization", "Bearer t"),
        ("content-digest", "sha-256=:AAAA:"),
        ("x-forwarded-for", "10.0.0.1"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h["x-dry-run"], "true", "covered by the signature");
    assert!(
        !h.contains_key("x-unsigned"),
        "an ordinary hop-by-hop field goes"
    );
    for kept in [
        "authorization",
        "content-digest",
        "x-forwarded-for",
        "signature",
    ] {
        assert!(h.contains_key(kept), "{kept}");
    }
    // An unreadable Signature-Input protects every named field.
    let mut h = headers(&[
        ("connection", "x-dry-run"),
        ("signature-input", "garbage((("),
        ("x-dry-run", "true"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h["x-dry-run"], "true");
}

#[test]
fn underscore_spellings_of_warden_fields_are_dropped() {
    let mut h = headers(&[
        ("x_warden_client_id", "admin"),
        ("X_Warden_Scopes", "level://admin"),
        ("x-warden_token-id", "t"),
        ("x_forwarded_for", "10.0.0.1"),
        ("x_real_ip", "10.0.0.1"),
        ("x_client_id", "other"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x_rewrite_url", "/admin"),
        ("my_header", "kept"),
        ("x-other", "kept"),
    ]);
    strip_identity(&mut h);
    let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["my_header", "x-other"]);
}

#[test]
fn proxy_claims_count_only_from_trusted_peers() {
    let claims = [
        ("x-real-ip", "10.0.0.1"),
        ("true-client-ip", "10.0.0.1"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "//evil.example"),
        ("x-forwarded-server", "evil"),
        ("x-forwarded-ssl", "on"),
        ("x-original-forwarded-for", "10.0.0.1"),
        ("cf-connecting-ip", "10.0.0.1"),
        ("fastly-client-ip", "10.0.0.1"),
        ("x-client-ip", "10.0.0.1"),
        ("x-cluster-client-ip", "10.0.0.1"),
        ("x-ssl-client-verify", "SUCCESS"),
        ("x-kept", "yes"),
    ];
    let origin = |trusted| Origin {
        peer: "192.0.2.7".parse().unwrap(),
        peer_trusted: trusted,
        tls: false,
    };
    let mut h = headers(&claims);
    set_forwarded(&mut h, &origin(false), None);
    let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["x-forwarded-for", "x-forwarded-proto", "x-kept"]);
    let mut h = headers(&claims);
    set_forwarded(&mut h, &origin(true), None);
    assert_eq!(h["x-real-ip"], "10.0.0.1");
    assert_eq!(h["x-forwarded-prefix"], "//evil.example");
}

#[test]
fn method_overrides_are_found_in_any_spelling() {
    for name in [
        "x-http-method-override",
        "X-HTTP-Method",
        "x-method-override",
        "X_HTTP_Method_Override",
        "x_method-override",
    ] {
        assert!(
            method_override(&headers(&[(name, "DELETE")]), None).is_some(),
            "{name}"
        );
    }
    for query in [
        "_method=DELETE",
        "a=1&_METHOD=PUT",
        "%5Fmethod=x",
        ".method=x",
        "+_Method=x",
        "_method",
    ] {
        assert!(
            method_override(&HeaderMap::new(), Some(query)).is_some(),
            "{query}"
        );
    }
    assert!(
        method_override(
            &headers(&[("x-method", "a")]),
            Some("method=get&x_method=1")
        )
        .is_none()
    );
}

#[test]
fn untrusted_peer_replaces_forwarded_headers() {
    let mut h = headers(&[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=1.2.3.4"),
    ]);
    let origin = Origin {
        peer: "192.0.2.7".parse().unwrap(),
        peer_trusted: false,
        tls: false,
    };
    set_forwarded(
        &mut h,
        &origin,
        Some(HeaderValue::from_static("api.example:8080")),
    );
    assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.example:8080");
    assert!(!h.contains_key("forwarded"));
}

#[test]
fn trusted_peer_is_appended_to_the_chain() {
    let mut h = headers(&[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
    ]);
    let origin = Origin {
        peer: "10.0.0.1".parse().unwrap(),
        peer_trusted: true,
        tls: false,
    };
    set_forwarded(
        &mut h,
        &origin,
        Some(HeaderValue::from_static("api.example")),
    );
    assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
}

/// A request body fed by the test, one frame at a time.
fn fed_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((Ok::<_, BoxError>(http_body::Frame::data(data)), rx))
    });
    (tx, http_body_util::StreamBody::new(stream).boxed())
}

const STALL: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_request_body_that_stops_sending_fails_after_the_stall_limit() {
    let timer = CoarseTimer::start(Duration::from_millis(10));
    let (tx, body) = fed_body();
    let mut body = limit_body(body, 1 << 20, Some((&timer, STALL)));
    // Frames closer together than the limit pass, however long the body takes in all.
    for _ in 0..4 {
        tx.send(Bytes::from_static(b"chunk")).await.unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "chunk");
        tokio::time::sleep(STALL / 3).await;
    }
    let start = std::time::Instant::now();
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(err.is::<BodyStalled>(), "{err}");
    assert!(start.elapsed() >= STALL, "cut early: {:?}", start.elapsed());
    assert_eq!(classify(&*err), Problem::BodyTimeout);
    drop(tx);
}

#[tokio::test]
async fn time_the_reader_spends_elsewhere_is_not_the_clients_stall() {
    let timer = CoarseTimer::start(Duration::from_millis(10));
    let (tx, body) = fed_body();
    let mut body = limit_body(body, 1 << 20, Some((&timer, STALL)));
    tx.send(Bytes::from_static(b"one")).await.unwrap();
    assert!(body.frame().await.unwrap().is_ok());
    // The reader (an upstream applying backpressure) does not poll for a while: the client
    // could not have sent anything meanwhile, so the wait starts when the reader polls.
    tokio::time::sleep(STALL * 2).await;
    let next = tokio::spawn(async move { body.frame().await.map(|f| f.is_ok()) });
    tokio::time::sleep(STALL / 3).await;
    tx.send(Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(next.await.unwrap(), Some(true));
}

#[tokio::test]
async fn a_body_complete_from_the_start_arms_nothing() {
    let timer = CoarseTimer::start(Duration::from_millis(10));
    let body = limit_body(crate::body::empty(), 10, Some((&timer, STALL)));
    assert!(http_body::Body::is_end_stream(&body));
    let body = limit_body(crate::body::full("x"), 10, Some((&timer, STALL)));
    assert_eq!(body.collect().await.unwrap().to_bytes(), "x");
    assert_eq!(timer.registered(), 0, "no wait, no deadline");
    // A wait registers one deadline, which goes with the body.
    let (tx, body) = fed_body();
    let mut body = limit_body(body, 10, Some((&timer, STALL)));
    let waiting = std::future::poll_fn(|cx| {
        let polled = http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx);
        std::task::Poll::Ready(polled.is_pending())
    })
    .await;
    assert!(waiting);
    assert_eq!(timer.registered(), 1);
    drop((body, tx));
    assert_eq!(timer.registered(), 0);
}

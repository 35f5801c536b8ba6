//! Revocation latency between two replicas: how long after a revocation at replica A answers
//! does replica B refuse the token. `bench/replicas.sh` runs it against two release Wardens on
//! one PostgreSQL database.
//!
//! ```sh
//! cargo run --release --example revocation_latency -- <A addr> <B addr> [rounds] [postgres url]
//! ```
//!
//! Each round: issue a token at A (`POST /v1/oauth/token`, client `bench:secret` or
//! `$BENCH_CLIENT`), use it once at B (`GET /api/bench`: B caches the decision), revoke it at A
//! (`POST /v1/oauth/revoke`; the time its answer arrives is t0), then poll B with it until B
//! refuses (t1, when the first 401 arrives). One kept-alive HTTP/1.1 connection to each replica.
//! The polls go back to back (each is one round trip to B) for 20 ms, then every millisecond.
//!
//! With a PostgreSQL URL the example also `LISTEN`s on Warden's channel, so each round also
//! tells when the revocation's notification reached a listener of its own (tn): t0 → tn is the
//! notification's delivery as any listener sees it, tn → t1 what B adds (its listener, the
//! `tokens.change_check_interval` throttle, reading the change feed, re-reading the token).
//! The runtime is current-thread: a notification is timestamped when the poll loop next
//! waits on a socket, so tn is late by at most one poll round trip (reported).

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// One kept-alive connection to a replica (reopened if the replica closes it).
struct Conn {
    addr: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        Self {
            addr: addr.to_owned(),
            sender,
        }
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
        if self.sender.ready().await.is_err() {
            *self = Self::open(&self.addr).await;
        }
        let resp = self
            .sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("request to {}: {e}", self.addr));
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        (status, body)
    }
}

fn form(addr: &str, path: &str, basic: &str, body: String) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, addr)
        .header(header::AUTHORIZATION, basic)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

fn get(addr: &str, token: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri("/api/bench")
        .header(header::HOST, addr)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// Listens on Warden's channel; sends the arrival time of every notification.
async fn observe(url: String, channel: String, tx: mpsc::UnboundedSender<Instant>) {
    use futures_util::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The connection must be driven while LISTEN runs: the LISTEN on a task of its own.
    tokio::spawn(async move {
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await
            .expect("LISTEN");
        // The client lives as long as the program.
        std::future::pending::<()>().await;
    });
    while let Some(message) = messages.next().await {
        if let Ok(tokio_postgres::AsyncMessage::Notification(_)) = message {
            let _ = tx.send(Instant::now());
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50/p95/p99/max of `values` (µs), one line.
fn summary(name: &str, values: &mut [f64]) {
    if values.is_empty() {
        println!("{name:<34} (none)");
        return;
    }
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
    println!(
        "{name:<34} n={:<5} p50={:>8.0} p95={:>8.0} p99={:>8.0} max={:>8.0} (us)",
        values.len(),
        at(0.50),
        at(0.95),
        at(0.99),
        values[values.len() - 1]
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: revocation_latency <A addr> <B addr> [rounds] [postgres url]";
    let a_addr = args.next().expect(usage);
    let b_addr = args.next().expect(usage);
    let rounds: usize = args.next().map_or(1000, |r| r.parse().expect(usage));
    let pg_url = args.next();
    let client = std::env::var("BENCH_CLIENT").unwrap_or_else(|_| "bench:secret".to_owned());
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(client.as_bytes())
    );

    let (notify_tx, mut notified) = mpsc::unbounded_channel();
    let observing = pg_url.is_some();
    if let Some(url) = pg_url {
        let channel = std::env::var("BENCH_CHANNEL").unwrap_or_else(|_| "warden:public".into());
        tokio::spawn(observe(url, channel, notify_tx));
        // Give the LISTEN time to be in place before the first revocation.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut a = Conn::open(&a_addr).await;
    let mut b = Conn::open(&b_addr).await;
    let (mut issue, mut revoke, mut latency, mut from_sent) = (vec![], vec![], vec![], vec![]);
    let (mut to_notify, mut notify_to_refusal, mut poll_rtt) = (vec![], vec![], vec![]);
    let (mut let_through, mut rounds_with_200) = (0u64, 0u64);
    for round in 0..rounds {
        let t = Instant::now();
        let (status, body) = a
            .send(form(
                &a_addr,
                "/v1/oauth/token",
                &basic,
                "grant_type=client_credentials".into(),
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "issuance at A: {body:?}");
        issue.push(micros(t.elapsed()));
        let json: serde_json::Value = serde_json::from_slice(&body).expect("token JSON");
        let token = json["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();

        let (status, body) = b.send(get(&b_addr, &token)).await;
        assert_eq!(status, StatusCode::OK, "first use at B: {body:?}");

        // Only this round's notification counts.
        while notified.try_recv().is_ok() {}
        let sent = Instant::now();
        let (status, body) = a
            .send(form(
                &a_addr,
                "/v1/oauth/revoke",
                &basic,
                format!("token={token}"),
            ))
            .await;
        let t0 = Instant::now();
        assert_eq!(status, StatusCode::OK, "revocation at A: {body:?}");
        revoke.push(micros(t0 - sent));

        let mut through = 0u64;
        let t1 = loop {
            let p = Instant::now();
            let (status, body) = b.send(get(&b_addr, &token)).await;
            let now = Instant::now();
            poll_rtt.push(micros(now - p));
            match status {
                StatusCode::UNAUTHORIZED => break now,
                StatusCode::OK => through += 1,
                other => panic!("round {round}: B answered {other}: {body:?}"),
            }
            if now - t0 > Duration::from_millis(20) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
            assert!(
                now - t0 < Duration::from_secs(10),
                "round {round}: B still accepts the token 10 s after the revocation"
            );
        };
        latency.push(micros(t1 - t0));
        from_sent.push(micros(t1 - sent));
        if through > 0 {
            rounds_with_200 += 1;
            let_through += through;
        }
        // The notification has normally arrived by now; wait a little if not.
        let tn = match notified.try_recv() {
            Ok(tn) => Some(tn),
            Err(_) if observing => {
                tokio::time::timeout(Duration::from_millis(200), notified.recv())
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        };
        if let Some(tn) = tn {
            // Signed: the notification may reach a listener before A's answer reaches us.
            let signed = |x: Instant, y: Instant| {
                if x >= y {
                    micros(x - y)
                } else {
                    -micros(y - x)
                }
            };
            to_notify.push(signed(tn, t0));
            notify_to_refusal.push(signed(t1, tn));
        }
    }

    println!("{rounds} rounds, A = {a_addr}, B = {b_addr}");
    summary("issuance at A (round trip)", &mut issue);
    summary("revocation at A (round trip)", &mut revoke);
    summary("A answered -> B refuses", &mut latency);
    summary("revocation sent -> B refuses", &mut from_sent);
    summary("A answered -> NOTIFY at observer", &mut to_notify);
    summary("NOTIFY at observer -> B refuses", &mut notify_to_refusal);
    summary("one poll of B (round trip)", &mut poll_rtt);
    println!(
        "B accepted the revoked token after A answered in {rounds_with_200} of {rounds} rounds \
         ({let_through} requests in all)"
    );
}

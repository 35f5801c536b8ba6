//! Reloads without a restart: SIGHUP never ends Warden, and the TLS certificate and key are
//! read again on SIGHUP and when their files change.

use std::net::SocketAddr;

use crate::harness::{
    Client, Config, PATIENCE, Proxy, Spawned, StoreDir, TlsCert, Upstream, get, within,
};

/// `[server] tls = {...}` with `cert`'s files and `reload_interval`.
fn tls_line(cert: &TlsCert, reload_interval: &str) -> String {
    format!(
        "tls = {{ cert = {:?}, key = {:?}, reload_interval = {reload_interval:?} }}",
        cert.cert_path.display().to_string(),
        cert.key_path.display().to_string()
    )
}

/// Writes `new`'s certificate and key over `old`'s files.
fn replace_files(old: &TlsCert, new: &TlsCert) {
    let (cert, key) = new.pem();
    std::fs::write(&old.key_path, key).unwrap();
    std::fs::write(&old.cert_path, cert).unwrap();
}

/// Waits until a new handshake to `addr` presents `cert`.
async fn presents(addr: SocketAddr, cert: &TlsCert) {
    within(
        PATIENCE,
        "new handshakes presenting the new certificate",
        async {
            while cert.try_connect(addr, &[b"http/1.1"]).await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        },
    )
    .await;
}

/// An HTTP/1.1 connection over TLS trusting only `cert`, kept open across requests.
async fn keep_open(
    addr: SocketAddr,
    cert: &TlsCert,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let tls = cert.connect(addr, &[b"http/1.1"]).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn status_on(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
) -> u16 {
    let resp = within(PATIENCE, "a response", sender.send_request(get("/echo")))
        .await
        .expect("request on the open connection failed");
    resp.status().as_u16()
}

#[tokio::test]
async fn sighup_does_not_end_warden() {
    let up = Upstream::start().await;
    let config = Config::new(&up.url());
    let warden = Spawned::start(&config.write_file()).await;
    warden.signal("HUP");
    warden
        .wait_for_log("SIGHUP: no TLS to reload; routes and clients need a restart")
        .await;
    let reply = Client::http1().get(&warden.url("/healthz")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn sighup_loads_a_replaced_certificate_and_keeps_the_old_one_when_the_new_is_bad() {
    let up = Upstream::start().await;
    let (a, b) = (TlsCert::self_signed(), TlsCert::self_signed());
    let store = StoreDir::new();
    // No periodic check: only the signal can make the change.
    let config = Config::new(&up.url())
        .store(&store)
        .server(&tls_line(&a, "0s"))
        .write_file();
    let warden = Spawned::start(&config).await;
    let addr = warden.addr();
    let mut open = keep_open(addr, &a).await;
    assert_eq!(status_on(&mut open).await, 200);

    replace_files(&a, &b);
    assert!(
        b.try_connect(addr, &[b"http/1.1"]).await.is_err(),
        "not before the signal"
    );
    warden.signal("HUP");
    presents(addr, &b).await;
    warden
        .wait_for_log("SIGHUP: reloaded TLS; routes and clients need a restart")
        .await;
    assert_eq!(
        status_on(&mut open).await,
        200,
        "the open connection keeps working"
    );

    // A key that does not fit the certificate: refused, B stays.
    let c = TlsCert::self_signed();
    std::fs::write(&a.key_path, c.pem().1).unwrap();
    warden.signal("HUP");
    warden.wait_for_log("reload failed").await;
    assert!(b.try_connect(addr, &[b"http/1.1"]).await.is_ok());
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_loaded_for_new_connections_only() {
    let up = Upstream::start().await;
    let (a, b) = (TlsCert::self_signed(), TlsCert::self_signed());
    let proxy = Proxy::start(Config::new(&up.url()).server(&tls_line(&a, "100ms"))).await;
    let mut open = keep_open(proxy.addr(), &a).await;
    assert_eq!(status_on(&mut open).await, 200);
    replace_files(&a, &b);
    presents(proxy.addr(), &b).await;
    assert!(a.try_connect(proxy.addr(), &[b"http/1.1"]).await.is_err());
    assert_eq!(
        status_on(&mut open).await,
        200,
        "the open connection keeps working"
    );
}

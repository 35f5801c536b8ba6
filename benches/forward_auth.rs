//! One forward-auth decision over a kept-alive loopback connection, as nginx's `auth_request`
//! asks it (`X-Original-*`), with the decision cache and without it: what the cache saves per
//! decision on a bearer route, socket and HTTP included.

use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

const SECRET_SHA256: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

struct Asker {
    sender: SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

fn start(rt: &Runtime, cache_capacity: u64) -> Asker {
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[endpoints]\nforward_auth = \"/fa\"\n\
         [forward_auth]\ncache_capacity = {cache_capacity}\n\
         [store]\nurl = \"sqlite://{}/bench.db\"\n\
         [[routes]]\npath = \"/api/**\"\nauth = \"bearer\"\nscopes = [\"read\"]\n\
         [[clients]]\nid = \"bench\"\nsecret_sha256 = \"{SECRET_SHA256}\"\nscopes = [\"read\"]\n",
        dir.path().display(),
    );
    let settings = warden::Settings::from_toml(&toml).expect("bench config");
    rt.block_on(async {
        let warden = warden::Warden::new(settings).await.expect("warden");
        let issuer = warden.issuer();
        let client = issuer
            .store()
            .get_client("bench")
            .await
            .expect("store")
            .expect("client");
        let token = issuer
            .issue_access_token(&client, vec!["read".into()])
            .await
            .expect("token")
            .value;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warden::run(listener, warden, std::future::pending::<()>()));
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Asker {
            sender,
            addr,
            token,
            _dir: dir,
        }
    })
}

impl Asker {
    async fn ask(&mut self) -> u16 {
        let req = Request::get(format!("http://{}/fa", self.addr))
            .header("x-original-method", "GET")
            .header("x-original-uri", "/api/orders/7?view=full")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Empty::new())
            .expect("request");
        let resp = self.sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        status
    }
}

fn decisions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (name, capacity) in [
        ("forward_auth/decision_cached", 10_000),
        ("forward_auth/decision_uncached", 0),
    ] {
        let mut asker = start(&rt, capacity);
        assert_eq!(
            rt.block_on(asker.ask()),
            200,
            "the bench asks an allowed request"
        );
        c.bench_function(name, |b| b.iter(|| rt.block_on(asker.ask())));
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);

//! Micro-benchmarks of the per-request work that needs no network: routing, client-IP
//! resolution and header hygiene. The load comparison with nginx is `../shared/bench/run.sh`
//! (see docs/benchmarks.md).

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use warden::Settings;
use warden::forward::{Origin, set_forwarded, strip_hop_by_hop, strip_identity};
use warden::gate::client_ip;
use warden::router::{Router, Target};

fn typical_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("connection", "keep-alive"),
        ("x-request-id", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
        ("x-forwarded-for", "198.51.100.23"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn routing(c: &mut Criterion) {
    let settings = Settings::from_toml(
        r#"
[[routes]]
path = "/v1/orders/{id}"
methods = ["GET", "PUT"]
auth = "none"
[[routes]]
path = "/v1/accounts/*/positions"
auth = "none"
[[routes]]
path = "/public/**"
auth = "none"
"#,
    )
    .expect("bench config");
    let router = Router::new(&settings.endpoints, settings.routes);
    c.bench_function("router/resolve_third_route", |b| {
        b.iter(|| {
            matches!(
                router.resolve(&Method::GET, black_box("/public/a/b/c")),
                Target::Proxy(_)
            )
        })
    });
}

fn client_ip_and_headers(c: &mut Criterion) {
    let trusted = vec!["10.0.0.0/8".parse().expect("cidr")];
    let headers = typical_headers();
    c.bench_function("client_ip/untrusted_peer", |b| {
        b.iter(|| {
            client_ip::resolve(
                black_box("192.0.2.1".parse().expect("ip")),
                &headers,
                &trusted,
            )
        })
    });
    c.bench_function("client_ip/trusted_peer_walks_xff", |b| {
        b.iter(|| {
            client_ip::resolve(
                black_box("10.0.0.1".parse().expect("ip")),
                &headers,
                &trusted,
            )
        })
    });
    let origin = Origin {
        peer: "192.0.2.1".parse().expect("ip"),
        peer_trusted: false,
        tls: false,
    };
    c.bench_function("forward/header_hygiene", |b| {
        b.iter_batched_ref(
            typical_headers,
            |h| {
                strip_hop_by_hop(h, false);
                strip_identity(h);
                set_forwarded(h, &origin, Some("api.example.com"));
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, routing, client_ip_and_headers);
criterion_main!(benches);

//! Micro-benchmarks of the per-request work that needs no network: routing, client-IP
//! resolution and header hygiene. The load comparison with nginx is `../shared/bench/run.sh`
//! (see docs/benchmarks.md).

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use warden::Settings;
use warden::forward::{set_forwarded, strip_hop_by_hop, strip_identity};
use warden::gate::client_ip;
use warden::gate::client_ip::Origin;
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
                set_forwarded(
                    h,
                    &origin,
                    Some(HeaderValue::from_static("api.example.com")),
                );
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, routing, client_ip_and_headers);

/// A signed 1 KiB POST as a client sends it: bearer, idempotency key, Content-Digest, and a
/// signature over what Warden's default policy requires.
fn signed_post() -> (http::Uri, HeaderMap, Vec<u8>, ed25519_dalek::SigningKey) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let uri: http::Uri = "http://api.example.com/v1/orders".parse().expect("uri");
    let mut headers = typical_headers();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer wdn_at_0123456789abcdef0123456789abcdef"),
    );
    headers.insert(
        "x-idempotency-key",
        HeaderValue::from_static("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    );
    headers.remove("x-forwarded-for");
    let body = vec![b'x'; 1024];
    let created = warden::clock::Clock::default().now();
    let opts = warden::httpsig::SignOptions::new("bench-key", created);
    warden::httpsig::sign_request("POST", &uri, &mut headers, &body, &opts, &key).expect("sign");
    (uri, headers, body, key)
}

fn signature_and_digest(c: &mut Criterion) {
    use warden::gate::signature::{ClientKeys, Endpoint, RequestParts, SignatureGate};
    use warden::policy::SignatureMode;
    let (uri, headers, body, key) = signed_post();
    let settings = Settings::from_toml("").expect("bench config");
    let gate = SignatureGate::new(
        &settings.signatures,
        settings.signature_context(),
        HeaderValue::from_static("Bearer realm=\"warden\""),
    );
    let record = warden::store::ClientRecord {
        id: "bench".into(),
        name: "bench".into(),
        account: "bench".into(),
        secrets: vec![],
        keys: vec![warden::store::SigningKey {
            key_id: "bench-key".into(),
            alg: "ed25519".into(),
            public_key: key.verifying_key().to_bytes().to_vec(),
        }],
        trusted_ips: vec![],
        scopes: vec![],
        enabled: true,
        source: warden::store::ClientSource::Config,
        created_at: 0,
        updated_at: 0,
    };
    let keys = ClientKeys::from_record(&record, SignatureMode::Auto, &Default::default());
    let origin = Origin {
        peer: "192.0.2.1".parse().expect("ip"),
        peer_trusted: false,
        tls: false,
    };
    let method = Method::POST;
    let parts = RequestParts {
        method: &method,
        uri: &uri,
        headers: &headers,
        has_body: true,
        origin: &origin,
    };
    let at = Endpoint {
        mode: SignatureMode::Auto,
        cover: &[],
        public_url: None,
    };
    let now = warden::clock::Clock::default().now();
    c.bench_function("signature/parse_fields", |b| {
        b.iter(|| warden::httpsig::parse_signatures(black_box(&headers)).expect("parse"))
    });
    let parsed = warden::httpsig::parse_signatures(&headers)
        .expect("parse")
        .remove(0);
    let view = warden::httpsig::RequestView::new(
        "POST",
        "http",
        "api.example.com",
        "/v1/orders",
        None,
        &headers,
    );
    c.bench_function("signature/base", |b| {
        b.iter(|| warden::httpsig::signature_base(black_box(&view), &parsed).expect("base"))
    });
    let base = warden::httpsig::signature_base(&view, &parsed).expect("base");
    let sig = ed25519_dalek::Signature::from_slice(parsed.signature()).expect("64 bytes");
    let verifying = key.verifying_key();
    // The floor: what the Ed25519 check alone costs.
    c.bench_function("signature/ed25519_verify_strict", |b| {
        b.iter(|| {
            verifying
                .verify_strict(black_box(base.as_bytes()), &sig)
                .expect("valid")
        })
    });
    // What Warden runs: the same checks as verify_strict without decompressing R.
    c.bench_function("signature/verify_ed25519", |b| {
        b.iter(|| {
            warden::httpsig::verify_ed25519(
                black_box(base.as_bytes()),
                parsed.signature(),
                &verifying,
            )
            .expect("valid")
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    c.bench_function("signature/gate_check_signed_post", |b| {
        b.iter(|| {
            rt.block_on(gate.check(black_box(&parts), &at, "bench", &keys, now, true))
                .expect("verified")
        })
    });
    // Batch verification, per signature, for the batch sizes a loaded Warden sees.
    for n in [1usize, 4, 16, 64] {
        let keys: Vec<ed25519_dalek::SigningKey> = (0..n)
            .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 1; 32]))
            .collect();
        let messages: Vec<Vec<u8>> = (0..n).map(|i| format!("{base}{i}").into_bytes()).collect();
        let sigs: Vec<ed25519_dalek::Signature> = keys
            .iter()
            .zip(&messages)
            .map(|(k, m)| ed25519_dalek::Signer::sign(k, m))
            .collect();
        let vks: Vec<ed25519_dalek::VerifyingKey> =
            keys.iter().map(|k| k.verifying_key()).collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        c.bench_function(&format!("signature/verify_batch_of_{n}"), |b| {
            b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &sigs, &vks).expect("valid"))
        });
    }
    c.bench_function("digest/sha512_1k_from_headers", |b| {
        b.iter(|| {
            let mut v = warden::digest::DigestVerifier::from_headers(black_box(&headers))
                .expect("digest")
                .expect("present");
            v.update(black_box(&body));
            v.finish().expect("match")
        })
    });
}

criterion_group!(signed, signature_and_digest);

/// The per-request cost of an idempotency key before the store: reading and validating the key,
/// and the fingerprint of a 1 KiB body (or of its checked `Content-Digest`).
fn idempotency_key_and_fingerprint(c: &mut Criterion) {
    use http::HeaderName;
    use warden::gate::idempotency::{BodyDigest, fingerprint, key_from};

    let body = vec![b'x'; 1024];
    let uri: http::Uri = "/v1/orders?region=eu".parse().expect("uri");
    c.bench_function("idempotency/fingerprint_1k_body", |b| {
        b.iter(|| {
            fingerprint(
                &Method::POST,
                black_box(&uri),
                BodyDigest::Bytes(black_box(&body)),
            )
        })
    });
    let digest = HeaderValue::from_str(&warden::digest::content_digest_header(
        &body,
        warden::digest::Algorithm::Sha512,
    ))
    .expect("digest header");
    c.bench_function("idempotency/fingerprint_checked_digest", |b| {
        b.iter(|| {
            fingerprint(
                &Method::POST,
                black_box(&uri),
                BodyDigest::Verified(black_box(&digest)),
            )
        })
    });
    let mut headers = typical_headers();
    headers.insert(
        "idempotency-key",
        HeaderValue::from_static("\"8e03978e-40d5-43e8-bc93-6894a57f9324\""),
    );
    let names = [
        HeaderName::from_static("idempotency-key"),
        HeaderName::from_static("x-idempotency-key"),
    ];
    c.bench_function("idempotency/key_sf_string", |b| {
        b.iter(|| key_from(black_box(&headers), &names).expect("valid key"))
    });
}

criterion_group!(idempotent, idempotency_key_and_fingerprint);

// ------------------------------------------------------------------ bearer check

/// The bearer check on a warm cache, the store behind it a real SQLite file: what every
/// request on an `auth = "bearer"` route pays (hash, change-marker read, cache hit).
fn bearer_cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings::from_toml(&format!(
        "[store]\nurl = \"sqlite://{}/bench.db\"\n[[clients]]\nid = \"bench\"\nsecret_sha256 = \"{}\"\nscopes = [\"read\"]\n",
        dir.path().display(),
        "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
    ))
    .expect("bench config");
    let warden = rt.block_on(warden::Warden::new(settings)).expect("warden");
    let issuer = warden.issuer();
    let client = rt
        .block_on(issuer.store().get_client("bench"))
        .expect("store")
        .expect("client");
    let issued = rt
        .block_on(issuer.issue_access_token(&client, vec!["read".into()]))
        .expect("token");
    let value = issued.value.clone();
    rt.block_on(issuer.authenticate_bearer(&value))
        .expect("warm");
    c.bench_function("bearer/cache_hit", |b| {
        b.iter(|| {
            rt.block_on(issuer.authenticate_bearer(black_box(&value)))
                .is_ok()
        })
    });
    c.bench_function("bearer/token_sha256", |b| {
        b.iter(|| warden::secret::hash(black_box(&value)))
    });
    c.bench_function("bearer/change_marker", |b| {
        b.iter(|| issuer.store().change_marker().is_ok())
    });
}

criterion_group!(bearer, bearer_cache_hit);

/// What `endpoints.metrics` adds to a bearer GET: three checks allowed, one request counted,
/// the request's and the upstream's latencies observed (per-route handles resolved at start).
fn metrics_per_request(c: &mut Criterion) {
    use warden::checks::Check;
    use warden::metrics::{Metrics, Outcome, RouteRef};
    let settings =
        Settings::from_toml("[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\n")
            .expect("bench config");
    let metrics = Metrics::new(&settings.routes);
    let elapsed = std::time::Duration::from_micros(40);
    c.bench_function("metrics/bearer_get_recorded", |b| {
        b.iter(|| {
            for check in [Check::Bearer, Check::Ip, Check::Scope] {
                metrics.decision(black_box(0), check, Outcome::Allow, "ok");
            }
            metrics.upstream(black_box(elapsed));
            metrics.request(RouteRef::Route(black_box(0)), 200, black_box(elapsed));
        })
    });
}

criterion_group!(observed, metrics_per_request);

/// The request span of `Warden::handle` (created, `route` and `client_id` recorded, entered
/// and left as an instrumented future is polled, closed), under the subscriber `warden serve`
/// installs: at `info`, where the span is live, and at `warn`, where it is disabled.
fn request_span(c: &mut Criterion) {
    for level in ["info", "warn"] {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::sink)
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            c.bench_function(&format!("tracing/request_span_{level}"), |b| {
                b.iter(|| {
                    let span = tracing::info_span!(
                        "request",
                        route = tracing::field::Empty,
                        client_id = tracing::field::Empty,
                        check = tracing::field::Empty,
                    );
                    // Entered and left once per poll; a bearer GET is polled about twice.
                    {
                        let _entered = span.enter();
                        // What `handle_in` does: the span taken as the current one.
                        let current = tracing::Span::current();
                        current.record("route", black_box("api"));
                        current.record("client_id", black_box("bench-client"));
                    }
                    drop(span.enter());
                    drop(span);
                })
            });
        });
    }
}

criterion_group!(spans, request_span);

criterion_main!(benches, signed, idempotent, bearer, observed, spans);

use super::*;
use crate::clock::Clock;
use crate::httpsig::SigParam;
use crate::store::{ClientRecord, ClientSource, SigningKey as StoredKey};
use ed25519_dalek::SigningKey;

const NOW: i64 = 1_700_000_000;

fn settings(extra: &str) -> crate::config::Settings {
    crate::config::Settings::from_toml(extra).unwrap()
}

fn gate(extra: &str) -> SignatureGate {
    let settings = settings(extra);
    SignatureGate::new(
        &settings.signatures,
        settings.signature_context(),
        HeaderValue::from_static("Bearer realm=\"warden\""),
    )
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn keys_of(seed: u8, id: &str) -> ClientKeys {
    let record = ClientRecord {
        id: "c1".into(),
        name: "c1".into(),
        account: "c1".into(),
        secrets: vec![],
        keys: vec![StoredKey {
            key_id: id.into(),
            alg: "ed25519".into(),
            public_key: signing_key(seed).verifying_key().to_bytes().to_vec(),
        }],
        trusted_ips: vec![],
        scopes: vec![],
        enabled: true,
        source: ClientSource::Config,
        created_at: 0,
        updated_at: 0,
    };
    ClientKeys::from_record(&record, SignatureMode::Auto, &HmacSecrets::new())
}

fn origin(tls: bool, trusted: bool) -> Origin {
    Origin {
        peer: "192.0.2.1".parse().unwrap(),
        peer_trusted: trusted,
        tls,
    }
}

struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    has_body: bool,
    origin: Origin,
}

impl Req {
    fn new(method: &str, target: &str, headers: &[(&str, &str)], has_body: bool) -> Self {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Self {
            method: method.parse().unwrap(),
            uri: target.parse().unwrap(),
            headers: h,
            has_body,
            origin: origin(false, false),
        }
    }

    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            has_body: self.has_body,
            origin: &self.origin,
        }
    }

    /// Signs as a client calling `http://api.test` would, and adds the headers.
    fn sign(&mut self, key: &SigningKey, components: &[&str], params: &[SigParam]) {
        let view = RequestView::new(
            self.method.as_str(),
            "http",
            "api.test",
            self.uri.path(),
            self.uri.query(),
            &self.headers,
        );
        let signed = httpsig::sign(&view, "sig1", components, params, key).unwrap();
        self.headers
            .insert("signature-input", signed.signature_input.parse().unwrap());
        self.headers
            .insert("signature", signed.signature.parse().unwrap());
    }
}

fn route() -> Endpoint<'static> {
    Endpoint {
        mode: SignatureMode::Auto,
        cover: &[],
        public_url: None,
    }
}

fn params(created: i64, keyid: &str) -> Vec<SigParam> {
    vec![SigParam::Created(created), SigParam::KeyId(keyid.into())]
}

fn code(r: Result<Verdict, Problem>) -> &'static str {
    r.unwrap_err().code()
}

#[tokio::test]
async fn a_keyed_client_must_sign_and_is_told_what_to_cover() {
    let g = gate("");
    let req = Req::new(
        "POST",
        "/v1/orders",
        &[("host", "api.test"), ("authorization", "Bearer t")],
        true,
    );
    let err = g
        .check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "signature_missing");
    let Problem::Signature(p) = err else {
        unreachable!()
    };
    assert_eq!(
        p.accept.unwrap(),
        r#"sig1=("@method" "@target-uri" "content-digest" "authorization");created;keyid="k1""#
    );
    assert!(p.challenge.is_some());
}

#[tokio::test]
async fn the_key_id_is_not_revealed_to_unauthenticated_callers() {
    let g = gate("");
    let req = Req::new("GET", "/x", &[("host", "api.test")], false);
    let Err(Problem::Signature(p)) = g
        .check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, false)
        .await
    else {
        panic!()
    };
    assert_eq!(
        p.accept.unwrap(),
        r#"sig1=("@method" "@target-uri");created"#
    );
}

#[tokio::test]
async fn a_keyless_client_passes_unsigned_but_a_signature_it_sends_is_checked() {
    let g = gate("");
    let mut req = Req::new("GET", "/x", &[("host", "api.test")], false);
    let none = ClientKeys::none(SignatureMode::Auto);
    assert_eq!(
        g.check(&req.parts(), &route(), "c1", &none, NOW, true)
            .await
            .unwrap(),
        Verdict::Unchecked
    );
    req.sign(
        &signing_key(1),
        &["@method", "@target-uri"],
        &params(NOW, "k1"),
    );
    assert_eq!(
        code(
            g.check(&req.parts(), &route(), "c1", &none, NOW, true)
                .await
        ),
        "unknown_key"
    );
}

#[tokio::test]
async fn a_good_signature_verifies_and_reports_digest_coverage() {
    let g = gate("");
    let mut req = Req::new(
        "POST",
        "/v1/orders?x=1",
        &[
            ("host", "api.test"),
            ("content-digest", "sha-256=:AAAA:"),
            ("x-idempotency-key", "abc"),
        ],
        true,
    );
    req.sign(
        &signing_key(1),
        &[
            "@method",
            "@authority",
            "@path",
            "@query",
            "content-digest",
            "x-idempotency-key",
        ],
        &params(NOW - 10, "k1"),
    );
    let v = g
        .check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
        .await
        .unwrap();
    assert!(v.digest_covered());
}

#[tokio::test]
async fn path_without_query_leaves_the_query_unsigned_and_is_refused() {
    let g = gate("");
    let mut req = Req::new("GET", "/v1/orders?limit=5", &[("host", "api.test")], false);
    req.sign(
        &signing_key(1),
        &["@method", "@authority", "@path"],
        &params(NOW, "k1"),
    );
    let err = g
        .check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "component_not_covered");
    let Problem::Signature(p) = err else {
        unreachable!()
    };
    assert!(p.detail.contains("@query"), "{}", p.detail);
}

#[tokio::test]
async fn present_sensitive_headers_and_the_body_digest_must_be_covered() {
    let g = gate("");
    let mut req = Req::new(
        "POST",
        "/a",
        &[
            ("host", "api.test"),
            ("content-digest", "sha-256=:AAAA:"),
            ("x-client-id", "c1"),
        ],
        true,
    );
    req.sign(
        &signing_key(1),
        &["@method", "@target-uri", "content-digest"],
        &params(NOW, "k1"),
    );
    let Err(Problem::Signature(p)) = g
        .check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
        .await
    else {
        panic!()
    };
    assert_eq!(p.refusal, SignatureRefusal::ComponentNotCovered);
    assert!(p.detail.ends_with("x-client-id"), "{}", p.detail);
}

#[tokio::test]
async fn a_body_without_a_digest_is_refused_before_the_signature_is_read() {
    let g = gate("");
    let mut req = Req::new("POST", "/a", &[("host", "api.test")], true);
    req.sign(
        &signing_key(1),
        &["@method", "@target-uri"],
        &params(NOW, "k1"),
    );
    assert_eq!(
        code(
            g.check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
                .await
        ),
        "digest_missing"
    );
}

#[tokio::test]
async fn times_outside_the_window_are_refused_with_their_own_codes() {
    let g = gate("[signatures]\nmax_age = \"60s\"\nclock_skew = \"5s\"\n");
    let keys = keys_of(1, "k1");
    let sign_at = async |params: &[SigParam]| {
        let mut req = Req::new("GET", "/a", &[("host", "api.test")], false);
        req.sign(&signing_key(1), &["@method", "@target-uri"], params);
        g.check(&req.parts(), &route(), "c1", &keys, NOW, true)
            .await
    };
    assert!(sign_at(&params(NOW - 60, "k1")).await.is_ok());
    assert_eq!(
        code(sign_at(&params(NOW - 61, "k1")).await),
        "signature_expired"
    );
    assert_eq!(
        code(sign_at(&params(NOW + 6, "k1")).await),
        "signature_not_yet_valid"
    );
    let expired = [
        SigParam::Created(NOW - 10),
        SigParam::Expires(NOW - 6),
        SigParam::KeyId("k1".into()),
    ];
    assert_eq!(code(sign_at(&expired).await), "signature_expired");
    assert_eq!(
        code(sign_at(&[SigParam::KeyId("k1".into())]).await),
        "signature_invalid"
    );
}

#[tokio::test]
async fn another_key_under_the_same_keyid_does_not_verify() {
    let g = gate("");
    let mut req = Req::new("GET", "/a", &[("host", "api.test")], false);
    req.sign(
        &signing_key(2),
        &["@method", "@target-uri"],
        &params(NOW, "k1"),
    );
    assert_eq!(
        code(
            g.check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
                .await
        ),
        "signature_invalid"
    );
}

#[tokio::test]
async fn alg_must_match_the_key() {
    let g = gate("");
    let mut req = Req::new("GET", "/a", &[("host", "api.test")], false);
    let p = [
        SigParam::Created(NOW),
        SigParam::KeyId("k1".into()),
        SigParam::Alg("hmac-sha256".into()),
    ];
    req.sign(&signing_key(1), &["@method", "@target-uri"], &p);
    assert_eq!(
        code(
            g.check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
                .await
        ),
        "algorithm_mismatch"
    );
}

#[tokio::test]
async fn a_nonce_is_accepted_once() {
    let g = gate("");
    let mut req = Req::new("GET", "/a", &[("host", "api.test")], false);
    let p = [
        SigParam::Created(NOW),
        SigParam::KeyId("k1".into()),
        SigParam::Nonce("n-1".into()),
    ];
    req.sign(&signing_key(1), &["@method", "@target-uri"], &p);
    let keys = keys_of(1, "k1");
    assert!(
        g.check(&req.parts(), &route(), "c1", &keys, NOW, true)
            .await
            .is_ok()
    );
    assert_eq!(
        code(
            g.check(&req.parts(), &route(), "c1", &keys, NOW, true)
                .await
        ),
        "signature_replayed"
    );
    // The same nonce under another client is another nonce.
    assert!(
        g.check(&req.parts(), &route(), "c2", &keys, NOW, true)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_required_nonce_must_be_there() {
    let g = gate("[signatures]\nnonce = \"required\"\n");
    let mut req = Req::new("GET", "/a", &[("host", "api.test")], false);
    req.sign(
        &signing_key(1),
        &["@method", "@target-uri"],
        &params(NOW, "k1"),
    );
    assert_eq!(
        code(
            g.check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
                .await
        ),
        "nonce_missing"
    );
}

/// A GET signed by key `k1` (seed 1) with `nonce`, created at `created` (and `expires`).
fn nonced(nonce: &str, created: i64, expires: Option<i64>) -> Req {
    let mut req = Req::new("GET", "/a", &[("host", "api.test")], false);
    let mut p = vec![
        SigParam::Created(created),
        SigParam::KeyId("k1".into()),
        SigParam::Nonce(nonce.into()),
    ];
    p.extend(expires.map(SigParam::Expires));
    req.sign(&signing_key(1), &["@method", "@target-uri"], &p);
    req
}

#[tokio::test]
async fn a_nonce_signed_before_the_process_started_is_refused() {
    // A restart forgets the nonces in memory: what was signed before it cannot be vouched
    // for, what is signed from then on is checked as always; signatures without a nonce
    // are not affected.
    let g = gate("[signatures]\nnonce = \"optional\"\nmax_age = \"5m\"\n");
    let keys = keys_of(1, "k1");
    let clock = Clock::default();
    clock.freeze();
    let started = clock.now();
    g.fence_nonces(started);
    let check = async |req: &Req| {
        g.check(&req.parts(), &route(), "c1", &keys, clock.now(), true)
            .await
    };
    assert_eq!(
        code(check(&nonced("n-before", started - 1, None)).await),
        "signature_replayed"
    );
    assert!(check(&nonced("n-at-start", started, None)).await.is_ok());
    let mut plain = Req::new("GET", "/a", &[("host", "api.test")], false);
    plain.sign(
        &signing_key(1),
        &["@method", "@target-uri"],
        &[
            SigParam::Created(started - 60),
            SigParam::KeyId("k1".into()),
        ],
    );
    assert!(check(&plain).await.is_ok(), "no nonce, no fence");
}

#[tokio::test]
async fn a_nonce_is_refused_through_the_last_second_its_signature_is_accepted() {
    // Review finding 10: the nonce must outlive the signature's whole window, which
    // `check_times` measures in whole seconds of the same clock.
    let g = gate("[signatures]\nnonce = \"required\"\nmax_age = \"2s\"\nclock_skew = \"1s\"\n");
    let keys = keys_of(1, "k1");
    let clock = Clock::default();
    clock.freeze();
    let check = async |req: &Req| {
        g.check(&req.parts(), &route(), "c1", &keys, clock.now(), true)
            .await
    };
    let start = clock.now();
    // Created now: accepted through second start + max_age.
    let now_req = nonced("n-now", start, None);
    // Created clock_skew ahead: accepted from now through second start + skew + max_age.
    let ahead = nonced("n-ahead", start + 1, None);
    assert!(check(&now_req).await.is_ok());
    assert!(check(&ahead).await.is_ok());
    assert_eq!(code(check(&now_req).await), "signature_replayed");
    clock.advance(2);
    assert_eq!(code(check(&now_req).await), "signature_replayed");
    assert_eq!(code(check(&ahead).await), "signature_replayed");
    clock.advance(1);
    assert_eq!(code(check(&now_req).await), "signature_expired");
    assert_eq!(code(check(&ahead).await), "signature_replayed");
    clock.advance(1);
    assert_eq!(code(check(&ahead).await), "signature_expired");
    let cache = g.nonces.as_ref().unwrap();
    assert!(check(&nonced("n-later", clock.now(), None)).await.is_ok());
    assert_eq!(cache.len(), 1, "the lapsed nonces are forgotten");
}

#[tokio::test]
async fn an_expires_sooner_than_max_age_frees_the_nonce_sooner() {
    let g = gate(
        "[signatures]\nnonce = \"required\"\nmax_age = \"60s\"\nclock_skew = \"1s\"\n\
         nonce_cache_capacity = 1\n",
    );
    let keys = keys_of(1, "k1");
    let check = async |req: &Req, now: i64| {
        g.check(&req.parts(), &route(), "c1", &keys, now, true)
            .await
    };
    let short = nonced("n-short", NOW, Some(NOW + 2));
    assert!(check(&short, NOW).await.is_ok());
    // Accepted through expires + clock_skew, so remembered that long ...
    assert_eq!(code(check(&short, NOW + 3).await), "signature_replayed");
    let next = nonced("n-next", NOW + 3, None);
    assert_eq!(code(check(&next, NOW + 3).await), "nonce_quota_exceeded");
    // ... and no longer: its room is free long before created + max_age.
    assert_eq!(code(check(&short, NOW + 4).await), "signature_expired");
    assert!(check(&next, NOW + 4).await.is_ok());
}

#[tokio::test]
async fn a_flood_of_nonces_never_makes_another_clients_request_replayable() {
    // Review finding 11, with a small cache: the share of one client is a quarter of it.
    let g = gate("[signatures]\nnonce = \"required\"\nnonce_cache_capacity = 8\n");
    let keys = keys_of(1, "k1");
    let victim = nonced("n-victim", NOW, None);
    let as_client = async |client: &str, req: &Req| {
        g.check(&req.parts(), &route(), client, &keys, NOW, true)
            .await
    };
    assert!(as_client("victim", &victim).await.is_ok());
    assert_eq!(
        code(as_client("victim", &victim).await),
        "signature_replayed"
    );
    let mut refused = Vec::new();
    for i in 0..300 {
        match as_client("flood", &nonced(&format!("n-{i}"), NOW, None)).await {
            Ok(_) => {}
            Err(p) => refused.push(p),
        }
    }
    assert_eq!(refused.len(), 300 - 2, "the flood got its share only");
    let resp = refused.pop().unwrap().into_response();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "301");
    assert_eq!(
        code(as_client("victim", &victim).await),
        "signature_replayed"
    );
    // Other clients fill the rest; then the cache refuses new nonces (503), whoever sends
    // them, and still forgets none.
    for i in 0..5 {
        let c = format!("c{i}");
        assert!(
            as_client(&c, &nonced("n-1", NOW, None)).await.is_ok(),
            "{c}"
        );
    }
    let Err(full) = as_client("victim", &nonced("n-new", NOW, None)).await else {
        panic!("the cache is full")
    };
    let resp = full.into_response();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "301");
    assert_eq!(
        code(as_client("victim", &victim).await),
        "signature_replayed"
    );
}

#[tokio::test]
async fn malformed_fields_are_400_and_never_panic() {
    let g = gate("");
    for (input, sig) in [
        ("sig1=(\"@method\"", "sig1=:AAAA:"),
        ("sig1=(\"@method\");created=1", "sig2=:AAAA:"),
        ("sig1=(\"@Method\");created=1", "sig1=:AAAA:"),
        ("sig1=(@method);created=1", "sig1=:AAAA:"),
    ] {
        let req = Req::new(
            "GET",
            "/a",
            &[
                ("host", "api.test"),
                ("signature-input", input),
                ("signature", sig),
            ],
            false,
        );
        let err = g
            .check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "signature_malformed", "{input}");
    }
}

#[test]
fn x_client_id_must_name_the_credentials_client() {
    let g = gate("");
    let req = Req::new("GET", "/a", &[("x-client-id", "c2")], false);
    assert_eq!(
        g.check_client_id(&req.headers, "c1").unwrap_err().code(),
        "client_id_mismatch"
    );
    let req = Req::new(
        "GET",
        "/a",
        &[("x-client-id", "c1"), ("x-client-id", "c1")],
        false,
    );
    assert!(g.check_client_id(&req.headers, "c1").is_err());
    assert!(
        g.check_client_id(
            &Req::new("GET", "/a", &[("x-client-id", "c1")], false).headers,
            "c1"
        )
        .is_ok()
    );
    assert!(g.check_client_id(&HeaderMap::new(), "c1").is_ok());
}

#[tokio::test]
async fn the_external_origin_comes_from_config_or_trusted_proxies_only() {
    let mut req = Req::new(
        "GET",
        "/v1/a",
        &[
            ("host", "internal:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test, api.example.com"),
        ],
        false,
    );
    let e = External::of(&req.parts(), None);
    assert_eq!((e.scheme, e.authority), ("http", "internal:8080"));
    req.origin = origin(false, true);
    let e = External::of(&req.parts(), None);
    assert_eq!((e.scheme, e.authority), ("https", "api.example.com"));
    req.origin = origin(true, false);
    assert_eq!(External::of(&req.parts(), None).scheme, "https");
    let url = PublicUrl {
        scheme: "https".into(),
        authority: "api.example.com".into(),
        prefix: "/payments".into(),
    };
    let e = External::of(&req.parts(), Some(&url));
    assert_eq!(
        (e.scheme, e.authority, &*e.path),
        ("https", "api.example.com", "/payments/v1/a")
    );
}

proptest::proptest! {
    #[test]
    fn never_panics_on_any_signature_fields(input in "\\PC{0,80}", sig in "\\PC{0,80}") {
        let g = gate("");
        if let (Ok(i), Ok(s)) = (HeaderValue::from_str(&input), HeaderValue::from_str(&sig)) {
            let mut req = Req::new("POST", "/a", &[("host", "api.test"), ("content-digest", "sha-256=:AAAA:")], true);
            req.headers.insert("signature-input", i);
            req.headers.insert("signature", s);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            if let Err(p) = rt.block_on(g.check(&req.parts(), &route(), "c1", &keys_of(1, "k1"), NOW, true)) {
                let status = p.into_response().status().as_u16();
                proptest::prop_assert!(status == 400 || status == 401, "{status}");
            }
        }
    }
}

/// A SQLite store in a file of its own, and where that file is.
async fn file_store(dir: &tempfile::TempDir) -> (Arc<dyn Store>, std::path::PathBuf) {
    let path = dir.path().join("warden.db");
    let store = crate::store::open(path.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    (store, path)
}

#[tokio::test]
async fn a_nonce_claimed_in_the_store_is_refused_by_every_gate_on_it() {
    // Two processes on one store (two handles on one file stand for two replicas).
    let dir = tempfile::tempdir().unwrap();
    let (store_a, path) = file_store(&dir).await;
    let store_b = crate::store::open(path.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let cfg = "[signatures]\nnonce = \"optional\"\nnonce_store = \"store\"\n";
    let a = gate(cfg).with_store(store_a);
    let b = gate(cfg).with_store(store_b);
    assert!(a.claims_nonces_in_store() && b.claims_nonces_in_store());
    let keys = keys_of(1, "k1");
    let req = nonced("n-shared", NOW, None);
    let at = async |g: &SignatureGate| {
        g.check(&req.parts(), &route(), "c1", &keys, NOW, true)
            .await
    };
    assert!(at(&a).await.is_ok());
    assert_eq!(code(at(&b).await), "signature_replayed");
    // B now remembers it too: refused from memory, and at A as before.
    assert_eq!(code(at(&b).await), "signature_replayed");
    assert_eq!(code(at(&a).await), "signature_replayed");
    // Memory only (the default with SQLite): B would not have known.
    let alone = gate("[signatures]\nnonce = \"optional\"\n").with_store(
        crate::store::open(path.to_str().unwrap(), Default::default())
            .await
            .unwrap(),
    );
    assert!(!alone.claims_nonces_in_store());
    assert!(at(&alone).await.is_ok());
}

#[tokio::test]
async fn a_store_that_cannot_claim_a_nonce_refuses_the_request_and_a_retry_is_no_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = file_store(&dir).await;
    let g = gate("[signatures]\nnonce = \"required\"\nnonce_store = \"store\"\n").with_store(store);
    let keys = keys_of(1, "k1");
    let req = nonced("n-1", NOW, None);
    let check = async || {
        g.check(&req.parts(), &route(), "c1", &keys, NOW, true)
            .await
    };
    // The claim fails (its table is gone): closed, with nothing of the store's error shown.
    let admin = rusqlite::Connection::open(&path).unwrap();
    admin
        .execute_batch("ALTER TABLE nonces RENAME TO nonces_away")
        .unwrap();
    let refused = check().await.unwrap_err();
    assert_eq!(refused.code(), "store_unavailable");
    let resp = refused.into_response();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    // Once the store answers again, the same request is not taken for a replay.
    admin
        .execute_batch("ALTER TABLE nonces_away RENAME TO nonces")
        .unwrap();
    assert!(check().await.is_ok());
    assert_eq!(code(check().await), "signature_replayed");
}

#[tokio::test]
async fn a_store_that_keeps_every_claim_replaces_the_restart_fence() {
    // After a restart the store still holds the nonces used before it, when a commit survives
    // what the restart followed: PostgreSQL, or SQLite syncing every commit.
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_of(1, "k1");
    let before = nonced("n-before", NOW - 10, None);
    let used = nonced("n-used", NOW - 10, None);
    let durable = "[signatures]\nnonce = \"optional\"\nnonce_store = \"store\"\n\
                   [store]\ndurability = \"full\"\n";
    let (store, path) = file_store(&dir).await;
    let first = gate(durable).with_store(store);
    assert!(
        first
            .check(&used.parts(), &route(), "c1", &keys, NOW - 5, true)
            .await
            .is_ok()
    );
    drop(first);
    let open = async || {
        crate::store::open(path.to_str().unwrap(), Default::default())
            .await
            .unwrap()
    };
    let restarted = gate(durable).with_store(open().await);
    restarted.fence_nonces(NOW);
    let check = async |g: &SignatureGate, req: &Req| {
        g.check(&req.parts(), &route(), "c1", &keys, NOW, true)
            .await
    };
    assert!(check(&restarted, &before).await.is_ok(), "no fence");
    assert_eq!(code(check(&restarted, &used).await), "signature_replayed");
    // With `durability = "normal"` a power loss may lose the last claims: the fence stays.
    let normal = gate("[signatures]\nnonce = \"optional\"\nnonce_store = \"store\"\n")
        .with_store(open().await);
    normal.fence_nonces(NOW);
    let fenced = nonced("n-other", NOW - 10, None);
    assert_eq!(code(check(&normal, &fenced).await), "signature_replayed");
}

use std::sync::atomic::Ordering;

use http::{HeaderValue, Uri};
use http_body_util::BodyExt;
use proptest::prelude::*;

use super::*;
use crate::policy::IdempotencyMode;
use crate::store::TokenKind;

fn names() -> Vec<HeaderName> {
    vec![
        HeaderName::from_static("idempotency-key"),
        HeaderName::from_static("x-idempotency-key"),
    ]
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

fn code(r: Result<Option<String>, Problem>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn sf_strings_and_plain_values_are_keys() {
    let k = key_from(
        &headers(&[("idempotency-key", b"\"8e03978e-40d5-43e8\"")]),
        &names(),
    );
    assert_eq!(k.unwrap().as_deref(), Some("8e03978e-40d5-43e8"));
    let k = key_from(
        &headers(&[("x-idempotency-key", b"8e03978e-40d5")]),
        &names(),
    );
    assert_eq!(k.unwrap().as_deref(), Some("8e03978e-40d5"));
    let k = key_from(
        &headers(&[
            ("idempotency-key", b"\"a\\\"b\""),
            ("x-idempotency-key", b"a\"b"),
        ]),
        &names(),
    );
    assert_eq!(k.unwrap().as_deref(), Some("a\"b"), "both names may agree");
    assert_eq!(key_from(&HeaderMap::new(), &names()).unwrap(), None);
}

#[test]
fn bad_keys_are_refused_before_any_lookup() {
    let long = vec![b'a'; 256];
    for bad in [
        &b"\"\""[..],
        b"\"unterminated",
        b"\"has space\"",
        b"\"x\" trailing",
        b"has space",
        b"caf\xc3\xa9",
        &long,
    ] {
        let h = headers(&[("idempotency-key", bad)]);
        assert_eq!(
            code(key_from(&h, &names())),
            "idempotency_key_invalid",
            "{bad:?}"
        );
    }
    assert!(parse_key(&[b'a'; 255]).is_ok());
    let two = headers(&[("idempotency-key", b"\"a\""), ("idempotency-key", b"\"a\"")]);
    assert_eq!(code(key_from(&two, &names())), "idempotency_key_invalid");
    let differ = headers(&[("idempotency-key", b"\"a\""), ("x-idempotency-key", b"b")]);
    assert_eq!(code(key_from(&differ, &names())), "idempotency_key_invalid");
}

#[test]
fn auto_requires_keys_on_signed_posts_only() {
    let post = [Method::POST];
    use IdempotencyMode::*;
    assert_eq!(Auto.need(&Method::POST, true, &post), Need::Required);
    assert_eq!(Auto.need(&Method::POST, false, &post), Need::Optional);
    assert_eq!(Auto.need(&Method::PATCH, true, &post), Need::Optional);
    assert_eq!(Required.need(&Method::PUT, false, &post), Need::Required);
    assert_eq!(Required.need(&Method::GET, true, &post), Need::Off);
    assert_eq!(Optional.need(&Method::DELETE, true, &post), Need::Optional);
    assert_eq!(Off.need(&Method::POST, true, &post), Need::Off);
}

#[test]
fn the_fingerprint_binds_method_target_and_body() {
    let uri: Uri = "/v1/orders?x=1".parse().unwrap();
    let base = fingerprint(&Method::POST, &uri, BodyDigest::Bytes(b"{}"));
    assert_eq!(
        base,
        fingerprint(&Method::POST, &uri, BodyDigest::Bytes(b"{}"))
    );
    let other_query: Uri = "/v1/orders?x=2".parse().unwrap();
    let no_query: Uri = "/v1/orders".parse().unwrap();
    for other in [
        fingerprint(&Method::PUT, &uri, BodyDigest::Bytes(b"{}")),
        fingerprint(&Method::POST, &other_query, BodyDigest::Bytes(b"{}")),
        fingerprint(&Method::POST, &no_query, BodyDigest::Bytes(b"{}")),
        fingerprint(&Method::POST, &uri, BodyDigest::Bytes(b"{ }")),
        fingerprint(
            &Method::POST,
            &uri,
            BodyDigest::Verified(&HeaderValue::from_static("sha-256=:e30=:")),
        ),
    ] {
        assert_ne!(base, other);
    }
}

#[test]
fn access_tokens_share_their_clients_namespace_and_other_credentials_have_their_own() {
    let of = |kind: TokenKind, token_id: &str| Identity {
        token_id: token_id.into(),
        kind,
        client_id: "acme".into(),
        account: "acme".into(),
        user: None,
        audience: None,
        scopes: vec![],
        trusted_ips: vec![],
        client_trusted_ips: vec![],
        expires_at: None,
        client_id_header: HeaderValue::from_static("acme"),
        token_id_header: HeaderValue::from_static("t"),
        scopes_header: HeaderValue::from_static(""),
        audience_header: None,
        remote: None,
    };
    assert_eq!(namespace(&of(TokenKind::Access, "at_1")), "acme");
    assert_eq!(namespace(&of(TokenKind::Access, "at_2")), "acme");
    assert_eq!(namespace(&of(TokenKind::ApiKey, "ak_1")), "acme/ak_1");
    assert_eq!(namespace(&of(TokenKind::Managed, "mt_1")), "acme/mt_1");
    assert_ne!(
        namespace(&of(TokenKind::Managed, "mt_1")),
        namespace(&of(TokenKind::Managed, "mt_2"))
    );
}

#[test]
fn sealed_entities_open_only_with_the_same_secret_client_and_key() {
    let sealed = seal::seal("s3cret", "c1", "k1", b"{\"accessToken\":\"wdn_at_x\"}");
    assert!(!sealed.windows(8).any(|w| w == b"wdn_at_x"));
    assert_eq!(
        seal::open("s3cret", "c1", "k1", &sealed).as_deref(),
        Some(&b"{\"accessToken\":\"wdn_at_x\"}"[..])
    );
    assert_eq!(seal::open("other", "c1", "k1", &sealed), None);
    assert_eq!(seal::open("s3cret", "c2", "k1", &sealed), None);
    assert_eq!(seal::open("s3cret", "c1", "k2", &sealed), None);
    assert_eq!(seal::open("s3cret", "c1", "k1", &sealed[..5]), None);
}

#[test]
fn stored_responses_are_sealed_and_open_only_under_their_record() {
    let seal = ResponseSeal::new(&[7; 32]).unwrap();
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.append(
        "set-cookie",
        HeaderValue::from_static("session=s3cr3t-cookie"),
    );
    h.append("set-cookie", HeaderValue::from_static("b=2"));
    let body = [
        Bytes::from_static(b"{\"iban\":\"DE89"),
        Bytes::from_static(b"370400440532013000\"}"),
    ];
    let sealed = seal.seal("acme/ak_1", "k1", 201, ResponseSeal::head(&h), &body);
    assert_eq!(sealed.status, 201);
    assert!(seal::is_sealed(&sealed));
    for secret in [&b"s3cr3t-cookie"[..], b"DE89", b"set-cookie"] {
        assert!(!sealed.body.windows(secret.len()).any(|w| w == secret));
    }
    let opened = seal.open("acme/ak_1", "k1", sealed.clone()).unwrap();
    assert_eq!(opened.status, 201);
    assert_eq!(
        opened.headers,
        [
            ("content-type".to_owned(), b"application/json".to_vec()),
            ("set-cookie".to_owned(), b"session=s3cr3t-cookie".to_vec()),
            ("set-cookie".to_owned(), b"b=2".to_vec()),
        ]
    );
    assert_eq!(opened.body, b"{\"iban\":\"DE89370400440532013000\"}");
    // Bound to its namespace, key and status; another seal key opens nothing.
    assert!(seal.open("acme/ak_2", "k1", sealed.clone()).is_none());
    assert!(seal.open("acme/ak_1", "k2", sealed.clone()).is_none());
    let mut other_status = sealed.clone();
    other_status.status = 200;
    assert!(seal.open("acme/ak_1", "k1", other_status).is_none());
    let other_key = ResponseSeal::new(&[8; 32]).unwrap();
    assert!(other_key.open("acme/ak_1", "k1", sealed.clone()).is_none());
    for cut in [0, 1, 13, 29, sealed.body.len() - 1] {
        let mut damaged = sealed.clone();
        damaged.body.truncate(cut);
        assert!(seal.open("acme/ak_1", "k1", damaged).is_none(), "{cut}");
    }
    // Two records never share a nonce.
    let again = seal.seal("acme/ak_1", "k1", 201, ResponseSeal::head(&h), &body);
    assert_ne!(again.body[..13], sealed.body[..13]);
    // A record stored before sealing (or a marker) is returned as it is.
    let plain = StoredResponse {
        status: 201,
        headers: vec![("x-call".into(), b"1".to_vec())],
        body: b"{}".to_vec(),
    };
    assert_eq!(seal.open("acme", "k1", plain.clone()), Some(plain));
    let empty = seal.seal(
        "acme",
        "k1",
        204,
        ResponseSeal::head(&HeaderMap::new()),
        &[],
    );
    let opened = seal.open("acme", "k1", empty).unwrap();
    assert!(opened.headers.is_empty() && opened.body.is_empty());
}

#[test]
fn a_replay_carries_the_stored_status_headers_and_body_and_says_so() {
    let resp = replay(StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("set-cookie".into(), b"a=1".to_vec()),
            ("set-cookie".into(), b"b=2".to_vec()),
        ],
        body: b"{}".to_vec(),
    });
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 2);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
}

#[test]
fn retry_me_responses_free_the_key() {
    assert!(asks_for_retry(StatusCode::SERVICE_UNAVAILABLE, false));
    assert!(!asks_for_retry(StatusCode::SERVICE_UNAVAILABLE, true));
    assert!(asks_for_retry(StatusCode::TOO_MANY_REQUESTS, true));
    assert!(!asks_for_retry(StatusCode::CONFLICT, false));
    assert!(!asks_for_retry(StatusCode::CREATED, false));
}

#[tokio::test]
async fn keyed_bodies_share_one_budget_of_bytes_given_back_when_sent_or_dropped() {
    let budget = Arc::new(Budget {
        held: AtomicUsize::new(0),
        max: 100,
    });
    let hold = || Hold {
        budget: budget.clone(),
        bytes: 0,
    };
    let mut a = hold();
    a.grow_to(60).unwrap();
    let mut b = hold();
    // A chunked body grows as it arrives, until it no longer fits.
    b.grow_to(30).unwrap();
    b.grow_to(40).unwrap();
    assert_eq!(b.grow_to(41).unwrap_err().code(), "server_busy");
    assert_eq!(budget.held.load(Ordering::Acquire), 100);
    drop(a);
    b.grow_to(90).unwrap();
    // Handed on whole, the body gives its share back.
    let body = Buffered::body(Bytes::from_static(b"payload"), b);
    assert_eq!(budget.held.load(Ordering::Acquire), 90);
    assert_eq!(body.collect().await.unwrap().to_bytes(), "payload");
    assert_eq!(budget.held.load(Ordering::Acquire), 0);
}

proptest! {
    #[test]
    fn opening_any_record_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let seal = ResponseSeal::new(&[7; 32]).unwrap();
        let stored = StoredResponse {
            status: 200,
            headers: vec![(seal::SEALED.to_owned(), Vec::new())],
            body,
        };
        prop_assert!(seal.open("c", "k", stored).is_none());
    }

    #[test]
    fn key_parsing_never_panics(value in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(key) = parse_key(&value) {
            prop_assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN);
            prop_assert!(key.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
}

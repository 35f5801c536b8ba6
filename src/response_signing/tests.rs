use super::*;
use crate::digest::content_digest_header;
use crate::httpsig::{Message, ResponseView, SigParam, Target};
use http::HeaderValue;
use serde_json::Value;

const EXAMPLES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rfc9421_examples.json"
));
const KEYS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rfc9421_keys.json"
));

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn headers(pairs: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    for pair in pairs.as_array().unwrap() {
        h.append(
            HeaderName::from_bytes(pair[0].as_str().unwrap().to_ascii_lowercase().as_bytes())
                .unwrap(),
            HeaderValue::from_str(pair[1].as_str().unwrap()).unwrap(),
        );
    }
    h
}

fn warden_key() -> SignerKey {
    SignerKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[5; 32]))
}

fn answer(method: Method, signature: Option<(&str, &str)>) -> SignedRequest {
    SignedRequest {
        method,
        scheme: "https".into(),
        authority: "api.example.com".into(),
        path: "/v1/orders".into(),
        query: Some("x=1".into()),
        signature: signature.map(|(value, label)| {
            let mut h = HeaderMap::new();
            h.insert(SIGNATURE, HeaderValue::from_str(value).unwrap());
            (h, label.to_owned())
        }),
    }
}

fn sent(method: &str, signature: Option<&str>) -> SentRequest {
    let mut headers = HeaderMap::new();
    if let Some(value) = signature {
        headers.insert(SIGNATURE, HeaderValue::from_str(value).unwrap());
    }
    SentRequest {
        method: method.into(),
        url: "https://api.example.com/v1/orders?x=1".parse().unwrap(),
        headers,
    }
}

const REQ_SIG: &str = "sig1=:dGhlIHJlcXVlc3QncyBzaWduYXR1cmU=:, other=:AAAA:";

fn signed_response(method: Method, status: u16, body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let key = warden_key();
    sign_parts(
        status,
        &mut h,
        body,
        &answer(method, Some((REQ_SIG, "sig1"))),
        1_700_000_000,
        &key,
        "warden",
    )
    .unwrap();
    h
}

#[test]
fn a_signed_response_covers_status_digest_type_and_the_request() {
    let body = br#"{"id":7}"#;
    let h = signed_response(Method::POST, 201, body);
    assert_eq!(
        h.get("signature-input").unwrap(),
        "warden=(\"@status\" \"content-digest\" \"content-type\" \"@method\";req \
         \"@target-uri\";req \"signature\";req;key=\"sig1\");created=1700000000;\
         keyid=\"warden\";alg=\"ed25519\""
    );
    assert_eq!(h.get("content-length").unwrap(), "8");
    let key = warden_key().verification_key().unwrap();
    let ok = verify_response(
        201,
        &h,
        body,
        &sent("POST", Some(REQ_SIG)),
        &key,
        Some("warden"),
        Some((1_700_000_010, 300)),
    )
    .unwrap();
    assert!(ok.binds_request_signature);
    assert_eq!(ok.label, "warden");
}

#[test]
fn every_change_to_the_exchange_is_named() {
    let body = br#"{"id":7}"#;
    let h = signed_response(Method::POST, 201, body);
    let key = warden_key().verification_key().unwrap();
    let check = |status: u16, h: &HeaderMap, body: &[u8], req: &SentRequest| {
        verify_response(status, h, body, req, &key, None, None)
    };
    let req = sent("POST", Some(REQ_SIG));
    assert!(check(201, &h, body, &req).is_ok());
    assert_eq!(check(200, &h, body, &req), Err(VerifyError::BadSignature));
    assert_eq!(
        check(201, &h, body, &sent("PUT", Some(REQ_SIG))),
        Err(VerifyError::BadSignature)
    );
    let mut other_url = req.clone();
    other_url.url = "https://api.example.com/v1/orders?x=2".parse().unwrap();
    assert_eq!(
        check(201, &h, body, &other_url),
        Err(VerifyError::BadSignature)
    );
    // Another request signature: the response answered another request.
    assert_eq!(
        check(201, &h, body, &sent("POST", Some("sig1=:b3RoZXI=:"))),
        Err(VerifyError::BadSignature)
    );
    assert!(matches!(
        check(201, &h, body, &sent("POST", None)),
        Err(VerifyError::Base(_))
    ));
    assert!(matches!(
        check(201, &h, br#"{"id":8}"#, &req),
        Err(VerifyError::DigestMismatch(_))
    ));
    let mut retyped = h.clone();
    retyped.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    assert_eq!(
        check(201, &retyped, body, &req),
        Err(VerifyError::BadSignature)
    );
    let other_key = SignerKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[6; 32]))
        .verification_key()
        .unwrap();
    assert_eq!(
        verify_response(201, &h, body, &req, &other_key, None, None),
        Err(VerifyError::BadSignature)
    );
    let p256 = httpsig::parse_verification_key(
        Algorithm::EcdsaP256Sha256,
        json(KEYS)["keys"]["test-key-ecc-p256"]["public_pem"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        verify_response(201, &h, body, &req, &p256, None, None),
        Err(VerifyError::AlgorithmMismatch { .. })
    ));
    assert!(matches!(
        verify_response(201, &h, body, &req, &key, Some("nope"), None),
        Err(VerifyError::NoSuchKey { .. })
    ));
    assert!(matches!(
        verify_response(
            201,
            &h,
            body,
            &req,
            &key,
            None,
            Some((1_700_000_000 + 301, 300))
        ),
        Err(VerifyError::TooOld { .. })
    ));
    assert_eq!(
        verify_response(201, &HeaderMap::new(), body, &req, &key, None, None),
        Err(VerifyError::Unsigned)
    );
}

#[test]
fn a_response_without_content_is_signed_without_a_digest() {
    for (method, status) in [
        (Method::HEAD, 200),
        (Method::GET, 304),
        (Method::DELETE, 204),
    ] {
        let h = signed_response(method.clone(), status, b"");
        assert!(!h.contains_key("content-digest"), "{method} {status}");
        let key = warden_key().verification_key().unwrap();
        verify_response(
            status,
            &h,
            b"",
            &sent(method.as_str(), Some(REQ_SIG)),
            &key,
            None,
            None,
        )
        .unwrap();
    }
    // An empty 200 to a GET has content: the empty content's digest.
    let h = signed_response(Method::GET, 200, b"");
    assert_eq!(
        h.get("content-digest").unwrap(),
        "sha-512=:z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==:"
    );
}

#[test]
fn a_signature_that_leaves_out_the_request_or_the_digest_is_refused() {
    let key = warden_key();
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_DIGEST,
        HeaderValue::from_str(&content_digest_header(b"x", DIGEST)).unwrap(),
    );
    let req = answer(Method::GET, None);
    let empty = HeaderMap::new();
    let signed = httpsig::sign_message(
        &Message::Response(ResponseView {
            status: 200,
            headers: &h,
            request: Some(req.view(&empty)),
        }),
        "warden",
        &["@status", "@method;req"],
        &[SigParam::Created(1)],
        &key,
    )
    .unwrap();
    h.insert(
        SIGNATURE_INPUT,
        HeaderValue::from_str(&signed.signature_input).unwrap(),
    );
    h.insert(SIGNATURE, HeaderValue::from_str(&signed.signature).unwrap());
    assert_eq!(
        verify_response(
            200,
            &h,
            b"x",
            &sent("GET", None),
            &key.verification_key().unwrap(),
            None,
            None
        ),
        Err(VerifyError::NotCovered(
            "\"content-digest\", \"@target-uri\";req".into()
        ))
    );
}

#[test]
fn upstream_signatures_are_kept_beside_wardens() {
    let key = warden_key();
    let mut h = HeaderMap::new();
    h.insert(
        SIGNATURE_INPUT,
        HeaderValue::from_static("warden=(\"@status\");created=1"),
    );
    h.insert(SIGNATURE, HeaderValue::from_static("warden=:AAAA:"));
    sign_parts(
        200,
        &mut h,
        b"{}",
        &answer(Method::GET, None),
        5,
        &key,
        "warden",
    )
    .unwrap();
    let sigs = httpsig::parse_message_signatures(&h, Target::Response).unwrap();
    let labels: Vec<_> = sigs.iter().map(|s| s.label()).collect();
    assert_eq!(labels, ["warden", "warden-2"]);
    let v = verify_response(
        200,
        &h,
        b"{}",
        &sent("GET", None),
        &key.verification_key().unwrap(),
        Some("warden"),
        None,
    );
    // keyid selects Warden's: the upstream's names none.
    assert_eq!(v.unwrap().label, "warden-2");
    // Broken upstream fields are dropped, not appended to.
    let mut h = HeaderMap::new();
    h.insert(
        SIGNATURE_INPUT,
        HeaderValue::from_static("not a dictionary ("),
    );
    sign_parts(
        200,
        &mut h,
        b"{}",
        &answer(Method::GET, None),
        5,
        &key,
        "warden",
    )
    .unwrap();
    assert_eq!(h.get_all(SIGNATURE_INPUT).iter().count(), 1);
}

#[test]
fn a_response_that_binds_the_path_but_not_the_query_is_refused() {
    // RFC 9421 §2.4's first example covers "@path";req but not "@query";req, and its
    // request had a query: the signature verifies, but would hold for another query too.
    let v = json(EXAMPLES);
    let resp = &v["messages"]["s2.4-response-unsigned-req"];
    let req = &v["messages"]["s2.4-request"];
    let key = httpsig::parse_verification_key(
        Algorithm::EcdsaP256Sha256,
        json(KEYS)["keys"]["test-key-ecc-p256"]["public_pem"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let sent = SentRequest {
        method: "POST".into(),
        url: "https://example.com/foo?param=Value&Pet=dog"
            .parse()
            .unwrap(),
        headers: headers(&req["headers"]),
    };
    let body = resp["body"].as_str().unwrap().as_bytes();
    assert_eq!(
        verify_response(
            503,
            &headers(&resp["headers"]),
            body,
            &sent,
            &key,
            None,
            None
        ),
        Err(VerifyError::NotCovered("\"@target-uri\";req".into()))
    );
}

#[test]
fn the_rfc_signed_response_to_a_signed_request_verifies_with_the_client_check() {
    let v = json(EXAMPLES);
    let resp = &v["messages"]["s2.4-signed-response"];
    let req = &v["messages"]["s2.4-signed-request"];
    let key = httpsig::parse_verification_key(
        Algorithm::EcdsaP256Sha256,
        json(KEYS)["keys"]["test-key-ecc-p256"]["public_pem"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let sent = SentRequest {
        method: "POST".into(),
        url: "https://example.com/foo?param=Value&Pet=dog"
            .parse()
            .unwrap(),
        headers: headers(&req["headers"]),
    };
    let status = resp["status"].as_u64().unwrap() as u16;
    let body = resp["body"].as_str().unwrap().as_bytes();
    let ok = verify_response(
        status,
        &headers(&resp["headers"]),
        body,
        &sent,
        &key,
        Some("test-key-ecc-p256"),
        None,
    )
    .unwrap();
    assert_eq!(ok.label, "reqres");
    assert!(!ok.binds_request_signature);
    // And a body other than the one signed fails on its digest.
    assert!(matches!(
        verify_response(
            status,
            &headers(&resp["headers"]),
            b"{}",
            &sent,
            &key,
            None,
            None
        ),
        Err(VerifyError::DigestMismatch(_))
    ));
}

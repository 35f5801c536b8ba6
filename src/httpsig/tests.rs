//! Conformance against the RFC 9421 vectors in `tests/data/`, plus the refusal cases.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::*;

pub(super) const EXAMPLES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rfc9421_examples.json"
));
const B26: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rfc9421_b26_ed25519.json"
));
pub(super) const KEYS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rfc9421_keys.json"
));
pub(super) const COMPONENTS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rfc9421_components.json"
));

pub(super) fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("vector file is json")
}

pub(super) fn s(v: &Value) -> &str {
    v.as_str().expect("string in vector file")
}

fn ed25519_public_key() -> VerifyingKey {
    let keys = json(KEYS);
    parse_public_key(s(&keys["keys"]["test-key-ed25519"]["public_pem"])).unwrap()
}

fn ed25519_private_key() -> SigningKey {
    let keys = json(KEYS);
    SigningKey::from_pkcs8_pem(s(&keys["keys"]["test-key-ed25519"]["private_pem"])).unwrap()
}

/// An owned request, from which a [`RequestView`] borrows.
pub(super) struct Request {
    pub(super) method: String,
    pub(super) scheme: String,
    pub(super) authority: String,
    pub(super) path: String,
    pub(super) query: Option<String>,
    pub(super) request_target: Option<String>,
    pub(super) headers: HeaderMap,
}

impl Request {
    pub(super) fn new(
        method: &str,
        scheme: &str,
        authority: &str,
        target: &str,
        headers: HeaderMap,
    ) -> Self {
        let mut request = Request {
            method: method.to_owned(),
            scheme: scheme.to_owned(),
            authority: authority.to_owned(),
            path: String::new(),
            query: None,
            request_target: None,
            headers,
        };
        let origin = if target.is_empty() || target.starts_with('/') {
            Some(target)
        } else if let Some((_, rest)) = target.split_once("://") {
            // absolute-form: the authority and origin part come from the URI itself.
            request.request_target = Some(target.to_owned());
            let (authority, origin) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            request.authority = authority.to_owned();
            Some(origin)
        } else {
            // authority-form (CONNECT) or asterisk-form (OPTIONS *).
            request.request_target = Some(target.to_owned());
            None
        };
        if let Some(origin) = origin {
            match origin.split_once('?') {
                Some((path, query)) => {
                    request.path = path.to_owned();
                    request.query = Some(query.to_owned());
                }
                None => request.path = origin.to_owned(),
            }
        }
        request
    }

    pub(super) fn view(&self) -> RequestView<'_> {
        let view = RequestView::new(
            &self.method,
            &self.scheme,
            &self.authority,
            &self.path,
            self.query.as_deref(),
            &self.headers,
        );
        match &self.request_target {
            Some(target) => view.with_request_target(target),
            None => view,
        }
    }
}

pub(super) fn header_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

/// Header lines of an HTTP/1.1 message with LF line ends. An obs-fold continuation line is
/// joined to the previous value with one SP, as an HTTP/1.1 parser must do before the value
/// can be a `HeaderValue` (RFC 9112 §5.2).
pub(super) fn parse_header_lines(text: &str) -> HeaderMap {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            let last = pairs.last_mut().expect("continuation after a field");
            last.1 = format!("{} {}", last.1.trim_end(), line.trim_start());
        } else if let Some((name, value)) = line.split_once(':') {
            pairs.push((name.to_owned(), value.to_owned()));
        }
    }
    header_map(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

/// A request from a vector file's `messages` entry.
pub(super) fn message_request(msg: &Value) -> Request {
    let pairs = msg["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (s(&pair[0]), s(&pair[1])));
    Request::new(
        s(&msg["method"]),
        s(&msg["scheme"]),
        s(&msg["authority"]),
        s(&msg["request_target"]),
        header_map(pairs),
    )
}

pub(super) fn find<'a>(sigs: &'a [ParsedSignature], label: &str) -> &'a ParsedSignature {
    sigs.iter()
        .find(|s| s.label() == label)
        .expect("label parsed")
}

// ---------------------------------------------------------------------------------------------
// RFC 9421 examples

#[test]
fn every_request_example_reproduces_its_signature_base_byte_for_byte() {
    let v = json(EXAMPLES);
    let mut checked = Vec::new();
    let mut skipped = Vec::new();
    for ex in v["examples"].as_array().unwrap() {
        let id = s(&ex["id"]);
        let msg = &v["messages"][s(&ex["message"])];
        // Response signatures (@status, ;req): tests_algs builds their bases.
        if msg["kind"] == "response" {
            skipped.push(id);
            continue;
        }
        let request = message_request(msg);
        let sigs = parse_signature_fields(
            s(&ex["signature_input_field_value"]).as_bytes(),
            s(&ex["signature_field_value"]).as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{id}: {e}"));
        let sig = find(&sigs, s(&ex["label"]));
        let base = signature_base(&request.view(), sig).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(base, s(&ex["signature_base"]), "{id}");
        assert_eq!(
            base.len() as u64,
            ex["signature_base_length"].as_u64().unwrap()
        );
        assert_eq!(
            hex::encode(Sha256::digest(base.as_bytes())),
            s(&ex["signature_base_sha256_hex"]),
            "{id}"
        );
        assert_eq!(
            STANDARD.encode(sig.signature()),
            s(&ex["signature_b64"]),
            "{id}"
        );
        assert_eq!(
            sig.signature_params_value(),
            s(&ex["signature_input_member"]),
            "{id}"
        );
        let names: Vec<_> = sig.params().iter().map(SigParam::name).collect();
        let expected: Vec<_> = ex["signature_params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| s(&p[0]))
            .collect();
        assert_eq!(names, expected, "{id}: parameter order kept");
        checked.push(id);
    }
    assert_eq!(skipped, ["B.2.4", "S2.4-reqres-1", "S2.4-reqres-2"]);
    assert_eq!(checked.len(), 16, "{checked:?}");
}

#[test]
fn ed25519_examples_verify_exactly_when_the_rfc_says_so() {
    let v = json(EXAMPLES);
    let key = ed25519_public_key();
    let mut seen = 0;
    for ex in v["examples"].as_array().unwrap() {
        if ex["alg"] != "ed25519" {
            continue;
        }
        let id = s(&ex["id"]);
        let request = message_request(&v["messages"][s(&ex["message"])]);
        // The B.4 messages carry their own Signature-Input / Signature fields; B.2.6 does not.
        let sigs = if request.headers.contains_key("signature-input") {
            parse_signatures(&request.headers)
        } else {
            parse_signature_fields(
                s(&ex["signature_input_field_value"]).as_bytes(),
                s(&ex["signature_field_value"]).as_bytes(),
            )
        }
        .unwrap_or_else(|e| panic!("{id}: {e}"));
        let sig = find(&sigs, s(&ex["label"]));
        let result = verify(&request.view(), sig, &key);
        assert_eq!(result.is_ok(), ex["verified"] == true, "{id}: {result:?}");
        if let Err(e) = result {
            assert_eq!(e, SigError::InvalidSignature, "{id}");
        }
        seen += 1;
    }
    assert_eq!(seen, 7, "B.2.6 and B.4 0/2/3/4/5/6");
}

#[test]
fn b21_keeps_the_received_parameter_order_with_no_components() {
    let v = json(EXAMPLES);
    let ex = &v["examples"][0];
    assert_eq!(ex["id"], "B.2.1");
    let request = message_request(&v["messages"]["test-request"]);
    let sigs = parse_signature_fields(
        s(&ex["signature_input_field_value"]).as_bytes(),
        s(&ex["signature_field_value"]).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        signature_base(&request.view(), &sigs[0]).unwrap(),
        "\"@signature-params\": ();created=1618884473;keyid=\"test-key-rsa-pss\";nonce=\"b3k2pp5k7z-50gnwp.yemd\""
    );
}

#[test]
fn section_2_3_parameter_order_survives_a_round_trip() {
    let v = json(COMPONENTS);
    let value = s(&v["signature_params_serialisation_example"]["value"]);
    let input = format!("sig1={value}");
    let sigs = parse_signature_fields(input.as_bytes(), b"sig1=:AAAA:").unwrap();
    assert_eq!(sigs[0].signature_params_value(), value);
    let names: Vec<_> = sigs[0].params().iter().map(SigParam::name).collect();
    assert_eq!(names, ["keyid", "alg", "created", "expires"]);
}

#[test]
fn signatures_in_message_headers_pair_up_by_label() {
    let v = json(EXAMPLES);
    let request = message_request(&v["messages"]["s4.3-proxied"]);
    let sigs = parse_signatures(&request.headers).unwrap();
    let labels: Vec<_> = sigs.iter().map(ParsedSignature::label).collect();
    assert_eq!(labels, ["sig1", "proxy_sig"]);
    assert_eq!(sigs[1].params().keyid(), Some("test-key-rsa"));
    assert_eq!(sigs[1].params().alg(), Some("rsa-v1_5-sha256"));
    assert_eq!(sigs[1].params().expires(), Some(1618884540));
    assert!(sigs[1].covers("forwarded"));
    assert!(!sigs[0].covers("forwarded"));
}

// ---------------------------------------------------------------------------------------------
// B.2.6, the Ed25519 vector

fn b26() -> (Value, Request) {
    let v = json(B26);
    let request = message_request(&v["request"]);
    (v, request)
}

fn b26_signature(v: &Value) -> ParsedSignature {
    let added = &v["headers_added"];
    parse_signature_fields(s(&added[0][1]).as_bytes(), s(&added[1][1]).as_bytes())
        .unwrap()
        .remove(0)
}

#[test]
fn b26_base_is_exact_and_verifies() {
    let (v, request) = b26();
    let sig = b26_signature(&v);
    let base = signature_base(&request.view(), &sig).unwrap();
    assert_eq!(base, s(&v["signature_base"]));
    assert_eq!(base.len(), 284);
    assert_eq!(STANDARD.encode(&base), s(&v["signature_base_b64"]));
    assert_eq!(hex::encode(sig.signature()), s(&v["signature_hex"]));
    let key = ed25519_public_key();
    assert_eq!(verify(&request.view(), &sig, &key), Ok(()));
    assert_eq!(
        verify_ed25519(base.as_bytes(), sig.signature(), &key),
        Ok(())
    );
}

#[test]
fn b26_key_parses_from_every_accepted_encoding() {
    let (v, _) = b26();
    let expected = hex::decode(s(&v["key"]["raw_public_key_hex"])).unwrap();
    let x = s(&v["key"]["jwk"]["x"]);
    let raw = URL_SAFE_NO_PAD.decode(x).unwrap();
    for text in [
        s(&v["key"]["public_pem"]).to_owned(),
        x.to_owned(),
        STANDARD.encode(&raw),
        STANDARD.encode(&raw).trim_end_matches('=').to_owned(),
        format!("{x}="),
        format!("  {}\n", STANDARD.encode(&raw)),
    ] {
        let key = parse_public_key(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(key.as_bytes().as_slice(), expected.as_slice(), "{text}");
    }
}

#[test]
fn malformed_public_keys_are_refused() {
    assert_eq!(parse_public_key("not base64!"), Err(KeyError::Encoding));
    assert_eq!(
        parse_public_key(&STANDARD.encode([1u8; 31])),
        Err(KeyError::Length { len: 31 })
    );
    assert_eq!(
        parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        Err(KeyError::Pem)
    );
    // The identity point is a small-order (weak) key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        parse_public_key(&STANDARD.encode(identity)),
        Err(KeyError::Point)
    );
}

#[test]
fn resigning_b26_with_its_private_key_gives_the_same_bytes() {
    let (v, request) = b26();
    let components: Vec<&str> = v["covered_components"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let key = ed25519_private_key();
    assert_eq!(
        hex::encode(key.to_bytes()),
        s(&v["key"]["raw_private_seed_hex"])
    );
    let signed = sign(
        &request.view(),
        s(&v["label"]),
        &components,
        &[
            SigParam::Created(1618884473),
            SigParam::KeyId("test-key-ed25519".to_owned()),
        ],
        &key,
    )
    .unwrap();
    assert_eq!(signed.signature_input, s(&v["headers_added"][0][1]));
    assert_eq!(signed.signature, s(&v["headers_added"][1][1]));
    assert_eq!(signed.base, s(&v["signature_base"]));
}

#[test]
fn signer_output_verifies_through_the_parser() {
    let (_, mut request) = b26();
    request.query = Some("param=Value&Pet=dog&sp=a+b".to_owned());
    let key = ed25519_private_key();
    let signed = sign(
        &request.view(),
        "client",
        &[
            "@method",
            "@target-uri",
            "@authority",
            "@path",
            "@query",
            "\"@query-param\";name=\"Pet\"",
            "@query-param;name=\"sp\"",
            "content-digest;sf",
            "content-type",
        ],
        &[
            SigParam::KeyId("k1".to_owned()),
            SigParam::Tag("warden".to_owned()),
            SigParam::Created(1_700_000_000),
            SigParam::Expires(1_700_000_300),
            SigParam::Nonce("n0".to_owned()),
            SigParam::Alg("ed25519".to_owned()),
        ],
        &key,
    )
    .unwrap();
    assert!(
        signed.signature_input.starts_with(
            "client=(\"@method\" \"@target-uri\" \"@authority\" \"@path\" \"@query\" \"@query-param\";name=\"Pet\""
        ),
        "{}",
        signed.signature_input
    );
    assert!(signed.signature_input.ends_with(
        ";keyid=\"k1\";tag=\"warden\";created=1700000000;expires=1700000300;nonce=\"n0\";alg=\"ed25519\""
    ));
    assert!(
        signed
            .base
            .contains("\n\"@query-param\";name=\"sp\": a%20b\n")
    );
    assert!(
        signed
            .base
            .contains("\n\"@target-uri\": https://example.com/foo?param=Value&Pet=dog&sp=a+b\n")
    );
    request.headers.insert(
        "signature-input",
        HeaderValue::from_str(&signed.signature_input).unwrap(),
    );
    request.headers.insert(
        "signature",
        HeaderValue::from_str(&signed.signature).unwrap(),
    );
    let sigs = parse_signatures(&request.headers).unwrap();
    assert_eq!(sigs[0].params().tag(), Some("warden"));
    assert_eq!(sigs[0].params().nonce(), Some("n0"));
    assert_eq!(
        signature_base(&request.view(), &sigs[0]).unwrap(),
        signed.base
    );
    assert_eq!(
        verify(&request.view(), &sigs[0], &key.verifying_key()),
        Ok(())
    );
}

#[test]
fn signer_refuses_what_a_verifier_would_refuse() {
    let (_, request) = b26();
    let key = ed25519_private_key();
    let created = [SigParam::Created(1)];
    let refused = |components: &[&str], params: &[SigParam], label: &str| {
        sign(&request.view(), label, components, params, &key).unwrap_err()
    };
    assert!(refused(&["@status"], &created, "s").is_malformed());
    assert!(refused(&["@method", "@method"], &created, "s").is_malformed());
    assert!(refused(&["Content-Type"], &created, "s").is_malformed());
    assert!(refused(&["\"unterminated"], &created, "s").is_malformed());
    assert!(refused(&["@method"], &created, "Upper").is_malformed());
    assert!(
        refused(
            &["@method"],
            &[SigParam::Created(1), SigParam::Created(2)],
            "s"
        )
        .is_malformed()
    );
    assert!(refused(&["@method"], &[SigParam::Nonce("é".to_owned())], "s").is_malformed());
    assert!(refused(&["@method"], &[SigParam::Created(-1)], "s").is_malformed());
    assert!(matches!(
        refused(&["x-absent"], &created, "s"),
        SigError::ComponentUnavailable { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Tampering with B.2.6

fn b26_verifies_after(change: impl FnOnce(&mut Request)) -> Result<(), SigError> {
    let (v, mut request) = b26();
    change(&mut request);
    verify(&request.view(), &b26_signature(&v), &ed25519_public_key())
}

#[test]
fn tampered_method_fails() {
    let result = b26_verifies_after(|r| r.method = "PUT".to_owned());
    assert_eq!(result, Err(SigError::InvalidSignature));
    let result = b26_verifies_after(|r| r.method = "post".to_owned());
    assert_eq!(
        result,
        Err(SigError::InvalidSignature),
        "@method is case-sensitive"
    );
}

#[test]
fn tampered_path_fails() {
    let result = b26_verifies_after(|r| r.path = "/foo/".to_owned());
    assert_eq!(result, Err(SigError::InvalidSignature));
}

#[test]
fn tampered_authority_fails_but_its_normalisation_does_not() {
    let result = b26_verifies_after(|r| r.authority = "example.org".to_owned());
    assert_eq!(result, Err(SigError::InvalidSignature));
    let result = b26_verifies_after(|r| r.authority = "EXAMPLE.com:443".to_owned());
    assert_eq!(result, Ok(()));
}

#[test]
fn tampered_header_value_fails() {
    let result = b26_verifies_after(|r| {
        r.headers
            .insert("content-length", HeaderValue::from_static("19"));
    });
    assert_eq!(result, Err(SigError::InvalidSignature));
    let result = b26_verifies_after(|r| {
        r.headers.append(
            "date",
            HeaderValue::from_static("Wed, 21 Apr 2021 02:07:55 GMT"),
        );
    });
    assert_eq!(
        result,
        Err(SigError::InvalidSignature),
        "a second date line"
    );
}

#[test]
fn removed_covered_header_fails_as_unavailable() {
    let result = b26_verifies_after(|r| {
        r.headers.remove("content-type");
    });
    assert!(matches!(
        result,
        Err(SigError::ComponentUnavailable { ref component, .. }) if component == "\"content-type\""
    ));
    assert!(!result.unwrap_err().is_malformed());
}

#[test]
fn uncovered_changes_do_not_matter() {
    let result = b26_verifies_after(|r| {
        r.query = None;
        r.headers.insert("x-extra", HeaderValue::from_static("1"));
        r.headers
            .insert("content-digest", HeaderValue::from_static("sha-256=:AAAA:"));
    });
    assert_eq!(result, Ok(()));
}

#[test]
fn tampered_signature_bytes_fail() {
    let (v, request) = b26();
    let sig = b26_signature(&v);
    let base = signature_base(&request.view(), &sig).unwrap();
    let key = ed25519_public_key();
    for i in [0, 31, 32, 63] {
        let mut bytes = sig.signature().to_vec();
        bytes[i] ^= 0x01;
        assert_eq!(
            verify_ed25519(base.as_bytes(), &bytes, &key),
            Err(SigError::InvalidSignature),
            "byte {i}"
        );
    }
    for len in [0, 63, 65] {
        let bytes = vec![0u8; len];
        assert_eq!(
            verify_ed25519(base.as_bytes(), &bytes, &key),
            Err(SigError::InvalidSignature),
            "length {len}"
        );
    }
    let mut tampered_base = base.into_bytes();
    tampered_base[0] = b'\'';
    assert_eq!(
        verify_ed25519(&tampered_base, sig.signature(), &key),
        Err(SigError::InvalidSignature)
    );
}

#[test]
fn a_different_key_fails() {
    let (v, request) = b26();
    let other = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    assert_eq!(
        verify(&request.view(), &b26_signature(&v), &other),
        Err(SigError::InvalidSignature)
    );
}

#[test]
fn alg_other_than_ed25519_is_refused_before_crypto() {
    let (_, request) = b26();
    let input = "s=(\"@method\");created=1;alg=\"hmac-sha256\"";
    let sigs = parse_signature_fields(input.as_bytes(), b"s=:AAAA:").unwrap();
    assert_eq!(
        verify(&request.view(), &sigs[0], &ed25519_public_key()),
        Err(SigError::AlgorithmNotAllowed {
            alg: "hmac-sha256".to_owned()
        })
    );
}

// ---------------------------------------------------------------------------------------------
// rfc9421_components.json, one row at a time

fn component_request(row: &Value) -> Option<Request> {
    let https_unless_plain = if s(&row["notes"]).contains("plain HTTP") {
        "http"
    } else {
        "https"
    };
    if let Some(fragment) = row["header_fragment"].as_str() {
        let headers = parse_header_lines(fragment);
        return Some(Request::new(
            "GET",
            "https",
            "www.example.com",
            "/",
            headers,
        ));
    }
    let message = s(&row["message"]);
    let (first, rest) = message.split_once('\n').unwrap_or((message, ""));
    if first.starts_with("HTTP/") {
        return None;
    }
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
    let headers = parse_header_lines(rest);
    let authority = headers
        .get("host")
        .map_or("", |h| h.to_str().unwrap().trim())
        .to_owned();
    Some(Request::new(
        method,
        https_unless_plain,
        &authority,
        target,
        headers,
    ))
}

#[test]
fn every_component_row_gives_its_exact_line_or_fails() {
    let v = json(COMPONENTS);
    let (mut passed, mut failed_as_expected, mut responses) = (0, 0, Vec::new());
    for row in v["components"].as_array().unwrap() {
        let identifier = s(&row["component_identifier"]);
        let input = format!("row=({identifier})");
        let result = match component_request(row) {
            Some(request) => parse_signature_fields(input.as_bytes(), b"row=:AAAA:")
                .and_then(|sigs| signature_base(&request.view(), &sigs[0])),
            None => {
                // A response message (the @status row): its status line and header lines.
                let message = s(&row["message"]);
                let (first, rest) = message.split_once('\n').unwrap_or((message, ""));
                let status: u16 = first.split(' ').nth(1).unwrap().parse().unwrap();
                let headers = parse_header_lines(rest);
                let response = Message::Response(ResponseView {
                    status,
                    headers: &headers,
                    request: None,
                });
                responses.push(identifier);
                parse_fields(input.as_bytes(), b"row=:AAAA:", Target::Response)
                    .and_then(|sigs| message_base(&response, &sigs[0]))
            }
        };
        if row["expect_error"] == true {
            assert!(result.is_err(), "{identifier} must fail, got {result:?}");
            failed_as_expected += 1;
            continue;
        }
        let base = result.unwrap_or_else(|e| panic!("{identifier}: {e}"));
        let line = s(&row["expected_signature_base_line"]);
        assert_eq!(
            base,
            format!("{line}\n\"@signature-params\": ({identifier})"),
            "{identifier}"
        );
        assert_eq!(
            line.strip_prefix(&format!("{identifier}: ")),
            Some(s(&row["expected_component_value"])),
            "{identifier}"
        );
        passed += 1;
    }
    // The one response row, built as a response.
    assert_eq!(responses, ["\"@status\""]);
    assert_eq!((passed, failed_as_expected), (36, 9));
}

// ---------------------------------------------------------------------------------------------
// Parsing refusals

fn parse(input: &str, signature: &str) -> Result<Vec<ParsedSignature>, SigError> {
    parse_signature_fields(input.as_bytes(), signature.as_bytes())
}

const SIG: &str = "s=:AAAA:";

#[test]
fn duplicate_label_within_a_field_is_refused() {
    let result = parse("s=(\"@method\"), s=(\"@path\")", SIG);
    assert_eq!(
        result.unwrap_err(),
        SigError::DuplicateLabel {
            label: "s".to_owned()
        }
    );
    let result = parse("s=(\"@method\")", "s=:AAAA:, s=:AAAB:");
    assert!(matches!(result, Err(SigError::DuplicateLabel { .. })));
}

#[test]
fn duplicate_label_across_field_lines_is_refused() {
    let headers = header_map([
        ("signature-input", "s=(\"@method\");created=1"),
        ("signature-input", "s=(\"@path\");created=1"),
        ("signature", SIG),
    ]);
    let err = parse_signatures(&headers).unwrap_err();
    assert_eq!(
        err,
        SigError::DuplicateLabel {
            label: "s".to_owned()
        }
    );
    assert!(err.is_malformed());
}

#[test]
fn labels_split_across_field_lines_are_joined() {
    let headers = header_map([
        ("signature-input", "a=(\"@method\");created=1"),
        ("signature-input", "b=(\"@path\");created=2"),
        ("signature", "b=:AAAA:"),
        ("signature", "a=:AAAB:"),
    ]);
    let sigs = parse_signatures(&headers).unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0].label(), "a");
    assert_eq!(sigs[1].params().created(), Some(2));
}

#[test]
fn label_in_only_one_field_is_a_mismatch() {
    assert_eq!(
        parse("a=(\"@method\"), b=(\"@path\")", "a=:AAAA:").unwrap_err(),
        SigError::LabelMismatch {
            label: "b".to_owned()
        }
    );
    assert_eq!(
        parse("a=(\"@method\")", "a=:AAAA:, c=:AAAA:").unwrap_err(),
        SigError::LabelMismatch {
            label: "c".to_owned()
        }
    );
    let headers = header_map([("signature", SIG)]);
    assert!(matches!(
        parse_signatures(&headers),
        Err(SigError::LabelMismatch { .. })
    ));
}

#[test]
fn no_signature_at_all_is_missing_not_malformed() {
    let err = parse_signatures(&HeaderMap::new()).unwrap_err();
    assert_eq!(err, SigError::Missing);
    assert!(!err.is_malformed());
    assert_eq!(parse("", "").unwrap_err(), SigError::Missing);
}

#[test]
fn wrong_member_types_are_malformed() {
    for (input, signature) in [
        ("s=\"@method\"", SIG),
        ("s=(@method)", SIG),
        ("s=(\"@method\" 1)", SIG),
        ("s=(\"@method\" method)", SIG),
        ("s=(\"@method\")", "s=\"AAAA\""),
        ("s=(\"@method\")", "s=(:AAAA:)"),
        ("s", SIG),
        ("s=(\"@method\"),", SIG),
        ("S=(\"@method\")", "S=:AAAA:"),
        ("s=(\"@method\")", "s=:AA!A:"),
    ] {
        let err = parse(input, signature).unwrap_err();
        assert!(err.is_malformed(), "{input} / {signature}: {err:?}");
        assert!(
            matches!(err, SigError::Malformed { .. }),
            "{input}: {err:?}"
        );
    }
}

#[test]
fn signature_parameters_of_the_wrong_type_are_refused() {
    for input in [
        "s=();created=\"1618884473\"",
        "s=();created=1618884473.5",
        "s=();created=-1",
        "s=();expires=?1",
        "s=();keyid=test-key",
        "s=();nonce=1",
        "s=();alg=ed25519",
        "s=();tag=:AAAA:",
        "s=();created",
        "s=();foo=\"bar\"",
    ] {
        let err = parse(input, SIG).unwrap_err();
        assert!(
            matches!(err, SigError::InvalidParameter { .. }),
            "{input}: {err:?}"
        );
        assert!(err.is_malformed());
    }
}

#[test]
fn component_identifiers_that_a_request_cannot_use_are_refused() {
    for (component, reason) in [
        ("\"Content-Type\"", "component names must be lowercase"),
        ("\"@Method\"", "component names must be lowercase"),
        ("\"\"", "empty component name"),
        ("\"@foo\"", "unknown derived component"),
        ("\"@status\"", "@status is not allowed on a request"),
        (
            "\"@signature-params\"",
            "@signature-params cannot be covered",
        ),
        (
            "\"@method\";req",
            "req is not allowed on a request signature",
        ),
        (
            "\"content-type\";req",
            "req is not allowed on a request signature",
        ),
        ("\"content-type\";tr", "trailers are not supported"),
        ("\"content-type\";foo", "unknown component parameter"),
        (
            "\"content-type\";name=\"a\"",
            "name applies only to @query-param",
        ),
        ("\"@path\";name=\"a\"", "name applies only to @query-param"),
        ("\"@query-param\"", "@query-param needs a name parameter"),
        ("\"@query-param\";name=a", "parameter must be a string"),
        ("\"example-dict\";key=a", "parameter must be a string"),
        ("\"example-dict\";sf=?0", "parameter must be a boolean true"),
        (
            "\"example-dict\";bs;key=\"a\"",
            "bs cannot be combined with sf or key",
        ),
        (
            "\"example-dict\";sf;bs",
            "bs cannot be combined with sf or key",
        ),
        (
            "\"@method\";sf",
            "sf, key and bs do not apply to derived components",
        ),
        (
            "\"@authority\";bs",
            "sf, key and bs do not apply to derived components",
        ),
        (
            "\"x-unknown\";sf",
            "sf on a field with no known structured type",
        ),
        ("\"bad header\"", "not a valid field name"),
    ] {
        let err = parse(&format!("s=({component})"), SIG).unwrap_err();
        assert_eq!(
            err,
            SigError::InvalidComponent {
                component: component.to_owned(),
                reason
            },
            "{component}"
        );
        assert!(err.is_malformed());
    }
}

#[test]
fn a_component_covered_twice_is_refused_whatever_its_parameter_order() {
    for input in [
        "s=(\"@method\" \"@method\")",
        "s=(\"example-dict\";sf;key=\"a\" \"example-dict\";key=\"a\";sf)",
        "s=(\"@query-param\";name=\"a\" \"@path\" \"@query-param\";name=\"a\")",
    ] {
        let err = parse(input, SIG).unwrap_err();
        assert!(
            matches!(
                err,
                SigError::InvalidComponent {
                    reason: "component is covered twice",
                    ..
                }
            ),
            "{input}: {err:?}"
        );
    }
    // Different parameters make different components.
    let sigs = parse(
        "s=(\"example-dict\" \"example-dict\";sf \"example-dict\";key=\"a\" \"example-dict\";bs)",
        SIG,
    )
    .unwrap();
    assert_eq!(sigs[0].components().len(), 4);
    assert!(sigs[0].covers("example-dict"));
}

#[test]
fn covers_ignores_a_single_dictionary_member() {
    let sigs = parse("s=(\"content-digest\";key=\"sha-256\" \"@method\")", SIG).unwrap();
    assert!(!sigs[0].covers("content-digest"));
    assert!(sigs[0].covers("@method"));
    assert_eq!(sigs[0].components()[0].name(), "content-digest");
    assert_eq!(
        sigs[0].components()[0].identifier(),
        "\"content-digest\";key=\"sha-256\""
    );
}

// ---------------------------------------------------------------------------------------------
// Field and derived values beyond the vectors

fn base_line(request: &Request, component: &str) -> Result<String, SigError> {
    let sigs = parse(&format!("s=({component})"), SIG)?;
    let base = signature_base(&request.view(), &sigs[0])?;
    Ok(base.split('\n').next().unwrap().to_owned())
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request {
    Request::new(
        "GET",
        "https",
        "www.example.com",
        path,
        header_map(headers.iter().copied()),
    )
}

#[test]
fn canonical_line_unfolds_and_trims() {
    assert_eq!(
        component::canonical_line(b"  Obsolete\r\n    line folding.  "),
        b"Obsolete line folding."
    );
    assert_eq!(component::canonical_line(b"a \n\tb"), b"a b");
    assert_eq!(
        component::canonical_line(b"\t a=1,    b=2 \t"),
        b"a=1,    b=2"
    );
    assert_eq!(component::canonical_line(b"   "), b"");
}

#[test]
fn non_ascii_field_values_are_refused_unless_bs() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-utf8",
        HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
    );
    let request = Request::new("GET", "https", "a.example", "/", headers);
    assert!(matches!(
        base_line(&request, "\"x-utf8\""),
        Err(SigError::ComponentUnavailable {
            reason: "value is not printable ascii",
            ..
        })
    ));
    assert_eq!(
        base_line(&request, "\"x-utf8\";bs").unwrap(),
        "\"x-utf8\";bs: :Y2Fmw6k=:"
    );
}

#[test]
fn sf_reserialises_lists_and_items_strictly() {
    let request = get(
        "/",
        &[
            ("idempotency-key", "  \"8e03978e-40d5\"  "),
            ("cache-status", "ExampleCache; hit,   Other;fwd=uri-miss"),
            ("priority", "u=1,   i"),
            (
                "content-digest",
                "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE:",
            ),
        ],
    );
    assert_eq!(
        base_line(&request, "\"idempotency-key\";sf").unwrap(),
        "\"idempotency-key\";sf: \"8e03978e-40d5\""
    );
    assert_eq!(
        base_line(&request, "\"cache-status\";sf").unwrap(),
        "\"cache-status\";sf: ExampleCache;hit, Other;fwd=uri-miss"
    );
    assert_eq!(
        base_line(&request, "\"priority\";sf").unwrap(),
        "\"priority\";sf: u=1, i"
    );
    assert_eq!(
        base_line(&request, "\"content-digest\";sf").unwrap(),
        "\"content-digest\";sf: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "missing padding is accepted and re-serialised with it"
    );
    assert_eq!(
        base_line(&request, "\"priority\";key=\"i\";sf").unwrap(),
        "\"priority\";key=\"i\";sf: ?1",
        "received parameter order is kept in the identifier"
    );
}

#[test]
fn sf_or_key_on_an_invalid_structured_value_is_unavailable() {
    let request = get(
        "/",
        &[
            ("idempotency-key", "not a string"),
            ("example-dict", "a=1, B=2"),
        ],
    );
    for component in [
        "\"idempotency-key\";sf",
        "\"example-dict\";sf",
        "\"example-dict\";key=\"a\"",
        "\"example-dict\";key=\"Not A Key\"",
    ] {
        let err = base_line(&request, component).unwrap_err();
        assert!(
            matches!(err, SigError::ComponentUnavailable { .. }),
            "{component}: {err:?}"
        );
        assert!(!err.is_malformed());
    }
}

#[test]
fn derived_components_follow_the_view() {
    let request = Request::new(
        "PATCH",
        "HTTPS",
        "API.Example.COM:8443",
        "",
        header_map([("host", "ignored.example")]),
    );
    assert_eq!(base_line(&request, "\"@path\"").unwrap(), "\"@path\": /");
    assert_eq!(base_line(&request, "\"@query\"").unwrap(), "\"@query\": ?");
    assert_eq!(
        base_line(&request, "\"@authority\"").unwrap(),
        "\"@authority\": api.example.com:8443"
    );
    assert_eq!(
        base_line(&request, "\"@scheme\"").unwrap(),
        "\"@scheme\": https"
    );
    assert_eq!(
        base_line(&request, "\"@target-uri\"").unwrap(),
        "\"@target-uri\": https://api.example.com:8443/"
    );
    assert_eq!(
        base_line(&request, "\"@request-target\"").unwrap(),
        "\"@request-target\": /"
    );
    assert_eq!(
        base_line(&request, "\"@method\"").unwrap(),
        "\"@method\": PATCH"
    );
}

#[test]
fn authority_normalisation_drops_only_the_default_port() {
    for (scheme, authority, expected) in [
        ("https", "Example.COM:443", "example.com"),
        ("http", "example.com:80", "example.com"),
        ("http", "example.com:443", "example.com:443"),
        ("https", "example.com:80", "example.com:80"),
        ("https", "example.com:", "example.com"),
        ("https", "[2001:DB8::1]:443", "[2001:db8::1]"),
        ("https", "[2001:db8::1]:8443", "[2001:db8::1]:8443"),
        ("https", "[2001:db8::1]", "[2001:db8::1]"),
        ("https", "example.com", "example.com"),
    ] {
        assert_eq!(
            normalize_authority(scheme, authority),
            expected,
            "{authority}"
        );
    }
}

#[test]
fn query_param_decodes_then_reencodes() {
    let request = get("/p?a=%7e&b=%2B+x&c&%20d=1&e=%FF&f=caf%C3%A9&empty=", &[]);
    for (name, value) in [
        ("a", "%7E"),
        ("b", "%2B%20x"),
        ("c", ""),
        ("%20d", "1"),
        ("e", "%EF%BF%BD"),
        ("f", "caf%C3%A9"),
        ("empty", ""),
    ] {
        let line = base_line(&request, &format!("\"@query-param\";name=\"{name}\"")).unwrap();
        assert_eq!(
            line,
            format!("\"@query-param\";name=\"{name}\": {value}"),
            "{name}"
        );
    }
    assert!(base_line(&request, "\"@query-param\";name=\" d\"").is_err());
    let request = get("/p", &[]);
    assert!(matches!(
        base_line(&request, "\"@query-param\";name=\"a\""),
        Err(SigError::ComponentUnavailable {
            reason: "query parameter is missing",
            ..
        })
    ));
}

#[test]
fn present_but_empty_header_gives_an_empty_value() {
    let request = get("/", &[("x-empty", "")]);
    assert_eq!(base_line(&request, "\"x-empty\"").unwrap(), "\"x-empty\": ");
    assert_eq!(
        base_line(&request, "\"x-empty\";bs").unwrap(),
        "\"x-empty\";bs: ::"
    );
}

#[test]
fn request_view_debug_hides_header_values() {
    let request = get("/?token=secret", &[("authorization", "Bearer secret")]);
    let shown = format!("{:?}", request.view());
    assert!(shown.contains("authorization"));
    assert!(!shown.contains("secret"), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// Time policy

fn params(input: &str) -> SignatureParams {
    parse(&format!("s=(){input}"), SIG).unwrap()[0]
        .params()
        .clone()
}

#[test]
fn time_policy_with_an_injected_clock() {
    let now = 1_618_884_473;
    let fresh = params(&format!(";created={now};expires={}", now + 300));
    assert_eq!(check_times(&fresh, now, 300, 5, true), Ok(()));
    assert_eq!(check_times(&fresh, now + 300, 300, 5, true), Ok(()));
    assert_eq!(
        check_times(&fresh, now + 301, 300, 5, true),
        Err(SigError::TooOld { created: now })
    );
    assert_eq!(
        check_times(&fresh, now + 305, 3600, 5, true),
        Ok(()),
        "expiry skew"
    );
    assert_eq!(
        check_times(&fresh, now + 306, 3600, 5, true),
        Err(SigError::Expired { expires: now + 300 })
    );
    assert_eq!(
        check_times(&fresh, now - 5, 300, 5, true),
        Ok(()),
        "creation skew"
    );
    assert_eq!(
        check_times(&fresh, now - 6, 300, 5, true),
        Err(SigError::CreatedInFuture { created: now })
    );
    let no_created = params(";keyid=\"k\"");
    assert_eq!(
        check_times(&no_created, now, 300, 5, true),
        Err(SigError::MissingCreated)
    );
    assert_eq!(check_times(&no_created, now, 300, 5, false), Ok(()));
    let extreme = params(";created=999999999999999;expires=0");
    assert!(check_times(&extreme, i64::MIN, u64::MAX, u64::MAX, true).is_ok());
    assert!(check_times(&extreme, i64::MAX, 0, 0, true).is_err());
}

#[test]
fn rfc_vectors_are_too_old_on_the_wall_clock_but_not_on_their_own() {
    let v = json(EXAMPLES);
    let proxy = v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ex| ex["id"] == "S4.3-proxy_sig")
        .unwrap();
    let sigs = parse(
        s(&proxy["signature_input_field_value"]),
        s(&proxy["signature_field_value"]),
    )
    .unwrap();
    let p = find(&sigs, "proxy_sig").params();
    assert_eq!(check_times(p, 1_618_884_500, 300, 0, true), Ok(()));
    assert_eq!(
        check_times(p, 1_618_884_600, 3600, 0, true),
        Err(SigError::Expired {
            expires: 1618884540
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn error_messages_are_lowercase_and_classified() {
    let errors = [
        SigError::Missing,
        SigError::Malformed {
            field: "signature",
            reason: "x".to_owned(),
        },
        SigError::DuplicateLabel {
            label: "s".to_owned(),
        },
        SigError::LabelMismatch {
            label: "s".to_owned(),
        },
        SigError::InvalidComponent {
            component: "\"@foo\"".to_owned(),
            reason: "unknown derived component",
        },
        SigError::InvalidParameter {
            name: "foo".to_owned(),
            reason: "unknown signature parameter",
        },
        SigError::ComponentUnavailable {
            component: "\"date\"".to_owned(),
            reason: "field is missing",
        },
        SigError::AlgorithmNotAllowed {
            alg: "hmac-sha256".to_owned(),
        },
        SigError::InvalidSignature,
        SigError::Expired { expires: 1 },
        SigError::CreatedInFuture { created: 1 },
        SigError::TooOld { created: 1 },
        SigError::MissingCreated,
    ];
    let malformed: Vec<_> = errors.iter().map(SigError::is_malformed).collect();
    assert_eq!(
        malformed,
        [
            false, true, true, true, true, true, false, false, false, false, false, false, false
        ]
    );
    for e in &errors {
        let text = e.to_string();
        assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Never panic

#[test]
fn the_small_order_list_is_exactly_the_eight_weak_points() {
    let mut seen = std::collections::HashSet::new();
    for encoding in SMALL_ORDER_ENCODINGS {
        let point = VerifyingKey::from_bytes(&encoding).expect("a point on the curve");
        assert!(point.is_weak(), "{encoding:02x?} is not of small order");
        assert!(seen.insert(encoding), "{encoding:02x?} listed twice");
    }
    // The torsion subgroup has eight points, each with one canonical encoding.
    assert_eq!(seen.len(), 8);
}

#[test]
fn a_small_order_r_or_a_weak_key_is_refused_like_verify_strict() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let good = ed25519_dalek::Signer::sign(&key, b"base").to_bytes();
    assert_eq!(verify_ed25519(b"base", &good, &key.verifying_key()), Ok(()));
    for encoding in SMALL_ORDER_ENCODINGS {
        let mut forged = good;
        forged[..32].copy_from_slice(&encoding);
        assert_eq!(
            verify_ed25519(b"base", &forged, &key.verifying_key()),
            Err(SigError::InvalidSignature)
        );
        let weak = VerifyingKey::from_bytes(&encoding).unwrap();
        assert_eq!(
            verify_ed25519(b"base", &good, &weak),
            Err(SigError::InvalidSignature)
        );
    }
}

proptest! {
    #[test]
    fn parser_never_panics_on_arbitrary_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..300),
        signature in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let _ = parse_signature_fields(&input, &signature);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_strings(input in ".{0,200}", signature in ".{0,80}") {
        let _ = parse_signature_fields(input.as_bytes(), signature.as_bytes());
    }

    #[test]
    fn parser_and_base_never_panic_on_signature_like_input(
        label in "[a-z*][a-z0-9_.*-]{0,6}",
        components in proptest::collection::vec(
            "\"(@?[a-zA-Z-]{0,12})\"(;(sf|bs|req|tr|key=\"[a-z]{0,3}\"|name=\"[a-zA-Z%0-9]{0,6}\"|[a-z]{1,4}))*",
            0..6,
        ),
        params in "(;(created|expires|keyid|nonce|alg|tag|x)(=([0-9]{1,16}|\"[ -~]{0,8}\"|[a-z]+|\\?[01]|:[A-Za-z0-9+/=]{0,8}:|-?[0-9]{1,3}\\.[0-9]))?){0,5}",
        signature in ":[A-Za-z0-9+/=]{0,90}:",
    ) {
        let input = format!("{label}=({}){params}", components.join(" "));
        let signature = format!("{label}={signature}");
        if let Ok(sigs) = parse_signature_fields(input.as_bytes(), signature.as_bytes()) {
            let request = get(
                "/p?a=1&b=%zz&name",
                &[("example-dict", "a=1, b"), ("x", "  y "), ("content-type", "text/plain")],
            );
            let key = ed25519_public_key();
            for sig in &sigs {
                let _ = verify(&request.view(), sig, &key);
                let _ = check_times(sig.params(), 0, 300, 5, true);
            }
        }
    }

    #[test]
    fn verification_agrees_with_verify_strict(
        seed in any::<[u8; 32]>(),
        message in proptest::collection::vec(any::<u8>(), 0..64),
        flip in any::<(usize, u8)>(),
    ) {
        let key = SigningKey::from_bytes(&seed);
        let mut sig = ed25519_dalek::Signer::sign(&key, &message).to_bytes();
        let public = key.verifying_key();
        for round in 0..2 {
            if round == 1 {
                sig[flip.0 % 64] ^= flip.1 | 1;
            }
            let strict = public
                .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok();
            prop_assert_eq!(verify_ed25519(&message, &sig, &public).is_ok(), strict);
        }
    }
}

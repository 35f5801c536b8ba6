//! Every algorithm against every signed example of RFC 9421 (B.2.1–B.2.6, §2.4, §3.2, §4.3,
//! B.3, B.4; requests and responses), a P-384 signature made by pyca/cryptography (the RFC has
//! none), the key formats of B.1 and JWK, and the refusals.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use serde_json::Value;

use super::tests::{EXAMPLES, KEYS, Request, find, header_map, json, message_request, s};
use super::*;

const P384: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ecdsa_p384_generated.json"
));

/// An RSA-1024 public key (made with `openssl genrsa 1024`): too small.
const RSA_1024: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC0xgZz+I7Yi6JbmLBLvM+Tt6Wh
fZF3XazAfJYWEKtLTP7OhZtzqrBjVWF4ttE2A4hi91ywkrpA3hkhvN06Qa4XsBkF
5dq/OCQxvSIEnxR7k0Bl0dyhPQ0rOFHnANov5PcJC27ezHq2i+V5Cci/ymotXtxR
efxj1sdKvYQsDJ8NnwIDAQAB
-----END PUBLIC KEY-----";

/// An RSA-PSS key restricted to SHA-256 by its SPKI parameters (`openssl genpkey -algorithm
/// RSA-PSS -pkeyopt rsa_pss_keygen_md:sha256`).
const RSA_PSS_SHA256_ONLY: &str = "-----BEGIN PUBLIC KEY-----
MIIBMzAeBgkqhkiG9w0BAQowEaAPMA0GCWCGSAFlAwQCAQUAA4IBDwAwggEKAoIB
AQCMvlQqwMKNbk0PT+PBrVvnP+T5xx7dJHN2lbk5tdgoGLaFA1LCOmT5EtyAKt8R
mtz0QZneuGkNLFcFQW5gUVtVT6XVlaehkNzqaQhtqL0fXfbGT4/J+ZMRPcNs98D5
e8AVebBcc94Qt/MXJLEX3iHnS/ExZ1F9Mv1vDY4c5o7AQstjAYKTl/INsRA5rhDI
4ZUopFLv9Fc+c5fvZBChPVtuM1tIxFBuAomf/UgLeMEWsvk4/ZwfBnaX+HwIMZUT
gaIhZ8vTnTSt+c3VwIIuOLEbJ6t35YKLrnvpK8Kp5ubdJf8wuqJgilx0QErbyiLR
LuuU/MFXC0a/ffihD/3j0BA/AgMBAAE=
-----END PUBLIC KEY-----";

fn alg(name: &str) -> Algorithm {
    Algorithm::from_name(name).expect("registered algorithm")
}

/// The B.1 key named `keyid`, from its PEM (or the base64 secret), registered for `alg`.
fn rfc_key(keyid: &str, alg: Algorithm) -> VerificationKey {
    let keys = json(KEYS);
    let key = &keys["keys"][keyid];
    let text = if alg.is_symmetric() {
        s(&key["secret_b64"])
    } else {
        s(&key["public_pem"])
    };
    parse_verification_key(alg, text).unwrap_or_else(|e| panic!("{keyid}: {e}"))
}

/// The public members of a B.1 JWK (the file's JWKs carry the private ones too).
fn public_jwk(jwk: &Value) -> String {
    let mut jwk = jwk.clone();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        jwk.as_object_mut().unwrap().remove(private);
    }
    jwk.to_string()
}

fn rfc_jwk_key(keyid: &str, alg: Algorithm) -> VerificationKey {
    let keys = json(KEYS);
    let text = public_jwk(&keys["keys"][keyid]["jwk"]);
    parse_verification_key(alg, &text).unwrap_or_else(|e| panic!("{keyid} jwk: {e}"))
}

struct Response {
    status: u16,
    headers: HeaderMap,
}

fn message_response(msg: &Value) -> Response {
    let pairs = msg["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (s(&pair[0]), s(&pair[1])));
    Response {
        status: msg["status"].as_u64().unwrap() as u16,
        headers: header_map(pairs),
    }
}

/// One example's message: a request, or a response with its related request.
enum Owned {
    Request(Request),
    Response(Response, Option<Request>),
}

impl Owned {
    fn of(v: &Value, ex: &Value) -> Owned {
        let msg = &v["messages"][s(&ex["message"])];
        if msg["kind"] == "response" {
            let related = ex["related_request"]
                .as_str()
                .map(|name| message_request(&v["messages"][name]));
            Owned::Response(message_response(msg), related)
        } else {
            Owned::Request(message_request(msg))
        }
    }

    fn message(&self) -> Message<'_> {
        match self {
            Owned::Request(r) => Message::Request(r.view()),
            Owned::Response(r, related) => Message::Response(ResponseView {
                status: r.status,
                headers: &r.headers,
                request: related.as_ref().map(Request::view),
            }),
        }
    }

    fn headers(&self) -> &HeaderMap {
        match self {
            Owned::Request(r) => &r.headers,
            Owned::Response(r, _) => &r.headers,
        }
    }
}

/// The example's signature, from the message's own fields when it carries them.
fn example_signature(ex: &Value, owned: &Owned) -> ParsedSignature {
    let target = owned.message().target();
    let sigs = if owned.headers().contains_key("signature-input") {
        parse_message_signatures(owned.headers(), target)
    } else {
        parse_fields(
            s(&ex["signature_input_field_value"]).as_bytes(),
            s(&ex["signature_field_value"]).as_bytes(),
            target,
        )
    }
    .unwrap_or_else(|e| panic!("{}: {e}", s(&ex["id"])));
    find(&sigs, s(&ex["label"])).clone()
}

#[test]
fn every_signed_example_verifies_in_its_algorithm_exactly_when_the_rfc_says_so() {
    let v = json(EXAMPLES);
    let mut seen = Vec::new();
    for ex in v["examples"].as_array().unwrap() {
        let id = s(&ex["id"]);
        let alg = alg(s(&ex["alg"]));
        let owned = Owned::of(&v, ex);
        let msg = owned.message();
        let sig = example_signature(ex, &owned);
        // The base, byte for byte, requests and responses (with ;req) alike.
        let base = message_base(&msg, &sig).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(base, s(&ex["signature_base"]), "{id}");
        // The injected clock: a second after signing the vector is fresh; on the wall clock
        // (the vectors are from 2021) it is far too old.
        let created = sig.params().created().unwrap();
        assert_eq!(
            check_times(sig.params(), created + 1, 300, 30, true),
            Ok(())
        );
        assert!(check_times(sig.params(), created + 3600, 300, 30, true).is_err());
        let expected = ex["verified"] == true;
        let keyid = s(&ex["keyid"]);
        assert_eq!(sig.params().keyid(), Some(keyid), "{id}");
        let mut keys = vec![rfc_key(keyid, alg)];
        if !alg.is_symmetric() {
            keys.push(rfc_jwk_key(keyid, alg));
        }
        for key in &keys {
            let result = verify_message(&msg, &sig, key);
            assert_eq!(result.is_ok(), expected, "{id} ({key:?}): {result:?}");
            if let Err(e) = result {
                assert_eq!(e, SigError::InvalidSignature, "{id}");
            }
        }
        seen.push((id, alg.name(), expected));
    }
    assert_eq!(
        seen,
        [
            ("B.2.1", "rsa-pss-sha512", true),
            ("B.2.2", "rsa-pss-sha512", true),
            ("B.2.3", "rsa-pss-sha512", true),
            ("B.2.4", "ecdsa-p256-sha256", true),
            ("B.2.5", "hmac-sha256", true),
            ("B.2.6", "ed25519", true),
            ("S3.2-sig1", "rsa-pss-sha512", true),
            ("S2.4-reqres-1", "ecdsa-p256-sha256", true),
            ("S2.4-reqres-2", "ecdsa-p256-sha256", true),
            ("S2.4-sig1", "rsa-pss-sha512", true),
            ("S4.3-sig1", "ecdsa-p256-sha256", true),
            ("S4.3-proxy_sig", "rsa-v1_5-sha256", true),
            ("B.3-ttrp", "ecdsa-p256-sha256", true),
            ("B.4-0", "ed25519", true),
            ("B.4-2", "ed25519", true),
            ("B.4-3", "ed25519", true),
            ("B.4-4", "ed25519", true),
            ("B.4-5", "ed25519", false),
            ("B.4-6", "ed25519", false),
        ]
    );
}

#[test]
fn a_changed_signature_or_message_fails_in_every_algorithm() {
    let v = json(EXAMPLES);
    let mut algs = Vec::new();
    for ex in v["examples"].as_array().unwrap() {
        if ex["verified"] != true {
            continue;
        }
        let id = s(&ex["id"]);
        let alg = alg(s(&ex["alg"]));
        let key = rfc_key(s(&ex["keyid"]), alg);
        let base = s(&ex["signature_base"]).as_bytes().to_vec();
        let signature = STANDARD.decode(s(&ex["signature_b64"])).unwrap();
        assert_eq!(key.verify(&base, &signature), Ok(()), "{id}");
        for i in [0, signature.len() / 2, signature.len() - 1] {
            let mut bad = signature.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                key.verify(&base, &bad),
                Err(SigError::InvalidSignature),
                "{id}"
            );
        }
        assert_eq!(
            key.verify(&base, &signature[..signature.len() - 1]),
            Err(SigError::InvalidSignature),
            "{id}: truncated"
        );
        assert_eq!(key.verify(&base, &[]), Err(SigError::InvalidSignature));
        let mut changed = base.clone();
        changed[1] ^= 0x20;
        assert_eq!(
            key.verify(&changed, &signature),
            Err(SigError::InvalidSignature),
            "{id}: base changed"
        );
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    assert_eq!(
        algs.len(),
        5,
        "every algorithm of the RFC examples: {algs:?}"
    );
}

#[test]
fn p384_signature_from_an_independent_signer_verifies_and_its_der_form_does_not() {
    let p = json(P384);
    let request = message_request(&json(EXAMPLES)["messages"]["test-request"]);
    let msg = Message::Request(request.view());
    let sigs = parse_signature_fields(
        s(&p["signature_input_field_value"]).as_bytes(),
        s(&p["signature_field_value"]).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        message_base(&msg, &sigs[0]).unwrap(),
        s(&p["signature_base"])
    );
    let pem = parse_verification_key(Algorithm::EcdsaP384Sha384, s(&p["public_pem"])).unwrap();
    let jwk = parse_verification_key(Algorithm::EcdsaP384Sha384, &public_jwk(&p["jwk"])).unwrap();
    for key in [&pem, &jwk] {
        assert_eq!(verify_message(&msg, &sigs[0], key), Ok(()));
    }
    // RFC 9421 §3.3.5: r‖s, not the DER most libraries produce.
    let der = STANDARD.decode(s(&p["signature_der_b64"])).unwrap();
    assert_eq!(
        pem.verify(s(&p["signature_base"]).as_bytes(), &der),
        Err(SigError::InvalidSignature)
    );
    // Its private key, from PKCS#8 and from the JWK, signs what the public key verifies.
    for text in [s(&p["private_pem"]).to_owned(), p["jwk"].to_string()] {
        let signer = parse_signer_key(&text, None).unwrap();
        assert_eq!(signer.alg(), Algorithm::EcdsaP384Sha384);
        let signature = signer.sign_base(b"base").unwrap();
        assert_eq!(signature.len(), 96);
        assert_eq!(pem.verify(b"base", &signature), Ok(()));
    }
}

/// The S4.3-proxy_sig base signed rsa-v1_5-sha256 with test-key-rsa-pss's private key by
/// pyca/cryptography 48 (PKCS1v15, SHA256). The RFC signs it with test-key-rsa, whose primes
/// are unbalanced (1088 and 960 bits): ring verifies with it but refuses to sign with it.
const S43_RSA_V15_BY_PSS_KEY: &str = "NRl+BA2SgggGudKpw+bctXa8EICsuSRi8C7K1oD/MWEBXV7S62BXc1pcLUi81hkypgU0HwAuxwkgI0tx471YR+srd/V8cqp/Bh2S2L/C6XaTJzcjCeb3IfA3jeho9YLSNFHKT6lFxAp3hCnZ+dtdyrZ84g4jsiAH+QH5DUxJT0uN2BRu8qdS0EKpByPsOUzlLgfQQUUZAYslwpxXnqfJ6KZ7rnE6mG5aEk8vlOlbGqprLOK5oWL8ddWtjIG3W1Fv87OhwmUfg/NJND4EA83AVnn5XMoqTz4JE+sG8pyU3yxADs6F8akaBjfexz8XcDra64K4bwJWO+AgMOzuJ+wM7w==";

#[test]
fn rsa_v1_5_signing_matches_an_independent_signer_byte_for_byte() {
    let v = json(EXAMPLES);
    let keys = json(KEYS);
    let ex = v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "S4.3-proxy_sig")
        .unwrap();
    let signer = parse_signer_key(
        s(&keys["keys"]["test-key-rsa-pss"]["private_pem"]),
        Some(Algorithm::RsaV15Sha256),
    )
    .unwrap();
    let signature = signer
        .sign_base(s(&ex["signature_base"]).as_bytes())
        .unwrap();
    assert_eq!(STANDARD.encode(&signature), S43_RSA_V15_BY_PSS_KEY);
    // test-key-rsa itself: verified, never signed with (see above).
    assert!(matches!(
        parse_signer_key(
            s(&keys["keys"]["test-key-rsa"]["private_pem"]),
            Some(Algorithm::RsaV15Sha256)
        ),
        Err(KeyError::Format(_))
    ));
}

#[test]
fn deterministic_algorithms_resign_the_rfc_examples_byte_for_byte() {
    let v = json(EXAMPLES);
    let keys = json(KEYS);
    for (id, keyid, alg, text) in [
        (
            "B.2.5",
            "test-shared-secret",
            Algorithm::HmacSha256,
            s(&keys["keys"]["test-shared-secret"]["secret_b64"]),
        ),
        (
            "B.2.6",
            "test-key-ed25519",
            Algorithm::Ed25519,
            s(&keys["keys"]["test-key-ed25519"]["private_pem"]),
        ),
    ] {
        let ex = v["examples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap();
        let owned = Owned::of(&v, ex);
        let sig = example_signature(ex, &owned);
        let components: Vec<&str> = sig.components().iter().map(Component::identifier).collect();
        let params: Vec<SigParam> = sig.params().iter().cloned().collect();
        let signer = parse_signer_key(text, Some(alg)).unwrap_or_else(|e| panic!("{id}: {e}"));
        let signed =
            sign_message(&owned.message(), sig.label(), &components, &params, &signer).unwrap();
        assert_eq!(signed.base, s(&ex["signature_base"]), "{id}");
        assert_eq!(
            signed.signature,
            format!("{}=:{}:", sig.label(), s(&ex["signature_b64"])),
            "{id} ({keyid})"
        );
    }
}

#[test]
fn randomised_algorithms_sign_what_their_public_keys_verify() {
    let v = json(EXAMPLES);
    let keys = json(KEYS);
    let request = message_request(&v["messages"]["test-request"]);
    let view = request.view();
    for (keyid, alg) in [
        // PKCS#8 with the id-RSASSA-PSS OID, which ring's own loader refuses.
        ("test-key-rsa-pss", Algorithm::RsaPssSha512),
        // The same key signing PKCS#1 v1.5.
        ("test-key-rsa-pss", Algorithm::RsaV15Sha256),
        // SEC1.
        ("test-key-ecc-p256", Algorithm::EcdsaP256Sha256),
    ] {
        let key = &keys["keys"][keyid];
        for text in [s(&key["private_pem"]).to_owned(), key["jwk"].to_string()] {
            let signer =
                parse_signer_key(&text, Some(alg)).unwrap_or_else(|e| panic!("{keyid}: {e}"));
            let signed = sign(
                &view,
                "s",
                &["@method", "@authority", "@path", "content-digest"],
                &[
                    SigParam::Created(1618884473),
                    SigParam::KeyId(keyid.to_owned()),
                    SigParam::Alg(alg.name().to_owned()),
                ],
                &signer,
            )
            .unwrap();
            let sigs = parse_signature_fields(
                signed.signature_input.as_bytes(),
                signed.signature.as_bytes(),
            )
            .unwrap();
            let public = rfc_key(keyid, alg);
            assert_eq!(
                verify_message(&Message::Request(view), &sigs[0], &public),
                Ok(()),
                "{keyid} {alg}"
            );
            assert_eq!(
                signer.verification_key().unwrap().stored(),
                public.stored(),
                "{keyid}: the public half"
            );
        }
    }
}

#[test]
fn the_algorithm_is_the_keys_and_alg_can_only_agree_with_it() {
    let keys = json(KEYS);
    let request = message_request(&json(EXAMPLES)["messages"]["test-request"]);
    let msg = Message::Request(request.view());
    let rsa = rfc_key("test-key-rsa", Algorithm::RsaV15Sha256);
    let rsa_der = rsa.stored().unwrap();
    // The classic confusion (§7.3.6): an HMAC over the base keyed with the public key's bytes,
    // with alg naming HMAC, or with no alg at all.
    for input in [
        "s=(\"@method\");created=1;keyid=\"test-key-rsa\";alg=\"hmac-sha256\"",
        "s=(\"@method\");created=1;keyid=\"test-key-rsa\"",
    ] {
        let sig = &parse_signature_fields(input.as_bytes(), b"s=:AAAA:").unwrap()[0];
        let base = message_base(&msg, sig).unwrap();
        let forged = HmacKey::new(&rsa_der);
        let tag = SignerKey::Hmac(forged).sign_base(base.as_bytes()).unwrap();
        let field = format!("s=:{}:", STANDARD.encode(tag));
        let sig = &parse_signature_fields(input.as_bytes(), field.as_bytes()).unwrap()[0];
        let expected = if input.contains("alg") {
            SigError::AlgorithmNotAllowed {
                alg: "hmac-sha256".to_owned(),
            }
        } else {
            SigError::InvalidSignature
        };
        assert_eq!(verify_message(&msg, sig, &rsa), Err(expected), "{input}");
    }
    // The RFC's rsa-v1_5 signature does not verify under the same key registered for PSS, and
    // its alg parameter says so before any crypto.
    let v = json(EXAMPLES);
    let ex = v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "S4.3-proxy_sig")
        .unwrap();
    let owned = Owned::of(&v, ex);
    let sig = example_signature(ex, &owned);
    let pss = parse_verification_key(
        Algorithm::RsaPssSha512,
        s(&keys["keys"]["test-key-rsa"]["public_pem"]),
    )
    .unwrap();
    assert_eq!(
        verify_message(&owned.message(), &sig, &pss),
        Err(SigError::AlgorithmNotAllowed {
            alg: "rsa-v1_5-sha256".to_owned()
        })
    );
    // A JOSE name is not a registry name.
    let sig = &parse_signature_fields(b"s=(\"@method\");alg=\"ES256\"", b"s=:AAAA:").unwrap()[0];
    let p256 = rfc_key("test-key-ecc-p256", Algorithm::EcdsaP256Sha256);
    assert!(matches!(
        verify_message(&msg, sig, &p256),
        Err(SigError::AlgorithmNotAllowed { .. })
    ));
}

#[test]
fn every_rfc_key_loads_from_each_of_its_formats_and_round_trips_through_the_store_form() {
    let keys = json(KEYS);
    for (keyid, alg) in [
        ("test-key-rsa", Algorithm::RsaV15Sha256),
        ("test-key-rsa", Algorithm::RsaPssSha512),
        ("test-key-rsa-pss", Algorithm::RsaPssSha512),
        ("test-key-ecc-p256", Algorithm::EcdsaP256Sha256),
        ("test-key-ed25519", Algorithm::Ed25519),
    ] {
        let key = &keys["keys"][keyid];
        let pem = rfc_key(keyid, alg);
        let jwk = rfc_jwk_key(keyid, alg);
        assert_eq!(pem.alg(), alg);
        assert_eq!(pem.stored(), jwk.stored(), "{keyid}: pem and jwk agree");
        let stored = pem.stored().unwrap();
        let back = stored_verification_key(alg, &stored).unwrap();
        assert_eq!(back.stored(), Some(stored), "{keyid}");
        // A JWK whose alg names the configured algorithm is fine too.
        let mut named = serde_json::from_str::<Value>(&public_jwk(&key["jwk"])).unwrap();
        named["alg"] = alg.jose_name().into();
        named["use"] = "sig".into();
        parse_verification_key(alg, &named.to_string()).unwrap();
    }
    // The PKCS#1 text of test-key-rsa and an SPKI of the same key give the same key.
    let ed = &keys["keys"]["test-key-ed25519"];
    let raw = parse_verification_key(
        Algorithm::Ed25519,
        &STANDARD.encode(hex::decode(s(&ed["raw_public_key_hex"])).unwrap()),
    )
    .unwrap();
    assert_eq!(
        raw.stored(),
        rfc_key("test-key-ed25519", Algorithm::Ed25519).stored()
    );
    // HMAC: base64 or a JWK oct; never a store form.
    let secret = s(&keys["keys"]["test-shared-secret"]["secret_b64"]);
    let bytes = STANDARD.decode(secret).unwrap();
    let oct = format!(
        "{{\"kty\":\"oct\",\"k\":\"{}\"}}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)
    );
    for text in [secret, &oct] {
        let key = parse_verification_key(Algorithm::HmacSha256, text).unwrap();
        assert_eq!(key.stored(), None);
        assert!(!format!("{key:?}").contains(&secret[..8]));
    }
    assert!(stored_verification_key(Algorithm::HmacSha256, &bytes).is_err());
}

#[test]
fn keys_that_cannot_serve_their_algorithm_are_refused_at_load() {
    let keys = json(KEYS);
    let pem = |id: &str| s(&keys["keys"][id]["public_pem"]).to_owned();
    let rsa = pem("test-key-rsa");
    let p256 = pem("test-key-ecc-p256");
    let ed = pem("test-key-ed25519");
    let mut off_curve =
        serde_json::from_str::<Value>(&public_jwk(&keys["keys"]["test-key-ecc-p256"]["jwk"]))
            .unwrap();
    off_curve["y"] = "Mc4oN9LTDOBhfoUeg8Ye9WedFRhnZXZJA12Qp0zZ6F0".into();
    let mut wrong_alg =
        serde_json::from_str::<Value>(&public_jwk(&keys["keys"]["test-key-rsa"]["jwk"])).unwrap();
    wrong_alg["alg"] = "RS256".into();
    let mut enc = wrong_alg.clone();
    enc["alg"] = "PS512".into();
    enc["use"] = "enc".into();
    use Algorithm::*;
    let cases: Vec<(Algorithm, String, KeyError)> = vec![
        (
            RsaV15Sha256,
            RSA_1024.into(),
            KeyError::RsaSize { bits: 1024 },
        ),
        (
            RsaPssSha512,
            RSA_1024.into(),
            KeyError::RsaSize { bits: 1024 },
        ),
        (
            EcdsaP256Sha256,
            rsa.clone(),
            KeyError::WrongType {
                alg: EcdsaP256Sha256,
                found: "an rsa key",
            },
        ),
        (
            EcdsaP384Sha384,
            p256.clone(),
            KeyError::WrongType {
                alg: EcdsaP384Sha384,
                found: "a p-256 key",
            },
        ),
        (
            RsaPssSha512,
            ed.clone(),
            KeyError::WrongType {
                alg: RsaPssSha512,
                found: "an ed25519 key",
            },
        ),
        (
            Ed25519,
            p256.clone(),
            KeyError::WrongType {
                alg: Ed25519,
                found: "a p-256 key",
            },
        ),
        (
            Ed25519,
            s(&keys["keys"]["test-key-ed25519"]["private_pem"]).into(),
            KeyError::PrivateNotPublic,
        ),
        (
            RsaV15Sha256,
            keys["keys"]["test-key-rsa"]["jwk"].to_string(),
            KeyError::PrivateNotPublic,
        ),
        (
            EcdsaP256Sha256,
            off_curve.to_string(),
            KeyError::Format("ec public key is not a point on its curve"),
        ),
        (
            RsaPssSha512,
            wrong_alg.to_string(),
            KeyError::JwkMismatch {
                member: "alg",
                value: "RS256".into(),
                expected: "PS512",
            },
        ),
        (
            RsaPssSha512,
            enc.to_string(),
            KeyError::JwkMismatch {
                member: "use",
                value: "enc".into(),
                expected: "sig",
            },
        ),
        (
            RsaPssSha512,
            RSA_PSS_SHA256_ONLY.into(),
            KeyError::Format("rsa-pss spki with parameters is not supported: use rsaEncryption"),
        ),
        (
            RsaV15Sha256,
            RSA_PSS_SHA256_ONLY.into(),
            KeyError::WrongType {
                alg: RsaV15Sha256,
                found: "an rsa-pss key",
            },
        ),
        (
            HmacSha256,
            STANDARD.encode([7u8; 31]),
            KeyError::SecretTooShort { len: 31 },
        ),
        (
            HmacSha256,
            "not base64!".into(),
            KeyError::Format("hmac secret is not base64 (give the secret's bytes base64-encoded)"),
        ),
        (
            EcdsaP256Sha256,
            "AAAA".into(),
            KeyError::Format("expected a pem (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY) or a jwk"),
        ),
        (
            EcdsaP256Sha256,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into(),
            KeyError::Format("public key pem is not a valid spki"),
        ),
        (
            EcdsaP256Sha256,
            "{\"kty\":\"EC\"".into(),
            KeyError::Format("jwk is not a json object with kty"),
        ),
    ];
    for (alg, text, expected) in cases {
        let got = parse_verification_key(alg, &text).map(|k| k.alg());
        assert_eq!(got, Err(expected.clone()), "{alg}: {text}");
        // Messages never carry key material.
        assert!(!expected.to_string().contains("MII"));
    }
    // An RSA private key must say which of the two RSA algorithms it signs.
    assert!(matches!(
        parse_signer_key(s(&keys["keys"]["test-key-rsa"]["private_pem"]), None),
        Err(KeyError::Format(_))
    ));
    assert!(matches!(
        parse_signer_key(
            s(&keys["keys"]["test-key-ecc-p256"]["private_pem"]),
            Some(Algorithm::EcdsaP384Sha384)
        ),
        Err(KeyError::WrongType { .. })
    ));
}

#[test]
fn response_components_follow_the_rules_of_section_2_4() {
    let v = json(EXAMPLES);
    let request = message_request(&v["messages"]["test-request"]);
    let headers = header_map([("content-type", "application/json")]);
    let with_request = Message::Response(ResponseView {
        status: 200,
        headers: &headers,
        request: Some(request.view()),
    });
    let alone = Message::Response(ResponseView {
        status: 200,
        headers: &headers,
        request: None,
    });
    let base = |msg: &Message<'_>, input: &str| {
        parse_fields(
            format!("s={input}").as_bytes(),
            b"s=:AAAA:",
            Target::Response,
        )
        .and_then(|sigs| message_base(msg, &sigs[0]))
    };
    assert_eq!(
        base(
            &with_request,
            "(\"@status\" \"content-type\" \"@method\";req \"@target-uri\";req \"content-length\";req)"
        )
        .unwrap(),
        "\"@status\": 200\n\"content-type\": application/json\n\"@method\";req: POST\n\
         \"@target-uri\";req: https://example.com/foo?param=Value&Pet=dog\n\"content-length\";req: 18\n\
         \"@signature-params\": (\"@status\" \"content-type\" \"@method\";req \"@target-uri\";req \
         \"content-length\";req)"
    );
    for (input, reason) in [
        (
            "(\"@method\")",
            "a request component on a response signature needs req",
        ),
        ("(\"@status\";req)", "@status is not allowed on a request"),
    ] {
        assert_eq!(
            base(&with_request, input),
            Err(SigError::InvalidComponent {
                component: input[1..input.len() - 1].to_owned(),
                reason
            })
        );
    }
    assert_eq!(
        base(&alone, "(\"@method\";req)"),
        Err(SigError::ComponentUnavailable {
            component: "\"@method\";req".to_owned(),
            reason: "the related request is not known"
        })
    );
    // A response field a response lacks, and a request field taken with ;req.
    assert!(matches!(
        base(&with_request, "(\"content-length\")"),
        Err(SigError::ComponentUnavailable { .. })
    ));
    // covers() speaks of the response itself; covers_req() of its request.
    let sig = &parse_fields(
        b"s=(\"@status\" \"@method\";req \"content-digest\")",
        b"s=:AAAA:",
        Target::Response,
    )
    .unwrap()[0];
    assert!(sig.covers("@status") && sig.covers("content-digest"));
    assert!(!sig.covers("@method") && sig.covers_req("@method"));
}

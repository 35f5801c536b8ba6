use super::*;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

fn enc(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn ec_jwk(alg: &'static sig::EcdsaSigningAlgorithm, crv: &str) -> (EcdsaKeyPair, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let len = (point.len() - 1) / 2;
    let jwk = format!(
        r#"{{"kty":"EC","crv":"{crv}","kid":"ec","x":"{}","y":"{}"}}"#,
        enc(&point[1..1 + len]),
        enc(&point[1 + len..])
    );
    (pair, jwk)
}

fn set(keys: &[String]) -> KeySet {
    let doc = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
    let (set, skipped) = parse_set(doc.as_bytes()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    set
}

#[test]
fn an_es256_key_verifies_its_signatures_and_nothing_else() {
    let (pair, jwk) = ec_jwk(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let keys = set(&[jwk]);
    let rng = ring::rand::SystemRandom::new();
    let signature = pair.sign(&rng, b"msg").unwrap();
    let Selected::Key(key) = keys.select(Some("ec"), Alg::Es256) else {
        panic!("no key")
    };
    assert!(key.verify(Alg::Es256, b"msg", signature.as_ref()));
    assert!(!key.verify(Alg::Es256, b"other", signature.as_ref()));
    // The same key under another algorithm is no key at all.
    assert!(matches!(
        keys.select(Some("ec"), Alg::Es384),
        Selected::Unknown
    ));
    assert!(matches!(
        keys.select(Some("ec"), Alg::Rs256),
        Selected::Unknown
    ));
    assert!(!key.verify(Alg::Es384, b"msg", signature.as_ref()));
}

#[test]
fn an_es384_key_is_p384_only() {
    let (pair, jwk) = ec_jwk(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384");
    let keys = set(&[jwk]);
    let rng = ring::rand::SystemRandom::new();
    let signature = pair.sign(&rng, b"m").unwrap();
    let Selected::Key(key) = keys.select(None, Alg::Es384) else {
        panic!("no key")
    };
    assert!(key.verify(Alg::Es384, b"m", signature.as_ref()));
    assert!(matches!(keys.select(None, Alg::Es256), Selected::Unknown));
}

#[test]
fn an_ed25519_key_verifies_strictly() {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = format!(
        r#"{{"kty":"OKP","crv":"Ed25519","kid":"ed","alg":"EdDSA","x":"{}"}}"#,
        enc(pair.public_key().as_ref())
    );
    let keys = set(&[jwk]);
    let Selected::Key(key) = keys.select(Some("ed"), Alg::EdDsa) else {
        panic!("no key")
    };
    let signature = pair.sign(b"m");
    assert!(key.verify(Alg::EdDsa, b"m", signature.as_ref()));
    assert!(!key.verify(Alg::EdDsa, b"n", signature.as_ref()));
    assert!(!key.verify(Alg::EdDsa, b"m", &signature.as_ref()[..63]));
}

#[test]
fn a_key_naming_its_alg_verifies_that_alg_only() {
    let (_, jwk) = ec_jwk(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let with_alg = jwk.replace(r#""kid":"ec""#, r#""kid":"ec","alg":"ES256""#);
    assert!(matches!(
        set(&[with_alg]).select(Some("ec"), Alg::Es256),
        Selected::Key(_)
    ));
    let wrong = jwk.replace(r#""kid":"ec""#, r#""kid":"ec","alg":"ES384""#);
    let (keys, skipped) = parse_set(format!(r#"{{"keys":[{wrong}]}}"#).as_bytes()).unwrap();
    assert!(keys.is_empty());
    assert!(skipped[0].contains("does not fit"), "{skipped:?}");
}

#[test]
fn tokens_without_kid_need_exactly_one_fitting_key() {
    let (_, a) = ec_jwk(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let (_, b) = ec_jwk(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let b = b.replace(r#""kid":"ec""#, r#""kid":"ec2""#);
    let (_, c) = ec_jwk(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384");
    assert!(matches!(
        set(&[a.clone(), c.clone()]).select(None, Alg::Es256),
        Selected::Key(_)
    ));
    assert!(matches!(
        set(&[a.clone(), b.clone()]).select(None, Alg::Es256),
        Selected::Ambiguous
    ));
    assert!(matches!(
        set(&[a, b]).select(Some("ec2"), Alg::Es256),
        Selected::Key(_)
    ));
    assert!(matches!(
        set(&[c]).select(None, Alg::Es256),
        Selected::Unknown
    ));
}

#[test]
fn unusable_keys_are_skipped_with_a_reason() {
    let (_, ok) = ec_jwk(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let short_n = enc(&[0xc5; 128]); // 1024 bits
    let docs = [
        format!(r#"{{"kty":"RSA","kid":"short","n":"{short_n}","e":"AQAB"}}"#),
        r#"{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}"#.to_string(),
        ok.replace(r#""kid":"ec""#, r#""kid":"enc","use":"enc""#),
        ok.replace(r#""kid":"ec""#, r#""kid":"priv","d":"AAAA""#),
        ok.replace(r#""kid":"ec""#, r#""kid":"ops","key_ops":["sign"]"#),
        ok.replace(r#""kid":"ec""#, r#""kid":"hs","alg":"HS256""#),
        ok.replace(r#""kid":"ec""#, r#""kid":"none","alg":"none""#),
        ok.replace("P-256", "P-521"),
        r#"{"kty":"OKP","crv":"X25519","x":"AAAA"}"#.to_string(),
        r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#.to_string(),
        // The identity point: small order.
        format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            enc(&{
                let mut p = [0u8; 32];
                p[0] = 1;
                p
            })
        ),
        r#"{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}"#.to_string(),
        r#""not an object""#.to_string(),
        ok.clone(),
    ];
    let (keys, skipped) =
        parse_set(format!(r#"{{"keys":[{}]}}"#, docs.join(",")).as_bytes()).unwrap();
    assert_eq!(keys.len(), 1, "{skipped:?}");
    assert_eq!(skipped.len(), docs.len() - 1, "{skipped:?}");
    assert!(skipped[0].contains("2048"));
    assert!(skipped[3].contains("private"));
}

#[test]
fn an_ec_point_off_the_curve_is_refused() {
    let (_, jwk) = ec_jwk(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let v: serde_json::Value = serde_json::from_str(&jwk).unwrap();
    let mut y = URL_SAFE_NO_PAD.decode(v["y"].as_str().unwrap()).unwrap();
    y[31] ^= 1;
    let bad = jwk.replace(v["y"].as_str().unwrap(), &enc(&y));
    let (keys, skipped) = parse_set(format!(r#"{{"keys":[{bad}]}}"#).as_bytes()).unwrap();
    assert!(keys.is_empty());
    assert!(skipped[0].contains("not on the curve"), "{skipped:?}");
}

#[test]
fn rsa_moduli_are_measured_without_leading_zeros() {
    assert_eq!(bits(&strip_zeros(vec![0, 0, 1])), 1);
    assert_eq!(bits(&[0x80; 256]), 2048);
    assert_eq!(bits(&[0x7f; 256]), 2047);
    // A 2048-bit modulus published with a leading zero byte is still 2048 bits.
    let n = enc(&[&[0u8][..], &[0xc5; 256]].concat());
    let doc = format!(r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"AQAB"}}]}}"#);
    assert_eq!(parse_set(doc.as_bytes()).unwrap().0.len(), 1);
}

#[test]
fn documents_that_are_not_key_sets_are_errors() {
    assert!(parse_set(b"{}").is_err());
    assert!(parse_set(b"[]").is_err());
    assert!(parse_set(b"{\"keys\":{}}").is_err());
    assert!(parse_set(b"{\"keys\":[]}").unwrap().0.is_empty());
}

proptest::proptest! {
    #[test]
    fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(0u8..=255, 0..512)) {
        let _ = parse_set(&bytes);
    }

    #[test]
    fn parsing_any_key_fields_never_panics(
        kty in "(RSA|EC|OKP|oct|x)",
        crv in "(P-256|P-384|Ed25519|x)",
        n in "[A-Za-z0-9_-]{0,400}",
        x in "[A-Za-z0-9_-]{0,70}",
    ) {
        let doc = format!(
            r#"{{"keys":[{{"kty":"{kty}","crv":"{crv}","n":"{n}","e":"AQAB","x":"{x}","y":"{x}"}}]}}"#
        );
        let _ = parse_set(doc.as_bytes());
    }
}

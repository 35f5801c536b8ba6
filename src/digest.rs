//! RFC 9530 `Content-Digest`: parsing the field, checking it against the body as it streams
//! past, and producing it for the signing client. Pure: the caller feeds the body bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use sfv::{BareItem, Dictionary, ListEntry, Parser};
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq as _;

/// The `Want-Content-Digest` value sent when a digest is missing or uses no supported
/// algorithm (RFC 9530 §4): sha-512 preferred, sha-256 accepted.
pub const WANT_CONTENT_DIGEST: &str = "sha-512=10, sha-256=5";

/// The digest algorithms accepted (the two Active ones of the RFC 9530 registry). The
/// deprecated ones (`md5`, `sha`, `unixsum`, …) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `sha-256`, 32-byte digest.
    Sha256,
    /// `sha-512`, 64-byte digest.
    Sha512,
}

impl Algorithm {
    /// The Dictionary key: `sha-256` or `sha-512`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha-256",
            Algorithm::Sha512 => "sha-512",
        }
    }

    /// The algorithm for a Dictionary key, `None` when unsupported.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha-256" => Some(Algorithm::Sha256),
            "sha-512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha256 => Sha256::digest(data).to_vec(),
            Algorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a `Content-Digest` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not a valid SF Dictionary, or a sha-256 / sha-512 member that is not a Byte Sequence
    /// of the right length (answer 400).
    #[error("malformed content-digest: {reason}")]
    Malformed {
        /// What is wrong, without the field value.
        reason: String,
    },
    /// No sha-256 or sha-512 member (answer with `Want-Content-Digest`).
    #[error("content-digest has no supported algorithm (sha-512, sha-256)")]
    Unsupported,
    /// A supported member does not match the body (answer 400 `digest_mismatch`).
    #[error("content-digest {algorithm} does not match the body")]
    Mismatch {
        /// The first member that did not match.
        algorithm: Algorithm,
    },
}

/// Parses a `Content-Digest` (or `Repr-Digest`) value, field lines joined with `", "`.
/// Returns the supported members in field order; unknown and deprecated algorithms are
/// skipped. At least one supported member is required ([`DigestError::Unsupported`]).
pub fn parse_content_digest(value: &str) -> Result<Vec<(Algorithm, Vec<u8>)>, DigestError> {
    let dict: Dictionary =
        Parser::new(value)
            .parse()
            .map_err(|e: sfv::Error| DigestError::Malformed {
                reason: e.to_string(),
            })?;
    let mut members = Vec::new();
    for (key, entry) in &dict {
        let Some(algorithm) = Algorithm::from_name(key.as_str()) else {
            continue;
        };
        let bytes = match entry {
            ListEntry::Item(item) => match &item.bare_item {
                BareItem::ByteSequence(bytes) => bytes,
                _ => return Err(not_bytes(algorithm)),
            },
            ListEntry::InnerList(_) => return Err(not_bytes(algorithm)),
        };
        if bytes.len() != algorithm.output_len() {
            return Err(DigestError::Malformed {
                reason: format!(
                    "{algorithm} digest is {} bytes, expected {}",
                    bytes.len(),
                    algorithm.output_len()
                ),
            });
        }
        members.push((algorithm, bytes.clone()));
    }
    if members.is_empty() {
        return Err(DigestError::Unsupported);
    }
    Ok(members)
}

fn not_bytes(algorithm: Algorithm) -> DigestError {
    DigestError::Malformed {
        reason: format!("{algorithm} member is not a byte sequence"),
    }
}

/// The `Content-Digest` value for `body`: `sha-512=:base64:`.
pub fn content_digest_header(body: &[u8], algorithm: Algorithm) -> String {
    format!(
        "{}=:{}:",
        algorithm.name(),
        STANDARD.encode(algorithm.digest(body))
    )
}

/// Checks a body against every supported `Content-Digest` member as the body streams past:
/// [`update`](DigestVerifier::update) per chunk, then [`finish`](DigestVerifier::finish).
/// Each algorithm is hashed once, however many members use it.
pub struct DigestVerifier {
    expected: Vec<(Algorithm, Vec<u8>)>,
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl DigestVerifier {
    /// A verifier for the given members (as returned by [`parse_content_digest`]).
    pub fn new(expected: Vec<(Algorithm, Vec<u8>)>) -> Result<DigestVerifier, DigestError> {
        if expected.is_empty() {
            return Err(DigestError::Unsupported);
        }
        if let Some((algorithm, bytes)) = expected
            .iter()
            .find(|(a, bytes)| bytes.len() != a.output_len())
        {
            return Err(DigestError::Malformed {
                reason: format!("{algorithm} digest is {} bytes", bytes.len()),
            });
        }
        let uses = |wanted| expected.iter().any(|(a, _)| *a == wanted);
        Ok(DigestVerifier {
            sha256: uses(Algorithm::Sha256).then(Sha256::new),
            sha512: uses(Algorithm::Sha512).then(Sha512::new),
            expected,
        })
    }

    /// Parses a `Content-Digest` value and returns its verifier.
    pub fn from_value(value: &str) -> Result<DigestVerifier, DigestError> {
        DigestVerifier::new(parse_content_digest(value)?)
    }

    /// The verifier for the request's `Content-Digest` field lines, `None` when it has none.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<DigestVerifier>, DigestError> {
        // A constant name: looking up by `&str` parses the name on every request.
        const CONTENT_DIGEST: http::HeaderName = http::HeaderName::from_static("content-digest");
        if !headers.contains_key(&CONTENT_DIGEST) {
            return Ok(None);
        }
        let mut joined = String::new();
        for (i, line) in headers.get_all(&CONTENT_DIGEST).iter().enumerate() {
            let line = line.to_str().map_err(|_| DigestError::Malformed {
                reason: "field is not ascii".to_owned(),
            })?;
            if i > 0 {
                joined.push_str(", ");
            }
            joined.push_str(line);
        }
        DigestVerifier::from_value(&joined).map(Some)
    }

    /// The algorithms that will be checked.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.expected.iter().map(|(a, _)| *a)
    }

    /// Feeds the next chunk of body bytes (exactly as received, before any decoding).
    pub fn update(&mut self, chunk: &[u8]) {
        if let Some(h) = &mut self.sha256 {
            h.update(chunk);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(chunk);
        }
    }

    /// Compares every member with the body's digest in constant time.
    pub fn finish(self) -> Result<(), DigestError> {
        let sha256 = self.sha256.map(|h| h.finalize().to_vec());
        let sha512 = self.sha512.map(|h| h.finalize().to_vec());
        let mut first_mismatch = None;
        for (algorithm, expected) in &self.expected {
            let actual = match algorithm {
                Algorithm::Sha256 => sha256.as_deref(),
                Algorithm::Sha512 => sha512.as_deref(),
            };
            let matches = actual.is_some_and(|actual| bool::from(actual.ct_eq(expected)));
            if !matches && first_mismatch.is_none() {
                first_mismatch = Some(*algorithm);
            }
        }
        match first_mismatch {
            Some(algorithm) => Err(DigestError::Mismatch { algorithm }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for DigestVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestVerifier")
            .field("algorithms", &self.algorithms().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rfc9530_digests.json"
    ));

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("vector file is json")
    }

    fn verify(value: &str, body: &[u8]) -> Result<(), DigestError> {
        let mut verifier = DigestVerifier::from_value(value)?;
        verifier.update(body);
        verifier.finish()
    }

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    #[test]
    fn every_reproducible_rfc9530_example_verifies_and_is_reproduced() {
        let v = vectors();
        let mut checked = 0;
        for ex in v["examples"].as_array().unwrap() {
            // 9530-B.4-br is flagged in the vector file: its printed digest cannot be
            // reproduced from the brotli bytes shown, so it is not a positive vector.
            if ex["matches"] != true {
                assert_eq!(ex["id"], "9530-B.4-br");
                continue;
            }
            let body = hex(ex["content_hex"].as_str().unwrap());
            let printed = ex["printed_value"].as_str().unwrap();
            assert_eq!(verify(printed, &body), Ok(()), "{}", ex["id"]);
            let algorithm = Algorithm::from_name(ex["algorithm"].as_str().unwrap()).unwrap();
            assert_eq!(
                content_digest_header(&body, algorithm),
                printed,
                "{}",
                ex["id"]
            );
            checked += 1;
        }
        assert_eq!(checked, 10);
    }

    #[test]
    fn appendix_d_values_verify_and_deprecated_algorithms_are_ignored() {
        let v = vectors();
        let d = &v["appendix_D_sample_values"];
        let body = d["input_utf8"].as_str().unwrap().as_bytes();
        let mut all = Vec::new();
        for value in d["values"].as_array().unwrap() {
            let field = format!(
                "{}={}",
                value["algorithm"].as_str().unwrap(),
                value["printed"].as_str().unwrap()
            );
            match Algorithm::from_name(value["algorithm"].as_str().unwrap()) {
                Some(_) => assert_eq!(verify(&field, body), Ok(()), "{field}"),
                None => assert_eq!(
                    verify(&field, body),
                    Err(DigestError::Unsupported),
                    "{field}"
                ),
            }
            all.push(field);
        }
        let all = all.join(", ");
        let members = parse_content_digest(&all).unwrap();
        let algorithms: Vec<_> = members.iter().map(|(a, _)| *a).collect();
        assert_eq!(algorithms, [Algorithm::Sha512, Algorithm::Sha256]);
        assert_eq!(verify(&all, body), Ok(()));
    }

    #[test]
    fn rfc9421_test_request_body_digests_verify() {
        let v = vectors();
        let usage = &v["rfc9421_usage"];
        let body = usage["test_request_body"].as_str().unwrap().as_bytes();
        for key in ["content_digest_sha512", "content_digest_sha256"] {
            assert_eq!(verify(usage[key].as_str().unwrap(), body), Ok(()));
        }
        let response = usage["test_response_body"].as_str().unwrap().as_bytes();
        let value = usage["test_response_content_digest_sha512"]
            .as_str()
            .unwrap();
        assert_eq!(verify(value, response), Ok(()));
        assert_eq!(
            content_digest_header(response, Algorithm::Sha512),
            value,
            "the corrected mEWXIS… value, not the draft's JlEy2b…"
        );
    }

    #[test]
    fn section_2_multi_value_example_is_rejected_because_its_members_disagree() {
        // Flagged in the vector file: the two members digest different contents, so a
        // verifier that checks every supported member must refuse it.
        let v = vectors();
        let value = v["multi_value_example"]["value"].as_str().unwrap();
        let body = b"{\"hello\": \"world\"}\n";
        assert_eq!(
            verify(value, body),
            Err(DigestError::Mismatch {
                algorithm: Algorithm::Sha256
            })
        );
    }

    #[test]
    fn draft_typo_with_doubled_padding_is_malformed() {
        let value = "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg==:";
        assert!(matches!(
            parse_content_digest(value),
            Err(DigestError::Malformed { .. })
        ));
    }

    #[test]
    fn empty_body_has_the_well_known_sha256_digest() {
        let value = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";
        assert_eq!(content_digest_header(b"", Algorithm::Sha256), value);
        assert_eq!(verify(value, b""), Ok(()));
        let verifier = DigestVerifier::from_value(value).unwrap();
        assert_eq!(
            verifier.finish(),
            Ok(()),
            "no update call at all is an empty body"
        );
        assert_eq!(
            verify(value, b"x"),
            Err(DigestError::Mismatch {
                algorithm: Algorithm::Sha256
            })
        );
    }

    #[test]
    fn a_body_fed_in_chunks_verifies_like_a_whole_one() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let value = format!(
            "{}, {}",
            content_digest_header(&body, Algorithm::Sha256),
            content_digest_header(&body, Algorithm::Sha512)
        );
        let mut verifier = DigestVerifier::from_value(&value).unwrap();
        for chunk in body.chunks(777) {
            verifier.update(chunk);
        }
        assert_eq!(verifier.finish(), Ok(()));
    }

    #[test]
    fn one_wrong_member_among_several_is_a_mismatch() {
        let body = b"{\"hello\": \"world\"}";
        let good = content_digest_header(body, Algorithm::Sha512);
        let bad = content_digest_header(b"other", Algorithm::Sha256);
        for value in [format!("{good}, {bad}"), format!("{bad}, {good}")] {
            assert_eq!(
                verify(&value, body),
                Err(DigestError::Mismatch {
                    algorithm: Algorithm::Sha256
                })
            );
        }
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        let value = content_digest_header(b"{\"amount\": 10}", Algorithm::Sha512);
        assert_eq!(
            verify(&value, b"{\"amount\": 99}"),
            Err(DigestError::Mismatch {
                algorithm: Algorithm::Sha512
            })
        );
    }

    #[test]
    fn only_unknown_or_deprecated_members_are_unsupported() {
        for value in [
            "md5=:Sd/dVLAcvNLSq16eXua5uQ==:",
            "sha-1024=:AAAA:",
            "foo=1",
            "",
        ] {
            assert_eq!(
                parse_content_digest(value),
                Err(DigestError::Unsupported),
                "{value}"
            );
        }
    }

    #[test]
    fn known_algorithm_with_wrong_type_or_length_is_malformed() {
        for value in [
            "sha-256=1",
            "sha-256=\"X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=\"",
            "sha-256=(:AAAA:)",
            "sha-256",
            "sha-256=:AAAA:",
            "sha-512=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            "sha-256=:X48E9q!!:",
            "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:,",
        ] {
            assert!(
                matches!(
                    parse_content_digest(value),
                    Err(DigestError::Malformed { .. })
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn unknown_members_next_to_a_supported_one_are_ignored() {
        let body = b"{\"hello\": \"world\"}";
        let value = format!(
            "md5=:Sd/dVLAcvNLSq16eXua5uQ==:, {}, foo=?1;bar",
            content_digest_header(body, Algorithm::Sha256)
        );
        assert_eq!(verify(&value, body), Ok(()));
    }

    #[test]
    fn verifier_is_built_from_joined_header_lines() {
        let body = b"abc";
        let mut headers = HeaderMap::new();
        assert!(DigestVerifier::from_headers(&headers).unwrap().is_none());
        headers.append(
            "content-digest",
            content_digest_header(body, Algorithm::Sha256)
                .parse()
                .unwrap(),
        );
        headers.append(
            "content-digest",
            content_digest_header(body, Algorithm::Sha512)
                .parse()
                .unwrap(),
        );
        let mut verifier = DigestVerifier::from_headers(&headers).unwrap().unwrap();
        assert_eq!(
            verifier.algorithms().collect::<Vec<_>>(),
            [Algorithm::Sha256, Algorithm::Sha512]
        );
        verifier.update(body);
        assert_eq!(verifier.finish(), Ok(()));
    }

    #[test]
    fn verifier_refuses_an_empty_or_ill_sized_member_list() {
        assert_eq!(
            DigestVerifier::new(Vec::new()).unwrap_err(),
            DigestError::Unsupported
        );
        assert!(matches!(
            DigestVerifier::new(vec![(Algorithm::Sha512, vec![0; 32])]),
            Err(DigestError::Malformed { .. })
        ));
    }

    #[test]
    fn want_content_digest_is_a_valid_dictionary_of_supported_algorithms() {
        let dict: Dictionary = Parser::new(WANT_CONTENT_DIGEST).parse().unwrap();
        for key in dict.keys() {
            assert!(Algorithm::from_name(key.as_str()).is_some());
        }
    }

    proptest! {
        #[test]
        fn parsing_any_string_never_panics(value in ".{0,200}") {
            let _ = parse_content_digest(&value);
        }

        #[test]
        fn parsing_digest_like_strings_never_panics(
            value in "(sha-(256|512)|md5|x)=(:[A-Za-z0-9+/=]{0,90}:|[0-9]{1,3}|\"[a-z]*\")(, ?)?"
        ) {
            if let Ok(mut verifier) = DigestVerifier::from_value(&value) {
                verifier.update(value.as_bytes());
                let _ = verifier.finish();
            }
        }
    }
}

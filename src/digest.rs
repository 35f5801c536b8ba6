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
mod tests;

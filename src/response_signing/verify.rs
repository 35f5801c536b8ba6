//! A response's signature checked against the request it answers.

use http::Method;
use http::header::HeaderMap;

use super::sign::has_content;
use super::{CONTENT_DIGEST, LABEL};
use crate::digest::parse_content_digest;
use crate::httpsig::{
    self, Algorithm, Message, ParsedSignature, RequestView, ResponseView, SigError, Target,
    VerificationKey,
};

/// What a client knows of the request it sent, for checking the response to it.
#[derive(Debug, Clone)]
pub struct SentRequest {
    pub method: String,
    /// The absolute URL as the client called it (`https://api.example.com/v1/orders?x=1`).
    pub url: http::Uri,
    /// The request's fields that `;req` components may cover: its `Signature` when it was
    /// signed (Warden binds it), others when another signer covers them.
    pub headers: HeaderMap,
}

/// Why a response did not check out, in words for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the response carries no signature (no Signature-Input / Signature fields)")]
    Unsigned,
    #[error("the response's signature fields do not parse: {0}")]
    Malformed(String),
    #[error("no signature of the response names keyid {keyid:?} (it has: {found})")]
    NoSuchKey { keyid: String, found: String },
    #[error("the signature's alg is {found:?}, but the key is {expected}")]
    AlgorithmMismatch { found: String, expected: Algorithm },
    #[error("the signature does not cover {0}")]
    NotCovered(String),
    #[error("the signature base cannot be rebuilt: {0}")]
    Base(String),
    #[error(
        "the signature does not verify with this key: the response (status, covered fields) or the request it is checked against (method, URL, signature) differs from what was signed, or the key is not Warden's"
    )]
    BadSignature,
    #[error("the body does not match the signed Content-Digest ({0})")]
    DigestMismatch(String),
    #[error("the signature was created at {created}, {age} s before now (at most {max_age} s)")]
    TooOld {
        created: i64,
        age: i64,
        max_age: u64,
    },
    #[error("the signature was created at {created}, in the future")]
    InFuture { created: i64 },
}

/// What a verified response signature said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub label: String,
    pub created: Option<i64>,
    pub covered: Vec<String>,
    /// Whether the signature binds the request's own signature (`"signature";req`).
    pub binds_request_signature: bool,
}

/// Checks a response's signature by `key`: found by `keyid` (or the only one when `keyid` is
/// `None`), its `alg` the key's, covering `@status`, the request's method and target and the
/// content digest (when there is content), verified, its digest matching `body`, and (when
/// `now` is given) created within `max_age`.
pub fn verify_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    req: &SentRequest,
    key: &VerificationKey,
    keyid: Option<&str>,
    now: Option<(i64, u64)>,
) -> Result<Verified, VerifyError> {
    let sigs = match httpsig::parse_message_signatures(headers, Target::Response) {
        Ok(sigs) => sigs,
        Err(SigError::Missing) => return Err(VerifyError::Unsigned),
        Err(e) => return Err(VerifyError::Malformed(e.to_string())),
    };
    let sig = pick(&sigs, keyid)?;
    if let Some(alg) = sig.params().alg()
        && alg != key.alg().name()
    {
        return Err(VerifyError::AlgorithmMismatch {
            found: alg.to_owned(),
            expected: key.alg(),
        });
    }
    let method = Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::GET);
    let mut required = vec!["@status"];
    let content = has_content(&method, status);
    if content {
        required.push("content-digest");
    }
    let mut missing: Vec<String> = required
        .iter()
        .filter(|c| !sig.covers(c))
        .map(|c| format!("\"{c}\""))
        .collect();
    if !sig.covers_req("@method") {
        missing.push("\"@method\";req".into());
    }
    // The whole target: @path alone would leave the query unbound.
    let has_query = req.url.query().is_some();
    if !(sig.covers_req("@target-uri")
        || (sig.covers_req("@authority")
            && (sig.covers_req("@request-target")
                || (sig.covers_req("@path") && (!has_query || sig.covers_req("@query"))))))
    {
        missing.push("\"@target-uri\";req".into());
    }
    if !missing.is_empty() {
        return Err(VerifyError::NotCovered(missing.join(", ")));
    }
    let (Some(scheme), Some(authority)) = (req.url.scheme_str(), req.url.authority()) else {
        return Err(VerifyError::Base(
            "the request URL must be absolute (https://host/path)".into(),
        ));
    };
    let view = RequestView::new(
        &req.method,
        scheme,
        authority.as_str(),
        req.url.path(),
        req.url.query(),
        &req.headers,
    );
    let msg = Message::Response(ResponseView {
        status,
        headers,
        request: Some(view),
    });
    match httpsig::verify_message(&msg, sig, key) {
        Ok(()) => {}
        Err(SigError::InvalidSignature) => return Err(VerifyError::BadSignature),
        Err(e) => return Err(VerifyError::Base(e.to_string())),
    }
    if sig.covers("content-digest") {
        check_digest(headers, body)?;
    }
    if let (Some((now, max_age)), Some(created)) = (now, sig.params().created()) {
        if created > now + 30 {
            return Err(VerifyError::InFuture { created });
        }
        if now - created > i64::try_from(max_age).unwrap_or(i64::MAX) {
            return Err(VerifyError::TooOld {
                created,
                age: now - created,
                max_age,
            });
        }
    }
    Ok(Verified {
        label: sig.label().to_owned(),
        created: sig.params().created(),
        covered: sig
            .components()
            .iter()
            .map(|c| c.identifier().to_owned())
            .collect(),
        binds_request_signature: sig
            .components()
            .iter()
            .any(|c| c.is_req() && c.name() == "signature"),
    })
}

fn pick<'a>(
    sigs: &'a [ParsedSignature],
    keyid: Option<&str>,
) -> Result<&'a ParsedSignature, VerifyError> {
    let found = || {
        sigs.iter()
            .map(|s| format!("{}={:?}", s.label(), s.params().keyid().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match keyid {
        Some(id) => sigs.iter().find(|s| s.params().keyid() == Some(id)),
        None if sigs.len() == 1 => sigs.first(),
        None => sigs.iter().find(|s| s.label() == LABEL),
    }
    .ok_or_else(|| VerifyError::NoSuchKey {
        keyid: keyid.unwrap_or(LABEL).to_owned(),
        found: found(),
    })
}

fn check_digest(headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    let value = headers
        .get_all(&CONTENT_DIGEST)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let expected =
        parse_content_digest(&value).map_err(|e| VerifyError::DigestMismatch(e.to_string()))?;
    if expected.is_empty() {
        return Err(VerifyError::DigestMismatch(
            "no sha-256 or sha-512 member".into(),
        ));
    }
    for (alg, digest) in expected {
        if alg.digest(body) != digest {
            return Err(VerifyError::DigestMismatch(format!(
                "{} of the {} bytes received differs",
                alg.name(),
                body.len()
            )));
        }
    }
    Ok(())
}

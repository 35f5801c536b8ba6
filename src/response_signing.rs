//! Signed responses (RFC 9421 §2.4): on a route with `sign_responses = true`, Warden signs the
//! upstream's response with its own key (`signatures.response_key_file`), binding it to the
//! request it answers, and `warden verify` checks such a response.
//!
//! What a response signature covers, in this order:
//! - `@status`;
//! - `content-digest`, which Warden computes (sha-512) over the response content as sent,
//!   replacing any the upstream set; not on responses that have no content by definition
//!   (to `HEAD`, `1xx`, `204`, `304`);
//! - `content-type`, when the response has one;
//! - `"@method";req` and `"@target-uri";req`: the request as the client addressed it (the
//!   same public URL its own signature is checked against);
//! - `"signature";req;key="<label>"`, when the request carried a signature that verified: the
//!   response then answers that signed request and no other.
//!
//! Parameters: `created`, `keyid` (`signatures.response_key_id`) and `alg`. The label is
//! `warden` (another if the upstream already used it: its own signatures are kept).
//!
//! A digest must be in the header section, before the content, and a streamed response has
//! no digest until its end. So a signed route buffers the response, up to
//! `signatures.response_max_bytes`: a larger one (declared or as it streams), or one whose
//! body fails, is not delivered unsigned but answered with 502 `response_not_signable`. Routes
//! that stream (event streams, downloads) should not sign responses; trailers would let a
//! signature follow a stream, but few clients read them, so they are not used.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt as _;

use crate::body::Body;
use crate::digest::{Algorithm as DigestAlgorithm, content_digest_header, parse_content_digest};
use crate::httpsig::{
    self, Algorithm, Message, MessageSigner, ParsedSignature, RequestView, ResponseView, SigError,
    SigParam, SignerKey, Target, VerificationKey,
};
use crate::problem::Problem;

const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
const SIGNATURE: HeaderName = HeaderName::from_static("signature");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// The label of Warden's response signature (labels are not signed; verifiers select by keyid).
pub const LABEL: &str = "warden";
/// The digest algorithm of the `Content-Digest` Warden computes.
pub const DIGEST: DigestAlgorithm = DigestAlgorithm::Sha512;

/// `signatures.response_key_*`, validated: the key Warden signs responses with.
#[derive(Clone)]
pub struct ResponseSigning {
    /// `signatures.response_key_file`.
    pub key_file: PathBuf,
    pub key: Arc<SignerKey>,
    /// `signatures.response_key_id`, default `warden`.
    pub key_id: String,
    /// `signatures.response_max_bytes`, default 1 MiB.
    pub max_bytes: u64,
}

impl fmt::Debug for ResponseSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseSigning")
            .field("key_file", &self.key_file)
            .field("alg", &self.key.alg())
            .field("key_id", &self.key_id)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl ResponseSigning {
    /// Loads the key of `file` for `alg` (a file from `warden keygen`, or any private key
    /// format of [`httpsig::parse_signer_key`]). Errors name the key, never its bytes.
    pub fn load(
        file: PathBuf,
        alg: &str,
        key_id: &str,
        max_bytes: u64,
    ) -> Result<Self, (&'static str, String)> {
        let alg = Algorithm::from_name(alg).ok_or_else(|| {
            (
                "signatures.response_key_alg",
                format!("'{alg}' is not one of {}", Algorithm::names()),
            )
        })?;
        let text = std::fs::read_to_string(&file).map_err(|e| {
            (
                "signatures.response_key_file",
                format!("{}: {e}", file.display()),
            )
        })?;
        let key = httpsig::parse_signer_key(&text, Some(alg)).map_err(|e| {
            (
                "signatures.response_key_file",
                format!("{}: {e}", file.display()),
            )
        })?;
        if key_id.is_empty()
            || !key_id
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err((
                "signatures.response_key_id",
                "must be 1 or more visible ASCII characters, without \" or \\".into(),
            ));
        }
        if max_bytes == 0 {
            return Err(("signatures.response_max_bytes", "must be at least 1".into()));
        }
        Ok(Self {
            key_file: file,
            key: Arc::new(key),
            key_id: key_id.to_owned(),
            max_bytes,
        })
    }

    /// Signs `resp`, buffering it (see the module doc). Never fails: a response that cannot be
    /// signed becomes a 502 problem.
    pub async fn sign(
        &self,
        resp: Response<Body>,
        req: &SignedRequest,
        now: i64,
    ) -> Response<Body> {
        // A protocol switch has no response content to sign, and its connection is handed on.
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_bytes) {
            return self.refuse("larger than signatures.response_max_bytes");
        }
        let (content, trailers) = match collect(body, self.max_bytes).await {
            Ok(collected) => collected,
            Err(reason) => return self.refuse(reason),
        };
        if let Err(e) = sign_parts(
            parts.status.as_u16(),
            &mut parts.headers,
            &content,
            req,
            now,
            self.key.as_ref(),
            &self.key_id,
        ) {
            tracing::error!(error = %e, "response could not be signed");
            return self.refuse("a covered value cannot be signed");
        }
        let body = match trailers {
            None => crate::body::full(content),
            Some(trailers) => with_trailers(content, trailers),
        };
        Response::from_parts(parts, body)
    }

    fn refuse(&self, reason: &'static str) -> Response<Body> {
        tracing::warn!(
            reason,
            limit = self.max_bytes,
            "upstream response not signable"
        );
        Problem::ResponseNotSignable {
            reason,
            limit: self.max_bytes,
        }
        .into_response()
    }
}

/// The body's bytes and trailers, up to `max` bytes.
async fn collect(mut body: Body, max: u64) -> Result<(Bytes, Option<HeaderMap>), &'static str> {
    let mut content = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| "the upstream's response body failed")?;
        match frame.into_data() {
            Ok(data) => {
                if (content.len() + data.len()) as u64 > max {
                    return Err("larger than signatures.response_max_bytes");
                }
                content.extend_from_slice(&data);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok((content.freeze(), trailers))
}

fn with_trailers(content: Bytes, trailers: HeaderMap) -> Body {
    use http_body::Frame;
    let frames = [Ok(Frame::data(content)), Ok(Frame::trailers(trailers))];
    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// What a response signature reads of the request it answers: the client's view of its
/// target (as its own signature was checked), its method, and its verified signature.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub method: Method,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub query: Option<String>,
    /// The request's `Signature` field lines and the label of the signature that verified.
    pub signature: Option<(HeaderMap, String)>,
}

impl SignedRequest {
    /// From the external view of a request, and the label of its verified signature.
    pub fn new(
        method: &Method,
        external: &crate::gate::signature::External<'_>,
        query: Option<&str>,
        headers: &HeaderMap,
        label: Option<&str>,
    ) -> Self {
        let signature = label.map(|label| {
            let mut fields = HeaderMap::new();
            for line in headers.get_all(SIGNATURE) {
                fields.append(SIGNATURE, line.clone());
            }
            (fields, label.to_owned())
        });
        Self {
            method: method.clone(),
            scheme: external.scheme.to_owned(),
            authority: external.authority.to_owned(),
            path: external.path.clone().into_owned(),
            query: query.map(str::to_owned),
            signature,
        }
    }

    fn view<'a>(&'a self, empty: &'a HeaderMap) -> RequestView<'a> {
        RequestView::new(
            self.method.as_str(),
            &self.scheme,
            &self.authority,
            &self.path,
            self.query.as_deref(),
            self.signature.as_ref().map_or(empty, |(h, _)| h),
        )
    }
}

/// Whether a response with this status to this method has content (RFC 9110 §6.4.1).
fn has_content(method: &Method, status: u16) -> bool {
    !(method == Method::HEAD || (100..200).contains(&status) || status == 204 || status == 304)
}

/// Sets `Content-Digest` (and `Content-Length`) and appends Warden's signature to a response's
/// header section. Pure but for the signing key's randomness.
pub fn sign_parts(
    status: u16,
    headers: &mut HeaderMap,
    content: &[u8],
    req: &SignedRequest,
    now: i64,
    key: &(impl MessageSigner + ?Sized),
    key_id: &str,
) -> Result<(), SigError> {
    let mut components: Vec<String> = vec!["@status".into()];
    if has_content(&req.method, status) {
        let digest = HeaderValue::from_str(&content_digest_header(content, DIGEST))
            .map_err(|_| unavailable("content-digest"))?;
        headers.insert(CONTENT_DIGEST, digest);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content.len()));
        components.push("content-digest".into());
    }
    if headers.contains_key(header::CONTENT_TYPE) {
        components.push("content-type".into());
    }
    components.push("@method;req".into());
    components.push("@target-uri;req".into());
    if let Some((_, label)) = &req.signature {
        components.push(format!("signature;req;key=\"{label}\""));
    }
    let label = free_label(headers);
    let params = [
        SigParam::Created(now),
        SigParam::KeyId(key_id.to_owned()),
        SigParam::Alg(key.alg().name().to_owned()),
    ];
    let components: Vec<&str> = components.iter().map(String::as_str).collect();
    let empty = HeaderMap::new();
    let signed = {
        let msg = Message::Response(ResponseView {
            status,
            headers,
            request: Some(req.view(&empty)),
        });
        httpsig::sign_message(&msg, &label, &components, &params, key)?
    };
    for (name, value) in [
        (SIGNATURE_INPUT, &signed.signature_input),
        (SIGNATURE, &signed.signature),
    ] {
        let value = HeaderValue::from_str(value).map_err(|_| unavailable(name.as_str()))?;
        headers.append(name, value);
    }
    Ok(())
}

fn unavailable(name: &str) -> SigError {
    SigError::ComponentUnavailable {
        component: format!("\"{name}\""),
        reason: "value is not a valid header value",
    }
}

/// [`LABEL`], or `warden-2`, `warden-3`, … when the upstream's own signatures use it. Upstream
/// signature fields that do not parse are dropped: appending to them would break Warden's too.
fn free_label(headers: &mut HeaderMap) -> String {
    if !headers.contains_key(&SIGNATURE_INPUT) && !headers.contains_key(&SIGNATURE) {
        return LABEL.to_owned();
    }
    let labels: Vec<String> = match httpsig::parse_message_signatures(headers, Target::Response) {
        Ok(sigs) => sigs.iter().map(|s| s.label().to_owned()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "upstream response signature fields dropped: they do not parse");
            headers.remove(&SIGNATURE_INPUT);
            headers.remove(&SIGNATURE);
            return LABEL.to_owned();
        }
    };
    (1..)
        .map(|n| {
            if n == 1 {
                LABEL.to_owned()
            } else {
                format!("{LABEL}-{n}")
            }
        })
        .find(|l| !labels.contains(l))
        .unwrap_or_else(|| LABEL.to_owned())
}

// ------------------------------------------------------------------------- verifying

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

/// A response as `curl -i` prints it: status line, header lines, a blank line, the body (the
/// last such block when interim `1xx` responses came first). Lines may end in CRLF or LF.
pub fn parse_raw_response(raw: &[u8]) -> Result<(u16, HeaderMap, Vec<u8>), String> {
    let mut rest = raw;
    loop {
        let (status, headers, body) = parse_one(rest)?;
        if (100..200).contains(&status) && status != 101 && body.starts_with(b"HTTP/") {
            rest = body;
            continue;
        }
        return Ok((status, headers, body.to_vec()));
    }
}

fn parse_one(raw: &[u8]) -> Result<(u16, HeaderMap, &[u8]), String> {
    let mut headers = HeaderMap::new();
    let mut at = 0;
    let mut status = None;
    loop {
        let end = raw[at..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the response ends before the blank line after its headers")?;
        let line = &raw[at..at + end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += end + 1;
        if status.is_none() {
            let text = String::from_utf8_lossy(line);
            let mut words = text.split_whitespace();
            let code = match (words.next(), words.next()) {
                (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
                _ => None,
            };
            status = Some(
                code.ok_or("the response does not start with a status line (HTTP/1.1 200 ...)")?,
            );
            continue;
        }
        if line.is_empty() {
            let status = status.unwrap_or_default();
            return Ok((status, headers, &raw[at..]));
        }
        let text = std::str::from_utf8(line).map_err(|_| "a header line is not UTF-8")?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| format!("not a header line: {text:?}"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("bad header name: {name:?}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("bad header value of {name}"))?;
        headers.append(name, value);
    }
}

/// `warden verify`: checks a raw response (as `curl -i` prints it) against the request
/// (`"METHOD URL"` and its header lines) with `key` (a public key in any accepted format, or a
/// private key file's text, whose public half is used). `Ok` is the report; `Err((code,
/// text))`: 1 when the response does not verify, 2 when the input is unusable.
pub fn verify_exchange(
    raw_response: &[u8],
    request: &str,
    request_headers: &[String],
    key_text: &str,
    alg: Algorithm,
    keyid: Option<&str>,
    now: Option<(i64, u64)>,
) -> Result<String, (u8, String)> {
    let usage = |e: String| (2u8, e);
    let key = if key_text.contains("PRIVATE KEY") {
        httpsig::parse_signer_key(key_text, Some(alg))
            .and_then(|k| k.verification_key())
            .map_err(|e| usage(format!("--key: {e}")))?
    } else {
        httpsig::parse_verification_key(alg, key_text).map_err(|e| usage(format!("--key: {e}")))?
    };
    let (method, url) = request
        .trim()
        .split_once(' ')
        .ok_or_else(|| usage("--request must be \"METHOD URL\"".into()))?;
    let url: http::Uri = url
        .trim()
        .parse()
        .map_err(|_| usage(format!("--request: {url:?} is not a URL")))?;
    let mut headers = HeaderMap::new();
    for line in request_headers {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| usage(format!("-H {line:?} is not \"Name: value\"")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| usage(format!("-H {line:?}: bad header name")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| usage(format!("-H {line:?}: bad header value")))?;
        headers.append(name, value);
    }
    let (status, resp_headers, body) = parse_raw_response(raw_response).map_err(usage)?;
    let sent = SentRequest {
        method: method.to_owned(),
        url,
        headers,
    };
    let ok = verify_response(status, &resp_headers, &body, &sent, &key, keyid, now)
        .map_err(|e| (1u8, format!("response NOT verified: {e}")))?;
    let mut report = format!(
        "verified: signature {:?} ({}) of the {status} response to {method} {}\ncovers: {}\n",
        ok.label,
        key.alg(),
        sent.url,
        ok.covered.join(" ")
    );
    if let (Some(created), Some((now, _))) = (ok.created, now) {
        report.push_str(&format!("created: {created} ({} s ago)\n", now - created));
    }
    report.push_str(if ok.binds_request_signature {
        "it answers the request that carried this Signature\n"
    } else {
        "it does not bind a request signature (the request was not signed, or not checked)\n"
    });
    Ok(report)
}

#[cfg(test)]
mod tests;

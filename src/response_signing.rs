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
//! signature follow a stream, but few clients read them, so they are not used.//!
//! This file holds the signer ([`ResponseSigning`]: its key, and a response buffered, signed or
//! refused) and what it reads of the request ([`SignedRequest`]); beside it `sign.rs` (the
//! header section signed: [`sign_parts`]), `verify.rs` (a response's signature checked:
//! [`verify_response`]) and `exchange.rs` (`warden verify`: a raw exchange read and checked).

mod exchange;
mod sign;
mod verify;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt as _;

use crate::body::Body;
use crate::digest::Algorithm as DigestAlgorithm;
use crate::httpsig::{self, Algorithm, MessageSigner, RequestView, SignerKey};
use crate::problem::Problem;

pub use self::exchange::{parse_raw_response, verify_exchange};
pub use self::sign::sign_parts;
pub use self::verify::{SentRequest, Verified, VerifyError, verify_response};

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

#[cfg(test)]
mod tests;

//! Signing a whole request the way Warden checks it, for clients and local development
//! (`warden sign`, `examples/sign_client.rs`): the body's `Content-Digest`, the components
//! Warden's default policy requires, and the `Signature-Input` / `Signature` fields.

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::{MessageSigner, RequestView, SigError, SigParam, SignedHeaders, sign};
use crate::digest::{Algorithm, content_digest_header};

/// Fields Warden's default policy wants covered whenever a request carries them
/// (`signatures.cover_if_present`).
pub const COVER_IF_PRESENT: [&str; 4] = [
    "authorization",
    "x-client-id",
    "x-idempotency-key",
    "idempotency-key",
];

/// How to sign a request.
#[derive(Debug, Clone)]
pub struct SignOptions<'a> {
    /// The `keyid` registered with Warden.
    pub key_id: &'a str,
    /// Unix seconds of signing.
    pub created: i64,
    /// Unix seconds after which the signature is void.
    pub expires: Option<i64>,
    /// A value never used before, when Warden checks nonces.
    pub nonce: Option<&'a str>,
    /// The signature label; Warden does not care which.
    pub label: &'a str,
    /// Components to cover; `None`: [`default_components`].
    pub components: Option<Vec<String>>,
    /// The digest algorithm of `Content-Digest`.
    pub digest: Algorithm,
}

impl<'a> SignOptions<'a> {
    /// Defaults: label `sig1`, the default components, sha-512, no `expires`, no nonce.
    pub fn new(key_id: &'a str, created: i64) -> Self {
        Self {
            key_id,
            created,
            expires: None,
            nonce: None,
            label: "sig1",
            components: None,
            digest: Algorithm::Sha512,
        }
    }
}

/// What Warden requires by default: `@method`, `@target-uri`, `content-digest` and
/// `content-type` when there is a body, and [`COVER_IF_PRESENT`] fields the request carries.
pub fn default_components(headers: &HeaderMap, has_body: bool) -> Vec<String> {
    let mut out = vec!["@method".to_owned(), "@target-uri".to_owned()];
    if has_body {
        out.push("content-digest".to_owned());
        if headers.contains_key(http::header::CONTENT_TYPE) {
            out.push("content-type".to_owned());
        }
    }
    for name in COVER_IF_PRESENT {
        if headers.contains_key(name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// Signs a request to the absolute `url`: sets `Content-Digest` (when `body` is not empty) and
/// then `Signature-Input` and `Signature` in `headers`, and returns the signature fields.
pub fn sign_request(
    method: &str,
    url: &Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    opts: &SignOptions<'_>,
    key: &(impl MessageSigner + ?Sized),
) -> Result<SignedHeaders, SigError> {
    let (Some(scheme), Some(authority)) = (url.scheme_str(), url.authority()) else {
        return Err(SigError::ComponentUnavailable {
            component: "\"@target-uri\"".to_owned(),
            reason: "the url must be absolute (https://host/path)",
        });
    };
    if !body.is_empty() {
        let value = HeaderValue::from_str(&content_digest_header(body, opts.digest))
            .map_err(|_| unavailable("content-digest"))?;
        headers.insert(HeaderName::from_static("content-digest"), value);
    }
    let components = opts
        .components
        .clone()
        .unwrap_or_else(|| default_components(headers, !body.is_empty()));
    let components: Vec<&str> = components.iter().map(String::as_str).collect();
    let mut params = vec![SigParam::Created(opts.created)];
    if let Some(expires) = opts.expires {
        params.push(SigParam::Expires(expires));
    }
    if let Some(nonce) = opts.nonce {
        params.push(SigParam::Nonce(nonce.to_owned()));
    }
    params.push(SigParam::KeyId(opts.key_id.to_owned()));
    params.push(SigParam::Alg(key.alg().name().to_owned()));
    let view = RequestView::new(
        method,
        scheme,
        authority.as_str(),
        url.path(),
        url.query(),
        headers,
    );
    let signed = sign(&view, opts.label, &components, &params, key)?;
    for (name, value) in [
        ("signature-input", &signed.signature_input),
        ("signature", &signed.signature),
    ] {
        let value = HeaderValue::from_str(value).map_err(|_| unavailable(name))?;
        headers.insert(HeaderName::from_static(name), value);
    }
    Ok(signed)
}

fn unavailable(name: &str) -> SigError {
    SigError::ComponentUnavailable {
        component: format!("\"{name}\""),
        reason: "value is not a valid header value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::httpsig::{parse_signatures, verify};
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_signed_request_verifies_with_the_default_components() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let url: Uri = "https://api.example.com/v1/orders?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        headers.insert("x-idempotency-key", HeaderValue::from_static("k-1"));
        let opts = SignOptions::new("k1", 1_700_000_000);
        let signed = sign_request("POST", &url, &mut headers, b"{}", &opts, &key).unwrap();
        assert_eq!(
            signed.signature_input,
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"content-type\" \"authorization\" \
             \"x-idempotency-key\");created=1700000000;keyid=\"k1\";alg=\"ed25519\""
        );
        let sig = parse_signatures(&headers).unwrap().remove(0);
        let view = RequestView::new(
            "POST",
            "https",
            "api.example.com",
            "/v1/orders",
            Some("x=1"),
            &headers,
        );
        verify(&view, &sig, &key.verifying_key()).unwrap();
        assert!(headers.contains_key("content-digest"));
    }

    #[test]
    fn a_relative_url_cannot_be_signed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut headers = HeaderMap::new();
        let opts = SignOptions::new("k1", 1);
        let url: Uri = "/v1/orders".parse().unwrap();
        assert!(sign_request("GET", &url, &mut headers, b"", &opts, &key).is_err());
    }
}

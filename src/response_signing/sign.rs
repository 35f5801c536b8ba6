//! A response's header section signed: its content digest set and Warden's signature
//! appended under a free label.

use http::Method;
use http::header::{self, HeaderMap, HeaderValue};

use super::{CONTENT_DIGEST, DIGEST, LABEL, SIGNATURE, SIGNATURE_INPUT, SignedRequest};
use crate::digest::content_digest_header;
use crate::httpsig::{self, Message, MessageSigner, ResponseView, SigError, SigParam, Target};

/// Whether a response with this status to this method has content (RFC 9110 §6.4.1).
pub(super) fn has_content(method: &Method, status: u16) -> bool {
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

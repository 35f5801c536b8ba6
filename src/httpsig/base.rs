//! The signature base (RFC 9421 §2.5), byte for byte. Verifier and signer both build it here.

use super::{Message, ParsedSignature, RequestView, SigError};

/// Builds the signature base of `sig` over `view`: one `"identifier": value` line per covered
/// component, in order, then `"@signature-params": (...)` with no trailing LF. Errors on a
/// component the request cannot supply and on a non-ASCII result.
pub fn signature_base(view: &RequestView<'_>, sig: &ParsedSignature) -> Result<String, SigError> {
    message_base(&Message::Request(*view), sig)
}

/// [`signature_base`] over a message of either kind (a response and its related request).
pub fn message_base(msg: &Message<'_>, sig: &ParsedSignature) -> Result<String, SigError> {
    let mut base = String::with_capacity(64 * (sig.components().len() + 2));
    for component in sig.components() {
        component.write_line(msg, &mut base)?;
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(sig.signature_params_value());
    // Each value is checked as it is written; this guards the whole base (RFC 9421 §2.5 step 4).
    if !base.is_ascii() {
        return Err(SigError::ComponentUnavailable {
            component: "@signature-params".to_owned(),
            reason: "signature base is not ascii",
        });
    }
    Ok(base)
}

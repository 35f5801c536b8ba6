//! The one map of request-body errors to refusals: the proxy, the digest gate and
//! idempotency's whole-body reads all ask it.

use super::{DigestRefusal, Problem};

/// The client's fault a request body failed with, anywhere in `e`'s chain: over the size limit
/// (413), a `Content-Digest` that does not match (its own refusal), or stalled past
/// `server.body_read_timeout` (408). The one mapping of body errors to refusals: the proxy, the
/// digest gate and idempotency's whole-body reads all use it.
pub fn from_body_error(e: &(dyn std::error::Error + 'static)) -> Option<Problem> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(too_large) = err.downcast_ref::<crate::body::BodyTooLarge>() {
            return Some(Problem::PayloadTooLarge {
                limit: too_large.limit,
            });
        }
        if let Some(mismatch) = err.downcast_ref::<crate::body::DigestMismatch>() {
            return Some(Problem::digest_mismatch(mismatch.algorithm));
        }
        if err.is::<crate::body::BodyStalled>() {
            return Some(Problem::BodyTimeout);
        }
        source = err.source();
    }
    None
}

impl Problem {
    /// A body that does not match its `Content-Digest` (the body itself, or its declared digest
    /// before any byte is read).
    pub fn digest_mismatch(algorithm: crate::digest::Algorithm) -> Problem {
        Problem::Digest {
            refusal: DigestRefusal::Mismatch,
            detail: format!(
                "the body does not match its Content-Digest ({algorithm}); digest the exact bytes sent"
            ),
        }
    }
}

//! The body digest check on requests (RFC 9530 `Content-Digest`, sha-512 and sha-256): which
//! requests get one, and the body wrapper that hashes while the body streams to the upstream.
//! A mismatch replaces the end of the body with an error, so the upstream never receives a
//! complete request; [`crate::problem::from_body_error`] turns that error into 400
//! `digest_mismatch`. Parsing and hashing are [`crate::digest`]'s.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{Body, BoxError, DigestMismatch};
use crate::checks::Check;
use crate::digest::{Algorithm, DigestError, DigestVerifier};
use crate::metrics::{Metrics, Outcome};
use crate::problem::{DigestRefusal, Problem};

/// `[digest]`, validated (`config.rs` builds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestSettings {
    /// `digest.verify_unsigned`, default true: a `Content-Digest` that no verified signature
    /// covers is still checked, on any proxied route.
    pub verify_unsigned: bool,
}

/// 400 `digest_missing`: a body the policy requires a digest for came without one.
pub fn missing() -> Problem {
    Problem::Digest {
        refusal: DigestRefusal::Missing,
        detail: "a signed request with a body must carry a Content-Digest (sha-512 or sha-256) \
                 covered by its signature"
            .into(),
    }
}

/// The problem for a `Content-Digest` that was refused.
pub fn refusal(e: DigestError) -> Problem {
    match e {
        DigestError::Malformed { reason } => Problem::Digest {
            refusal: DigestRefusal::Malformed,
            detail: format!("the Content-Digest field is malformed: {reason}"),
        },
        DigestError::Unsupported => Problem::Digest {
            refusal: DigestRefusal::Unsupported,
            detail: "the Content-Digest has no sha-512 or sha-256 member".into(),
        },
        DigestError::Mismatch { algorithm } => Problem::digest_mismatch(algorithm),
    }
}

/// The verifier for the request's `Content-Digest` when `check` is set and the request has
/// one; a malformed field or one with no supported algorithm is refused at once.
pub fn plan(headers: &HeaderMap, check: bool) -> Result<Option<DigestVerifier>, Problem> {
    if !check {
        return Ok(None);
    }
    DigestVerifier::from_headers(headers).map_err(refusal)
}

/// Checks a body held whole (the token endpoints read theirs before parsing it).
pub fn check_whole(mut verifier: DigestVerifier, body: &[u8]) -> Result<(), Problem> {
    verifier.update(body);
    verifier.finish().map_err(refusal)
}

/// Puts `verifier` on `body`. The first frame is awaited here (at most `wait`): when it is the
/// whole body, as for most API requests, a mismatch is refused before the upstream is even
/// contacted. Otherwise the rest is checked as it streams, and the last frame is withheld if
/// the digest does not match.
pub async fn guard(body: Body, verifier: DigestVerifier, wait: Duration) -> Result<Body, Problem> {
    guard_observed(body, verifier, wait, None)
        .await
        .map(|(body, _)| body)
}

/// What becomes of a digest's result besides the body's fate: the decision is counted, and on
/// a route whose digest check only reports (`[routes.checks] digest = "report"`) a mismatch is
/// logged and counted and the body goes on whole.
pub struct DigestObserver {
    pub metrics: Option<Arc<Metrics>>,
    /// The route's position in `[[routes]]`.
    pub route: usize,
    /// The route's name, for the log.
    pub name: Arc<str>,
    pub report: bool,
}

impl DigestObserver {
    /// Records `result`; whether the body may go on as if it had matched.
    fn passes(&self, result: &Result<(), DigestError>) -> bool {
        let outcome = match result {
            Ok(()) => Outcome::Allow,
            Err(_) if self.report => Outcome::WouldDeny,
            Err(_) => Outcome::Deny,
        };
        if outcome == Outcome::WouldDeny {
            tracing::warn!(
                route = &*self.name,
                check = "digest",
                code = "digest_mismatch",
                "check failed in report mode; forwarded"
            );
        }
        if let Some(metrics) = &self.metrics {
            metrics.decision(self.route, Check::Digest, outcome, "digest_mismatch");
        }
        outcome != Outcome::Deny
    }
}

/// [`guard`], with `observer` told the result. The flag: a mismatch was found here and only
/// reported (a mismatch found later, as the body streams, is counted and logged only).
pub async fn guard_observed(
    mut body: Body,
    mut verifier: DigestVerifier,
    wait: Duration,
    observer: Option<DigestObserver>,
) -> Result<(Body, bool), Problem> {
    let checked = |result: Result<(), DigestError>| match &observer {
        Some(o) if o.passes(&result) => Ok(result.is_err()),
        _ => result.map_err(refusal).map(|()| false),
    };
    if body.is_end_stream() {
        let reported = checked(verifier.finish())?;
        return Ok((body, reported));
    }
    let mut remaining = body.size_hint().exact();
    let first = match tokio::time::timeout(wait, body.frame()).await {
        Err(_) => return Err(Problem::BodyTimeout),
        Ok(None) => {
            let reported = checked(verifier.finish())?;
            return Ok((body, reported));
        }
        Ok(Some(Err(e))) => return Err(unreadable(e.as_ref())),
        Ok(Some(Ok(frame))) => frame,
    };
    if let Some(data) = first.data_ref() {
        verifier.update(data);
        remaining = remaining.map(|r| r.saturating_sub(data.len() as u64));
    }
    let (verifier, observer, reported) =
        if first.is_trailers() || remaining == Some(0) || body.is_end_stream() {
            let reported = checked(verifier.finish())?;
            (None, None, reported)
        } else {
            (Some(verifier), observer, false)
        };
    let body = DigestBody {
        inner: body,
        pending: Some(first),
        verifier,
        remaining,
        observer,
    }
    .boxed();
    Ok((body, reported))
}

fn unreadable(e: &(dyn std::error::Error + 'static)) -> Problem {
    crate::problem::from_body_error(e).unwrap_or_else(|| Problem::BadRequest {
        detail: "the request body could not be read".into(),
    })
}

/// A body that hashes every data frame and, at its end, either ends or fails with
/// [`DigestMismatch`]. The end is recognised as soon as the last byte of a declared length has
/// passed, so the check happens before that last frame is handed on.
struct DigestBody {
    inner: Body,
    /// The frame read ahead by [`guard`].
    pending: Option<Frame<Bytes>>,
    /// `None` once the digest has been checked.
    verifier: Option<DigestVerifier>,
    /// Bytes still to come, when the length was declared.
    remaining: Option<u64>,
    /// Told the result when the digest is checked.
    observer: Option<DigestObserver>,
}

impl DigestBody {
    /// Checks the digest; the error replaces whatever would have come next.
    fn finish(&mut self) -> Result<(), BoxError> {
        let result = self.verifier.take().map(DigestVerifier::finish);
        if let (Some(result), Some(observer)) = (&result, self.observer.take()) {
            if observer.passes(result) {
                return Ok(());
            }
        }
        match result {
            Some(Err(DigestError::Mismatch { algorithm })) => {
                Err(Box::new(DigestMismatch { algorithm }))
            }
            // The verifier was built from a parsed field, so only a mismatch can come out.
            Some(Err(_)) => Err(Box::new(DigestMismatch {
                algorithm: Algorithm::Sha256,
            })),
            Some(Ok(())) | None => Ok(()),
        }
    }
}

impl http_body::Body for DigestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every field is Unpin (the inner body is boxed).
        let this = self.get_mut();
        if let Some(frame) = this.pending.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(verifier) = this.verifier.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        verifier.update(data);
                        this.remaining =
                            this.remaining.map(|r| r.saturating_sub(data.len() as u64));
                    }
                    if frame.is_trailers()
                        || this.remaining == Some(0)
                        || this.inner.is_end_stream()
                    {
                        if let Err(e) = this.finish() {
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            None => match this.finish() {
                Err(e) => Poll::Ready(Some(Err(e))),
                Ok(()) => Poll::Ready(None),
            },
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        // While the digest is unchecked the body must be polled once more, even if the inner
        // body says it is done: that poll is where a mismatch turns into an error.
        self.pending.is_none() && self.verifier.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let pending = self.pending.as_ref().and_then(Frame::data_ref);
        crate::body::hint_plus(
            self.inner.size_hint(),
            pending.map_or(0, |d| d.len() as u64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::content_digest_header;
    use http_body_util::StreamBody;

    const WAIT: Duration = Duration::from_secs(5);

    fn verifier_for(body: &[u8], alg: Algorithm) -> DigestVerifier {
        DigestVerifier::from_value(&content_digest_header(body, alg)).unwrap()
    }

    /// A streamed body of `chunks`, with no declared length (like a chunked upload).
    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    /// Reads a body to its end; the data seen and how it ended.
    async fn drain(mut body: Body) -> (Vec<u8>, Result<(), BoxError>) {
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(d) = frame.data_ref() {
                        seen.extend_from_slice(d);
                    }
                }
                Err(e) => return (seen, Err(e)),
            }
        }
        (seen, Ok(()))
    }

    #[tokio::test]
    async fn a_matching_streamed_body_passes_whole() {
        let v = verifier_for(b"hello world", Algorithm::Sha512);
        let body = guard(chunked(&[b"hello", b" ", b"world"]), v, WAIT)
            .await
            .unwrap();
        let (seen, end) = drain(body).await;
        assert_eq!(seen, b"hello world");
        assert!(end.is_ok());
    }

    #[tokio::test]
    async fn a_streamed_mismatch_fails_in_place_of_the_end() {
        let v = verifier_for(b"hello world", Algorithm::Sha256);
        let body = guard(chunked(&[b"hello", b" ", b"wOrld"]), v, WAIT)
            .await
            .unwrap();
        let (seen, end) = drain(body).await;
        // Without a declared length the end is only known when the stream ends.
        assert_eq!(seen, b"hello wOrld");
        let err = end.unwrap_err();
        assert!(err.downcast_ref::<DigestMismatch>().is_some(), "{err}");
    }

    #[tokio::test]
    async fn with_a_declared_length_the_last_frame_is_withheld_on_mismatch() {
        let v = verifier_for(b"abcdef", Algorithm::Sha512);
        let stream = chunked(&[b"abc", b"deF"]);
        // A body that declares 6 bytes, as Content-Length does.
        let body = http_body_util::combinators::BoxBody::new(Sized6(stream));
        let body = guard(body, v, WAIT).await.unwrap();
        let (seen, end) = drain(body).await;
        assert_eq!(
            seen, b"abc",
            "the frame completing the body must not be handed on"
        );
        assert!(end.unwrap_err().downcast_ref::<DigestMismatch>().is_some());
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_one_frame_is_refused_before_forwarding() {
        let v = verifier_for(b"{\"amount\":1}", Algorithm::Sha512);
        let body = crate::body::full(&b"{\"amount\":9}"[..]);
        let err = guard(body, v, WAIT).await.unwrap_err();
        assert_eq!(err.code(), "digest_mismatch");
        let v = verifier_for(b"{\"amount\":1}", Algorithm::Sha512);
        let ok = guard(crate::body::full(&b"{\"amount\":1}"[..]), v, WAIT)
            .await
            .unwrap();
        assert_eq!(drain(ok).await.0, b"{\"amount\":1}");
    }

    #[tokio::test]
    async fn an_empty_body_is_checked_against_the_empty_digest() {
        let v =
            DigestVerifier::from_value("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")
                .unwrap();
        assert!(guard(crate::body::empty(), v, WAIT).await.is_ok());
        let v = verifier_for(b"x", Algorithm::Sha256);
        assert_eq!(
            guard(crate::body::empty(), v, WAIT)
                .await
                .unwrap_err()
                .code(),
            "digest_mismatch"
        );
    }

    #[test]
    fn malformed_and_unsupported_digests_are_refused_with_their_codes() {
        let mut h = HeaderMap::new();
        h.insert("content-digest", "sha-512=not-bytes".parse().unwrap());
        assert_eq!(plan(&h, true).unwrap_err().code(), "digest_malformed");
        h.insert(
            "content-digest",
            "md5=:AAAAAAAAAAAAAAAAAAAAAA==:".parse().unwrap(),
        );
        assert_eq!(plan(&h, true).unwrap_err().code(), "digest_unsupported");
        assert!(plan(&h, false).unwrap().is_none());
        assert!(plan(&HeaderMap::new(), true).unwrap().is_none());
    }

    /// Wraps a body so that it declares an exact length of 6 bytes.
    struct Sized6(Body);

    impl http_body::Body for Sized6 {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Pin::new(&mut self.0).poll_frame(cx)
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(6)
        }
    }
}

//! `upstream.body_idle_timeout`: an upstream response body whose next frame keeps Warden
//! waiting too long is cut. Only the wait for the upstream counts: while the client does not
//! read, the body is not polled and no deadline runs.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use crate::body::{Body, BoxError};
use crate::coarse_timer::{Alarm, CoarseTimer};

/// The error an upstream response body ends with when it stalls.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body stalled for {after:?} (upstream.body_idle_timeout)")]
pub struct UpstreamBodyStalled {
    pub after: Duration,
}

/// `body` with its stall deadline; a body already complete (HEAD, 204, 304, empty) is left as
/// it is.
pub fn idle_limited(body: Body, timer: &CoarseTimer, after: Duration) -> Body {
    use http_body_util::BodyExt;
    if http_body::Body::is_end_stream(&body) {
        return body;
    }
    IdleBody {
        inner: body,
        alarm: timer.alarm(),
        after,
        until: None,
    }
    .boxed()
}

struct IdleBody {
    inner: Body,
    alarm: Alarm,
    after: Duration,
    /// Set when a wait for a frame begins, cleared when a frame arrives.
    until: Option<u64>,
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let until = *this
                    .until
                    .get_or_insert_with(|| this.alarm.ms_after(this.alarm.now_ms(), this.after));
                match this.alarm.poll_at(until, cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        let after = this.after;
                        tracing::warn!(
                            after_ms = after.as_millis() as u64,
                            "upstream response body stalled; cut (upstream.body_idle_timeout)"
                        );
                        Poll::Ready(Some(Err(Box::new(UpstreamBodyStalled { after }))))
                    }
                }
            }
            ready => {
                this.until = None;
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

//! Request bodies on their way to the upstream: the size limit (`server.max_body_bytes`) and
//! the stall deadline (`server.body_read_timeout`). The errors they raise are in `body.rs`;
//! `problem::from_body_error` maps them to refusals.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::body::{Body, BoxError};
use crate::body::{BodyStalled, BodyTooLarge};
use crate::coarse_timer::{Alarm, CoarseTimer};

/// The client's request body failed (bad chunked framing, connection closed mid-body): the
/// client's fault, not the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("request body unreadable")]
pub struct ClientBodyError(#[source] BoxError);

/// A request body that fails with [`BodyTooLarge`] once more than `limit` bytes have passed,
/// and, given `stall` (the timer and `server.body_read_timeout`), with [`BodyStalled`] when its
/// next frame keeps the reader waiting longer than that.
///
/// The stall deadline costs nothing for a body that is already complete (no body, or nothing
/// left to read) and nothing while frames are there when polled: it runs only while the reader
/// waits, on the coarse timer's [`Alarm`] (an atomic load a wait; the timer's lock once when a
/// body first keeps its reader waiting, about once a `body_read_timeout` after that, and once
/// when it is dropped).
pub fn limit_body<B>(body: B, limit: u64, stall: Option<(&CoarseTimer, Duration)>) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let stall = stall
        .filter(|_| !body.is_end_stream())
        .map(|(timer, after)| Stall {
            alarm: timer.alarm(),
            after,
            until: None,
        });
    LimitedBody {
        inner: body
            .map_err(|e| BoxError::from(ClientBodyError(e.into())))
            .boxed(),
        seen: 0,
        limit,
        stall,
    }
    .boxed()
}

/// The stall deadline of a request body: `until` is set when a wait for a frame begins.
struct Stall {
    alarm: Alarm,
    after: Duration,
    until: Option<u64>,
}

pin_project_lite::pin_project! {
    struct LimitedBody {
        #[pin]
        inner: Body,
        seen: u64,
        limit: u64,
        stall: Option<Stall>,
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                let Some(stall) = this.stall.as_mut() else {
                    return Poll::Pending;
                };
                // The wait is counted from its start, not from the last frame: a reader that
                // did not poll (the upstream applying backpressure) is not the client's delay.
                let until = *stall
                    .until
                    .get_or_insert_with(|| stall.alarm.ms_after(stall.alarm.now_ms(), stall.after));
                match stall.alarm.poll_at(until, cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        let after = stall.after;
                        Poll::Ready(Some(Err(Box::new(BodyStalled { after }))))
                    }
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(stall) = this.stall.as_mut() {
                    stall.until = None;
                }
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        let limit = *this.limit;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

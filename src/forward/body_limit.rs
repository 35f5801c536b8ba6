//! Request bodies on their way to the upstream: the size limit (`server.max_body_bytes`) and
//! the stall deadline (`server.body_read_timeout`). The errors they raise are in `body.rs`;
//! `problem::from_body_error` maps them to refusals.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;

use crate::body::{Body, BodyStalled, BodyTooLarge, BoxError, Watch, Watched};
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
        .map(|(timer, after)| Stall::new(timer, after));
    let inner = body
        .map_err(|e| BoxError::from(ClientBodyError(e.into())))
        .boxed();
    Watched::new(
        inner,
        Limit {
            seen: 0,
            limit,
            stall,
        },
    )
    .boxed()
}

/// A deadline on the wait for a body's next frame (`server.body_read_timeout`,
/// `upstream.body_idle_timeout`), on the coarse timer: armed when a poll finds no frame,
/// cleared when one arrives.
pub(crate) struct Stall {
    alarm: Alarm,
    after: Duration,
    /// When the current wait ends, set when it begins.
    until: Option<u64>,
}

impl Stall {
    pub(crate) fn new(timer: &CoarseTimer, after: Duration) -> Self {
        Self {
            alarm: timer.alarm(),
            after,
            until: None,
        }
    }

    /// How long a wait may last.
    pub(crate) fn after(&self) -> Duration {
        self.after
    }

    /// `Ready` once the current wait has lasted `after`. The wait is counted from its start,
    /// not from the last frame: a reader that did not poll (the upstream applying
    /// backpressure, or a client not reading) is not the body's delay.
    pub(crate) fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let until = *self
            .until
            .get_or_insert_with(|| self.alarm.ms_after(self.alarm.now_ms(), self.after));
        self.alarm.poll_at(until, cx)
    }

    /// A frame arrived: the next wait starts afresh.
    pub(crate) fn reset(&mut self) {
        self.until = None;
    }
}

/// The request body's checks: its size so far against `limit`, and its stall deadline.
struct Limit {
    seen: u64,
    limit: u64,
    stall: Option<Stall>,
}

impl Watch for Limit {
    fn waiting(&mut self, cx: &mut Context<'_>) -> Poll<BoxError> {
        let Some(stall) = self.stall.as_mut() else {
            return Poll::Pending;
        };
        let after = stall.after();
        stall
            .poll_stalled(cx)
            .map(|()| BoxError::from(BodyStalled { after }))
    }

    fn frame(&mut self, frame: &Frame<Bytes>) -> Result<(), BoxError> {
        if let Some(stall) = self.stall.as_mut() {
            stall.reset();
        }
        if let Some(data) = frame.data_ref() {
            self.seen += data.len() as u64;
            if self.seen > self.limit {
                let limit = self.limit;
                return Err(Box::new(BodyTooLarge { limit }));
            }
        }
        Ok(())
    }
}

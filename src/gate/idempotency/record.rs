//! Recording and replaying a keyed request's response: the body read whole within a shared
//! budget of bytes, the response gathered or teed to the store as it streams, the marker
//! reasons kept instead of a response, and the stored response played back.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use super::{IDEMPOTENT_REPLAYED, ResponseSeal, Ticket};
use crate::body::{Body, BoxError, full};
use crate::coarse_timer::CoarseTimer;
use crate::problem::Problem;
use crate::store::StoredResponse;

/// Why a marker record was written instead of a response (its body; shown in the 422 detail).
pub(super) const STREAMED: &str = "it was an event stream";
pub(super) const TOO_LARGE: &str = "it was larger than idempotency.max_response_bytes";
pub(super) const CUT_SHORT: &str = "the upstream broke off its body";
pub(super) const TOO_SLOW: &str = "its body was still streaming when the reservation lease ran out";
pub(super) const UPGRADED: &str = "the connection switched protocols";

pub(super) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("text/event-stream")
        })
}

pub(super) fn not_replayable(reason: &[u8]) -> Problem {
    Problem::IdempotencyResponseNotReplayable {
        reason: String::from_utf8_lossy(reason).into_owned(),
    }
}

pub(super) fn stored_headers(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// The stored response as it was sent, marked as a replay.
pub(super) fn replay(stored: StoredResponse) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(stored.status) else {
        return not_replayable(b"its record is damaged").into_response();
    };
    let mut resp = Response::new(full(stored.body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            h.append(name, value);
        }
    }
    h.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    resp
}

/// Reads a body whole, at most `limit` bytes, counting them against `hold`'s budget if given;
/// a body of one frame is not copied.
pub(super) async fn read_whole(
    mut body: Body,
    limit: usize,
    mut hold: Option<&mut Hold>,
) -> Result<Bytes, Problem> {
    let mut chunks = Vec::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_problem(e.as_ref()))?;
        if let Ok(data) = frame.into_data() {
            len += data.len();
            if len > limit {
                return Err(Problem::PayloadTooLarge {
                    limit: limit as u64,
                });
            }
            if let Some(hold) = hold.as_deref_mut() {
                hold.grow_to(len)?;
            }
            chunks.push(data);
        }
    }
    Ok(joined(chunks))
}

/// The bytes all keyed bodies held for their fingerprint may take together: a counting
/// semaphore of bytes that never waits (an atomic add that fails past `max`).
pub(super) struct Budget {
    pub(super) held: AtomicUsize,
    pub(super) max: usize,
}

/// One body's share of the [`Budget`], given back when it is dropped.
pub(super) struct Hold {
    pub(super) budget: Arc<Budget>,
    pub(super) bytes: usize,
}

impl Hold {
    /// Takes from the budget up to `bytes` in all for this body; 503 `server_busy` when they
    /// do not fit.
    pub(super) fn grow_to(&mut self, bytes: usize) -> Result<(), Problem> {
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        let max = self.budget.max;
        let taken = self
            .budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|&h| h <= max)
            });
        if taken.is_err() {
            tracing::debug!(
                budget = max,
                "keyed body refused: idempotency.buffer_budget_bytes is in use"
            );
            return Err(Problem::ServerBusy { retry_after: 1 });
        }
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A keyed body read whole, on its way upstream: it keeps its share of the budget until it
/// has been handed on (or dropped).
pub(super) struct Buffered {
    pub(super) data: Option<Bytes>,
    pub(super) hold: Option<Hold>,
}

impl Buffered {
    pub(super) fn body(data: Bytes, hold: Hold) -> Body {
        Buffered {
            data: Some(data).filter(|d| !d.is_empty()),
            hold: Some(hold),
        }
        .boxed()
    }
}

impl http_body::Body for Buffered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = this.data.take().map(|d| Ok(Frame::data(d)));
        this.hold = None;
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// The chunks of a body as one; a body of one chunk is not copied.
pub(super) fn joined(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    }
}

/// Reads a body to its end (through whatever checks wrap it), keeping nothing.
pub(super) async fn discard(mut body: Body) -> Result<(), Problem> {
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| body_problem(e.as_ref()))?;
    }
    Ok(())
}

/// What a client is told when its body could not be read for the fingerprint.
pub(super) fn body_problem(e: &(dyn std::error::Error + 'static)) -> Problem {
    crate::problem::from_body_error(e).unwrap_or_else(|| Problem::BadRequest {
        detail: "the request body could not be read".into(),
    })
}

/// Reads a response of known length, small enough to be recorded, to its end (recording it on
/// the way, see [`TeeBody`]) before it is answered: its head and body then leave in one write
/// instead of two, which costs the client no time (the last frame waits for the record anyway)
/// and saves a send and a TCP segment on every keyed request. An upstream that breaks off the
/// body gets the client a 502. Not done by `deadline` (the upstream is slow), or on trailers,
/// the response goes out with what was read so far and streams the rest as before. Dropped
/// here (the client left), the [`TeeBody`] still reads and records the rest in the background.
///
/// The deadline is the coarse timer's: it is registered only when a frame is not there at once
/// (the record being written, or the upstream), and costs a slab entry rather than a tokio
/// timer.
pub(super) async fn gather(
    parts: http::response::Parts,
    mut tee: TeeBody,
    timer: &CoarseTimer,
    deadline: Instant,
) -> Response<Body> {
    let deadline = deadline.into_std();
    let mut head = std::collections::VecDeque::new();
    let whole = loop {
        match timer.timeout_at(deadline, tee.frame()).await {
            Ok(None) => break true,
            Ok(Some(Ok(frame))) => {
                let data = frame.is_data();
                head.push_back(frame);
                if !data {
                    break false;
                }
            }
            // Nothing has gone out yet, so the client can be told plainly (its retry is answered
            // 422 from the marker the tee records: the request did run).
            Ok(Some(Err(_))) => return Problem::UpstreamUnavailable.into_response(),
            Err(_) => break false,
        }
    };
    let body = if whole {
        let chunks = head
            .into_iter()
            .filter_map(|f| f.into_data().ok())
            .collect();
        full(joined(chunks))
    } else {
        Prefixed { head, rest: tee }.boxed()
    };
    Response::from_parts(parts, body)
}

/// The frames already read of a response that could not be gathered whole, then the rest.
pub(super) struct Prefixed {
    pub(super) head: std::collections::VecDeque<Frame<Bytes>>,
    pub(super) rest: TeeBody,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.head.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let held: u64 = (self.head.iter())
            .filter_map(|frame| frame.data_ref())
            .map(|data| data.len() as u64)
            .sum();
        crate::body::hint_plus(self.rest.size_hint(), held)
    }
}

/// The response being recorded while it streams.
pub(super) struct Recorder {
    pub(super) ticket: Ticket,
    pub(super) status: u16,
    /// The response's headers, encoded to be sealed with the body ([`ResponseSeal::head`]).
    pub(super) head: Vec<u8>,
    pub(super) seal: Arc<ResponseSeal>,
    pub(super) chunks: Vec<Bytes>,
    pub(super) seen: usize,
    pub(super) max: usize,
}

impl Recorder {
    /// Keeps `data` (a cheap reference to the same bytes); `false` once past the cap.
    fn push(&mut self, data: &Bytes) -> bool {
        self.seen += data.len();
        if self.seen > self.max {
            self.chunks = Vec::new();
            return false;
        }
        self.chunks.push(data.clone());
        true
    }

    async fn complete(self) {
        let Self {
            ticket,
            status,
            head,
            seal,
            chunks,
            ..
        } = self;
        let response = seal.seal(&ticket.client, &ticket.key, status, head, &chunks);
        ticket.complete(response).await;
    }
}

/// A response body streamed to the client as it comes while a copy is kept, up to
/// `idempotency.max_response_bytes`. At its end the copy is recorded before the last frame
/// goes out, so a client that has the whole response finds it replayable. Past the cap, cut
/// short, or too slow, a marker is recorded instead and the body streams on uncopied. Dropped
/// early (the client left), the rest is read in the background so a retry finds the result.
pub(super) struct TeeBody {
    pub(super) inner: Body,
    pub(super) recorder: Option<Recorder>,
    /// When recording gives up (the lease is about to run out).
    pub(super) deadline: Instant,
    /// Wakes the body at `deadline`; armed only once the upstream keeps it waiting, so a body
    /// that is already there costs no timer.
    pub(super) timer: Option<Pin<Box<Sleep>>>,
    /// The record being written; `held` goes out when it is done.
    /// In a mutex only to be `Sync` (a boxed body must be); `poll_frame` has `&mut self` and
    /// reaches it with `get_mut`, never locking.
    pub(super) writing: Option<Mutex<Pin<Box<dyn Future<Output = ()> + Send>>>>,
    /// `Some(frame)`: the last data frame; `None`: the end of the body.
    pub(super) held: Option<Option<Frame<Bytes>>>,
}

impl TeeBody {
    fn give_up(&mut self, reason: &'static str) {
        if let Some(recorder) = self.recorder.take() {
            tokio::spawn(recorder.ticket.give_up(reason));
        }
    }

    fn write_then(&mut self, held: Option<Frame<Bytes>>) {
        if let Some(recorder) = self.recorder.take() {
            self.writing = Some(Mutex::new(Box::pin(recorder.complete())));
        }
        self.held = Some(held);
    }
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(writing) = this.writing.as_mut() {
                // A failed write is logged; the response goes out regardless.
                let writing = writing.get_mut().unwrap_or_else(PoisonError::into_inner);
                ready!(writing.as_mut().poll(cx));
                this.writing = None;
            }
            if let Some(held) = this.held.take() {
                return Poll::Ready(held.map(Ok));
            }
            let polled = Pin::new(&mut this.inner).poll_frame(cx);
            if polled.is_pending() && this.recorder.is_some() {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.give_up(TOO_SLOW);
                }
            }
            match ready!(polled) {
                Some(Ok(frame)) => {
                    if let (Some(recorder), Some(data)) = (this.recorder.as_mut(), frame.data_ref())
                    {
                        if !recorder.push(data) {
                            this.give_up(TOO_LARGE);
                        }
                    }
                    if this.recorder.is_some() && this.inner.is_end_stream() {
                        this.write_then(Some(frame));
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                None if this.recorder.is_some() => {
                    this.write_then(None);
                }
                None => return Poll::Ready(None),
                Some(Err(e)) => {
                    this.give_up(CUT_SHORT);
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recorder.is_none()
            && self.writing.is_none()
            && self.held.is_none()
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        let Some(recorder) = self.recorder.take() else {
            return;
        };
        let inner = std::mem::replace(&mut self.inner, crate::body::empty());
        let deadline = self.deadline;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(drain(inner, recorder, deadline));
        }
    }
}

/// Reads the rest of a response nobody is waiting for, and records it.
pub(super) async fn drain(mut body: Body, mut recorder: Recorder, deadline: Instant) {
    let read = tokio::time::timeout_at(deadline, async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(CUT_SHORT);
            };
            if let Some(data) = frame.data_ref() {
                if !recorder.push(data) {
                    return Err(TOO_LARGE);
                }
            }
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => recorder.complete().await,
        Ok(Err(reason)) => recorder.ticket.give_up(reason).await,
        Err(_) => recorder.ticket.give_up(TOO_SLOW).await,
    }
}

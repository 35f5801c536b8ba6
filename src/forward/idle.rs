//! `upstream.body_idle_timeout`: an upstream response body whose next frame keeps Warden
//! waiting too long is cut. Only the wait for the upstream counts: while the client does not
//! read, the body is not polled and no deadline runs.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;

use super::body_limit::Stall;
use crate::body::{Body, BoxError, Watch, Watched};
use crate::coarse_timer::CoarseTimer;

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
    Watched::new(body, Idle(Stall::new(timer, after))).boxed()
}

/// The upstream body's stall deadline.
struct Idle(Stall);

impl Watch for Idle {
    fn waiting(&mut self, cx: &mut Context<'_>) -> Poll<BoxError> {
        let after = self.0.after();
        self.0.poll_stalled(cx).map(|()| {
            tracing::warn!(
                after_ms = after.as_millis() as u64,
                "upstream response body stalled; cut (upstream.body_idle_timeout)"
            );
            BoxError::from(UpstreamBodyStalled { after })
        })
    }

    fn frame(&mut self, _frame: &Frame<Bytes>) -> Result<(), BoxError> {
        self.0.reset();
        Ok(())
    }
}

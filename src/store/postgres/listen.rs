//! How a replica hears of changes made by the others: one connection per store that `LISTEN`s
//! on the schema's channel, and a poll of the feed's head as the fallback.
//!
//! Each notification moves the store's change marker; the request path then reads the feed
//! (`changes_since`) and drops what it cached. On every (re)connection the listener first
//! `LISTEN`s, then moves the marker: the reader then reads everything after the last change it
//! applied, so a notification sent while the connection was down is never lost (what was
//! committed before the `LISTEN` is in the feed; what commits after it is notified). The poll
//! catches a listener that is down or wedged: a change is seen within
//! `store.postgres.fallback_poll_interval` whatever becomes of the listener.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Socket};

use super::Tls;

/// The `application_name` of listener connections (so an operator, or a test, can find them
/// in `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "warden-listener";

/// Starts the listener. The receiver answers once it first listens.
pub(super) fn start(
    mut config: tokio_postgres::Config,
    tls: Tls,
    channel: String,
    marker: Arc<AtomicU64>,
    retry_after: Duration,
) -> (oneshot::Receiver<()>, JoinHandle<()>) {
    config.application_name(LISTENER_APPLICATION_NAME);
    let (first, listening) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut first = Some(first);
        // Quoted: the channel name holds a colon.
        let listen = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
        let backoff = retry_after.clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            let outcome = match &tls {
                Tls::Plain => {
                    listen_once(&config, tokio_postgres::NoTls, &listen, &marker, &mut first).await
                }
                Tls::Rustls(make) => {
                    listen_once(&config, make.clone(), &listen, &marker, &mut first).await
                }
            };
            if let Err(error) = outcome {
                tracing::warn!(
                    error = %error,
                    "store: the change listener lost its connection; reconnecting (changes are \
                     still seen by the fallback poll)"
                );
            }
            tokio::time::sleep(backoff).await;
        }
    });
    (listening, task)
}

/// One connection's life: connect, `LISTEN`, resync, then follow notifications until the
/// connection ends.
async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    listen: &str,
    marker: &AtomicU64,
    first: &mut Option<oneshot::Sender<()>>,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = config.connect(tls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The connection must be driven while LISTEN runs: both at once.
    let listened = drive_until(&mut messages, marker, client.batch_execute(listen)).await;
    listened?;
    // Listening now: whatever was committed before is in the feed, so look at it.
    marker.fetch_add(1, Ordering::AcqRel);
    if let Some(first) = first.take() {
        let _ = first.send(());
    }
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(_) = message? {
            marker.fetch_add(1, Ordering::AcqRel);
        }
    }
    drop(client);
    Ok(())
}

/// Polls `work` while forwarding the connection's messages, until `work` is done.
async fn drive_until<S, F, T>(
    messages: &mut S,
    marker: &AtomicU64,
    work: F,
) -> Result<T, tokio_postgres::Error>
where
    S: futures_util::Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Unpin,
    F: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return result,
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    marker.fetch_add(1, Ordering::AcqRel);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                // The connection ended: `work` fails now.
                None => return work.await,
            },
        }
    }
}

/// The fallback: every `interval`, the feed's head; a new one moves the marker.
pub(super) fn poll_head(pool: Pool, marker: Arc<AtomicU64>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<i64> = None;
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Ok(client) = pool.get().await else {
                continue;
            };
            let head = client
                .query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])
                .await
                .and_then(|row| row.try_get::<_, i64>(0));
            drop(client);
            if let Ok(head) = head {
                if last.is_some_and(|seen| seen != head) {
                    marker.fetch_add(1, Ordering::AcqRel);
                }
                last = Some(head);
            }
        }
    })
}

//! `Scheduler::events`: a stream of job events from every process of the
//! namespace.
//!
//! While a stream is open it keeps a registration in the namespace's
//! `listeners` (renewed every 20 s, for 60 s); while any is registered, each
//! script that changes a job publishes the change on the namespace's events
//! channel (common.lua `emit`). With none open, the scripts publish nothing.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::wait::{LISTENER_RENEW, LISTENER_TTL};
use crate::api::events::{EventsMissed, JobEvent};
use crate::backend::{Backend, CloseFn, EventNotice, Listener};
use crate::{Error, Scheduler};

/// How many events a stream holds for a reader that is behind; past that,
/// events are dropped and the reader gets [`EventsMissed`].
const EVENTS_CAPACITY: usize = 10_000;

/// A stream of job events ([`Scheduler::events`]). Read it with
/// [`next`](Self::next), or as a [`futures_util::Stream`]. Dropping it (or
/// [`close`](Self::close)) stops it.
pub struct JobEvents {
    notices: mpsc::Receiver<EventNotice>,
    /// Set when renewing the registration failed: events may not have been
    /// published meanwhile.
    gap: Arc<AtomicBool>,
    /// Asks for the registration to be renewed now (after a reconnect: the
    /// server may have restarted without it).
    renew_now: Arc<Notify>,
    open: Option<Open>,
}

impl std::fmt::Debug for JobEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobEvents").finish_non_exhaustive()
    }
}

/// What an open stream holds: its registration and its subscription.
struct Open {
    backend: Arc<dyn Backend>,
    token: String,
    renew: JoinHandle<()>,
    close: CloseFn,
}

impl Open {
    async fn close(self) {
        self.renew.abort();
        (self.close)().await;
        let _ = self
            .backend
            .listen(Listener::Events, &self.token, None)
            .await;
    }
}

impl JobEvents {
    /// The next event; `Err(EventsMissed)` when events may have been lost
    /// since the last one (read the durable state to catch up, then go on
    /// reading); `None` once the stream is closed.
    pub async fn next(&mut self) -> Option<Result<JobEvent, EventsMissed>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Stops the stream: unsubscribes and removes its registration (what
    /// dropping it does, in the background).
    pub async fn close(mut self) {
        if let Some(open) = self.open.take() {
            open.close().await;
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<JobEvent, EventsMissed>>> {
        if self.gap.swap(false, Ordering::Relaxed) {
            return Poll::Ready(Some(Err(EventsMissed)));
        }
        self.notices.poll_recv(cx).map(|notice| {
            notice.map(|notice| match notice {
                EventNotice::Event(event) => Ok(event),
                EventNotice::Missed => {
                    self.renew_now.notify_one();
                    Err(EventsMissed)
                }
            })
        })
    }
}

impl futures_util::Stream for JobEvents {
    type Item = Result<JobEvent, EventsMissed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}

impl Drop for JobEvents {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            open.renew.abort();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(open.close());
            }
        }
    }
}

impl Scheduler {
    /// A stream of the job events of this namespace, from every process:
    /// each job enqueued, started, reporting progress, retried, released,
    /// completed, failed, cancelled or dead-lettered, as it happens (see
    /// [`JobEventKind`](crate::JobEventKind)). Events that happen once this
    /// returns are reported.
    ///
    /// **Delivery is best effort**: on Redis, events travel by pub/sub, so
    /// an event published while the stream's connection is down is lost.
    /// The stream says so: it yields `Err(`[`EventsMissed`]`)` after a
    /// reconnect, when the reader fell more than 10,000 events behind, or
    /// when renewing its registration failed. The durable state is what to
    /// resume from: [`info`](Self::info) of the jobs you follow,
    /// [`counts`](Self::counts), [`list_pending`](Self::list_pending),
    /// [`dead_letters`](Self::dead_letters). An event may also arrive twice
    /// (a script call the client sent again after a lost reply, as a
    /// progress report can be). To know that one job ended, use
    /// [`wait`](Self::wait), which never misses.
    ///
    /// While no stream is open, nothing is published: the scripts look up
    /// whether one is (one read per call) and publish nothing else. Each
    /// open stream holds one Redis connection.
    ///
    /// ```
    /// use scheduler::JobEventKind;
    ///
    /// #[scheduler::task]
    /// async fn greet(name: String) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://events-doc")
    ///     .register::<greet>()
    ///     .start()
    ///     .await?;
    /// let mut events = s.events().await?;
    /// greet::enqueue(&s, "g", "Ada".into()).await?;
    /// while let Some(Ok(event)) = events.next().await {
    ///     println!("{} {:?}", event.job_id, event.kind);
    ///     if event.kind == JobEventKind::Completed {
    ///         break;
    ///     }
    /// }
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn events(&self) -> Result<JobEvents, Error> {
        let backend = Arc::clone(&self.inner.backend);
        let subscription = backend.subscribe_events(EVENTS_CAPACITY).await?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        // Subscribed first, registered second: nothing is published for this
        // stream before it can hear it.
        let registered = backend
            .listen(Listener::Events, &token, Some(LISTENER_TTL))
            .await;
        if let Err(e) = self.observe(registered) {
            (subscription.close)().await;
            return Err(e);
        }
        let gap = Arc::new(AtomicBool::new(false));
        let renew_now = Arc::new(Notify::new());
        let renew = tokio::spawn(renew(
            Arc::clone(&backend),
            token.clone(),
            Arc::clone(&gap),
            Arc::clone(&renew_now),
        ));
        Ok(JobEvents {
            notices: subscription.notices,
            gap,
            renew_now,
            open: Some(Open {
                backend,
                token,
                renew,
                close: subscription.close,
            }),
        })
    }
}

/// Renews a stream's registration, and at once when asked (after a
/// reconnect). A failure, or a renewal later than the registration's ttl,
/// may mean that events were not published meanwhile: the stream reports
/// [`EventsMissed`].
async fn renew(
    backend: Arc<dyn Backend>,
    token: String,
    gap: Arc<AtomicBool>,
    renew_now: Arc<Notify>,
) {
    let mut every = tokio::time::interval(LISTENER_RENEW);
    every.tick().await;
    // When the registration was last renewed: a renewal later than its ttl
    // (a process frozen for a minute) comes after it expired.
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = renew_now.notified() => {}
        }
        let asked = tokio::time::Instant::now();
        match backend
            .listen(Listener::Events, &token, Some(LISTENER_TTL))
            .await
        {
            Ok(()) => {
                if asked.duration_since(renewed) >= LISTENER_TTL {
                    tracing::debug!("the events registration was renewed after it expired; the stream reports a gap");
                    gap.store(true, Ordering::Relaxed);
                }
                renewed = asked;
            }
            Err(e) => {
                tracing::debug!(error = %e, "renewing the events registration failed; the stream reports a gap");
                gap.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A process frozen longer than the registration's ttl renews it late:
    /// events were not published meanwhile, and the stream says so.
    #[tokio::test(start_paused = true)]
    async fn a_renewal_later_than_the_ttl_is_reported_as_missed_events() {
        let s = Scheduler::builder("memory://late-renewal")
            .producer_only()
            .start()
            .await
            .expect("starts");
        let mut events = s.events().await.expect("a stream");
        // On time: no gap.
        tokio::time::sleep(LISTENER_RENEW * 2 + Duration::from_secs(1)).await;
        let quiet = tokio::time::timeout(Duration::from_millis(100), events.next()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        // Frozen: the clock jumps past the ttl before the renewal runs.
        tokio::time::advance(LISTENER_TTL + Duration::from_secs(1)).await;
        let late = tokio::time::timeout(Duration::from_secs(1), events.next()).await;
        assert_eq!(late, Ok(Some(Err(EventsMissed))));
        events.close().await;
        s.close().await;
    }
}

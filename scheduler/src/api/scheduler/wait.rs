//! Waiting for a job to finish, across processes, without polling.
//!
//! A process that waits registers one listener with the backend (a channel
//! of its own in Redis's `listeners`, renewed while it waits, removed when
//! nobody waits any more) and subscribes to it; every script that ends a job
//! announces `<generation>:<id>` to the registered listeners. Each `wait`
//! looks at the job once after registering, then again only when the job's
//! id is announced, or when notices may have been lost (a reconnect of the
//! subscriber).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, Notify, OnceCell};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::api::scheduler::inspect::{typed_result, untyped_result};
use crate::backend::{Backend, CloseFn, FinishedNotice, Listener};
use crate::{Error, JobInfo, JobResult, JobStatus, Scheduler, Task};

/// How long a listener registration lasts without renewal.
pub(super) const LISTENER_TTL: Duration = Duration::from_secs(60);
/// How often the registration is renewed (or removed when nobody waits).
pub(super) const LISTENER_RENEW: Duration = Duration::from_secs(20);

/// The jobs this process waits for, by id: one `Notify` per `wait` call.
type Waiting = Arc<Mutex<HashMap<String, Vec<Arc<Notify>>>>>;

/// One process's listener: its token, who waits, and the task that routes
/// announcements to them.
pub(crate) struct Waiters {
    token: String,
    waiting: Waiting,
    task: JoinHandle<()>,
    close: std::sync::Mutex<Option<CloseFn>>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Waiters {
    async fn start(backend: Arc<dyn Backend>) -> Result<Self, Error> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let subscription = backend.subscribe_finished(&token).await?;
        let waiting: Waiting = Arc::default();
        let task = tokio::spawn(route(
            backend,
            token.clone(),
            subscription.notices,
            Arc::clone(&waiting),
        ));
        Ok(Waiters {
            token,
            waiting,
            task,
            close: std::sync::Mutex::new(Some(subscription.close)),
        })
    }

    /// Stops listening (the registration expires, or was removed).
    pub(crate) async fn close(&self, backend: &dyn Backend) {
        self.task.abort();
        let close = self.close.lock().ok().and_then(|mut c| c.take());
        if let Some(close) = close {
            close().await;
        }
        let _ = backend.listen(Listener::Finished, &self.token, None).await;
    }
}

/// Routes announcements to the waits of their id; renews the registration
/// while someone waits, removes it when nobody does.
async fn route(
    backend: Arc<dyn Backend>,
    token: String,
    mut notices: tokio::sync::mpsc::Receiver<FinishedNotice>,
    waiting: Waiting,
) {
    let mut renew = tokio::time::interval(LISTENER_RENEW);
    renew.tick().await;
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Some(FinishedNotice::Finished { id, .. }) => {
                    if let Some(waits) = waiting.lock().await.get(&id) {
                        waits.iter().for_each(|n| n.notify_one());
                    }
                }
                Some(FinishedNotice::Missed) => {
                    let waiting = waiting.lock().await;
                    // A reconnect: the server may have restarted without
                    // the registration. Registered again before the waits
                    // look, so that no ending after their look is missed.
                    if !waiting.is_empty() {
                        if let Err(e) = backend.listen(Listener::Finished, &token, Some(LISTENER_TTL)).await {
                            debug!(error = %e, "registering the outcome listener again failed; waits look again at their deadline");
                        }
                    }
                    for waits in waiting.values() {
                        waits.iter().for_each(|n| n.notify_one());
                    }
                }
                None => return,
            },
            _ = renew.tick() => {
                // Held across the call: a wait that starts meanwhile
                // registers after this, so a removal never undoes it.
                let waiting = waiting.lock().await;
                let ttl = (!waiting.is_empty()).then_some(LISTENER_TTL);
                if let Err(e) = backend.listen(Listener::Finished, &token, ttl).await {
                    debug!(error = %e, "renewing the outcome listener failed; waits look again at their deadline");
                }
            }
        }
    }
}

/// Removes one wait's `Notify` when the wait ends, however it ends.
struct Registered {
    waiting: Waiting,
    id: String,
    notify: Arc<Notify>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let (waiting, id, notify) = (
            Arc::clone(&self.waiting),
            std::mem::take(&mut self.id),
            Arc::clone(&self.notify),
        );
        let remove = async move {
            let mut waiting = waiting.lock().await;
            if let Some(waits) = waiting.get_mut(&id) {
                waits.retain(|n| !Arc::ptr_eq(n, &notify));
                if waits.is_empty() {
                    waiting.remove(&id);
                }
            }
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(remove);
        }
    }
}

/// Whether `info` shows the job finished, for a generation at least `since`.
fn finished_since(info: &Option<JobInfo>, since: u64) -> bool {
    match info {
        None => true,
        Some(info) => {
            info.generation >= since
                && matches!(
                    info.status,
                    JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
                )
        }
    }
}

impl Scheduler {
    async fn waiters(&self) -> Result<&Waiters, Error> {
        let cell: &OnceCell<Waiters> = &self.inner.waiters;
        cell.get_or_try_init(|| Waiters::start(Arc::clone(&self.inner.backend)))
            .await
    }

    /// Waits until job `job_id` finishes, `timeout` at most, and returns
    /// what became of it (as [`result_untyped`](Self::result_untyped)):
    /// completed with its result, failed with its reason, or cancelled. It
    /// does not poll: the script that ends the job announces it to the
    /// processes that wait (on Redis, by pub/sub to a channel each waiting
    /// process registers for itself), and the job is looked at again only
    /// then. A job that finishes in another process is seen as soon as the
    /// announcement arrives.
    ///
    /// It waits for the job the id holds when called, or for one that
    /// replaces it meanwhile (a later generation). An id that holds no job
    /// (never enqueued, or its outcome expired) answers
    /// [`JobResult::Unknown`] at once. After `timeout`, [`Error::Timeout`].
    /// A job whose outcome is not kept (`keep_result` of zero) answers
    /// `Unknown` once it has ended.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scheduler::JobResult;
    ///
    /// #[scheduler::task]
    /// async fn double(n: u32) -> Result<u32, String> {
    ///     Ok(n * 2)
    /// }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://wait-doc")
    ///     .register::<double>()
    ///     .start()
    ///     .await?;
    /// double::enqueue(&s, "d", 21).await?;
    /// let done = double::wait(&s, "d", Duration::from_secs(5)).await?;
    /// assert_eq!(done, JobResult::Completed(42));
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait(
        &self,
        job_id: &str,
        timeout: Duration,
    ) -> Result<JobResult<serde_json::Value>, Error> {
        untyped_result(self.wait_until_finished(job_id, timeout).await?)
    }

    /// [`wait`](Self::wait) for a job of task `T`, its result decoded as the
    /// task's output (what the `wait` helper of `#[task]` calls).
    pub async fn wait_typed<T>(
        &self,
        job_id: &str,
        timeout: Duration,
    ) -> Result<JobResult<T::Output>, Error>
    where
        T: Task,
        T::Output: DeserializeOwned,
    {
        typed_result::<T>(job_id, self.wait_until_finished(job_id, timeout).await?)
    }

    /// Waits until job `job_id` has ended; its `info` then (`None`: no job,
    /// or its outcome is not kept).
    async fn wait_until_finished(
        &self,
        job_id: &str,
        timeout: Duration,
    ) -> Result<Option<JobInfo>, Error> {
        crate::validate_job_id(job_id)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let waiters = self.waiters().await?;
        let notify = Arc::new(Notify::new());
        {
            let mut waiting = waiters.waiting.lock().await;
            waiting
                .entry(job_id.to_string())
                .or_default()
                .push(Arc::clone(&notify));
            // Registered before the first look, so that no ending is missed.
            self.observe(
                self.inner
                    .backend
                    .listen(Listener::Finished, &waiters.token, Some(LISTENER_TTL))
                    .await,
            )?;
        }
        let _registered = Registered {
            waiting: Arc::clone(&waiters.waiting),
            id: job_id.to_string(),
            notify: Arc::clone(&notify),
        };
        let info = self.info(job_id).await?;
        let since = info.as_ref().map_or(0, |i| i.generation);
        if finished_since(&info, since) {
            return Ok(info);
        }
        loop {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    // One last look: an announcement lost with no reconnect
                    // seen (the listener expired meanwhile) still counts.
                    let info = self.info(job_id).await?;
                    if finished_since(&info, since) {
                        return Ok(info);
                    }
                    return Err(Error::Timeout {
                        timeout,
                        message: format!("job {job_id:?} did not finish"),
                    });
                }
            }
            let info = self.info(job_id).await?;
            if finished_since(&info, since) {
                return Ok(info);
            }
        }
    }
}

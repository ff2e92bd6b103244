//! The `Scheduler` handle: enqueue, replace, cancel and inspect jobs, and the
//! worker it runs inside the application's tokio runtime.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::info;

use crate::api::deps::Dependencies;
use crate::api::error::Error;
use crate::api::registry::Registry;
use crate::backend::Backend;
use crate::ops::health::{Health, HealthState};
use crate::ops::metrics::Metrics;
use crate::worker::WorkerHandle;

mod builder;
mod cancel;
mod enqueue;
mod events;
mod inspect;
mod reschedule;
mod schedules;
mod wait;

pub use builder::SchedulerBuilder;
pub use events::JobEvents;
pub use inspect::ACTIVITY_MINUTES;
pub use reschedule::Rescheduled;

/// A handle to a running scheduler: cheap to clone and share (put it in your web
/// framework's state).
///
/// ```no_run
/// # async fn demo() -> Result<(), scheduler::Error> {
/// let scheduler = scheduler::Scheduler::builder("redis://127.0.0.1:6379")
///     .namespace("myapp")
///     .start()
///     .await?;
/// // ... enqueue jobs with the helpers `#[task]` generates ...
/// scheduler.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    registry: Registry,
    deps: Dependencies,
    health: HealthState,
    metrics: Metrics,
    worker: Mutex<Option<WorkerHandle>>,
    /// This process's listener for `wait`, started by the first wait.
    waiters: tokio::sync::OnceCell<wait::Waiters>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("namespace", &self.inner.backend.config().namespace)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// This scheduler's metrics handles.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The namespace this scheduler's jobs live in
    /// ([`SchedulerBuilder::namespace`]).
    pub fn namespace(&self) -> &str {
        &self.inner.backend.config().namespace
    }

    /// The validated task registry (log it at start-up to see what this binary runs).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The provided dependencies; insert into them to override one at run time.
    pub fn dependencies(&self) -> &Dependencies {
        &self.inner.deps
    }

    /// The backend (for `__private` test hooks).
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Records whether a call reached Redis, for [`health`](Self::health).
    fn observe<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match &result {
            Ok(_) => self.inner.health.ok(),
            Err(e) if e.is_transient() || matches!(e, Error::Tls(_)) => {
                self.inner.health.degraded(&e.to_string())
            }
            Err(_) => {}
        }
        result
    }

    /// Whether the last Redis calls (the worker's and this handle's) worked.
    pub fn health(&self) -> Health {
        self.inner.health.get()
    }

    /// Risky Redis settings found at start-up (also logged as warnings):
    /// a `maxmemory-policy` that evicts keys, persistence turned off. Empty
    /// when all is well, for the in-memory backend, or when the Redis user may
    /// not run `CONFIG GET`.
    pub fn startup_warnings(&self) -> Vec<String> {
        self.inner.backend.startup_warnings()
    }

    /// Deletes the Redis function libraries of scheduler versions no longer
    /// running, and answers their names.
    ///
    /// Each version of this crate whose scripts differ loads its own library
    /// (about 90 KB, named `scheduler_` and a hash of its code) and Redis
    /// keeps it until it is deleted. So every scheduler records its library
    /// as in use, in one registry for the whole server (the key
    /// `scheduler:function-libraries` in database 0), when it starts and
    /// every 5 minutes; at the same times it deletes the libraries of this
    /// crate, on every primary of a cluster, that no scheduler recorded for
    /// an hour. This call does the same at once, for an operator who wants to
    /// see it done: there is no need to call it.
    ///
    /// It is safe while other versions run: a library in use is recorded
    /// every 5 minutes and kept, and one that a scheduler could not record
    /// (a version older than the registry, a Redis user whose ACL keeps it
    /// out of the registry's key, a scheduler cut off from Redis for an hour)
    /// is merely loaded again by that scheduler's next call, which then runs
    /// normally. Only libraries named like this crate's and registering its
    /// functions are deleted; this version's own never is.
    ///
    /// Answers an empty list for the in-memory backend, and where the
    /// scripts run with EVALSHA (the Redis user may not load functions, or
    /// the server is older than Redis 7): nothing was loaded to delete.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://libraries")
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// let dropped = s.drop_old_script_libraries().await?;
    /// assert!(dropped.is_empty(), "the in-memory backend loads no library");
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn drop_old_script_libraries(&self) -> Result<Vec<String>, Error> {
        self.observe(self.inner.backend.drop_old_script_libraries().await)
    }

    /// A receiver that sees every health change.
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }

    /// Stops the worker gracefully (no new claims; running jobs get the grace
    /// period, then are released to other workers) and closes the connections.
    /// Other clones of the handle fail with [`Error::Closed`]-like errors after this.
    pub async fn close(&self) {
        let worker = self.inner.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(worker) = worker {
            worker.close().await;
        }
        if let Some(waiters) = self.inner.waiters.get() {
            waiters.close(&*self.inner.backend).await;
        }
        self.inner.backend.close().await;
        info!("scheduler closed");
    }
}

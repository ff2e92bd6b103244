//! The job context a task can take as a parameter.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::api::deps::{Dep, Dependencies};
use crate::api::error::Error;
use crate::backend::Backend;

/// What a running job knows about itself: its id, generation, attempt, the time
/// it was planned for, and a cancellation signal.
///
/// A task receives it by declaring a parameter of type `JobContext`.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub(crate) inner: Arc<ContextInner>,
    pub(crate) cancel: CancellationToken,
    pub(crate) deps: Dependencies,
    /// Where progress reports go (`None`: nowhere, for a context built
    /// outside a worker).
    pub(crate) backend: Option<ContextBackend>,
}

/// The backend of the worker running the job.
#[derive(Clone)]
pub(crate) struct ContextBackend(pub(crate) Arc<dyn Backend>);

impl std::fmt::Debug for ContextBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextBackend")
    }
}

/// The largest progress report ([`JobContext::progress`]), as JSON.
pub const MAX_PROGRESS_BYTES: usize = 4096;

#[derive(Debug)]
pub(crate) struct ContextInner {
    pub(crate) job_id: String,
    pub(crate) task: &'static str,
    pub(crate) generation: u64,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) scheduled_at: DateTime<Utc>,
    pub(crate) enqueued_at: DateTime<Utc>,
    pub(crate) planned_tick: Option<DateTime<Utc>>,
}

impl JobContext {
    /// Builds a context; used by workers and the testing harness.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        job_id: String,
        task: &'static str,
        generation: u64,
        attempt: u32,
        max_attempts: u32,
        scheduled_at: DateTime<Utc>,
        enqueued_at: DateTime<Utc>,
        planned_tick: Option<DateTime<Utc>>,
        deps: Dependencies,
    ) -> Self {
        JobContext {
            inner: Arc::new(ContextInner {
                job_id,
                task,
                generation,
                attempt,
                max_attempts,
                scheduled_at,
                enqueued_at,
                planned_tick,
            }),
            cancel: CancellationToken::new(),
            deps,
            backend: None,
        }
    }

    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.inner.job_id
    }

    /// The task's wire name.
    pub fn task(&self) -> &'static str {
        self.inner.task
    }

    /// The [generation](crate#generations): a number unique to this job
    /// among all jobs of the namespace, from one counter shared by every id
    /// (so not 1 for a first job, nor consecutive for one id).
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The attempt, starting at 1. An attempt released by a worker that shut
    /// down keeps its number (the next one is one higher) but is not counted
    /// against [`max_attempts`](Self::max_attempts), which grows by one.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The most attempts this job gets.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// The time the job was planned to run at.
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        self.inner.scheduled_at
    }

    /// When the job was enqueued.
    pub fn enqueued_at(&self) -> DateTime<Utc> {
        self.inner.enqueued_at
    }

    /// For a job of a periodic task, the tick of its [`Schedule`](crate::Schedule)
    /// it runs for: the instant the schedule named, even when the job started
    /// later (a busy worker, a missed tick run by
    /// [`MissedTicks`](crate::MissedTicks)). Use it, not the clock, to name
    /// the period a run covers ("the report for 09:00"). `None` for a job
    /// enqueued any other way.
    pub fn planned_tick(&self) -> Option<DateTime<Utc>> {
        self.inner.planned_tick
    }

    /// Whether the job was cancelled (or the worker is shutting down and its
    /// grace period is over). The job's future is dropped shortly after; this is
    /// for tasks that want to stop at a clean point first.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the job is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Records how far the job got: a number, or any small value that
    /// serializes to JSON ([`MAX_PROGRESS_BYTES`] at most). The last value
    /// reported shows in [`JobInfo::progress`](crate::JobInfo::progress)
    /// (kept with the job's outcome once it ends) and reaches
    /// [`Scheduler::events`](crate::Scheduler::events) as
    /// [`JobEventKind::Progress`](crate::JobEventKind::Progress).
    ///
    /// Fenced like the attempt's outcome: once this attempt no longer holds
    /// the job (its lease was taken over), a report changes nothing. A
    /// report may be sent twice (after a lost reply), so report values
    /// ("40 of 100"), not increments.
    ///
    /// ```
    /// use scheduler::JobContext;
    ///
    /// #[scheduler::task]
    /// async fn import(ctx: JobContext, rows: u32) -> Result<(), scheduler::Error> {
    ///     for done in (0..=rows).step_by(100) {
    ///         // ... import 100 rows ...
    ///         ctx.progress(serde_json::json!({ "done": done, "of": rows })).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn progress(&self, value: impl serde::Serialize) -> Result<(), Error> {
        let json = serde_json::to_string(&value).map_err(|e| Error::Serialize {
            task: self.inner.task.to_string(),
            reason: format!("progress: {e}"),
        })?;
        if json.len() > MAX_PROGRESS_BYTES {
            return Err(Error::ProgressTooLarge {
                size: json.len(),
                limit: MAX_PROGRESS_BYTES,
            });
        }
        let Some(ContextBackend(backend)) = &self.backend else {
            return Ok(());
        };
        let recorded = backend
            .progress(
                &self.inner.job_id,
                self.inner.generation,
                self.inner.attempt,
                &json,
            )
            .await?;
        if !recorded {
            tracing::debug!(job_id = %self.inner.job_id, "progress not recorded: this attempt no longer holds the job");
        }
        Ok(())
    }

    /// A provided dependency, by type.
    pub fn dependency<T: ?Sized + Send + Sync + 'static>(&self) -> Result<Dep<T>, Error> {
        self.deps
            .get::<T>()
            .ok_or_else(|| Error::MissingDependency {
                task: self.inner.task.to_string(),
                type_name: std::any::type_name::<T>(),
            })
    }
}

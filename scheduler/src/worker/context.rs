//! The job context a task can take as a parameter.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::api::deps::{Dep, Dependencies};
use crate::api::error::Error;

/// What a running job knows about itself: its id, generation, attempt, the time
/// it was planned for, and a cancellation signal.
///
/// A task receives it by declaring a parameter of type `JobContext`.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub(crate) inner: Arc<ContextInner>,
    pub(crate) cancel: CancellationToken,
    pub(crate) deps: Dependencies,
}

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
